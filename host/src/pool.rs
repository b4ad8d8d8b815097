//! A pool of threads for training steps, whose hand-off costs about a microsecond.
//!
//! A step of training is one short job that every thread runs at once (its share of the
//! batch, of the gradient sums, or of Adam), then a wait for all of them. Between two
//! jobs a thread of this pool spins on a counter for up to [`SPIN`] before it sleeps, so
//! the next job of a running trainer reaches it at once.
//!
//! Why not rayon: rayon parks an idle worker after a few microseconds, and waking a
//! parked thread goes through the operating system and, in a virtual machine, the
//! hypervisor. Measured on this project's 2-core VMs (Xeon, KVM), rayon's round trip
//! (hand a job to the other thread and wait for it) took 50 to 80 µs, against about
//! 1 µs here; microgpt's model at batch 16 takes about 40 µs a thread a step, so two
//! threads were slower than one. rayon has no setting for how long its workers spin;
//! `micropool`, which has one, needs a newer compiler than this workspace's.

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long an idle thread spins before it sleeps: longer than the serial part between
/// two jobs of a trainer (Adam, the transposes, the progress bar), far shorter than a
/// person notices a busy core.
pub const SPIN: Duration = Duration::from_millis(2);

/// Threads that each run every job given to [`Pool::run`], the calling thread included.
pub struct Pool {
    shared: Arc<Shared>,
    handles: Vec<JoinHandle<()>>,
}

/// One job: the function every thread calls with its index. It lives on the stack of
/// [`Pool::run`], which returns only once no thread holds it any more.
struct Job<'a> {
    f: &'a (dyn Fn(usize) + Sync),
}

/// What the threads of a pool share.
struct Shared {
    /// Bumped once per job (and once to stop): a thread runs a job when it sees a new
    /// value.
    epoch: AtomicUsize,
    /// The current job, set before `epoch` is bumped.
    job: AtomicPtr<Job<'static>>,
    /// Threads that have not finished the current job.
    pending: AtomicUsize,
    /// Set, with a last bump of `epoch`, when the pool is dropped.
    stop: AtomicBool,
    /// Threads asleep on `wake`, which then needs a notification.
    sleepers: AtomicUsize,
    lock: Mutex<()>,
    wake: Condvar,
    /// The first panic of a job on a pool thread, raised again by [`Pool::run`].
    panic: Mutex<Option<Box<dyn Any + Send>>>,
}

impl Pool {
    /// A pool of `threads` threads in all (at least one): the caller of [`Pool::run`]
    /// and `threads - 1` more.
    pub fn new(threads: usize) -> std::io::Result<Pool> {
        let shared = Arc::new(Shared {
            epoch: AtomicUsize::new(0),
            job: AtomicPtr::new(std::ptr::null_mut()),
            pending: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            sleepers: AtomicUsize::new(0),
            lock: Mutex::new(()),
            wake: Condvar::new(),
            panic: Mutex::new(None),
        });
        let mut pool = Pool {
            shared,
            handles: Vec::new(),
        };
        for index in 1..threads.max(1) {
            let shared = pool.shared.clone();
            let handle = std::thread::Builder::new()
                .name(format!("microgpt-{index}"))
                .spawn(move || shared.serve(index))?;
            pool.handles.push(handle);
        }
        Ok(pool)
    }

    /// Threads in all, the caller's included.
    pub fn threads(&self) -> usize {
        self.handles.len() + 1
    }

    /// Calls `f(i)` once for every thread `i` in `0..threads()`, `f(0)` on this thread,
    /// and returns when every call has returned. A panic in any call is raised here,
    /// once all have ended. (`&mut self`: one job at a time.)
    pub fn run(&mut self, f: &(dyn Fn(usize) + Sync)) {
        let s = &*self.shared;
        if self.handles.is_empty() {
            return f(0);
        }
        let job = Job { f };
        // The lifetime is erased here and restored in `serve`: the threads read the job
        // only between the bump of `epoch` below and their decrement of `pending`, and
        // this function does not return (nor unwind) before `pending` is back to zero.
        s.job.store(
            (&raw const job).cast::<Job<'static>>().cast_mut(),
            Ordering::Relaxed,
        );
        s.pending.store(self.handles.len(), Ordering::Relaxed);
        s.publish();
        let mine = catch_unwind(AssertUnwindSafe(|| f(0)));
        // After 50 µs the caller yields its core while it waits: on a machine with more
        // threads than cores, the thread it waits for may need it.
        let done = || s.pending.load(Ordering::Acquire) == 0;
        wait_until(done, Duration::from_micros(50), std::thread::yield_now);
        s.job.store(std::ptr::null_mut(), Ordering::Relaxed);
        let theirs = lock(&s.panic).take();
        if let Some(panic) = mine.err().or(theirs) {
            resume_unwind(panic);
        }
    }

