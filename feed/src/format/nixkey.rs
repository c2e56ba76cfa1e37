//! Nix's binary-cache signing keys, as `trusted-public-keys` names them
//! (`name:base64(ed25519 public key)`), and the check Nix makes of a
//! narinfo's `Sig:` lines: an ed25519 signature, by a key of that name,
//! over the path's fingerprint (`1;<path>;<NarHash>;<NarSize>;<refs>`,
//! [`super::narinfo::fingerprint`]).
//!
//! Pure and bounded: a key or a signature that does not parse is not
//! trusted, never an error that stops anything else. Verification is
//! ed25519-dalek's `verify_strict` (no small-order key, canonical `S`),
//! as strict as libsodium's, which Nix uses.

use base64::Engine as _;
use ed25519_dalek::{Signature, VerifyingKey};

use super::narinfo::NarInfo;

/// The key cache.nixos.org signs with: the default a follower and a node
/// trust for upstream paths.
pub const CACHE_NIXOS_ORG_1: &str =
    "cache.nixos.org-1:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY=";

/// The longest key name taken (Nix's are short: `cache.nixos.org-1`).
const MAX_NAME: usize = 128;

/// A public key Nix would trust for signatures named after it.
#[derive(Clone, PartialEq, Eq)]
pub struct NixPublicKey {
    name: String,
    key: VerifyingKey,
}

impl std::fmt::Debug for NixPublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NixPublicKey({self})")
    }
}

impl std::fmt::Display for NixPublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let b64 = base64::engine::general_purpose::STANDARD;
        write!(f, "{}:{}", self.name, b64.encode(self.key.as_bytes()))
    }
}

/// Why a key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NixKeyError {
    #[error("{0:?} is not a Nix public key (expected name:base64, as in trusted-public-keys, e.g. {CACHE_NIXOS_ORG_1})")]
    Form(String),
    #[error("{0:?}: the key is not 32 bytes of base64")]
    Key(String),
    #[error("{0:?}: not a valid ed25519 public key")]
    Point(String),
    #[error("{0} is not a Nix secret key (expected name:base64 of 64 bytes, as nix-store --generate-binary-cache-key writes)")]
    SecretForm(String),
}

impl std::str::FromStr for NixPublicKey {
    type Err = NixKeyError;

    fn from_str(text: &str) -> Result<Self, NixKeyError> {
        let text = text.trim();
        let Some((name, b64)) = text.split_once(':') else {
            return Err(NixKeyError::Form(text.to_owned()));
        };
        if name.is_empty() || name.len() > MAX_NAME || name.contains(char::is_whitespace) {
            return Err(NixKeyError::Form(text.to_owned()));
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|_| NixKeyError::Key(text.to_owned()))?;
        let bytes: [u8; 32] = bytes
            .try_into()
            .map_err(|_| NixKeyError::Key(text.to_owned()))?;
        let key =
            VerifyingKey::from_bytes(&bytes).map_err(|_| NixKeyError::Point(text.to_owned()))?;
        if key.is_weak() {
            return Err(NixKeyError::Point(text.to_owned()));
        }
        Ok(NixPublicKey {
            name: name.to_owned(),
            key,
        })
    }
}

/// A Nix signing key, as `nix-store --generate-binary-cache-key` writes
/// it: `name:base64(64 bytes: the ed25519 seed, then its public key)`.
/// Only its name and the seed's key are kept; a file whose public half is
/// not the seed's is refused (it is not what Nix would sign with).
pub struct NixSecretKey {
    name: String,
    key: ed25519_dalek::SigningKey,
}

impl std::fmt::Debug for NixSecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NixSecretKey({})", self.name)
    }
}

impl std::str::FromStr for NixSecretKey {
    type Err = NixKeyError;

    fn from_str(text: &str) -> Result<Self, NixKeyError> {
        let text = text.trim();
        let shown = || text.split(':').next().unwrap_or("").to_owned() + ":…";
        let Some((name, b64)) = text.split_once(':') else {
            return Err(NixKeyError::SecretForm(shown()));
        };
        if name.is_empty() || name.len() > MAX_NAME || name.contains(char::is_whitespace) {
            return Err(NixKeyError::SecretForm(shown()));
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|_| NixKeyError::SecretForm(shown()))?;
        let bytes: [u8; 64] = bytes
            .try_into()
            .map_err(|_| NixKeyError::SecretForm(shown()))?;
        let seed: [u8; 32] = bytes[..32].try_into().expect("32 bytes");
        let key = ed25519_dalek::SigningKey::from_bytes(&seed);
        if key.verifying_key().as_bytes()[..] != bytes[32..] {
            return Err(NixKeyError::SecretForm(shown()));
        }
        Ok(NixSecretKey {
            name: name.to_owned(),
            key,
        })
    }
}

impl NixSecretKey {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A `Sig:` value (`name:base64`) over `fingerprint`.
    pub fn sign(&self, fingerprint: &str) -> String {
        use ed25519_dalek::Signer;
        let sig = self.key.sign(fingerprint.as_bytes());
        format!(
            "{}:{}",
            self.name,
            base64::engine::general_purpose::STANDARD.encode(sig.to_bytes())
        )
    }

