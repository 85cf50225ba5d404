//! An `ArcSwap` whose replaced values are freed on a background thread.
//!
//! Freeing a large policy snapshot takes long (about 100 ms at 100k rules,
//! benches/RESULTS.md), and whoever drops the last reference pays it: with a
//! plain `ArcSwap`, that is often a request that loaded the snapshot just
//! before an update. Here the swap hands the old value to a retirement list
//! that keeps one reference of its own, so a request only ever decrements
//! the count; the list's thread frees each value once its reference is the
//! only one left.
//!
//! Why "the only one left" is safe to act on: the value is out of the swap,
//! so nobody can take a new reference to it, only drop theirs; and
//! `arc-swap` turns the cheap guards of `load()` into real references before
//! `swap` returns, so they are counted too. No `Weak` is ever made.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use arc_swap::{ArcSwapOption, Guard};

/// How often the retirement thread looks again while something is still
/// held: a retired value outlives its last user by at most this.
const RECHECK_EVERY: Duration = Duration::from_millis(20);

pub struct RetiringSwap<T: Send + Sync + 'static> {
    current: ArcSwapOption<T>,
    retired: Arc<Retired<T>>,
    thread_name: &'static str,
}

struct Retired<T> {
    list: Mutex<RetiredList<T>>,
    wake: Condvar,
}

struct RetiredList<T> {
    values: Vec<Arc<T>>,
    /// Whether the thread runs (it starts at the first retirement).
    started: bool,
    /// The swap is gone: the thread ends once the list is empty.
    closed: bool,
}

impl<T: Send + Sync + 'static> RetiringSwap<T> {
    /// Empty; `thread_name` names the thread that frees old values.
    pub fn new(thread_name: &'static str) -> Self {
        RetiringSwap {
            current: ArcSwapOption::empty(),
            retired: Arc::new(Retired {
                list: Mutex::new(RetiredList {
                    values: Vec::new(),
                    started: false,
                    closed: false,
                }),
                wake: Condvar::new(),
            }),
            thread_name,
        }
    }

    pub fn load_full(&self) -> Option<Arc<T>> {
        self.current.load_full()
    }

    /// A cheap guard (it may not hold a reference until a swap makes it one).
    pub fn load(&self) -> Guard<Option<Arc<T>>> {
        self.current.load()
    }

    /// Puts `value` in force; the value it replaces goes to the retirement
    /// thread, never to whoever happens to let go of it last.
    pub fn store(&self, value: Arc<T>) {
        let Some(old) = self.current.swap(Some(value)) else {
            return;
        };
        let mut list = lock(&self.retired.list);
        list.values.push(old);
        if !list.started {
            let retired = self.retired.clone();
            let spawned = std::thread::Builder::new()
                .name(self.thread_name.to_owned())
                .spawn(move || retired.run());
            match spawned {
                Ok(_) => list.started = true,
                Err(error) => {
                    // Freed at the next store then, where this one was.
                    tracing::warn!(%error, "cannot start the retirement thread");
                    return;
                }
            }
        }
        self.retired.wake.notify_one();
    }
}

impl<T: Send + Sync + 'static> Drop for RetiringSwap<T> {
    fn drop(&mut self) {
        lock(&self.retired.list).closed = true;
        self.retired.wake.notify_one();
    }
}

impl<T> Retired<T> {
    fn run(&self) {
        let mut list = lock(&self.list);
        loop {
            // Values nobody else holds any more, freed outside the lock so
            // that a store never waits for a free.
            let (free, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut list.values)
                .into_iter()
                .partition(|value| Arc::strong_count(value) == 1);
            list.values = keep;
            if !free.is_empty() {
                drop(list);
                drop(free);
                list = lock(&self.list);
                continue;
            }
            if list.values.is_empty() && list.closed {
                return;
            }
            list = if list.values.is_empty() {
                self.wake.wait(list).unwrap_or_else(|p| p.into_inner())
            } else {
                self.wake
                    .wait_timeout(list, RECHECK_EVERY)
                    .map(|(list, _)| list)
                    .unwrap_or_else(|p| p.into_inner().0)
            };
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// Records the name of the thread that dropped it.
    struct DropProbe(Arc<Mutex<Option<String>>>);

    impl Drop for DropProbe {
        fn drop(&mut self) {
            let name = std::thread::current().name().unwrap_or("?").to_owned();
            *lock(&self.0) = Some(name);
        }
    }

    fn probe() -> (Arc<DropProbe>, Arc<Mutex<Option<String>>>) {
        let dropped_by = Arc::new(Mutex::new(None));
        (Arc::new(DropProbe(dropped_by.clone())), dropped_by)
    }

    fn dropper(dropped_by: &Mutex<Option<String>>) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(name) = lock(dropped_by).clone() {
                return name;
            }
            assert!(
                Instant::now() < deadline,
                "the retired value was never freed"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    #[test]
    fn the_request_holding_the_last_reference_does_not_free_it() {
        let swap = RetiringSwap::new("test-retire");
        let (first, first_dropped) = probe();
        swap.store(first);
        // Two requests in flight: one took a reference, one a cheap guard.
        let request = swap.load_full().expect("value");
        let guard = swap.load();
        let (second, _) = probe();
        swap.store(second);
        // The requests end on this thread after the update.
        drop(guard);
        drop(request);
        assert_eq!(dropper(&first_dropped), "test-retire");
    }

    #[test]
    fn unheld_values_are_freed_too_and_the_current_one_is_kept() {
        let swap = RetiringSwap::new("test-retire-2");
        let mut dropped = Vec::new();
        for _ in 0..5 {
            let (value, dropped_by) = probe();
            swap.store(value);
            dropped.push(dropped_by);
        }
        let current = dropped.pop().expect("five");
        for dropped_by in &dropped {
            assert_eq!(dropper(dropped_by), "test-retire-2");
        }
        assert!(lock(&current).is_none(), "the value in force stays");
        assert!(swap.load_full().is_some());
    }
}
