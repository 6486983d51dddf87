//! Running one hook: a fresh `Store` with the call's limits, instantiate, call, drop, and
//! turning whatever happened into a [`CallReport`].
//!
//! This module is synchronous. With [`Deadline::Full`] it may run for up to the call
//! timeout, so callers put it on a blocking thread; with [`Deadline::Inline`] it runs for
//! a few milliseconds at most and may run on an async worker (see
//! `PluginRuntime::with_slot`). Nothing survives a call: store, instance, WASI
//! context and memory are dropped before the report is returned.

use std::time::{Duration, Instant};

use serde::Serialize;
use wasmtime::component::{ComponentNamedList, Lift, Lower};
use wasmtime::{Engine, Store, Trap};

use crate::bindings::{Event, Header, OutgoingRequest};
use crate::cpu::{InlineWatch, thread_cpu_time};
use crate::host::{CallContext, CallState, LogLevel, LogLine};
use crate::limits::CallLimits;
use crate::{Hook, LoadedPlugin, PluginError, RuntimeConfig};

/// Longest plugin error message kept; a plugin cannot make the gateway store megabytes
/// of reason text.
const MAX_REASON_BYTES: usize = 2048;
/// Table growth a plugin may ask for (the pool's table size bounds it too).
const MAX_TABLE_ELEMENTS: usize = 100_000;

/// The outcome of one plugin call, with what the dry-run endpoint shows.
#[derive(Debug, Clone, Serialize)]
pub struct CallReport<T> {
    pub result: Result<T, PluginError>,
    /// Lines the plugin logged, within the log budget.
    pub logs: Vec<LogLine>,
    /// Time from the start of the call to the report, excluding any wait for a slot.
    pub elapsed: Duration,
    /// Part of `elapsed` spent creating the store and instantiating the plugin.
    pub instantiate: Duration,
    /// Fuel consumed, when fuel metering is configured.
    pub fuel_used: Option<u64>,
    /// The most memory (linear memories and tables together) the call had at once, as
    /// the memory limit counts it: how far from that limit the plugin ran.
    pub peak_memory_bytes: u64,
}

impl<T> CallReport<T> {
    pub(crate) fn failed(error: PluginError, elapsed: Duration) -> Self {
        CallReport {
            result: Err(error),
            logs: Vec::new(),
            elapsed,
            instantiate: Duration::ZERO,
            fuel_used: None,
            peak_memory_bytes: 0,
        }
    }
}

/// A call's time limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Deadline {
    /// The configured call timeout.
    Full,
    /// The short deadline of a call run inline on an async worker: about
    /// `engine::INLINE_TICKS` of running, not counting time the thread was descheduled
    /// (`cpu::InlineWatch`). Such a call also fails when a WASI operation would wait
    /// (`CallState::blocked_inline`). Either way it fails with [`PluginError::Timeout`],
    /// and the caller runs it again with [`Deadline::Full`] on a blocking thread.
    Inline,
}

/// What a call needs from the runtime.
pub(crate) struct Sandbox {
    pub(crate) engine: Engine,
    pub(crate) config: RuntimeConfig,
    /// The full per-call deadline, in epoch ticks.
    pub(crate) deadline_ticks: u64,
    /// The epoch ticker's period.
    pub(crate) tick: std::time::Duration,
}

pub(crate) fn filter(
    sb: &Sandbox,
    plugin: &LoadedPlugin,
    config: &str,
    event: &Event,
    ctx: CallContext,
    deadline: Deadline,
) -> CallReport<bool> {
    let size = config.len() + event_size(event);
    let neutral = Neutral {
        value: || true,
        is: |keep: &bool| *keep,
    };
    run(
        sb,
        plugin,
        Hook::Filter,
        size,
        (ctx, deadline),
        (config, event),
        neutral,
        Ok,
    )
}

