//! The segment envelope: how one piece of a NAR becomes one hypercore block.
//!
//! A NAR of `nar_size` bytes is cut into `ceil(nar_size / segment_size)`
//! segments of `segment_size` bytes (the last may be shorter). Each segment
//! is compressed with zstd (kept raw when compression does not make it
//! smaller) and sealed with ChaCha20-Poly1305 under the path's own key:
//!
//! ```text
//! block     = version(1) || ciphertext(codec(1) || payload) || tag(16)
//! nonce     = u64le(segment index) || 0u32
//! aad       = "hypernar/seg/v1" || u16le(len) || store path base name
//!             || u64le(segment index) || u64le(segment count) || u32le(segment size)
//! ```
//!
//! The key is used for one path only, so the index alone makes the nonce
//! unique. The associated data binds each block to its path, its position
//! and the path's length, so a swapped, reordered, truncated or extended
//! sequence of blocks fails authentication. The codec byte is inside the
//! ciphertext: a blind mirror learns only each block's size.

use std::fmt;

use blake2::digest::consts::U32;
use blake2::{Blake2b, Digest};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305};

use super::storepath::StorePath;

/// Envelope version in the first byte of every data block.
pub const ENVELOPE_VERSION: u8 = 1;
/// Poly1305 tag length.
pub const TAG_LEN: usize = 16;
/// Bytes an envelope adds around a segment: version, codec byte, tag.
pub const ENVELOPE_OVERHEAD: usize = 2 + TAG_LEN;
/// Smallest segment size a record may name.
pub const MIN_SEGMENT_SIZE: u32 = 4 << 10;
/// Largest segment size a record may name; bounds every block buffer.
pub const MAX_SEGMENT_SIZE: u32 = 4 << 20;
/// Segment size used by `hypernar publish` unless told otherwise. Chosen by
/// measurement: see docs/protocol.md, "Segment size".
pub const DEFAULT_SEGMENT_SIZE: u32 = 256 << 10;

const CODEC_RAW: u8 = 0;
const CODEC_ZSTD: u8 = 1;
const AAD_DOMAIN: &[u8] = b"hypernar/seg/v1";

/// Errors sealing or opening a segment.
#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    #[error("block has envelope version {0}, this build reads version {ENVELOPE_VERSION}")]
    Version(u8),
    #[error("block of {0} bytes is too short to be a segment")]
    Short(usize),
    #[error(
        "segment {index} failed authentication: the block was altered, moved, or the key is wrong"
    )]
    Authentication { index: u64 },
    #[error("segment {index} names an unknown codec {codec}")]
    Codec { index: u64, codec: u8 },
    #[error("segment {index} does not decompress: {source}")]
    Decompress {
        index: u64,
        #[source]
        source: std::io::Error,
    },
    #[error("segment {index} holds {got} bytes, expected {expected}")]
    Length {
        index: u64,
        expected: usize,
        got: usize,
    },
    #[error("segment {index} is past the end of the path ({count} segments)")]
    OutOfRange { index: u64, count: u64 },
    #[error("segment size {0} is outside {MIN_SEGMENT_SIZE}..={MAX_SEGMENT_SIZE}")]
    SegmentSize(u32),
    #[error("zstd: {0}")]
    Compress(#[source] std::io::Error),
}

/// Where a path's segments fall: its identity, size and segment size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub store_path: StorePath,
    pub nar_size: u64,
    pub segment_size: u32,
}

impl Layout {
    /// Checks the segment size bounds.
    pub fn new(
        store_path: StorePath,
        nar_size: u64,
        segment_size: u32,
    ) -> Result<Self, SegmentError> {
        if !(MIN_SEGMENT_SIZE..=MAX_SEGMENT_SIZE).contains(&segment_size) {
            return Err(SegmentError::SegmentSize(segment_size));
        }
        Ok(Layout {
            store_path,
            nar_size,
            segment_size,
        })
    }

    /// Number of segments (0 for an empty NAR).
    pub fn count(&self) -> u64 {
        self.nar_size.div_ceil(self.segment_size as u64)
    }

    /// Plaintext length of segment `index`.
    pub fn len(&self, index: u64) -> Result<usize, SegmentError> {
        let count = self.count();
        if index >= count {
            return Err(SegmentError::OutOfRange { index, count });
        }
        let start = index * self.segment_size as u64;
        Ok((self.nar_size - start).min(self.segment_size as u64) as usize)
    }

