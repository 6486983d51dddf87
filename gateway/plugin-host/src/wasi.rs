//! The WASI a plugin gets: exactly the interfaces that Rust's standard library for
//! `wasm32-wasip2` links (and most other toolchains' too), each backed by nothing.
//!
//! - no filesystem or sockets: those interfaces are not linked at all, so a component
//!   importing them is refused at upload;
//! - empty environment and arguments, no working directory;
//! - stdin is empty, stdout and stderr are discarded;
//! - the wall clock is frozen at the call's host-provided time, the monotonic clock never
//!   advances (so waiting on it cannot outlast the deadline differently);
//! - "random" bytes are a fixed deterministic stream, so a transform's output is the same
//!   on every retry (and `HashMap` seeding works). Plugins must not mint secrets with it.
//!
//! `wasi:io` (streams and pollables) goes through [`IoView`]: wasmtime-wasi's synchronous
//! host blocks on its async one with `Handle::block_on`, which panics on a thread that
//! drives a tokio runtime. On a call run inline on an async worker (see
//! `PluginRuntime::with_slot`), an operation that would wait fails the call instead and
//! marks it (`CallState::blocked_inline`), so that it runs again on a blocking thread;
//! with our streams (empty stdin, discarded stdout/stderr) nothing ever waits, so in
//! practice a plugin writing to stderr (a panic message, `eprintln!`) stays inline.

use std::future::Future;
use std::task::{Context, Poll, Waker};

use crate::host::CallState;

use std::time::{Duration, Instant};

use wasmtime::component::{HasData, Linker, Resource, ResourceTable};
use wasmtime_wasi::cli::{WasiCli, WasiCliView};
use wasmtime_wasi::clocks::{WasiClocks, WasiClocksView};
use wasmtime_wasi::p2::bindings::io as async_io;
use wasmtime_wasi::p2::bindings::sync as wasi;
use wasmtime_wasi::p2::bindings::sync::io::{poll, streams};
use wasmtime_wasi::p2::{DynInputStream, DynOutputStream, DynPollable, StreamError, StreamResult};
use wasmtime_wasi::random::{WasiRandom, WasiRandomView};
use wasmtime_wasi::{
    Deterministic, HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxBuilder, WasiView,
};

/// WASI interfaces (`namespace:package/interface`, any 0.2.x version) a component may
/// import. Everything else outside our own package is refused at upload.
pub(crate) const ALLOWED_INTERFACES: &[&str] = &[
    "wasi:io/error",
    "wasi:io/poll",
    "wasi:io/streams",
    "wasi:cli/environment",
    "wasi:cli/exit",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:cli/terminal-stderr",
    "wasi:clocks/wall-clock",
    "wasi:clocks/monotonic-clock",
    "wasi:random/random",
    "wasi:random/insecure",
    "wasi:random/insecure-seed",
];

/// The largest `get-random-bytes` request served; std asks for 16 bytes.
const MAX_RANDOM_BYTES: u64 = 1024;

/// `HasData` for `wasi:io/error`, whose host side is just the resource table.
struct Table;

impl HasData for Table {
    type Data<'a> = &'a mut ResourceTable;
}

/// `HasData` for `wasi:io/poll` and `wasi:io/streams`.
struct Io;

impl HasData for Io {
    type Data<'a> = IoView<'a>;
}

