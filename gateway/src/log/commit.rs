//! Group commit: one flusher thread makes sled durable for many writers at once.
//!
//! A writer applies its batch, then takes a ticket and waits until a flush that *started
//! after* its ticket has finished. While one fsync runs, every writer that arrives queues
//! up behind the next one, so 64 concurrent writers cost one fsync per round instead of 64.
//! (`sled::Db::flush_async` per request deadlocks with many callers; see STACK-NOTES.)

use std::{
    sync::{
        Arc, Condvar, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

use tokio::sync::watch;

use super::Registry;

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
    /// The last flush failed for tickets up to this one (and no later flush succeeded).
    failed: u64,
    /// Counts successful flushes; readers of the log wake on it.
    flushes: u64,
}

pub struct GroupCommit {
    tickets: AtomicU64,
    wake: Mutex<bool>,
    wake_cv: Condvar,
    stop: AtomicBool,
    progress: watch::Sender<Progress>,
    flushes: watch::Sender<u64>,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// Total time spent in flushes and their number (exported as metrics).
    pub flush_micros: AtomicU64,
    pub flush_count: AtomicU64,
}

impl GroupCommit {
    pub(crate) fn start(db: sled::Db, registry: Arc<Registry>) -> Arc<GroupCommit> {
        let commit = Arc::new(GroupCommit {
            tickets: AtomicU64::new(0),
            wake: Mutex::new(false),
            wake_cv: Condvar::new(),
            stop: AtomicBool::new(false),
            progress: watch::channel(Progress::default()).0,
            flushes: watch::channel(0).0,
            thread: Mutex::new(None),
            flush_micros: AtomicU64::new(0),
            flush_count: AtomicU64::new(0),
        });
        let flusher = commit.clone();
        let handle = std::thread::Builder::new()
            .name("hookgate-flusher".into())
            .spawn(move || flusher.run(db, registry))
            .expect("spawn flusher thread");
        *commit.thread.lock().expect("thread slot") = Some(handle);
        commit
    }

    /// Waits until everything this task wrote before calling is on disk.
    pub async fn wait_durable(&self) -> Result<(), DurabilityError> {
        if self.stop.load(Ordering::Acquire) {
            return Err(DurabilityError::ShuttingDown);
        }
        // SeqCst pairs with the flusher's load: our writes happen before the ticket, and
        // the flush it triggers starts after it reads the ticket.
        let ticket = self.tickets.fetch_add(1, Ordering::SeqCst) + 1;
        {
            let mut pending = self.wake.lock().expect("wake lock");
            *pending = true;
            self.wake_cv.notify_one();
        }
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

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.flushes.subscribe()
    }

    fn run(&self, db: sled::Db, registry: Arc<Registry>) {
        let mut done = 0u64;
        loop {
            {
                let mut pending = self.wake.lock().expect("wake lock");
                while !*pending && !self.stop.load(Ordering::Acquire) {
                    pending = self.wake_cv.wait(pending).expect("wake lock");
                }
                *pending = false;
            }
            let target = self.tickets.load(Ordering::SeqCst);
            if target == done && self.stop.load(Ordering::Acquire) {
                break;
            }
            let inserted = registry.snapshot_inserted();
            let started = std::time::Instant::now();
            let flushed = db.flush();
            self.flush_micros
                .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
            self.flush_count.fetch_add(1, Ordering::Relaxed);
            match flushed {
                Ok(_) => {
                    for (log, seq) in inserted {
                        log.durable.fetch_max(seq, Ordering::AcqRel);
                    }
                    done = target;
                    self.progress.send_modify(|p| {
                        p.durable = target;
                        p.flushes += 1;
                    });
                    self.flushes.send_modify(|n| *n += 1);
                }
                Err(error) => {
                    tracing::error!(%error, "sled flush failed; writers waiting on it get 503");
                    self.progress.send_modify(|p| p.failed = target);
                    // Do not spin on a broken disk; the next writer retries the flush.
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
    }

    /// Flushes what is pending and stops the thread.
    pub fn shutdown(&self) {
        self.stop.store(true, Ordering::Release);
        {
            let mut pending = self.wake.lock().expect("wake lock");
            *pending = true;
            self.wake_cv.notify_one();
        }
        if let Some(handle) = self.thread.lock().expect("thread slot").take() {
            let _ = handle.join();
        }
    }
}
