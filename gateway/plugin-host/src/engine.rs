//! The one shared wasmtime `Engine` and the epoch ticker that enforces call deadlines.
//!
//! Every setting that changes compiled code lives here, because a serialized artifact is
//! only valid for an engine configured the same way (wasmtime checks this on load, and
//! the cache recompiles on a mismatch).

use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, OptLevel, PoolingAllocationConfig,
};

use crate::RuntimeConfig;

/// Upper bounds per component instance for the pooling allocator. A Rust component for
/// wasm32-wasip2 has a handful of core instances (the plugin, wasi shims, fixups), one or
/// two memories and a few tables; a componentize-py one (CPython and its libraries linked
/// as shared objects) has 38 core instances within the same memory and table bounds.
/// Core instances are only counted by the pool, not reserved, so the headroom is free.
pub(crate) const CORE_INSTANCES_PER_COMPONENT: u32 = 64;
pub(crate) const MEMORIES_PER_COMPONENT: u32 = 4;
pub(crate) const TABLES_PER_COMPONENT: u32 = 16;
/// Table elements per table: enough for large interpreters' function tables.
const TABLE_ELEMENTS: usize = 100_000;

/// Memory a freed pool slot keeps mapped and resets in place instead of handing back to
/// the kernel: a call dirties only a few pages, and resetting those beats madvise plus
/// page faults on the next call. This needs PAGEMAP_SCAN (Linux 6.7+) to find the dirty
/// pages; without it wasmtime would memset the whole window, and since a Rust guest's
/// dirty pages sit around its 1 MiB stack top and heap above, a window large enough to
/// help costs more than it saves, so then nothing is kept resident. Measured per filter
/// call on the 1 KiB bench: 2 MiB with the scan 19 µs; nothing resident (madvise and page
/// faults) 33 µs; 1 MiB memset without the scan 46 µs.
fn keep_resident_bytes() -> usize {
    if PoolingAllocationConfig::is_pagemap_scan_available() {
        2 << 20
    } else {
        0
    }
}

pub(crate) fn build(config: &RuntimeConfig) -> wasmtime::Result<Engine> {
    let slots = config.max_concurrent_calls.max(1);

    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(slots)
        .total_core_instances(slots * CORE_INSTANCES_PER_COMPONENT)
        .total_memories(slots * MEMORIES_PER_COMPONENT)
        .total_tables(slots * TABLES_PER_COMPONENT)
        // No async support, so no fiber stacks are ever taken from the pool.
        .total_stacks(0)
        .max_core_instances_per_component(CORE_INSTANCES_PER_COMPONENT)
        .max_memories_per_component(MEMORIES_PER_COMPONENT)
        .max_tables_per_component(TABLES_PER_COMPONENT)
        .max_memories_per_module(1)
        .table_elements(TABLE_ELEMENTS)
        // The pool's hard cap; `StoreLimits` enforces the configured limit first so that a
        // denial is recorded and reported as MemoryLimit.
        .max_memory_size(config.memory_limit_bytes)
        .linear_memory_keep_resident(keep_resident_bytes())
        .table_keep_resident(64 << 10)
        .pagemap_scan(Enabled::Auto);

    let mut wasm = Config::new();
    wasm.allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
        .cranelift_opt_level(OptLevel::Speed)
        // Deadlines: a ticker bumps the epoch; each store traps once past its deadline.
        .epoch_interruption(true)
        .consume_fuel(config.fuel_per_call.is_some())
        // Instantiate from a copy-on-write image of the data segments instead of copying.
        .memory_init_cow(true)
        // Only the MVP component model. Component-model async and threads are compiled
        // out (crate features), the GC and other proposals are switched off here.
        .wasm_component_model(true)
        .wasm_gc(false)
        .wasm_stack_switching(false)
        // Traps report wasm frames without the address-map cost in every artifact.
        .generate_address_map(false)
        .wasm_backtrace_max_frames(None)
        // A plugin's recursion cannot take the host thread's stack.
        .max_wasm_stack(512 << 10);
    Engine::new(&wasm)
}

/// Bumps the engine's epoch every `tick` on a thread of its own until dropped.
pub(crate) struct EpochTicker {
    // Dropping the sender wakes the thread, which then exits.
    _stop: mpsc::Sender<()>,
}

impl EpochTicker {
    pub(crate) fn start(engine: Engine, tick: Duration) -> std::io::Result<Self> {
        let (stop, stopped) = mpsc::channel::<()>();
        thread::Builder::new()
            .name("plugin-epoch".into())
            .spawn(move || {
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(tick) {
                    engine.increment_epoch();
                }
            })?;
        Ok(EpochTicker { _stop: stop })
    }
}

/// Ticker period and deadline in ticks for a call timeout. Fifty ticks per timeout (every
/// 2 ms for the default 100 ms, at least 1 ms) bound the overshoot to about 2% and, above
/// all, make the budget of calls run inline on an async worker ([`INLINE_TICKS`]) short;
/// a wake-up every 2 ms costs the ticker thread well under 1% of a core.
pub(crate) fn epoch_schedule(timeout: Duration) -> (Duration, u64) {
    let tick = (timeout / 50).max(Duration::from_millis(1));
    let ticks = timeout.as_nanos().div_ceil(tick.as_nanos()).max(1) as u64;
    (tick, ticks)
}

/// Budget, in ticks, of a call run inline on the caller's thread (an async worker; see
/// `PluginRuntime::with_slot`): a call that has the CPU is interrupted at the second tick
/// after it started, i.e. after one to two tick periods (2–4 ms by default), and then runs
/// again on a blocking thread with the full timeout (`cpu::InlineWatch`, which does not
/// count ticks the thread spent descheduled). A call on a blocking thread that uses this
/// much CPU bans its plugin from running inline for a while.
pub(crate) const INLINE_TICKS: u64 = 2;
