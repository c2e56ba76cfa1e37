//! Decrypted segments (and listings) in memory, least recently used out
//! first, bounded by bytes. Nothing here is ever written to disk.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::sync::{Arc, Mutex};

/// What an entry costs in the cache's budget.
pub trait Weigh {
    fn weight(&self) -> usize;
}

impl Weigh for Arc<Vec<u8>> {
    fn weight(&self) -> usize {
        self.len()
    }
}

impl Weigh for Arc<hypernar_feed::format::listing::Listing> {
    fn weight(&self) -> usize {
        self.approx_bytes()
    }
}

#[derive(Debug)]
struct Inner<K, V> {
    /// Entry and when it was last used.
    entries: HashMap<K, (V, u64)>,
    /// Keys by last use.
    by_use: BTreeMap<u64, K>,
    bytes: usize,
    tick: u64,
}

/// Values by key, at most `capacity` bytes of them by [`Weigh`].
#[derive(Debug)]
pub struct ByteLru<K, V> {
    inner: Mutex<Inner<K, V>>,
    capacity: usize,
}

/// Segments by (path slot, segment index).
pub type SegmentCache = ByteLru<(usize, u64), Arc<Vec<u8>>>;

impl<K: Hash + Eq + Clone, V: Weigh + Clone> ByteLru<K, V> {
    /// A cache of at most `capacity` bytes.
    pub fn new(capacity: usize) -> Self {
        ByteLru {
            inner: Mutex::new(Inner {
                entries: HashMap::new(),
                by_use: BTreeMap::new(),
                bytes: 0,
                tick: 0,
            }),
            capacity,
        }
    }

    pub fn get(&self, key: &K) -> Option<V> {
        let mut g = self.inner.lock().expect("cache lock");
        let inner = &mut *g;
        inner.tick += 1;
        let tick = inner.tick;
        let (value, used) = inner.entries.get_mut(key)?;
        inner.by_use.remove(used);
        *used = tick;
        inner.by_use.insert(tick, key.clone());
        Some(value.clone())
    }

    /// Keeps `value`, dropping the least recently used to stay in bounds.
    /// A value larger than the whole cache is not kept.
    pub fn insert(&self, key: K, value: V) {
        let len = value.weight();
        if len > self.capacity {
            return;
        }
        let mut g = self.inner.lock().expect("cache lock");
        let inner = &mut *g;
        inner.tick += 1;
        let tick = inner.tick;
        if let Some((old, used)) = inner.entries.insert(key.clone(), (value, tick)) {
            inner.by_use.remove(&used);
            inner.bytes -= old.weight();
        }
        inner.by_use.insert(tick, key);
        inner.bytes += len;
        while inner.bytes > self.capacity {
            let Some((_, key)) = inner.by_use.pop_first() else {
                break;
            };
            if let Some((old, _)) = inner.entries.remove(&key) {
                inner.bytes -= old.weight();
            }
        }
    }

    /// Bytes held now.
    pub fn bytes(&self) -> usize {
        self.inner.lock().expect("cache lock").bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(n: usize) -> Arc<Vec<u8>> {
        Arc::new(vec![7; n])
    }

    #[test]
    fn stays_within_its_bytes_dropping_the_least_recently_used() {
        let c = SegmentCache::new(100);
        c.insert((0, 0), seg(40));
        c.insert((0, 1), seg(40));
        assert!(c.get(&(0, 0)).is_some()); // now 0,1 is the least recent
        c.insert((0, 2), seg(40));
        assert_eq!(c.bytes(), 80);
        assert!(c.get(&(0, 1)).is_none());
        assert!(c.get(&(0, 0)).is_some());
        assert!(c.get(&(0, 2)).is_some());
        // Too large for the whole cache: not kept, nothing dropped.
        c.insert((1, 0), seg(101));
        assert!(c.get(&(1, 0)).is_none());
        assert_eq!(c.bytes(), 80);
        // Exactly the capacity: everything else goes.
        c.insert((1, 1), seg(100));
        assert_eq!(c.bytes(), 100);
        assert!(c.get(&(0, 0)).is_none() && c.get(&(0, 2)).is_none());
        // Replacing an entry counts its bytes once.
        c.insert((1, 1), seg(10));
        assert_eq!(c.bytes(), 10);
    }

    #[test]
    fn a_zero_byte_cache_keeps_nothing_but_empty_segments() {
        let c = SegmentCache::new(0);
        c.insert((0, 0), seg(1));
        assert!(c.get(&(0, 0)).is_none());
        assert_eq!(c.bytes(), 0);
    }
}
