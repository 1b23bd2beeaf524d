//! A pool of named worker threads fed by one crossbeam (MPMC) channel, started as jobs need them.
//!
//! Why not the `threadpool` crate: its idle workers take turns holding a mutex around the job
//! receiver, so jobs are handed out one worker wake-up at a time. With the CPU saturated (100 SSH
//! hosts starting on 2 cores) that chain made the 100th host start 2.2 s after the first; here every
//! idle worker waits on the channel itself and a job wakes one directly.

use std::{
    panic::{catch_unwind, AssertUnwindSafe},
    sync::{Arc, Condvar, Mutex, MutexGuard},
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
    /// Handed to each worker started later (a receiver does not keep the channel open).
    queue: Receiver<Job>,
    name: String,
    max: usize,
    shared: Arc<Shared>,
}

/// What the pool and its workers share: the counts, and `join`'s wake-up.
#[derive(Default)]
struct Shared {
    counts: Mutex<Counts>,
    /// Notified when `pending` reaches zero.
    zero: Condvar,
}

/// Threads are started when a job is queued and no idle worker is left to take it, up to `max`:
/// ssh mode's pools were sized for the worst case (`--workers` hosts, twice that for collector
/// calls) and started every thread up front, ~0.3 ms of client CPU each here: 300 threads for 100
/// hosts, most of them never used, were a fifth of the client's CPU.
#[derive(Default)]
struct Counts {
    started: usize,
    /// Workers waiting for a job (or about to).
    idle: usize,
    /// Jobs sent and not yet taken by a worker.
    queued: usize,
    /// Jobs queued or running.
    pending: usize,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One job less pending (its worker `idle` again first, when it had one).
    fn finished(&self, counts: &mut Counts) {
        counts.pending -= 1;
        if counts.pending == 0 {
            self.zero.notify_all();
        }
    }
}

impl Pool {
    /// At most `threads` workers (at least one) named `name`, started as jobs need them.
    pub fn new(name: &str, threads: usize) -> Self {
        let (jobs, queue) = crossbeam_channel::unbounded::<Job>();
        Self {
            inner: Arc::new(Inner {
                jobs,
                queue,
                name: name.to_string(),
                max: threads.max(1),
                shared: Arc::new(Shared::default()),
            }),
        }
    }

    /// Threads started so far.
    pub fn threads(&self) -> usize {
        self.inner.shared.lock().started
    }

    /// Starts one more worker. When the system refuses a thread (its limits), the job waits for
    /// a worker already running, as it would have with every thread busy; only a pool without any
    /// thread cannot go on.
    fn start_worker(&self) {
        let queue = self.inner.queue.clone();
        let shared = Arc::clone(&self.inner.shared);
        let started = std::thread::Builder::new()
            .name(self.inner.name.clone())
            .spawn(move || {
                shared.lock().idle += 1;
                for job in queue {
                    {
                        let mut c = shared.lock();
                        c.idle -= 1;
                        c.queued -= 1;
                    }
                    // a panicking job is the job's failure (the runner reports it), not the pool's
                    let _ = catch_unwind(AssertUnwindSafe(job));
                    // idle again before the job counts as finished: a job queued by whoever
                    // waited for that finds this worker, not a reason to start another
                    let mut c = shared.lock();
                    c.idle += 1;
                    shared.finished(&mut c);
                }
            });
        if let Err(e) = started {
            let mut c = self.inner.shared.lock();
            c.started -= 1;
            assert!(
                c.started > 0,
                "cannot start a {} thread: {e}",
                self.inner.name
            );
            tracing::warn!(pool = %self.inner.name, threads = c.started, error = %e, "cannot start one more thread: the job waits for a running one");
        }
    }