pub(crate) fn transform(
    sb: &Sandbox,
    plugin: &LoadedPlugin,
    config: &str,
    event: &Event,
    ctx: CallContext,
    deadline: Deadline,
) -> CallReport<Event> {
    let size = config.len() + event_size(event);
    let limit = sb.config.max_output_bytes;
    let neutral = Neutral {
        value: || event.clone(),
        is: |out: &Event| out == event,
    };
    run(
        sb,
        plugin,
        Hook::Transform,
        size,
        (ctx, deadline),
        (config, event),
        neutral,
        |out: Event| {
            check_output_size(event_size(&out), limit)?;
            // A transform reshapes the event; it must not pass it off as another event or
            // move it to another tenant.
            if out.id != event.id {
                return Err(PluginError::InvalidOutput(
                    "transform changed the event id".into(),
                ));
            }
            if out.tenant != event.tenant {
                return Err(PluginError::InvalidOutput(
                    "transform changed the tenant".into(),
                ));
            }
            if out.event_type.is_empty() {
                return Err(PluginError::InvalidOutput(
                    "transform returned an empty event type".into(),
                ));
            }
            check_headers(&out.headers)?;
            Ok(out)
        },
    )
}

pub(crate) fn authenticate(
    sb: &Sandbox,
    plugin: &LoadedPlugin,
    config: &str,
    request: &OutgoingRequest,
    ctx: CallContext,
    deadline: Deadline,
) -> CallReport<Vec<Header>> {
    let size = config.len()
        + request.method.len()
        + request.url.len()
        + headers_size(&request.headers)
        + request.body.len();
    let limit = sb.config.max_output_bytes;
    let neutral = Neutral {
        value: Vec::new,
        is: |headers: &Vec<Header>| headers.is_empty(),
    };
    run(
        sb,
        plugin,
        Hook::Authenticate,
        size,
        (ctx, deadline),
        (config, request),
        neutral,
        |headers: Vec<Header>| {
            check_output_size(headers_size(&headers), limit)?;
            check_headers(&headers)?;
            Ok(headers)
        },
    )
}

/// A hook's neutral result (keep, the event unchanged, no headers): `value` makes it, `is`
/// recognizes it.
struct Neutral<V, I> {
    value: V,
    is: I,
}

/// The common path of every hook: `Params` are the hook's arguments, the hook returns
/// `result<T, string>`, and `check` vets a successful `T`. `deadline` picks the time limit.
///
/// A hook that says it is not implemented (it logs `NOT_IMPLEMENTED_MARKER`, as the SDK's
/// defaults do) and returns the neutral result is remembered as neutral for this plugin,
/// and from then on answered with that result without a sandbox. A hook cannot use this
/// to change what it returns: skipped calls get exactly what it returned when it said so.
#[allow(clippy::too_many_arguments)]
fn run<Params, T>(
    sb: &Sandbox,
    plugin: &LoadedPlugin,
    hook: Hook,
    input_size: usize,
    (ctx, deadline): (CallContext, Deadline),
    params: Params,
    neutral: Neutral<impl FnOnce() -> T, impl Fn(&T) -> bool>,
    check: impl FnOnce(T) -> Result<T, PluginError>,
) -> CallReport<T>
where
    Params: ComponentNamedList + Lower,
    (Result<T, String>,): ComponentNamedList + Lift,
{
    let start = Instant::now();
    if input_size > sb.config.max_input_bytes {
        let error = PluginError::InputTooLarge {
            size: input_size,
            limit: sb.config.max_input_bytes,
        };
        return CallReport::failed(error, start.elapsed());
    }
    let Some(export) = plugin.code().hooks[hook.index()] else {
        return CallReport::failed(PluginError::NotExported(hook), start.elapsed());
    };
    if plugin.is_neutral(hook) {
        return CallReport {
            result: Ok((neutral.value)()),
            logs: Vec::new(),
            elapsed: start.elapsed(),
            instantiate: Duration::ZERO,
            fuel_used: None,
            peak_memory_bytes: 0,
        };
    }

    let mut store = new_store(sb, ctx, deadline);
    let instance = match plugin.code().pre.instantiate(&mut store) {
        Ok(instance) => instance,
        Err(_) if store.data().blocked_inline || store.data().waited_past_deadline => {
            return finish(store, Err(PluginError::Timeout), start, start.elapsed(), sb);
        }
        Err(err) => {
            let error = instantiate_error(err, store_denied(&store));
            return finish(store, Err(error), start, start.elapsed(), sb);
        }
    };
    let instantiated = start.elapsed();

    let outcome = instance
        .get_typed_func::<Params, (Result<T, String>,)>(&mut store, export)
        // Upload type-checked every hook, so this only fails if the contract changed under
        // a cached artifact.
        .map_err(|e| PluginError::Host(format!("{hook} has an unexpected signature: {e:#}")))
        .and_then(|func| match func.call(&mut store, params) {
            Ok((Ok(value),)) => {
                if store.data().not_implemented && (neutral.is)(&value) {
                    plugin.set_neutral(hook);
                }
                check(value)
            }
            Ok((Err(reason),)) => Err(plugin_reason(reason, sb.config.max_output_bytes)),
            Err(err) => Err(call_error(err, &store)),
        });
    // A WASI wait cut off (inline, or at the deadline) fails the call however the plugin
    // reacted to the error it got.
    let outcome = if store.data().blocked_inline || store.data().waited_past_deadline {
        Err(PluginError::Timeout)
    } else {
        outcome
    };
    finish(store, outcome, start, instantiated, sb)
}

