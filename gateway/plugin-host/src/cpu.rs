//! Judging a plugin by the CPU it used rather than by wall time.
//!
//! Calls run inline on an async worker only while they are quick (see
//! `PluginRuntime::with_slot`). On a busy machine a quick call's thread is often
//! descheduled for a few milliseconds, so a wall-clock deadline cut off well-behaved calls
//! and then banned their plugin from running inline: under load every call paid the hop
//! to a blocking thread, which cost more than the call. Deadlines and bans now look at
//! the thread's CPU time, which a descheduled thread does not accumulate.

use std::time::Duration;

use wasmtime::UpdateDeadline;

/// CPU time the calling thread has used so far.
pub(crate) fn thread_cpu_time() -> Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid, writable timespec; CLOCK_THREAD_CPUTIME_ID exists on every
    // platform the gateway supports (Linux, and any POSIX system with thread CPU clocks).
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(
        now.tv_sec.max(0) as u64,
        now.tv_nsec.clamp(0, 999_999_999) as u32,
    )
}

/// The epoch-deadline policy of an inline call: it is interrupted once it has run (used
/// at least half a tick of CPU) through a whole tick period, i.e. at the second tick
/// after it started (2–4 ms with the default 2 ms tick) when it has the CPU to itself,
/// as with a plain deadline of `engine::INLINE_TICKS`. A tick period in which the thread
/// was mostly descheduled does not count; `limit_ticks` (the full call timeout) bounds
/// the wall time either way.
pub(crate) struct InlineWatch {
    tick: Duration,
    limit_ticks: u64,
    ticks: u64,
    cpu_at_last_tick: Option<Duration>,
}

impl InlineWatch {
    pub(crate) fn new(tick: Duration, limit_ticks: u64) -> Self {
        InlineWatch {
            tick,
            limit_ticks,
            ticks: 0,
            cpu_at_last_tick: None,
        }
    }

    /// Called at each tick once the call's deadline (one tick) is reached.
    pub(crate) fn on_tick(&mut self, cpu_now: Duration) -> UpdateDeadline {
        self.ticks += 1;
        let previous = self.cpu_at_last_tick.replace(cpu_now);
        if self.ticks >= self.limit_ticks {
            return UpdateDeadline::Interrupt;
        }
        match previous {
            Some(previous) if cpu_now.saturating_sub(previous) >= self.tick / 2 => {
                UpdateDeadline::Interrupt
            }
            _ => UpdateDeadline::Continue(1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TICK: Duration = Duration::from_millis(2);

    fn interrupted(update: UpdateDeadline) -> bool {
        matches!(update, UpdateDeadline::Interrupt)
    }

    #[test]
    fn a_call_that_runs_through_a_tick_is_interrupted_at_the_second() {
        let mut watch = InlineWatch::new(TICK, 50);
        assert!(!interrupted(watch.on_tick(Duration::from_millis(1))));
        assert!(interrupted(watch.on_tick(Duration::from_millis(3))));
    }

    #[test]
    fn ticks_spent_descheduled_do_not_count_but_the_limit_does() {
        let mut watch = InlineWatch::new(TICK, 5);
        assert!(!interrupted(watch.on_tick(Duration::from_micros(100))));
        for cpu in [200, 300, 400] {
            assert!(!interrupted(watch.on_tick(Duration::from_micros(cpu))));
        }
        assert!(interrupted(watch.on_tick(Duration::from_micros(500))));
    }

    #[test]
    fn thread_cpu_time_advances_with_work_and_not_with_sleep() {
        let before = thread_cpu_time();
        let started = std::time::Instant::now();
        let mut x = 0u64;
        while started.elapsed() < Duration::from_millis(20) {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        let busy = thread_cpu_time().saturating_sub(before);
        // Spinning 20 ms of wall time uses CPU (less only if the thread was descheduled).
        assert!(busy >= Duration::from_millis(2), "{busy:?}");
        let before = thread_cpu_time();
        std::thread::sleep(Duration::from_millis(20));
        let asleep = thread_cpu_time().saturating_sub(before);
        assert!(asleep < Duration::from_millis(10), "{asleep:?}");
    }
}
