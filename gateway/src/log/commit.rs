//! Group commit: one flusher thread makes writes durable for many writers at once.
//!
//! A writer makes its change, then takes a ticket and waits until a flush round that
//! *started after* its ticket has finished. While one round runs, every writer that arrives
//! queues up behind the next one, so 64 concurrent writers cost one fsync per round instead
//! of 64. Two instances run: one over the event log's segment files (`log::wal`) and one
//! over sled for everything else (`sled::Db::flush_async` per request deadlocks with many
//! callers; see STACK-NOTES).

use std::{
    sync::{
        Arc, Condvar, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use tokio::sync::watch;

#[derive(Debug, Clone, thiserror::Error)]
pub enum DurabilityError {
    #[error("the write could not be made durable: {0}")]
    Flush(String),
    #[error("the server is shutting down")]
    ShuttingDown,
}

#[derive(Debug, Clone, Copy, Default)]
struct Progress {
    /// Every ticket up to this one is durable.
    durable: u64,
    /// The last round failed for tickets up to this one (and no later round succeeded).
    failed: u64,
}

/// One flush round: makes durable everything written before it was called.
pub type FlushRound = Box<dyn FnMut() -> Result<(), String> + Send>;

pub struct GroupCommit {
    tickets: AtomicU64,
    /// Set while the flusher waits for work: only then does a writer take the mutex and
    /// signal (a futex syscall per request otherwise, while the flusher is busy anyway).
    sleeping: AtomicBool,
    wake: Mutex<()>,
    wake_cv: Condvar,
    stop: AtomicBool,
    progress: watch::Sender<Progress>,
    /// Counts successful rounds; readers of the event log wake on it.
    rounds: watch::Sender<u64>,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// Total time spent in rounds and their number (exported as metrics).
    pub flush_micros: AtomicU64,
    pub flush_count: AtomicU64,
}

impl GroupCommit {
    pub fn start(name: &str, round: FlushRound) -> Arc<GroupCommit> {
        let commit = Arc::new(GroupCommit {
            tickets: AtomicU64::new(0),
            sleeping: AtomicBool::new(false),
            wake: Mutex::new(()),
            wake_cv: Condvar::new(),
            stop: AtomicBool::new(false),
            progress: watch::channel(Progress::default()).0,
            rounds: watch::channel(0).0,
            thread: Mutex::new(None),
            flush_micros: AtomicU64::new(0),
            flush_count: AtomicU64::new(0),
        });
        let flusher = commit.clone();
        let handle = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || flusher.run(round))
            .expect("spawn flusher thread");
        *commit.thread.lock().expect("thread slot") = Some(handle);
        commit
    }

    /// Waits until everything this task wrote before calling is durable.
    pub async fn wait_durable(&self) -> Result<(), DurabilityError> {
        if self.stop.load(Ordering::Acquire) {
            return Err(DurabilityError::ShuttingDown);
        }
        let ticket = self.request();
        let mut progress = self.progress.subscribe();
        let state = *progress
            .wait_for(|p| p.durable >= ticket || p.failed >= ticket)
            .await
            .map_err(|_| DurabilityError::ShuttingDown)?;
        if state.durable >= ticket {
            Ok(())
        } else {
            Err(DurabilityError::Flush(
                "the storage flush failed; see the server log".into(),
            ))
        }
    }

    /// Asks for a round without waiting for it; returns the ticket.
    pub fn request(&self) -> u64 {
        // SeqCst pairs with the flusher's load: the caller's writes happen before the
        // ticket, and the round it triggers starts after it reads the ticket.
        let ticket = self.tickets.fetch_add(1, Ordering::SeqCst) + 1;
        // SeqCst pairs with the flusher's store of `sleeping` and its re-check of the
        // tickets: either it sees this ticket, or this sees it sleeping and signals it
        // (under the mutex it holds until it waits, so the signal cannot be lost).
        if self.sleeping.load(Ordering::SeqCst) {
            let _guard = self.wake.lock().expect("wake lock");
            self.wake_cv.notify_one();
        }
        ticket
    }

    /// Bumps after every successful round.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.rounds.subscribe()
    }

    fn run(&self, mut round: FlushRound) {
        let mut done = 0u64;
        loop {
            {
                let mut guard = self.wake.lock().expect("wake lock");
                loop {
                    if self.tickets.load(Ordering::SeqCst) != done
                        || self.stop.load(Ordering::Acquire)
                    {
                        break;
                    }
                    self.sleeping.store(true, Ordering::SeqCst);
                    if self.tickets.load(Ordering::SeqCst) != done
                        || self.stop.load(Ordering::Acquire)
                    {
                        self.sleeping.store(false, Ordering::SeqCst);
                        break;
                    }
                    guard = self.wake_cv.wait(guard).expect("wake lock");
                    self.sleeping.store(false, Ordering::SeqCst);
                }
            }
            let target = self.tickets.load(Ordering::SeqCst);
            if target == done && self.stop.load(Ordering::Acquire) {
                break;
            }
            let started = Instant::now();
            let result = round();
            self.flush_micros
                .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
            self.flush_count.fetch_add(1, Ordering::Relaxed);
            match result {
                Ok(()) => {
                    done = target;
                    self.progress.send_modify(|p| p.durable = target);
                    self.rounds.send_modify(|n| *n += 1);
                }
                Err(error) => {
                    tracing::error!(%error, "flush failed; writers waiting on it get 503");
                    // These tickets are answered (with the failure); a later writer's
                    // ticket starts the next try.
                    done = target;
                    self.progress.send_modify(|p| p.failed = target);
                    // Do not spin on a broken disk; the next writer retries the round.
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
    }

    /// Runs a last round for what is pending and stops the thread.
    pub fn shutdown(&self) {
        self.stop.store(true, Ordering::Release);
        {
            let _guard = self.wake.lock().expect("wake lock");
            self.wake_cv.notify_one();
        }
        if let Some(handle) = self.thread.lock().expect("thread slot").take() {
            let _ = handle.join();
        }
    }
}
