//! A fixed pool of named worker threads fed by one crossbeam (MPMC) channel.
//!
//! Why not the `threadpool` crate: its idle workers take turns holding a mutex around the job
//! receiver, so jobs are handed out one worker wake-up at a time. With the CPU saturated (100 SSH
//! hosts starting on 2 cores) that chain made the 100th host start 2.2 s after the first; here every
//! idle worker waits on the channel itself and a job wakes one directly.

use std::{
    panic::{catch_unwind, AssertUnwindSafe},
    sync::{Arc, Condvar, Mutex},
};

use crossbeam_channel::{Receiver, Sender};

type Job = Box<dyn FnOnce() + Send + 'static>;

/// Cheap to clone; the threads end when the last clone is dropped and the queue is empty.
#[derive(Clone)]
pub struct Pool {
    inner: Arc<Inner>,
}

struct Inner {
    jobs: Sender<Job>,
    /// Jobs queued or running.
    pending: Arc<Pending>,
}

#[derive(Default)]
struct Pending {
    count: Mutex<usize>,
    zero: Condvar,
}

impl Pending {
    fn finished(&self) {
        let mut count = self.count.lock().unwrap_or_else(|p| p.into_inner());
        *count -= 1;
        if *count == 0 {
            self.zero.notify_all();
        }
    }
}

impl Pool {
    /// `threads` workers (at least one) named `name`.
    pub fn new(name: &str, threads: usize) -> Self {
        let (jobs, queue) = crossbeam_channel::unbounded::<Job>();
        let pending = Arc::new(Pending::default());
        for _ in 0..threads.max(1) {
            let queue: Receiver<Job> = queue.clone();
            let pending = Arc::clone(&pending);
            std::thread::Builder::new()
                .name(name.to_string())
                .spawn(move || {
                    for job in queue {
                        // a panicking job is the job's failure (the runner reports it), not the pool's
                        let _ = catch_unwind(AssertUnwindSafe(job));
                        pending.finished();
                    }
                })
                .expect("spawn a pool thread");
        }
        Self {
            inner: Arc::new(Inner { jobs, pending }),
        }
    }

    /// Queue `job`; an idle worker starts it at once.
    pub fn execute(&self, job: impl FnOnce() + Send + 'static) {
        *self
            .inner
            .pending
            .count
            .lock()
            .unwrap_or_else(|p| p.into_inner()) += 1;
        if self.inner.jobs.send(Box::new(job)).is_err() {
            // no worker left to run it (cannot happen while `self` holds the sender)
            self.inner.pending.finished();
        }
    }

    /// Wait until every queued job has finished.
    pub fn join(&self) {
        let pending = &self.inner.pending;
        let mut count = pending.count.lock().unwrap_or_else(|p| p.into_inner());
        while *count > 0 {
            count = pending.zero.wait(count).unwrap_or_else(|p| p.into_inner());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn runs_every_job_at_most_n_at_once_and_survives_a_panic() {
        let pool = Pool::new("test", 4);
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let done = Arc::new(AtomicUsize::new(0));
        for i in 0..40 {
            let (running, most, done) =
                (Arc::clone(&running), Arc::clone(&most), Arc::clone(&done));
            pool.execute(move || {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                std::thread::sleep(std::time::Duration::from_millis(2));
                running.fetch_sub(1, Ordering::SeqCst);
                assert!(i != 7, "job 7 panics");
                done.fetch_add(1, Ordering::SeqCst);
            });
        }
        pool.join();
        assert_eq!(done.load(Ordering::SeqCst), 39);
        assert!(most.load(Ordering::SeqCst) <= 4);
        // still usable after the panic
        let again = Arc::new(AtomicUsize::new(0));
        let a = Arc::clone(&again);
        pool.execute(move || {
            a.fetch_add(1, Ordering::SeqCst);
        });
        pool.join();
        assert_eq!(again.load(Ordering::SeqCst), 1);
    }
}