fn new_store(sb: &Sandbox, ctx: CallContext, deadline: Deadline) -> Store<CallState> {
    let limits = CallLimits::new(sb.config.memory_limit_bytes, MAX_TABLE_ELEMENTS);
    let time_up = Instant::now() + sb.config.call_timeout;
    let mut store = Store::new(
        &sb.engine,
        CallState::new(ctx, limits, sb.config.max_log_bytes, time_up),
    );
    store.limiter(|state| &mut state.limits);
    match deadline {
        Deadline::Full => {
            store.epoch_deadline_trap();
            store.set_epoch_deadline(sb.deadline_ticks);
        }
        Deadline::Inline => {
            let mut watch = InlineWatch::new(sb.tick, sb.deadline_ticks);
            store.epoch_deadline_callback(move |_| Ok(watch.on_tick(thread_cpu_time())));
            store.set_epoch_deadline(1);
        }
    }
    store.data_mut().inline = deadline == Deadline::Inline;
    if let Some(fuel) = sb.config.fuel_per_call {
        // Cannot fail: fuel is enabled on the engine whenever a quota is configured.
        let _ = store.set_fuel(fuel);
    }
    store
}

fn finish<T>(
    store: Store<CallState>,
    result: Result<T, PluginError>,
    start: Instant,
    instantiate: Duration,
    sb: &Sandbox,
) -> CallReport<T> {
    let fuel_used = sb
        .config
        .fuel_per_call
        .map(|quota| quota.saturating_sub(store.get_fuel().unwrap_or(0)));
    let peak_memory_bytes = store.data().limits.peak_bytes() as u64;
    let mut logs = store.into_data().logs.into_lines();
    let result = result.map_err(|err| with_panic_message(err, &logs));
    // Keep the reason of a trap next to the plugin's own lines in the log as well.
    if let Err(err @ (PluginError::Trap(_) | PluginError::Timeout | PluginError::MemoryLimit)) =
        &result
    {
        logs.push(LogLine {
            level: LogLevel::Error,
            message: err.to_string(),
        });
    }
    CallReport {
        result,
        logs,
        elapsed: start.elapsed(),
        instantiate,
        fuel_used,
        peak_memory_bytes,
    }
}

fn store_denied(store: &Store<CallState>) -> bool {
    store.data().limits.memory_denied
}

fn instantiate_error(err: wasmtime::Error, memory_denied: bool) -> PluginError {
    if memory_denied {
        return PluginError::MemoryLimit;
    }
    if err
        .downcast_ref::<wasmtime::PoolConcurrencyLimitError>()
        .is_some()
    {
        return PluginError::Busy;
    }
    match err.downcast_ref::<Trap>() {
        Some(trap) => trap_error(*trap),
        None => PluginError::Host(format!("instantiation failed: {err:#}")),
    }
}

fn call_error(err: wasmtime::Error, store: &Store<CallState>) -> PluginError {
    match err.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => PluginError::Timeout,
        Some(Trap::OutOfFuel) => PluginError::FuelExhausted,
        // A failed `memory.grow` makes allocators abort with `unreachable`: say why.
        Some(_) if store_denied(store) => PluginError::MemoryLimit,
        Some(trap) => trap_error(*trap),
        None if store_denied(store) => PluginError::MemoryLimit,
        // Not a trap: lifting the result failed (bad pointers, invalid UTF-8...).
        None => PluginError::InvalidOutput(format!("{err:#}")),
    }
}

