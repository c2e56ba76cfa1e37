//! Nix's base-32 encoding (`nix32`), as used in store paths and `sha256:` hashes.
//!
//! Hand-rolled because no published crate carries it without pulling in a
//! whole Nix implementation; it is 60 lines and checked against Nix's own
//! output in the tests below.

/// The 32 digits Nix uses: no `e`, `o`, `u`, `t`.
pub const ALPHABET: &[u8; 32] = b"0123456789abcdfghijklmnpqrsvwxyz";

/// Length of the nix32 text for `n` bytes.
pub const fn encoded_len(n: usize) -> usize {
    if n == 0 {
        0
    } else {
        (n * 8 - 1) / 5 + 1
    }
}

/// Encodes bytes the way Nix does (least significant bits last in the text).
pub fn encode(bytes: &[u8]) -> String {
    let len = encoded_len(bytes.len());
    let mut out = String::with_capacity(len);
    for n in (0..len).rev() {
        let b = n * 5;
        let i = b / 8;
        let j = b % 8;
        let lo = (bytes[i] as u16) >> j;
        let hi = if i + 1 < bytes.len() {
            (bytes[i + 1] as u16) << (8 - j)
        } else {
            0
        };
        out.push(ALPHABET[((lo | hi) & 0x1f) as usize] as char);
    }
    out
}

/// Error from [`decode`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("nix32 text has length {got}, expected {expected}")]
    Length { expected: usize, got: usize },
    #[error("nix32 text has an invalid character {0:?}")]
    Character(char),
    #[error("nix32 text encodes more bits than the output holds")]
    Overflow,
}

/// Decodes nix32 text into exactly `N` bytes.
pub fn decode<const N: usize>(text: &str) -> Result<[u8; N], DecodeError> {
    let expected = encoded_len(N);
    if text.len() != expected {
        return Err(DecodeError::Length {
            expected,
            got: text.len(),
        });
    }
    let mut out = [0u8; N];
    for (n, c) in text.bytes().rev().enumerate() {
        let digit = ALPHABET
            .iter()
            .position(|&a| a == c)
            .ok_or(DecodeError::Character(c as char))? as u16;
        let b = n * 5;
        let i = b / 8;
        let j = b % 8;
        out[i] |= (digit << j) as u8;
        let carry = digit >> (8 - j);
        if i + 1 < N {
            out[i + 1] |= carry as u8;
        } else if carry != 0 {
            return Err(DecodeError::Overflow);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn matches_nix() {
        // `nix hash to-base32 --type sha256 <sha256 of "">`
        let empty_sha256 =
            hex::decode("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
                .unwrap();
        assert_eq!(
            encode(&empty_sha256),
            "0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73"
        );
        let back: [u8; 32] =
            decode("0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73").unwrap();
        assert_eq!(back.as_slice(), empty_sha256.as_slice());
    }

    #[test]
    fn rejects_bad_text() {
        assert!(matches!(decode::<20>("e"), Err(DecodeError::Length { .. })));
        let mut s = "0".repeat(32);
        s.replace_range(3..4, "e");
        assert_eq!(decode::<20>(&s), Err(DecodeError::Character('e')));
        // 52 digits carry 260 bits; a leading 'z' sets bits past 256.
        let over = format!("z{}", "0".repeat(51));
        assert_eq!(decode::<32>(&over), Err(DecodeError::Overflow));
    }

    proptest! {
        #[test]
        fn round_trip(bytes in proptest::array::uniform20(any::<u8>())) {
            let text = encode(&bytes);
            prop_assert_eq!(text.len(), 32);
            prop_assert_eq!(decode::<20>(&text).unwrap(), bytes);
        }
    }
}