/// Links [`ALLOWED_INTERFACES`] into `linker`, synchronous flavour.
pub(crate) fn add_to_linker(linker: &mut Linker<CallState>) -> wasmtime::Result<()> {
    type T = CallState;
    fn table(state: &mut CallState) -> &mut ResourceTable {
        state.ctx().table
    }
    wasi::io::error::add_to_linker::<T, Table>(linker, table)?;
    wasi::io::poll::add_to_linker::<T, Io>(linker, CallState::io)?;
    wasi::io::streams::add_to_linker::<T, Io>(linker, CallState::io)?;

    wasi::cli::environment::add_to_linker::<T, WasiCli>(linker, T::cli)?;
    wasi::cli::exit::add_to_linker::<T, WasiCli>(linker, T::cli)?;
    wasi::cli::stdin::add_to_linker::<T, WasiCli>(linker, T::cli)?;
    wasi::cli::stdout::add_to_linker::<T, WasiCli>(linker, T::cli)?;
    wasi::cli::stderr::add_to_linker::<T, WasiCli>(linker, T::cli)?;
    wasi::cli::terminal_input::add_to_linker::<T, WasiCli>(linker, T::cli)?;
    wasi::cli::terminal_output::add_to_linker::<T, WasiCli>(linker, T::cli)?;
    wasi::cli::terminal_stdin::add_to_linker::<T, WasiCli>(linker, T::cli)?;
    wasi::cli::terminal_stdout::add_to_linker::<T, WasiCli>(linker, T::cli)?;
    wasi::cli::terminal_stderr::add_to_linker::<T, WasiCli>(linker, T::cli)?;

    wasi::clocks::wall_clock::add_to_linker::<T, WasiClocks>(linker, T::clocks)?;
    wasi::clocks::monotonic_clock::add_to_linker::<T, WasiClocks>(linker, T::clocks)?;

    wasi::random::random::add_to_linker::<T, WasiRandom>(linker, T::random)?;
    wasi::random::insecure::add_to_linker::<T, WasiRandom>(linker, T::random)?;
    wasi::random::insecure_seed::add_to_linker::<T, WasiRandom>(linker, T::random)?;
    Ok(())
}

/// The resource table of one call, whether the call runs inline on an async worker, and
/// until when a WASI operation may wait.
pub(crate) struct IoView<'a> {
    pub(crate) table: &'a mut ResourceTable,
    pub(crate) inline: bool,
    /// Set when an operation would have waited on an inline call.
    pub(crate) blocked: &'a mut bool,
    /// The call's deadline: no operation waits past it.
    pub(crate) deadline: Instant,
    /// Set when an operation was cut off at the deadline.
    pub(crate) timed_out: &'a mut bool,
}

const WOULD_WAIT_INLINE: &str = "a WASI call would wait on an async worker";
const DEADLINE_PASSED: &str = "the call's time limit passed while a WASI call waited";

/// On an inline call: the output of `operation` (an async host operation) if it completes
/// without waiting, else `would_block()` (an error that fails the call) and the call is
/// marked to run again on a blocking thread.
fn inline<R>(
    blocked: &mut bool,
    operation: impl Future<Output = R>,
    would_block: impl FnOnce() -> R,
) -> R {
    let mut operation = std::pin::pin!(operation);
    match operation
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => output,
        Poll::Pending => {
            *blocked = true;
            would_block()
        }
    }
}

/// On a blocking thread: the output of `operation`, waited for at most until `deadline`;
/// past it `deadline_passed()` (an error that fails the call) and the call is marked as
/// timed out. The epoch deadline only interrupts running WebAssembly: without this, a
/// plugin sleeping in `poll` (`std::thread::sleep`, a far `subscribe-instant`) would hold
/// its thread and sandbox slot for as long as it asked.
fn until_deadline<R>(
    deadline: Instant,
    timed_out: &mut bool,
    operation: impl Future<Output = R>,
    deadline_passed: impl FnOnce() -> R,
) -> R {
    let deadline = tokio::time::Instant::from_std(deadline);
    match wasmtime_wasi::runtime::in_tokio(tokio::time::timeout_at(deadline, operation)) {
        Ok(output) => output,
        Err(_elapsed) => {
            *timed_out = true;
            deadline_passed()
        }
    }
}

fn fail<T>(message: &'static str) -> wasmtime::Result<T> {
    Err(wasmtime::Error::msg(message))
}

fn fail_stream<T>(message: &'static str) -> StreamResult<T> {
    Err(StreamError::Trap(wasmtime::Error::msg(message)))
}

