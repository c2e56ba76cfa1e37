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

    /// Marks the set bits of a Bitfield message: bit `b` of `words[w]` is
    /// block `start + 32 w + b`. Blocks past [`MAX_TRACKED_BLOCKS`] (or past
    /// `u64::MAX`) are ignored; the work is one step per run of set bits.
    pub fn set_words(&mut self, start: u64, words: &[u32]) {
        for (w, &word) in words.iter().enumerate() {
            let Some(base) = (w as u64)
                .checked_mul(32)
                .and_then(|o| start.checked_add(o))
                .filter(|&b| b < MAX_TRACKED_BLOCKS)
            else {
                return;
            };
            let mut rest = word;
            while rest != 0 {
                let lo = rest.trailing_zeros();
                let run = (rest >> lo).trailing_ones();
                self.set_range(base + u64::from(lo), u64::from(run), true);
                rest = if lo + run >= 32 {
                    0
                } else {
                    rest & !(((1u32 << run) - 1) << lo)
                };
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

    #[test]
    fn bitfield_words_set_the_right_blocks_and_ignore_absurd_offsets() {
        let mut h = Haves::default();
        h.set_words(30, &[0b1011, 0, u32::MAX, 1 << 31]);
        let set: Vec<u64> = (0..200).filter(|&i| h.has(i)).collect();
        let mut want = vec![30, 31, 33];
        want.extend(94..126);
        want.push(157);
        assert_eq!(set, want);
        // Offsets a hostile peer picks: no overflow, no allocation.
        let mut h = Haves::default();
        h.set_words(u64::MAX - 40, &[u32::MAX; 4]);
        h.set_words(MAX_TRACKED_BLOCKS - 16, &[u32::MAX; 1000]);
        assert!(h.has(MAX_TRACKED_BLOCKS - 1) && !h.has(MAX_TRACKED_BLOCKS));
        assert!(h.words.len() as u64 <= MAX_TRACKED_BLOCKS / 64);
    }

    /// hypercore-protocol decodes every message with compact-encoding, whose
    /// 2.2.0 release reserved a vector's declared length before reading it:
    /// a 7-byte Bitfield from any peer reserved gigabytes, a longer length
    /// aborted the process. Fixed by the patched copy in vendor/ (see
    /// vendor/compact-encoding/HYPERNAR-PATCH.md); without it this panics.
    #[test]
    fn wire_vectors_with_lying_lengths_reserve_nothing() {
        use compact_encoding::CompactEncoding;
        use hypercore_protocol::schema::{Bitfield, Data};
        // start 0, then "2^62 words" and none of them.
        let mut lying = vec![0u8, 0xff];
        lying.extend_from_slice(&(1u64 << 62).to_le_bytes());
        assert!(Bitfield::decode(&lying).is_err());
        // What the fuzz target found (after its message-kind byte).
        assert!(Bitfield::decode(&[41, 254, 146, 146, 146, 41]).is_err());
        // Data carries a vector of tree nodes: the same lie there.
        let mut data = vec![0u8; 40];
        data.extend_from_slice(&lying);
        let _ = Data::decode(&data);
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
