//! Decrypted segments in memory, least recently used out first, bounded
//! by bytes. Nothing here is ever written to disk.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

type Key = (usize, u64);

#[derive(Debug, Default)]
struct Inner {
    /// Segment, its size and when it was last used.
    entries: HashMap<Key, (Arc<Vec<u8>>, u64)>,
    /// Keys by last use.
    by_use: BTreeMap<u64, Key>,
    bytes: usize,
    tick: u64,
}

/// Segments by (path slot, segment index).
#[derive(Debug)]
pub struct SegmentCache {
    inner: Mutex<Inner>,
    capacity: usize,
}

impl SegmentCache {
    /// A cache of at most `capacity` bytes of segments.
    pub fn new(capacity: usize) -> Self {
        SegmentCache {
            inner: Mutex::new(Inner::default()),
            capacity,
        }
    }

    pub fn get(&self, slot: usize, index: u64) -> Option<Arc<Vec<u8>>> {
        let mut g = self.inner.lock().expect("cache lock");
        let inner = &mut *g;
        inner.tick += 1;
        let tick = inner.tick;
        let (seg, used) = inner.entries.get_mut(&(slot, index))?;
        inner.by_use.remove(used);
        *used = tick;
        inner.by_use.insert(tick, (slot, index));
        Some(seg.clone())
    }

    /// Keeps `seg`, dropping the least recently used to stay in bounds.
    /// A segment larger than the whole cache is not kept.
    pub fn insert(&self, slot: usize, index: u64, seg: Arc<Vec<u8>>) {
        if seg.len() > self.capacity {
            return;
        }
        let mut g = self.inner.lock().expect("cache lock");
        let inner = &mut *g;
        inner.tick += 1;
        let tick = inner.tick;
        let len = seg.len();
        if let Some((old, used)) = inner.entries.insert((slot, index), (seg, tick)) {
            inner.by_use.remove(&used);
            inner.bytes -= old.len();
        }
        inner.by_use.insert(tick, (slot, index));
        inner.bytes += len;
        while inner.bytes > self.capacity {
            let Some((_, key)) = inner.by_use.pop_first() else {
                break;
            };
            if let Some((old, _)) = inner.entries.remove(&key) {
                inner.bytes -= old.len();
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
        c.insert(0, 0, seg(40));
        c.insert(0, 1, seg(40));
        assert!(c.get(0, 0).is_some()); // now 0,1 is the least recent
        c.insert(0, 2, seg(40));
        assert_eq!(c.bytes(), 80);
        assert!(c.get(0, 1).is_none());
        assert!(c.get(0, 0).is_some());
        assert!(c.get(0, 2).is_some());
        // Too large for the whole cache: not kept, nothing dropped.
        c.insert(1, 0, seg(101));
        assert!(c.get(1, 0).is_none());
        assert_eq!(c.bytes(), 80);
        // Exactly the capacity: everything else goes.
        c.insert(1, 1, seg(100));
        assert_eq!(c.bytes(), 100);
        assert!(c.get(0, 0).is_none() && c.get(0, 2).is_none());
        // Replacing an entry counts its bytes once.
        c.insert(1, 1, seg(10));
        assert_eq!(c.bytes(), 10);
    }

    #[test]
    fn a_zero_byte_cache_keeps_nothing_but_empty_segments() {
        let c = SegmentCache::new(0);
        c.insert(0, 0, seg(1));
        assert!(c.get(0, 0).is_none());
        assert_eq!(c.bytes(), 0);
    }
}