fn trap_error(trap: Trap) -> PluginError {
    match trap {
        Trap::Interrupt => PluginError::Timeout,
        Trap::OutOfFuel => PluginError::FuelExhausted,
        other => PluginError::Trap(other.to_string()),
    }
}

/// The SDK logs a panic's message just before the abort trap; put it in the reason.
fn with_panic_message(err: PluginError, logs: &[LogLine]) -> PluginError {
    match err {
        PluginError::Trap(trap) => match logs
            .iter()
            .rev()
            .find(|l| l.message.starts_with("plugin panicked"))
        {
            Some(line) => PluginError::Trap(format!("{trap} ({})", line.message)),
            None => PluginError::Trap(trap),
        },
        other => other,
    }
}

fn plugin_reason(mut reason: String, max_output: usize) -> PluginError {
    if reason.len() > max_output {
        return PluginError::OutputTooLarge {
            size: reason.len(),
            limit: max_output,
        };
    }
    if reason.len() > MAX_REASON_BYTES {
        let mut cut = MAX_REASON_BYTES;
        while !reason.is_char_boundary(cut) {
            cut -= 1;
        }
        reason.truncate(cut);
        reason.push('…');
    }
    PluginError::Plugin(reason)
}

fn check_output_size(size: usize, limit: usize) -> Result<(), PluginError> {
    if size > limit {
        Err(PluginError::OutputTooLarge { size, limit })
    } else {
        Ok(())
    }
}

fn event_size(e: &Event) -> usize {
    e.id.len() + e.tenant.len() + e.event_type.len() + 8 + headers_size(&e.headers) + e.body.len()
}

fn headers_size(headers: &[Header]) -> usize {
    headers.iter().map(|h| h.name.len() + h.value.len()).sum()
}

/// Headers the gateway sets itself: a plugin changing them would corrupt the request.
const RESERVED_HEADERS: &[&str] = &["content-length", "transfer-encoding", "host", "connection"];

/// Header names must be HTTP tokens and values free of control characters, so that a
/// plugin cannot smuggle extra headers or break the request framing.
fn check_headers(headers: &[Header]) -> Result<(), PluginError> {
    for h in headers {
        let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
        if h.name.is_empty() || h.name.len() > 256 || !h.name.bytes().all(token) {
            return Err(PluginError::InvalidOutput(format!(
                "invalid header name {:?}",
                truncate(&h.name)
            )));
        }
        if h.value
            .bytes()
            .any(|b| (b < 0x20 && b != b'\t') || b == 0x7f)
        {
            return Err(PluginError::InvalidOutput(format!(
                "control character in header {}",
                h.name
            )));
        }
        if RESERVED_HEADERS
            .iter()
            .any(|r| h.name.eq_ignore_ascii_case(r))
        {
            return Err(PluginError::InvalidOutput(format!(
                "header {} is set by the gateway",
                h.name
            )));
        }
    }
    Ok(())
}

fn truncate(s: &str) -> &str {
    let mut cut = s.len().min(64);
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    &s[..cut]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(name: &str, value: &str) -> Header {
        Header {
            name: name.into(),
            value: value.into(),
        }
    }

    #[test]
    fn header_checks() {
        assert!(check_headers(&[header("X-Sig", "t=1,s=ab")]).is_ok());
        assert!(check_headers(&[header("X-Sig", "a\r\nX-Evil: 1")]).is_err());
        assert!(check_headers(&[header("Bad Name", "v")]).is_err());
        assert!(check_headers(&[header("", "v")]).is_err());
        assert!(check_headers(&[header("Content-Length", "0")]).is_err());
    }

    #[test]
    fn long_plugin_reasons_are_cut() {
        let PluginError::Plugin(reason) = plugin_reason("é".repeat(5000), 1 << 20) else {
            panic!()
        };
        assert!(reason.len() <= MAX_REASON_BYTES + '…'.len_utf8());
        assert!(matches!(
            plugin_reason("x".repeat(100), 10),
            PluginError::OutputTooLarge {
                size: 100,
                limit: 10
            }
        ));
    }
}