    /// Byte offset of segment `index` in the NAR.
    pub fn offset(&self, index: u64) -> u64 {
        index * self.segment_size as u64
    }

    /// Largest block this layout can produce.
    pub fn max_block_len(&self) -> usize {
        self.segment_size as usize + ENVELOPE_OVERHEAD
    }

    fn aad(&self, index: u64) -> Vec<u8> {
        let name = self.store_path.base_name().as_bytes();
        let mut aad = Vec::with_capacity(AAD_DOMAIN.len() + 2 + name.len() + 20);
        aad.extend_from_slice(AAD_DOMAIN);
        aad.extend_from_slice(&(name.len() as u16).to_le_bytes());
        aad.extend_from_slice(name);
        aad.extend_from_slice(&index.to_le_bytes());
        aad.extend_from_slice(&self.count().to_le_bytes());
        aad.extend_from_slice(&self.segment_size.to_le_bytes());
        aad
    }
}

fn nonce(index: u64) -> Nonce {
    let mut n = [0u8; 12];
    n[..8].copy_from_slice(&index.to_le_bytes());
    Nonce::assume_unique_for_key(n)
}

/// The random 256-bit key of one store path.
#[derive(Clone, PartialEq, Eq)]
pub struct PathKey(pub [u8; 32]);

impl PathKey {
    /// A fresh key from the OS's random source.
    pub fn generate() -> Self {
        let mut k = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut k);
        PathKey(k)
    }

    /// A public commitment to the key, kept in the index record so a reader
    /// can tell a wrong key from a tampered block before reading any data.
    pub fn check(&self) -> [u8; 16] {
        let mut h = Blake2b::<U32>::new();
        h.update(b"hypernar/v1/key-check");
        h.update(self.0);
        let d = h.finalize();
        let mut out = [0u8; 16];
        out.copy_from_slice(&d[..16]);
        out
    }

    /// The key the path's NAR listing is sealed under: derived, so the
    /// listing's nonces never meet the segments'.
    pub fn listing(&self) -> PathKey {
        let mut h = Blake2b::<U32>::new();
        h.update(b"hypernar/v1/listing-key");
        h.update(self.0);
        PathKey(h.finalize().into())
    }

    fn aead(&self) -> LessSafeKey {
        LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, &self.0).expect("32-byte key"))
    }
}

impl fmt::Debug for PathKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PathKey(<redacted>)")
    }
}

/// Seals the segments of one path.
pub struct Sealer {
    layout: Layout,
    key: LessSafeKey,
    zstd: zstd::bulk::Compressor<'static>,
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealer")
            .field("layout", &self.layout)
            .finish()
    }
}

impl Sealer {
    /// A sealer for `layout` under `key`, compressing at zstd `level`.
    pub fn new(layout: Layout, key: &PathKey, level: i32) -> Result<Self, SegmentError> {
        Ok(Sealer {
            layout,
            key: key.aead(),
            zstd: zstd::bulk::Compressor::new(level).map_err(SegmentError::Compress)?,
        })
    }

    /// The layout being sealed.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Seals segment `index`, whose plaintext must have the layout's length.
    pub fn seal(&mut self, index: u64, plaintext: &[u8]) -> Result<Vec<u8>, SegmentError> {
        let expected = self.layout.len(index)?;
        if plaintext.len() != expected {
            return Err(SegmentError::Length {
                index,
                expected,
                got: plaintext.len(),
            });
        }
        let mut block = Vec::with_capacity(plaintext.len() + ENVELOPE_OVERHEAD);
        block.push(ENVELOPE_VERSION);
        block.push(CODEC_ZSTD);
        // Room for one byte less than raw: if zstd cannot beat that, it fails
        // to fit and the segment is stored raw.
        block.resize(2 + plaintext.len().saturating_sub(1), 0);
        match self.zstd.compress_to_buffer(plaintext, &mut block[2..]) {
            Ok(n) => block.truncate(2 + n),
            Err(_) => {
                block.truncate(1);
                block.push(CODEC_RAW);
                block.extend_from_slice(plaintext);
            }
        }
        Ok(self.seal_block(index, block))
    }

    /// Seals `[version] || body` in place and appends the tag.
    fn seal_block(&self, index: u64, mut block: Vec<u8>) -> Vec<u8> {
        let tag = self
            .key
            .seal_in_place_separate_tag(
                nonce(index),
                Aad::from(self.layout.aad(index)),
                &mut block[1..],
            )
            .expect("ChaCha20-Poly1305 seals any length we produce");
        block.extend_from_slice(tag.as_ref());
        block
    }

