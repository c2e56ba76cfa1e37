//! Which blocks a remote peer has said it has (from Range and Bitfield
//! messages). A growable bitset, bounded by the feed lengths we accept.

/// Largest block index a peer's announcement may set: a bound on the memory
/// a hostile peer can make us spend (2^32 blocks = 512 MiB of bits is far
/// too much; 2^27 = 16 MiB is 32 TiB of 256 KiB segments).
pub const MAX_TRACKED_BLOCKS: u64 = 1 << 27;

#[derive(Debug, Default, Clone)]
pub struct Haves {
    words: Vec<u64>,
}

impl Haves {
    /// Marks `start..start+len` as present or absent; ignores what lies
    /// past [`MAX_TRACKED_BLOCKS`].
    pub fn set_range(&mut self, start: u64, len: u64, present: bool) {
        let end = start.saturating_add(len).min(MAX_TRACKED_BLOCKS);
        if start >= end {
            return;
        }
        if present {
            let need = end.div_ceil(64) as usize;
            if self.words.len() < need {
                self.words.resize(need, 0);
            }
        }
        for i in start..end {
            let (w, b) = ((i / 64) as usize, i % 64);
            if let Some(word) = self.words.get_mut(w) {
                if present {
                    *word |= 1 << b;
                } else {
                    *word &= !(1 << b);
                }
            }
        }
    }

    pub fn has(&self, i: u64) -> bool {
        self.words
            .get((i / 64) as usize)
            .is_some_and(|w| w & (1 << (i % 64)) != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_set_and_clear() {
        let mut h = Haves::default();
        h.set_range(3, 100, true);
        assert!(!h.has(2) && h.has(3) && h.has(102) && !h.has(103));
        h.set_range(50, 1, false);
        assert!(!h.has(50) && h.has(51));
        h.set_range(u64::MAX - 5, 10, true);
        assert!(!h.has(u64::MAX - 1));
        assert!(h.words.len() <= 2);
    }
}