    /// Queue `job`; an idle worker starts it at once, or a new one when none is idle and fewer
    /// than the maximum run.
    pub fn execute(&self, job: impl FnOnce() + Send + 'static) {
        let start = {
            let mut c = self.inner.shared.lock();
            c.pending += 1;
            c.queued += 1;
            let start = c.queued > c.idle && c.started < self.inner.max;
            if start {
                c.started += 1;
            }
            start
        };
        if start {
            self.start_worker();
        }
        if self.inner.jobs.send(Box::new(job)).is_err() {
            // no worker left to run it (cannot happen while `self` holds the sender)
            let mut c = self.inner.shared.lock();
            c.queued -= 1;
            self.inner.shared.finished(&mut c);
        }
    }

    /// Wait until every queued job has finished.
    pub fn join(&self) {
        let shared = &self.inner.shared;
        let mut c = shared.lock();
        while c.pending > 0 {
            c = shared.zero.wait(c).unwrap_or_else(|p| p.into_inner());
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
        assert_eq!(pool.threads(), 4, "never more threads than asked for");
    }

    /// Set in the child process of the test below.
    const NPROC_CHILD: &str = "AUTO_CLIENT_TEST_POOL_NPROC_CHILD";

    /// The system refuses a thread (here: a process run as `nobody` whose RLIMIT_NPROC is then
    /// lowered to 1, so that `clone` fails with EAGAIN) once two workers run: the jobs queued
    /// after wait for those two and all finish; nothing panics. Threads are started as jobs come
    /// now, so this can happen mid-run, not only when the pool is made. Needs root (to become
    /// `nobody`: root's own limit is not enforced).
    #[test]
    fn jobs_wait_for_running_workers_when_the_system_refuses_more_threads() {
        if std::env::var_os(NPROC_CHILD).is_some() {
            let pool = Pool::new("limited", 8);
            let (release, released) = crossbeam_channel::unbounded::<()>();
            let done = Arc::new(AtomicUsize::new(0));
            for _ in 0..2 {
                let (released, done) = (released.clone(), Arc::clone(&done));
                pool.execute(move || {
                    let _ = released.recv();
                    done.fetch_add(1, Ordering::SeqCst);
                });
            }
            assert_eq!(pool.threads(), 2);
            let one = libc::rlimit {
                rlim_cur: 1,
                rlim_max: 1,
            };
            // SAFETY: setrlimit only lowers this process's own limit.
            assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NPROC, &one) }, 0);
            for _ in 0..5 {
                let done = Arc::clone(&done);
                pool.execute(move || {
                    done.fetch_add(1, Ordering::SeqCst);
                });
            }
            assert_eq!(pool.threads(), 2, "no third thread was allowed");
            drop(release);
            pool.join();
            assert_eq!(done.load(Ordering::SeqCst), 7);
            return;
        }
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: becoming nobody needs root (CI runs as root)");
            return;
        }
        use std::os::unix::process::CommandExt;
        let mut child = crate::this_test_again(
            module_path!(),
            "jobs_wait_for_running_workers_when_the_system_refuses_more_threads",
        );
        child.env(NPROC_CHILD, "1");
        // SAFETY: setgroups, setgid and setuid are async-signal-safe and change only the child.
        unsafe {
            child.pre_exec(|| {
                if libc::setgroups(0, std::ptr::null()) != 0
                    || libc::setgid(65534) != 0
                    || libc::setuid(65534) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let out = child.output().expect("the test binary runs as nobody");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("1 passed"),
            "{:?}\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    fn threads_are_started_only_when_no_idle_one_can_take_the_job() {
        let pool = Pool::new("test", 64);
        // one job at a time: one thread serves them all
        for _ in 0..20 {
            pool.execute(|| std::thread::sleep(std::time::Duration::from_millis(1)));
            pool.join();
        }
        assert_eq!(pool.threads(), 1);
        // ten at once, each waiting for the others: ten threads, all running together
        let barrier = Arc::new(std::sync::Barrier::new(10));
        for _ in 0..10 {
            let barrier = Arc::clone(&barrier);
            pool.execute(move || {
                barrier.wait();
            });
        }
        pool.join();
        assert_eq!(pool.threads(), 10);
    }
}
