//! Publisher keys and the feeds derived from them.
//!
//! A publisher holds one 32-byte primary secret. Every feed it writes has an
//! ed25519 key pair derived from that secret and the feed's name, so the
//! publisher needs to keep (and back up) only the one secret:
//!
//! ```text
//! feed seed(name) = BLAKE2b-256(key = primary, "hypernar/v1/feed/" || name)
//! wrap key        = BLAKE2b-256(key = primary, "hypernar/v1/wrap")
//! ```
//!
//! The public key of the feed named [`INDEX_FEED`] is the publisher's
//! identity, written `hypernar1:<nix32(public key || 2-byte checksum)>`.

use std::fmt;
use std::str::FromStr;

use blake2::digest::{consts::U32, Mac};
use blake2::{Blake2b, Blake2bMac, Digest};
use ed25519_dalek::{SigningKey, VerifyingKey};

use super::nixbase32;

/// Name of the index feed; its public key is the publisher identity.
pub const INDEX_FEED: &str = "index";
/// Name of the first data feed.
pub const DATA_FEED_0: &str = "data/0";
/// Name of the key feed listed in the index (keys released to everyone).
pub const PUBLIC_KEYS_FEED: &str = "keys/public";
/// Name of the runs feed: the index's sorted runs and their manifests.
pub const RUNS_FEED: &str = "runs";
/// A follower's generations feed (`generation.rs`).
pub const GENERATIONS_FEED: &str = "generations";
/// Prefix of key feeds for an audience (not listed in the index).
pub const AUDIENCE_KEYS_PREFIX: &str = "keys/audience/";

const IDENTITY_PREFIX: &str = "hypernar1:";
const SECRET_PREFIX: &str = "hypernar-secret1:";
const FEED_KEY_PREFIX: &str = "hypernar-feed1:";
const SET_PREFIX: &str = "hypernar-set1:";
/// Feed name prefix of safe-path sets (`sets/<name>`).
pub const SETS_PREFIX: &str = "sets/";

/// Errors reading identities and key files.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("expected text starting with {expected:?}")]
    Prefix { expected: &'static str },
    #[error("malformed key text: {0}")]
    Encoding(#[from] nixbase32::DecodeError),
    #[error("checksum mismatch: the key text has a typo or was cut short")]
    Checksum,
    #[error("not a valid ed25519 public key")]
    NotAPoint,
    #[error("key file holds no `{SECRET_PREFIX}` line")]
    NoSecretLine,
}

fn checksum(tag: &str, key: &[u8; 32]) -> [u8; 2] {
    let mut h = Blake2b::<U32>::new();
    h.update(tag.as_bytes());
    h.update(key);
    let d = h.finalize();
    [d[0], d[1]]
}

pub(crate) fn encode_key(prefix: &str, key: &[u8; 32]) -> String {
    let mut buf = [0u8; 34];
    buf[..32].copy_from_slice(key);
    buf[32..].copy_from_slice(&checksum(prefix, key));
    format!("{prefix}{}", nixbase32::encode(&buf))
}

pub(crate) fn decode_key(prefix: &'static str, text: &str) -> Result<[u8; 32], IdentityError> {
    let body = text
        .trim()
        .strip_prefix(prefix)
        .ok_or(IdentityError::Prefix { expected: prefix })?;
    let buf: [u8; 34] = nixbase32::decode(body)?;
    let mut key = [0u8; 32];
    key.copy_from_slice(&buf[..32]);
    if buf[32..] != checksum(prefix, &key) {
        return Err(IdentityError::Checksum);
    }
    Ok(key)
}

pub(crate) fn keyed_blake2b(key: &[u8; 32], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = <Blake2bMac<U32> as Mac>::new_from_slice(key).expect("32-byte key fits BLAKE2b");
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

/// A publisher's primary secret.
#[derive(Clone)]
pub struct PublisherSecret([u8; 32]);

impl PublisherSecret {
    /// A fresh random secret from the OS.
    pub fn generate() -> Self {
        let mut seed = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut seed);
        PublisherSecret(seed)
    }

    /// Wraps raw secret bytes.
    pub fn from_bytes(seed: [u8; 32]) -> Self {
        PublisherSecret(seed)
    }

    /// The signing key of the feed called `name`.
    pub fn feed_signing_key(&self, name: &str) -> SigningKey {
        SigningKey::from_bytes(&keyed_blake2b(
            &self.0,
            &[b"hypernar/v1/feed/", name.as_bytes()],
        ))
    }

    /// The publisher identity (the index feed's public key).
    pub fn identity(&self) -> Identity {
        Identity(self.feed_signing_key(INDEX_FEED).verifying_key())
    }

    /// The key that wraps per-path keys inside index records.
    pub fn wrap_key(&self) -> [u8; 32] {
        keyed_blake2b(&self.0, &[b"hypernar/v1/wrap"])
    }

    /// The key file text: comment lines, then the secret line.
    pub fn to_key_file(&self) -> String {
        format!(
            "# hypernar publisher key. Keep it secret: it signs every feed of this\n\
             # publisher and unwraps every per-path key it has published.\n\
             # identity: {}\n{}\n",
            self.identity(),
            encode_key(SECRET_PREFIX, &self.0)
        )
    }

    /// Parses key file text (comment and blank lines are skipped).
    pub fn from_key_file(text: &str) -> Result<Self, IdentityError> {
        let line = text
            .lines()
            .map(str::trim)
            .find(|l| l.starts_with(SECRET_PREFIX))
            .ok_or(IdentityError::NoSecretLine)?;
        Ok(PublisherSecret(decode_key(SECRET_PREFIX, line)?))
    }
}

impl fmt::Debug for PublisherSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "PublisherSecret(<redacted>, identity {})",
            self.identity()
        )
    }
}