    /// Its public key, as trusted-public-keys names it.
    pub fn public(&self) -> NixPublicKey {
        NixPublicKey {
            name: self.name.clone(),
            key: self.key.verifying_key(),
        }
    }
}

impl NixPublicKey {
    /// The key's name (what a `Sig:` line starts with).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether `sig` (a `Sig:` value, `name:base64`) is this key's
    /// signature of `fingerprint`.
    pub fn verifies(&self, fingerprint: &str, sig: &str) -> bool {
        let Some((name, b64)) = sig.trim().split_once(':') else {
            return false;
        };
        if name != self.name {
            return false;
        }
        let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(b64) else {
            return false;
        };
        let Ok(bytes) = <[u8; 64]>::try_from(bytes.as_slice()) else {
            return false;
        };
        self.key
            .verify_strict(fingerprint.as_bytes(), &Signature::from_bytes(&bytes))
            .is_ok()
    }
}

/// The first of `keys` that signed `info` (over its fingerprint), if any:
/// what makes Nix accept a narinfo from a substituter.
pub fn signed_by<'a>(info: &NarInfo, keys: &'a [NixPublicKey]) -> Option<&'a NixPublicKey> {
    first_signer(&info.fingerprint(), &info.sigs, keys)
}

/// The first of `keys` that signed the path of `record` (its `sigs`, over
/// the fingerprint of its path, NAR hash, size and references), if any.
pub fn record_signed_by<'a>(
    record: &crate::format::record::PathRecord,
    keys: &'a [NixPublicKey],
) -> Option<&'a NixPublicKey> {
    let fingerprint = crate::format::narinfo::fingerprint(
        &record.store_path,
        &record.nar_hash,
        record.nar_size,
        &record.references,
    );
    first_signer(&fingerprint, &record.sigs, keys)
}

/// The first of `keys` whose signature of `fingerprint` is among the first
/// [`MAX_SIGS_CHECKED`] of `sigs` that carry its name (signatures by other
/// keys cost a name comparison, not a verification).
fn first_signer<'a>(
    fingerprint: &str,
    sigs: &[String],
    keys: &'a [NixPublicKey],
) -> Option<&'a NixPublicKey> {
    keys.iter().find(|k| {
        sigs.iter()
            .filter(|s| {
                s.trim()
                    .split_once(':')
                    .is_some_and(|(name, _)| name == k.name())
            })
            .take(MAX_SIGS_CHECKED)
            .any(|s| k.verifies(fingerprint, s))
    })
}

