//! Bounded slots, in total and per key: client connections per address,
//! held requests per agent. A slot is given back when its guard drops.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;

pub struct Slots<K> {
    max_total: usize,
    max_per_key: usize,
    taken: Mutex<Taken<K>>,
}

struct Taken<K> {
    total: usize,
    per_key: HashMap<K, usize>,
}

/// Why no slot was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Full {
    Total,
    PerKey,
}

/// One taken slot, given back when dropped.
pub struct Slot<'a, K: Eq + Hash> {
    slots: &'a Slots<K>,
    key: K,
}

impl<K: Eq + Hash + Clone> Slots<K> {
    pub fn new(max_total: usize, max_per_key: usize) -> Slots<K> {
        Slots {
            max_total,
            max_per_key,
            taken: Mutex::new(Taken {
                total: 0,
                per_key: HashMap::new(),
            }),
        }
    }

    /// A slot for `key`, unless it or everyone holds the most allowed.
    pub fn try_take(&self, key: &K) -> Result<Slot<'_, K>, Full> {
        let mut taken = self.lock();
        if taken.total >= self.max_total {
            return Err(Full::Total);
        }
        let count = taken.per_key.get(key).copied().unwrap_or(0);
        if count >= self.max_per_key {
            return Err(Full::PerKey);
        }
        taken.total += 1;
        taken.per_key.insert(key.clone(), count + 1);
        Ok(Slot {
            slots: self,
            key: key.clone(),
        })
    }

    /// Slots taken now, in all.
    pub fn taken(&self) -> usize {
        self.lock().total
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Taken<K>> {
        self.taken.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl<K: Eq + Hash> Drop for Slot<'_, K> {
    fn drop(&mut self) {
        let mut taken = self.slots.taken.lock().unwrap_or_else(|p| p.into_inner());
        taken.total -= 1;
        if let Some(count) = taken.per_key.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                taken.per_key.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_bounded_in_total_and_per_key_and_given_back() {
        let slots = Slots::new(3, 2);
        let a1 = slots.try_take(&"a").expect("first of a");
        let _a2 = slots.try_take(&"a").expect("second of a");
        assert_eq!(slots.try_take(&"a").err(), Some(Full::PerKey));
        let _b1 = slots.try_take(&"b").expect("first of b");
        assert_eq!(slots.try_take(&"c").err(), Some(Full::Total));
        assert_eq!(slots.taken(), 3);
        drop(a1);
        assert_eq!(slots.taken(), 2);
        let _c1 = slots.try_take(&"c").expect("a slot came back");
        assert_eq!(slots.try_take(&"a").err(), Some(Full::Total));
        // No key is remembered once its last slot is back.
        drop((_a2, _b1, _c1));
        assert!(slots.lock().per_key.is_empty());
        assert_eq!(slots.taken(), 0);
    }
}
