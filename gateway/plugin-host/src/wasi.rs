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

use std::time::Duration;

use wasmtime::component::{HasData, Linker, ResourceTable};
use wasmtime_wasi::cli::{WasiCli, WasiCliView};
use wasmtime_wasi::clocks::{WasiClocks, WasiClocksView};
use wasmtime_wasi::p2::bindings::sync as wasi;
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

/// `HasData` for the `wasi:io` interfaces, whose host side is just the resource table.
struct Io;

impl HasData for Io {
    type Data<'a> = &'a mut ResourceTable;
}

/// Links [`ALLOWED_INTERFACES`] into `linker`, synchronous flavour (calls run on blocking
/// threads, never inside an async executor).
pub(crate) fn add_to_linker<T: WasiView + 'static>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    fn table<T: WasiView>(state: &mut T) -> &mut ResourceTable {
        state.ctx().table
    }
    wasi::io::error::add_to_linker::<T, Io>(linker, table)?;
    wasi::io::poll::add_to_linker::<T, Io>(linker, table)?;
    wasi::io::streams::add_to_linker::<T, Io>(linker, table)?;

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