    /// Seals an envelope body (codec byte and payload) exactly as given,
    /// with no check that it decodes: what a publisher that holds the key
    /// but means harm could produce. For fuzzing and tests of the opener.
    #[doc(hidden)]
    pub fn seal_body_as_is(&self, index: u64, body: &[u8]) -> Vec<u8> {
        let mut block = Vec::with_capacity(1 + body.len() + ENVELOPE_OVERHEAD);
        block.push(ENVELOPE_VERSION);
        block.extend_from_slice(body);
        self.seal_block(index, block)
    }
}

/// Opens the segments of one path.
pub struct Opener {
    layout: Layout,
    key: LessSafeKey,
    zstd: zstd::bulk::Decompressor<'static>,
}

impl fmt::Debug for Opener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Opener")
            .field("layout", &self.layout)
            .finish()
    }
}

impl Opener {
    /// An opener for `layout` under `key`.
    pub fn new(layout: Layout, key: &PathKey) -> Result<Self, SegmentError> {
        Ok(Opener {
            layout,
            key: key.aead(),
            zstd: zstd::bulk::Decompressor::new().map_err(SegmentError::Compress)?,
        })
    }

    /// The layout being opened.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Authenticates and decodes block `index`, appending its plaintext to
    /// `out`. The block buffer is decrypted in place. Never appends more than
    /// the segment's length, whatever the block claims.
    pub fn open_into(
        &mut self,
        index: u64,
        block: &mut [u8],
        out: &mut Vec<u8>,
    ) -> Result<(), SegmentError> {
        let expected = self.layout.len(index)?;
        if block.len() < ENVELOPE_OVERHEAD {
            return Err(SegmentError::Short(block.len()));
        }
        if block.len() > self.layout.max_block_len() {
            return Err(SegmentError::Length {
                index,
                expected: self.layout.max_block_len(),
                got: block.len(),
            });
        }
        if block[0] != ENVELOPE_VERSION {
            return Err(SegmentError::Version(block[0]));
        }
        let plain = self
            .key
            .open_in_place(
                nonce(index),
                Aad::from(self.layout.aad(index)),
                &mut block[1..],
            )
            .map_err(|_: ring::error::Unspecified| SegmentError::Authentication { index })?;
        let (codec, payload) = (plain[0], &plain[1..]);
        let start = out.len();
        match codec {
            CODEC_RAW => {
                if payload.len() != expected {
                    return Err(SegmentError::Length {
                        index,
                        expected,
                        got: payload.len(),
                    });
                }
                out.extend_from_slice(payload);
            }
            CODEC_ZSTD => {
                out.resize(start + expected, 0);
                let got = self
                    .zstd
                    .decompress_to_buffer(payload, &mut out[start..])
                    .map_err(|source| {
                        out.truncate(start);
                        SegmentError::Decompress { index, source }
                    })?;
                if got != expected {
                    out.truncate(start);
                    return Err(SegmentError::Length {
                        index,
                        expected,
                        got,
                    });
                }
            }
            codec => return Err(SegmentError::Codec { index, codec }),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SEG: u32 = MIN_SEGMENT_SIZE;

    fn path(name: &str) -> StorePath {
        StorePath::from_base_name(&format!("dvy33zhzyzyqssgblsj9zn6xikj3y7w8-{name}")).unwrap()
    }

    fn nar(len: usize, seed: u64) -> Vec<u8> {
        // Half compressible text, half noise, so both codecs are exercised.
        let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
        (0..len)
            .map(|i| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                if (i / 1000) % 2 == 0 {
                    b"nix store "[i % 10]
                } else {
                    (x >> 33) as u8
                }
            })
            .collect()
    }

    fn seal_all(layout: &Layout, key: &PathKey, data: &[u8]) -> Vec<Vec<u8>> {
        let mut s = Sealer::new(layout.clone(), key, 3).unwrap();
        (0..layout.count())
            .map(|i| {
                let off = layout.offset(i) as usize;
                s.seal(i, &data[off..off + layout.len(i).unwrap()]).unwrap()
            })
            .collect()
    }

    fn open_all(
        layout: &Layout,
        key: &PathKey,
        blocks: &[Vec<u8>],
    ) -> Result<Vec<u8>, SegmentError> {
        let mut o = Opener::new(layout.clone(), key)?;
        let mut out = Vec::new();
        for (i, b) in blocks.iter().enumerate() {
            o.open_into(i as u64, &mut b.clone(), &mut out)?;
        }
        Ok(out)
    }

    /// Boundary sizes: 0, 1, segment−1, segment, segment+1, many segments.
    const SIZES: &[usize] = &[
        0,
        1,
        SEG as usize - 1,
        SEG as usize,
        SEG as usize + 1,
        SEG as usize * 7 + 13,
    ];

    #[test]
    fn boundary_sizes_round_trip() {
        for &size in SIZES {
            let layout = Layout::new(path("p"), size as u64, SEG).unwrap();
            assert_eq!(layout.count(), (size as u64).div_ceil(SEG as u64));
            let key = PathKey::generate();
            let data = nar(size, size as u64);
            let blocks = seal_all(&layout, &key, &data);
            assert!(blocks.iter().all(|b| b.len() <= layout.max_block_len()));
            assert_eq!(
                open_all(&layout, &key, &blocks).unwrap(),
                data,
                "size {size}"
            );
        }
    }

    #[test]
    fn any_flipped_bit_fails_authentication() {
        let layout = Layout::new(path("p"), 3000, SEG).unwrap();
        let key = PathKey::generate();
        let block = seal_all(&layout, &key, &nar(3000, 1)).remove(0);
        for byte in 0..block.len() {
            for bit in 0..8 {
                let mut b = block.clone();
                b[byte] ^= 1 << bit;
                let err = Opener::new(layout.clone(), &key)
                    .unwrap()
                    .open_into(0, &mut b, &mut Vec::new())
                    .unwrap_err();
                if byte == 0 {
                    assert!(matches!(err, SegmentError::Version(_)));
                } else {
                    assert!(matches!(err, SegmentError::Authentication { index: 0 }));
                }
            }
        }
    }

    #[test]
    fn swapped_wrong_key_truncated_and_foreign_blocks_fail() {
        let size = SEG as usize * 3;
        let layout = Layout::new(path("p"), size as u64, SEG).unwrap();
        let key = PathKey::generate();
        let data = nar(size, 9);
        let blocks = seal_all(&layout, &key, &data);

        let mut swapped = blocks.clone();
        swapped.swap(0, 1);
        assert!(matches!(
            open_all(&layout, &key, &swapped),
            Err(SegmentError::Authentication { index: 0 })
        ));

        assert!(matches!(
            open_all(&layout, &PathKey::generate(), &blocks),
            Err(SegmentError::Authentication { index: 0 })
        ));

        // The same blocks read as a shorter path (truncation) or another path.
        let shorter = Layout::new(path("p"), (SEG * 2) as u64, SEG).unwrap();
        assert!(matches!(
            open_all(&shorter, &key, &blocks[..2]),
            Err(SegmentError::Authentication { .. })
        ));
        let other = Layout::new(path("q"), size as u64, SEG).unwrap();
        assert!(matches!(
            open_all(&other, &key, &blocks),
            Err(SegmentError::Authentication { .. })
        ));

        let mut cut = blocks[0].clone();
        cut.truncate(10);
        assert!(matches!(
            Opener::new(layout.clone(), &key)
                .unwrap()
                .open_into(0, &mut cut, &mut Vec::new()),
            Err(SegmentError::Short(10))
        ));
        assert!(matches!(
            Opener::new(layout.clone(), &key).unwrap().open_into(
                3,
                &mut blocks[0].clone(),
                &mut Vec::new()
            ),
            Err(SegmentError::OutOfRange { index: 3, count: 3 })
        ));
    }

    #[test]
    fn incompressible_segments_are_stored_raw_and_compressible_ones_shrink() {
        let layout = Layout::new(path("p"), SEG as u64, SEG).unwrap();
        let key = PathKey::generate();
        let noise: Vec<u8> = (0..SEG)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        let zeros = vec![0u8; SEG as usize];
        let mut s = Sealer::new(layout, &key, 3).unwrap();
        assert!(s.seal(0, &zeros).unwrap().len() < 100);
        assert!(s.seal(0, &noise).unwrap().len() <= SEG as usize + ENVELOPE_OVERHEAD);
        assert!(Layout::new(path("p"), 1, 100).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn round_trip_any_size(size in 0usize..(SEG as usize * 5), seed in any::<u64>()) {
            let layout = Layout::new(path("p"), size as u64, SEG).unwrap();
            let key = PathKey::generate();
            let data = nar(size, seed);
            let blocks = seal_all(&layout, &key, &data);
            prop_assert_eq!(open_all(&layout, &key, &blocks).unwrap(), data);
        }
    }
}