/// A method of wasmtime-wasi's async `wasi:io` host (`$async` is the trait) that may wait:
/// inline, it must not ([`inline`]); on a blocking thread, not past the call's deadline
/// ([`until_deadline`]). `$fail` makes the error of either cut-off.
macro_rules! bounded_wait {
    ($view:expr, $async:path, $method:ident($($arg:expr),*), $fail:ident) => {{
        let IoView { table, inline: run_inline, blocked, deadline, timed_out } = $view;
        let operation = <ResourceTable as $async>::$method(table, $($arg),*);
        if *run_inline {
            inline(blocked, operation, || $fail(WOULD_WAIT_INLINE))
        } else {
            until_deadline(*deadline, timed_out, operation, || $fail(DEADLINE_PASSED))
        }
    }};
}

impl streams::Host for IoView<'_> {
    fn convert_stream_error(&mut self, err: StreamError) -> wasmtime::Result<streams::StreamError> {
        streams::Host::convert_stream_error(self.table, err)
    }
}

impl streams::HostOutputStream for IoView<'_> {
    fn drop(&mut self, stream: Resource<DynOutputStream>) -> wasmtime::Result<()> {
        bounded_wait!(
            self,
            async_io::streams::HostOutputStream,
            drop(stream),
            fail
        )
    }

    fn check_write(&mut self, stream: Resource<DynOutputStream>) -> StreamResult<u64> {
        streams::HostOutputStream::check_write(self.table, stream)
    }

    fn write(&mut self, stream: Resource<DynOutputStream>, bytes: Vec<u8>) -> StreamResult<()> {
        streams::HostOutputStream::write(self.table, stream, bytes)
    }

    fn blocking_write_and_flush(
        &mut self,
        stream: Resource<DynOutputStream>,
        bytes: Vec<u8>,
    ) -> StreamResult<()> {
        bounded_wait!(
            self,
            async_io::streams::HostOutputStream,
            blocking_write_and_flush(stream, bytes),
            fail_stream
        )
    }

    fn blocking_write_zeroes_and_flush(
        &mut self,
        stream: Resource<DynOutputStream>,
        len: u64,
    ) -> StreamResult<()> {
        bounded_wait!(
            self,
            async_io::streams::HostOutputStream,
            blocking_write_zeroes_and_flush(stream, len),
            fail_stream
        )
    }

    fn subscribe(
        &mut self,
        stream: Resource<DynOutputStream>,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        streams::HostOutputStream::subscribe(self.table, stream)
    }

    fn write_zeroes(&mut self, stream: Resource<DynOutputStream>, len: u64) -> StreamResult<()> {
        streams::HostOutputStream::write_zeroes(self.table, stream, len)
    }

    fn flush(&mut self, stream: Resource<DynOutputStream>) -> StreamResult<()> {
        streams::HostOutputStream::flush(self.table, stream)
    }

    fn blocking_flush(&mut self, stream: Resource<DynOutputStream>) -> StreamResult<()> {
        // As wasmtime-wasi does: the async method takes the stream as a borrow.
        let stream = Resource::new_borrow(stream.rep());
        bounded_wait!(
            self,
            async_io::streams::HostOutputStream,
            blocking_flush(stream),
            fail_stream
        )
    }

    fn splice(
        &mut self,
        dst: Resource<DynOutputStream>,
        src: Resource<DynInputStream>,
        len: u64,
    ) -> StreamResult<u64> {
        streams::HostOutputStream::splice(self.table, dst, src, len)
    }

    fn blocking_splice(
        &mut self,
        dst: Resource<DynOutputStream>,
        src: Resource<DynInputStream>,
        len: u64,
    ) -> StreamResult<u64> {
        bounded_wait!(
            self,
            async_io::streams::HostOutputStream,
            blocking_splice(dst, src, len),
            fail_stream
        )
    }
}

