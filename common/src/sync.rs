//! [`ReadMostly`]: a value every worker reads on every frame and an operator replaces a few
//! times a year (the export table, on a live reload).
//!
//! A single `RwLock` would put one lock word under every worker's read, and that cache line
//! would bounce between cores on each frame. `ReadMostly` keeps one lock per stripe, each on
//! its own cache line; a thread always reads through the same stripe (chosen once, at its
//! first read), so readers on different cores never touch the same line. A writer takes every
//! stripe in turn. Between the first and the last stripe, readers on different stripes may
//! see the old and the new value: each of them sees one whole value.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard};

use crossbeam::utils::CachePadded;

/// More stripes than this machine's workers need; threads beyond it share stripes.
const STRIPES: usize = 16;

static NEXT_STRIPE: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static STRIPE: usize = NEXT_STRIPE.fetch_add(1, Ordering::Relaxed) % STRIPES;
}

/// A read-mostly shared value. `Send + Sync` when `T` is.
pub struct ReadMostly<T> {
    stripes: Box<[CachePadded<RwLock<Arc<T>>>]>,
}

/// A read of a [`ReadMostly`]: the value as it was when the read began. Hold it for one
/// frame, not across a sleep: a writer waits for it.
pub struct Read<'a, T>(RwLockReadGuard<'a, Arc<T>>);

impl<T> std::ops::Deref for Read<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> ReadMostly<T> {
    pub fn new(value: T) -> ReadMostly<T> {
        let value = Arc::new(value);
        ReadMostly {
            stripes: (0..STRIPES)
                .map(|_| CachePadded::new(RwLock::new(value.clone())))
                .collect(),
        }
    }

    /// The current value. The lock protects a plain `Arc` that a panic cannot leave
    /// half-written, so poisoning is ignored.
    pub fn read(&self) -> Read<'_, T> {
        let stripe = STRIPE.with(|s| *s);
        Read(
            self.stripes[stripe]
                .read()
                .unwrap_or_else(|e| e.into_inner()),
        )
    }

    /// The current value, as an `Arc` that outlives the read (for slow paths).
    pub fn load(&self) -> Arc<T> {
        Arc::clone(&self.read().0)
    }

    /// Replace the value; returns the previous one. Readers that began before keep theirs
    /// until they let go of it.
    pub fn replace(&self, value: T) -> Arc<T> {
        let value = Arc::new(value);
        let mut old = None;
        for stripe in self.stripes.iter() {
            let mut slot = stripe.write().unwrap_or_else(|e| e.into_inner());
            let previous = std::mem::replace(&mut *slot, value.clone());
            old.get_or_insert(previous);
        }
        old.expect("at least one stripe")
    }
}

impl<T: Default> Default for ReadMostly<T> {
    fn default() -> Self {
        ReadMostly::new(T::default())
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for ReadMostly<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ReadMostly").field(&*self.read()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replace_returns_the_old_value_and_readers_see_the_new() {
        let cell = ReadMostly::new(vec![1, 2]);
        assert_eq!(*cell.read(), [1, 2]);
        let old = cell.replace(vec![3]);
        assert_eq!(*old, [1, 2]);
        assert_eq!(*cell.read(), [3]);
        assert_eq!(*cell.load(), [3]);
    }

    #[test]
    fn every_thread_sees_the_replacement() {
        let cell = Arc::new(ReadMostly::new(0u64));
        cell.replace(7);
        let seen: Vec<u64> = (0..2 * STRIPES)
            .map(|_| {
                let cell = cell.clone();
                std::thread::spawn(move || *cell.read()).join().unwrap()
            })
            .collect();
        assert!(seen.iter().all(|&v| v == 7), "{seen:?}");
    }

    #[test]
    fn readers_never_see_a_torn_value_during_replacements() {
        // Each value is a pair that must stay equal; writers replace it while readers check.
        let cell = Arc::new(ReadMostly::new((0u64, 0u64)));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reads = Arc::new(AtomicUsize::new(0));
        let readers: Vec<_> = (0..3)
            .map(|_| {
                let (cell, stop, reads) = (cell.clone(), stop.clone(), reads.clone());
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let v = &*cell.read();
                        assert_eq!(v.0, v.1);
                        reads.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        // Replace while the readers are reading (however the threads are scheduled).
        let mut i = 0u64;
        while i < 2000 || reads.load(Ordering::Relaxed) < 1000 {
            i += 1;
            cell.replace((i, i));
            if i.is_multiple_of(64) {
                std::thread::yield_now();
            }
        }
        stop.store(true, Ordering::Relaxed);
        for r in readers {
            r.join().unwrap();
        }
        assert_eq!(*cell.read(), (i, i));
    }
}