    /// Calls `f` on every item of `items`, item `i` on thread `i`: at most one item a
    /// thread (extra items are an error of the caller's and panic).
    pub fn for_each_mut<T: Send>(&mut self, items: &mut [T], f: impl Fn(&mut T) + Sync) {
        assert!(
            items.len() <= self.threads(),
            "{} items for {} threads",
            items.len(),
            self.threads()
        );
        let base = SendPtr(items.as_mut_ptr());
        let len = items.len();
        self.run(&|i| {
            if i < len {
                let base = &base;
                // SAFETY: `i < len` indexes `items`, which `run` borrows mutably until
                // every call has returned, and each index goes to one thread only.
                f(unsafe { &mut *base.0.add(i) })
            }
        });
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.shared.publish();
        for handle in self.handles.drain(..) {
            let _ = handle.join();
        }
    }
}

impl Shared {
    /// Starts the job set in `job` (or the stop) on every thread.
    fn publish(&self) {
        // SeqCst pairs with `sleep`: either the sleeper sees the new epoch, or this
        // sees the sleeper and wakes it.
        self.epoch.fetch_add(1, Ordering::SeqCst);
        if self.sleepers.load(Ordering::SeqCst) > 0 {
            let _guard = lock(&self.lock);
            self.wake.notify_all();
        }
    }

    /// The loop of pool thread `index`: wait for a job, run it, report it done.
    fn serve(&self, index: usize) {
        let mut seen = 0;
        loop {
            let new_epoch = || self.epoch.load(Ordering::Acquire) != seen;
            wait_until(new_epoch, SPIN, || self.sleep(seen));
            seen = self.epoch.load(Ordering::Acquire);
            if self.stop.load(Ordering::Relaxed) {
                return;
            }
            let job = self.job.load(Ordering::Relaxed);
            // SAFETY: `run` set the job before the epoch this thread saw, and keeps it
            // alive until `pending` reaches zero, which this thread's decrement below
            // comes before.
            let f = unsafe { (*job).f };
            if let Err(panic) = catch_unwind(AssertUnwindSafe(|| f(index))) {
                lock(&self.panic).get_or_insert(panic);
            }
            self.pending.fetch_sub(1, Ordering::Release);
        }
    }

    /// Sleeps until `epoch` moves past `seen`.
    fn sleep(&self, seen: usize) {
        let mut guard = lock(&self.lock);
        self.sleepers.fetch_add(1, Ordering::SeqCst);
        while self.epoch.load(Ordering::SeqCst) == seen {
            guard = self.wake.wait(guard).unwrap_or_else(|e| e.into_inner());
        }
        self.sleepers.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Spins until `done`; once `patience` has passed, calls `meanwhile` between checks
/// instead (to sleep, or to yield the core).
fn wait_until(done: impl Fn() -> bool, patience: Duration, meanwhile: impl Fn()) {
    let start = Instant::now();
    let mut spins = 0u32;
    while !done() {
        spins = spins.wrapping_add(1);
        if spins.is_multiple_of(256) && start.elapsed() > patience {
            meanwhile();
        } else {
            std::hint::spin_loop();
        }
    }
}

/// The mutex's guard, poisoned or not: what it guards stays valid across a panic.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A pointer to items that [`Pool::for_each_mut`] hands out one to a thread.
struct SendPtr<T>(*mut T);

// SAFETY: each item behind the pointer goes to one thread only, and `T: Send`.
unsafe impl<T: Send> Sync for SendPtr<T> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_thread_runs_every_job_once() {
        for threads in [1, 2, 3] {
            let mut pool = Pool::new(threads).unwrap();
            assert_eq!(pool.threads(), threads);
            let counts: Vec<AtomicUsize> = (0..threads).map(|_| AtomicUsize::new(0)).collect();
            for _ in 0..1000 {
                pool.run(&|i| {
                    counts[i].fetch_add(1, Ordering::Relaxed);
                });
            }
            assert!(counts.iter().all(|c| c.load(Ordering::Relaxed) == 1000));
        }
    }

    #[test]
    fn items_are_shared_one_a_thread() {
        let mut pool = Pool::new(3).unwrap();
        let mut items = vec![Vec::new(); 3];
        for round in 0..100 {
            pool.for_each_mut(&mut items, |v: &mut Vec<usize>| v.push(round));
        }
        assert!(items.iter().all(|v| *v == (0..100).collect::<Vec<_>>()));
        // Fewer items than threads: the others do nothing.
        let mut two = [0, 0];
        pool.for_each_mut(&mut two, |x| *x += 1);
        assert_eq!(two, [1, 1]);
    }

    #[test]
    fn a_sleeping_thread_wakes_for_the_next_job() {
        let mut pool = Pool::new(2).unwrap();
        let ran = AtomicUsize::new(0);
        for _ in 0..3 {
            std::thread::sleep(SPIN * 3);
            pool.run(&|_| {
                ran.fetch_add(1, Ordering::Relaxed);
            });
        }
        assert_eq!(ran.load(Ordering::Relaxed), 6);
    }

    #[test]
    fn a_panic_on_a_pool_thread_reaches_the_caller_and_the_pool_goes_on() {
        let mut pool = Pool::new(2).unwrap();
        let caught = catch_unwind(AssertUnwindSafe(|| {
            pool.run(&|i| assert!(i != 1, "thread 1 fails"));
        }));
        let message = caught.unwrap_err();
        assert_eq!(message.downcast_ref::<&str>(), Some(&"thread 1 fails"));
        let ran = AtomicUsize::new(0);
        pool.run(&|_| {
            ran.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(ran.load(Ordering::Relaxed), 2);
    }
}