impl streams::HostInputStream for IoView<'_> {
    fn drop(&mut self, stream: Resource<DynInputStream>) -> wasmtime::Result<()> {
        bounded_wait!(self, async_io::streams::HostInputStream, drop(stream), fail)
    }

    fn read(&mut self, stream: Resource<DynInputStream>, len: u64) -> StreamResult<Vec<u8>> {
        streams::HostInputStream::read(self.table, stream, len)
    }

    fn blocking_read(
        &mut self,
        stream: Resource<DynInputStream>,
        len: u64,
    ) -> StreamResult<Vec<u8>> {
        bounded_wait!(
            self,
            async_io::streams::HostInputStream,
            blocking_read(stream, len),
            fail_stream
        )
    }

    fn skip(&mut self, stream: Resource<DynInputStream>, len: u64) -> StreamResult<u64> {
        streams::HostInputStream::skip(self.table, stream, len)
    }

    fn blocking_skip(&mut self, stream: Resource<DynInputStream>, len: u64) -> StreamResult<u64> {
        bounded_wait!(
            self,
            async_io::streams::HostInputStream,
            blocking_skip(stream, len),
            fail_stream
        )
    }

    fn subscribe(
        &mut self,
        stream: Resource<DynInputStream>,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        streams::HostInputStream::subscribe(self.table, stream)
    }
}

impl poll::Host for IoView<'_> {
    fn poll(&mut self, pollables: Vec<Resource<DynPollable>>) -> wasmtime::Result<Vec<u32>> {
        bounded_wait!(self, async_io::poll::Host, poll(pollables), fail)
    }
}

impl poll::HostPollable for IoView<'_> {
    fn ready(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<bool> {
        bounded_wait!(self, async_io::poll::HostPollable, ready(pollable), fail)
    }

    fn block(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<()> {
        bounded_wait!(self, async_io::poll::HostPollable, block(pollable), fail)
    }

    fn drop(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<()> {
        poll::HostPollable::drop(self.table, pollable)
    }
}

/// Whether `name` (e.g. `wasi:io/streams@0.2.4`) is one of [`ALLOWED_INTERFACES`] at a
/// 0.2.x version.
pub(crate) fn is_allowed_import(name: &str) -> bool {
    let Some((interface, version)) = name.split_once('@') else {
        return false;
    };
    version.starts_with("0.2.") && ALLOWED_INTERFACES.contains(&interface)
}

/// A context for one call that grants nothing (see the module docs).
pub(crate) fn deny_all_context(now_ms: u64) -> WasiCtx {
    let mut builder = WasiCtxBuilder::new();
    builder
        .wall_clock(FrozenWallClock(Duration::from_millis(now_ms)))
        .monotonic_clock(StoppedMonotonicClock)
        .secure_random(Deterministic::new(DETERMINISTIC_BYTES.to_vec()))
        .insecure_random(Deterministic::new(DETERMINISTIC_BYTES.to_vec()))
        .insecure_random_seed(0x686f_6f6b_6761_7465)
        .max_random_size(MAX_RANDOM_BYTES)
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false);
    builder.build()
}

const DETERMINISTIC_BYTES: &[u8] = b"hookgate-plugin-sandbox-deterministic-bytes";

struct FrozenWallClock(Duration);

impl HostWallClock for FrozenWallClock {
    fn resolution(&self) -> Duration {
        Duration::from_millis(1)
    }
    fn now(&self) -> Duration {
        self.0
    }
}

struct StoppedMonotonicClock;

impl HostMonotonicClock for StoppedMonotonicClock {
    fn resolution(&self) -> u64 {
        1_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::is_allowed_import;

    #[test]
    fn allows_only_listed_wasi_0_2() {
        assert!(is_allowed_import("wasi:io/streams@0.2.4"));
        assert!(is_allowed_import("wasi:cli/stderr@0.2.12"));
        assert!(!is_allowed_import("wasi:filesystem/preopens@0.2.4"));
        assert!(!is_allowed_import("wasi:sockets/tcp@0.2.4"));
        assert!(!is_allowed_import("wasi:io/streams@0.3.0"));
        assert!(!is_allowed_import("wasi:io/streams"));
    }
}