/// The most `Sig:` values of one key name verified per path: Nix writes
/// one per key that signed it; a hostile record with thousands under a
/// trusted name would cost an ed25519 verification each.
pub const MAX_SIGS_CHECKED: usize = 16;

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};

    fn key(seed: u8, name: &str) -> (SigningKey, NixPublicKey) {
        let sk = SigningKey::from_bytes(&[seed; 32]);
        let b64 = base64::engine::general_purpose::STANDARD.encode(sk.verifying_key().as_bytes());
        (sk, format!("{name}:{b64}").parse().unwrap())
    }

    /// A narinfo with no signature.
    fn unsigned_info() -> NarInfo {
        let text = "StorePath: /nix/store/yzpnsva739ix5g71hc0yfpy1szrpa0hm-hn-b\n\
            URL: nar/x.nar.xz\nCompression: xz\n\
            NarHash: sha256:1j6f8p98pc0n6xwmpmmcrazwdrwl9hj57g4hshp9q8iiay5m0zf0\n\
            NarSize: 1000520\nReferences: dvy33zhzyzyqssgblsj9zn6xikj3y7w8-hn-a\n";
        NarInfo::parse(text.as_bytes()).unwrap()
    }

    fn sign(sk: &SigningKey, name: &str, text: &str) -> String {
        let b64 = base64::engine::general_purpose::STANDARD;
        format!("{name}:{}", b64.encode(sk.sign(text.as_bytes()).to_bytes()))
    }

    #[test]
    fn a_narinfo_is_signed_by_the_first_trusted_key_that_verifies_one_of_its_sigs() {
        let mut info = unsigned_info();
        let (sk, pk) = key(1, "up-1");
        let (sk2, pk2) = key(2, "up-2");
        assert_eq!(
            signed_by(&info, std::slice::from_ref(&pk)),
            None,
            "unsigned"
        );
        info.sigs = vec![
            "junk".into(),
            sign(&sk2, "up-2", "1;something else"),
            sign(&sk, "up-1", &info.fingerprint()),
        ];
        assert_eq!(signed_by(&info, &[pk2.clone(), pk.clone()]), Some(&pk));
        assert_eq!(
            signed_by(&info, std::slice::from_ref(&pk2)),
            None,
            "up-2 signed another fingerprint"
        );
        // A reference changed after signing: no longer signed.
        info.references.clear();
        assert_eq!(signed_by(&info, &[pk, pk2]), None);
        let _ = sk2;
    }

    #[test]
    fn a_trusted_signature_counts_behind_many_by_other_keys_and_at_most_sixteen_of_its_name() {
        let mut info = unsigned_info();
        let (sk, pk) = key(1, "up-1");
        let (other, _) = key(3, "other-1");
        let good = sign(&sk, "up-1", &info.fingerprint());
        // Twenty signatures by other keys first: the trusted one counts.
        info.sigs = (0..20)
            .map(|i| sign(&other, "other-1", &format!("{i}")))
            .chain([good.clone()])
            .collect();
        assert_eq!(signed_by(&info, std::slice::from_ref(&pk)), Some(&pk));
        // Sixteen bad ones under the trusted name first: not looked past.
        info.sigs = (0..MAX_SIGS_CHECKED)
            .map(|i| sign(&other, "up-1", &format!("{i}")))
            .chain([good.clone()])
            .collect();
        assert_eq!(signed_by(&info, std::slice::from_ref(&pk)), None);
        info.sigs.remove(0);
        assert_eq!(signed_by(&info, std::slice::from_ref(&pk)), Some(&pk));
    }

    #[test]
    fn cache_nixos_org_s_key_parses_and_prints_back() {
        let k: NixPublicKey = CACHE_NIXOS_ORG_1.parse().unwrap();
        assert_eq!(k.name(), "cache.nixos.org-1");
        assert_eq!(k.to_string(), CACHE_NIXOS_ORG_1);
    }

    #[test]
    fn keys_that_do_not_parse_are_refused_with_what_was_expected() {
        for bad in [
            "",
            "no-colon",
            ":AAAA",
            "name with space:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY=",
            "k:not base64!",
            "k:AAAA",
            // 32 bytes, but the identity point: a weak key.
            "k:AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        ] {
            assert!(bad.parse::<NixPublicKey>().is_err(), "{bad:?}");
        }
        let err = "x".parse::<NixPublicKey>().unwrap_err().to_string();
        assert!(err.contains("trusted-public-keys"), "{err}");
    }

    #[test]
    fn a_signature_verifies_only_by_its_named_key_over_its_fingerprint() {
        let (sk, pk) = key(1, "test-1");
        let (_, other) = key(2, "test-1");
        let (_, renamed) = key(1, "test-2");
        let fp = "1;/nix/store/aaa-x;sha256:abc;10;";
        let sig = sign(&sk, "test-1", fp);
        assert!(pk.verifies(fp, &sig));
        assert!(!other.verifies(fp, &sig), "another key of the same name");
        assert!(
            !renamed.verifies(fp, &sig),
            "the same key under another name"
        );
        assert!(
            !pk.verifies("1;/nix/store/aaa-x;sha256:abc;11;", &sig),
            "another size"
        );
        for bad in ["", "test-1", "test-1:", "test-1:AAAA", "test-1:!!"] {
            assert!(!pk.verifies(fp, bad), "{bad:?}");
        }
        // A signature with S + L (not canonical) is refused, as by libsodium.
        let mut raw = sk.sign(fp.as_bytes()).to_bytes();
        let l: [u8; 32] = [
            0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9,
            0xde, 0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
        ];
        let mut carry = 0u16;
        for (s, l) in raw[32..].iter_mut().zip(l) {
            let v = u16::from(*s) + u16::from(l) + carry;
            *s = v as u8;
            carry = v >> 8;
        }
        let b64 = base64::engine::general_purpose::STANDARD;
        assert!(!pk.verifies(fp, &format!("test-1:{}", b64.encode(raw))));
    }

    #[test]
    fn a_secret_key_signs_what_its_public_key_verifies() {
        let b64 = base64::engine::general_purpose::STANDARD;
        let seed = [7u8; 32];
        let key = ed25519_dalek::SigningKey::from_bytes(&seed);
        let mut bytes = seed.to_vec();
        bytes.extend_from_slice(key.verifying_key().as_bytes());
        let text = format!("ci-1:{}", b64.encode(&bytes));
        let sk: NixSecretKey = text.parse().unwrap();
        let sig = sk.sign("1;/nix/store/x;sha256:y;1;");
        assert!(sk.public().verifies("1;/nix/store/x;sha256:y;1;", &sig));
        assert!(!sk.public().verifies("1;/nix/store/x;sha256:y;2;", &sig));
        // The wrong public half, short, or no name: refused, and the error
        // never repeats the secret.
        bytes[40] ^= 1;
        let bad = format!("ci-1:{}", b64.encode(&bytes));
        let err = bad.parse::<NixSecretKey>().unwrap_err().to_string();
        assert!(!err.contains(&b64.encode(&bytes)), "{err}");
        for bad in [bad.as_str(), "ci-1:AAAA", "nocolon", ":AAAA"] {
            assert!(bad.parse::<NixSecretKey>().is_err(), "{bad}");
        }
    }
}
