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
        // A word at a time: a peer announcing 2^27 blocks costs 2^21 words.
        let mut i = start;
        while i < end {
            let (w, b) = ((i / 64) as usize, i % 64);
            let n = (64 - b).min(end - i);
            let mask = if n == 64 {
                u64::MAX
            } else {
                ((1u64 << n) - 1) << b
            };
            if let Some(word) = self.words.get_mut(w) {
                if present {
                    *word |= mask;
                } else {
                    *word &= !mask;
                }
            }
            i += n;
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

    #[test]
    fn word_boundaries_match_a_bit_by_bit_model() {
        let mut h = Haves::default();
        let mut model = vec![false; 300];
        let ops = [
            (0, 64, true),
            (63, 2, false),
            (100, 150, true),
            (128, 64, false),
            (5, 1, true),
            (191, 1, true),
            (250, 40, true),
            (0, 0, true),
        ];
        for (start, len, present) in ops {
            h.set_range(start, len, present);
            for i in start..start + len {
                model[i as usize] = present;
            }
            for (i, &m) in model.iter().enumerate() {
                assert_eq!(
                    h.has(i as u64),
                    m,
                    "block {i} after {start}+{len}={present}"
                );
            }
        }
    }
}