/// A publisher identity: the public key of its index feed.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Identity(pub VerifyingKey);

impl Identity {
    /// Raw public key bytes.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// From raw public key bytes.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, IdentityError> {
        VerifyingKey::from_bytes(bytes)
            .map(Identity)
            .map_err(|_| IdentityError::NotAPoint)
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&encode_key(IDENTITY_PREFIX, &self.to_bytes()))
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Identity({self})")
    }
}

impl FromStr for Identity {
    type Err = IdentityError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Identity::from_bytes(&decode_key(IDENTITY_PREFIX, s)?)
    }
}

/// A safe-path set: the public key of its feed (`sets/<name>` of its
/// maintainer's key), written `hypernar-set1:…`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SetId(pub VerifyingKey);

impl SetId {
    /// Raw public key bytes.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }
}

impl fmt::Display for SetId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&encode_key(SET_PREFIX, &self.to_bytes()))
    }
}

impl fmt::Debug for SetId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SetId({self})")
    }
}

impl FromStr for SetId {
    type Err = IdentityError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        VerifyingKey::from_bytes(&decode_key(SET_PREFIX, s)?)
            .map(SetId)
            .map_err(|_| IdentityError::NotAPoint)
    }
}

/// A feed's public key, checked to be a valid ed25519 key once, where it
/// enters (a record, a token, a header): past that, code holds this and
/// never parses bytes again. Shown as the hex the data directory and the
/// logs use for feeds.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct FeedKey(VerifyingKey);

impl FeedKey {
    /// From raw public key bytes, if they are a valid key.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, IdentityError> {
        VerifyingKey::from_bytes(bytes)
            .map(FeedKey)
            .map_err(|_| IdentityError::NotAPoint)
    }

    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.0
    }
}

impl From<VerifyingKey> for FeedKey {
    fn from(key: VerifyingKey) -> Self {
        FeedKey(key)
    }
}

impl fmt::Display for FeedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.to_bytes() {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for FeedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FeedKey({self})")
    }
}

/// Text form of any feed's public key (used for audience key-feed tokens).
pub fn feed_key_text(key: &VerifyingKey) -> String {
    encode_key(FEED_KEY_PREFIX, &key.to_bytes())
}

/// Parses [`feed_key_text`] output.
pub fn parse_feed_key_text(text: &str) -> Result<VerifyingKey, IdentityError> {
    VerifyingKey::from_bytes(&decode_key(FEED_KEY_PREFIX, text)?)
        .map_err(|_| IdentityError::NotAPoint)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_ids_round_trip_and_are_not_identities() {
        let secret = PublisherSecret::from_bytes([9; 32]);
        let set = SetId(secret.feed_signing_key("sets/lab").verifying_key());
        let text = set.to_string();
        assert!(text.starts_with("hypernar-set1:"), "{text}");
        assert_eq!(text.parse::<SetId>().unwrap(), set);
        // The prefix is part of the checksum: one kind never reads as another.
        assert!(text.parse::<Identity>().is_err());
        assert!(secret.identity().to_string().parse::<SetId>().is_err());
        let mut typo = text.clone();
        typo.pop();
        typo.push(if text.ends_with('0') { '1' } else { '0' });
        assert_eq!(typo.parse::<SetId>(), Err(IdentityError::Checksum));
    }

    #[test]
    fn identity_text_round_trips_and_catches_typos() {
        let secret = PublisherSecret::from_bytes([7; 32]);
        let id = secret.identity();
        let text = id.to_string();
        assert!(text.starts_with("hypernar1:"));
        assert_eq!(text.len(), "hypernar1:".len() + 55);
        assert_eq!(text.parse::<Identity>().unwrap(), id);
        // Change one digit: the checksum catches it.
        let mut typo = text.clone().into_bytes();
        let i = typo.len() - 10;
        typo[i] = if typo[i] == b'0' { b'1' } else { b'0' };
        let typo = String::from_utf8(typo).unwrap();
        assert!(typo.parse::<Identity>().is_err());
        assert!("hypernar2:abc".parse::<Identity>().is_err());
    }

    #[test]
    fn derivation_is_stable_and_separates_names() {
        let secret = PublisherSecret::from_bytes([7; 32]);
        let a = secret.feed_signing_key(DATA_FEED_0).verifying_key();
        let b = secret.feed_signing_key(PUBLIC_KEYS_FEED).verifying_key();
        assert_ne!(a, b);
        assert_eq!(a, secret.feed_signing_key(DATA_FEED_0).verifying_key());
        assert_ne!(
            secret.wrap_key(),
            secret.feed_signing_key(INDEX_FEED).to_bytes()
        );
        // Pinned vector: a change here breaks every published identity.
        assert_eq!(
            hex::encode(secret.feed_signing_key(INDEX_FEED).to_bytes()),
            hex::encode(keyed_blake2b(&[7; 32], &[b"hypernar/v1/feed/index"]))
        );
    }

    #[test]
    fn key_file_round_trips() {
        let secret = PublisherSecret::generate();
        let text = secret.to_key_file();
        let back = PublisherSecret::from_key_file(&text).unwrap();
        assert_eq!(back.identity(), secret.identity());
        assert_eq!(
            PublisherSecret::from_key_file("# nothing\n").unwrap_err(),
            IdentityError::NoSecretLine
        );
    }
}
