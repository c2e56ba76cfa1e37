//! Groups of machines that share what they pulled through (`serve
//! --group SECRET`): the secret's text form, what is derived from it, and
//! the card a member hands another. Pure and bounded: a card from a peer
//! is parsed here.
//!
//! Everything public about a group is derived from its 32-byte secret by
//! keyed BLAKE2b, so the secret itself never leaves a member:
//!
//! ```text
//! meeting feed seed = BLAKE2b-256(key = secret, msg = "hypernar/v1/group/feed")
//! group id          = BLAKE2b-256(key = secret, msg = "hypernar/v1/group/id")[..8]
//! ```
//!
//! Every member writes the same one-block *meeting feed* (its header is
//! fixed, ed25519 signatures are deterministic, so every member's copy is
//! the same feed). Two nodes open its channel on a connection only if both
//! know its public key: hypercore's channel capability, a hash of the Noise
//! handshake and the key, proves that without showing it, so a non-member
//! learns neither the key nor the cards. On that channel each member sends
//! its [`GroupCard`]: its node identity and the key of its key feed for
//! this group's audience (`keys/audience/group-<id>`), the only place its
//! path keys go.

use std::fmt;
use std::str::FromStr;

use ed25519_dalek::{SigningKey, VerifyingKey};

use super::identity::{decode_key, encode_key, keyed_blake2b, Identity, IdentityError};
use super::record::{FeedHeader, FeedRole};

const GROUP_PREFIX: &str = "hypernar-group1:";

/// The extension message name a card travels under, on the meeting
/// feed's channel.
pub const CARD_EXTENSION: &str = "hypernar/group/v1/card";

/// The meeting feed's name in its header.
pub const MEETING_FEED: &str = "group";

/// A card's length on the wire: version, node identity, key feed key,
/// signature.
pub const CARD_LEN: usize = 1 + 32 + 32 + 64;

const CARD_VERSION: u8 = 1;

/// A group's shared secret.
#[derive(Clone, PartialEq, Eq)]
pub struct GroupSecret([u8; 32]);

/// The short public name of a group: it names the members' key feeds for
/// it and shows in `status`; it says nothing of the secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupId(pub [u8; 8]);

impl fmt::Display for GroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl GroupSecret {
    /// A fresh random secret from the OS.
    pub fn generate() -> Self {
        let mut seed = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut seed);
        GroupSecret(seed)
    }

    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        GroupSecret(bytes)
    }

    /// The text a user passes to `serve --group` (and keeps secret).
    pub fn to_text(&self) -> String {
        encode_key(GROUP_PREFIX, &self.0)
    }

    /// The meeting feed's signing key (every member holds it).
    pub fn meeting_signing_key(&self) -> SigningKey {
        SigningKey::from_bytes(&keyed_blake2b(&self.0, &[b"hypernar/v1/group/feed"]))
    }

    /// The meeting feed's public key.
    pub fn meeting_key(&self) -> VerifyingKey {
        self.meeting_signing_key().verifying_key()
    }

    /// The meeting feed's block 0, the same at every member.
    pub fn meeting_header(&self) -> FeedHeader {
        FeedHeader::new(FeedRole::Group, self.meeting_key().to_bytes(), MEETING_FEED)
    }

    pub fn id(&self) -> GroupId {
        let d = keyed_blake2b(&self.0, &[b"hypernar/v1/group/id"]);
        let mut id = [0u8; 8];
        id.copy_from_slice(&d[..8]);
        GroupId(id)
    }

    /// The audience a member releases its path keys to for this group
    /// (`publish`'s audience names: `keys/audience/<this>`).
    pub fn audience(&self) -> String {
        format!("group-{}", self.id())
    }
}

impl FromStr for GroupSecret {
    type Err = IdentityError;

    fn from_str(s: &str) -> Result<Self, IdentityError> {
        decode_key(GROUP_PREFIX, s).map(GroupSecret)
    }
}

impl fmt::Debug for GroupSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GroupSecret(<redacted>, id {})", self.id())
    }
}

/// What a member tells another on the meeting feed's channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupCard {
    /// The member's node identity (its index's public key).
    pub node: Identity,
    /// The public key of its key feed for this group's audience.
    pub keys: VerifyingKey,
}

/// Why a card was not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CardError {
    #[error("a group card is {CARD_LEN} bytes, not {0}")]
    Length(usize),
    #[error("group card version {0} is not known (this build reads version {CARD_VERSION})")]
    Version(u8),
    #[error("a group card names a key that is not an ed25519 public key")]
    NotAPoint,
    #[error("a group card's signature does not verify (not made by that node for this group and this connection)")]
    Signature,
}

/// What a card's signature covers: the group (its meeting key), the card,
/// and the Noise key of the connection's sender, so a card cannot be sent
/// for an identity by another node, nor replayed on another connection by
/// a node that is not its maker.
fn card_message(
    meeting: &VerifyingKey,
    node: &Identity,
    keys: &VerifyingKey,
    noise: &[u8; 32],
) -> Vec<u8> {
    let mut m = Vec::with_capacity(22 + 4 * 32);
    m.extend_from_slice(b"hypernar/v1/group/card");
    m.extend_from_slice(meeting.as_bytes());
    m.extend_from_slice(&node.to_bytes());
    m.extend_from_slice(keys.as_bytes());
    m.extend_from_slice(noise);
    m
}

impl GroupCard {
    /// The card as sent by the node whose Noise key is `noise`, signed by
    /// its index key `node_key` (whose public half is `self.node`).
    pub fn signed(
        &self,
        meeting: &VerifyingKey,
        noise: &[u8; 32],
        node_key: &SigningKey,
    ) -> Vec<u8> {
        use ed25519_dalek::Signer;
        debug_assert_eq!(node_key.verifying_key(), self.node.0);
        let sig = node_key.sign(&card_message(meeting, &self.node, &self.keys, noise));
        let mut out = Vec::with_capacity(CARD_LEN);
        out.push(CARD_VERSION);
        out.extend_from_slice(&self.node.to_bytes());
        out.extend_from_slice(self.keys.as_bytes());
        out.extend_from_slice(&sig.to_bytes());
        out
    }

    /// Reads a card that came on a connection from the node whose Noise
    /// key is `noise`, for the group of `meeting`: its signature must be
    /// the named node's over exactly that.
    pub fn open(bytes: &[u8], meeting: &VerifyingKey, noise: &[u8; 32]) -> Result<Self, CardError> {
        if bytes.len() != CARD_LEN {
            return Err(CardError::Length(bytes.len()));
        }
        if bytes[0] != CARD_VERSION {
            return Err(CardError::Version(bytes[0]));
        }
        let node: [u8; 32] = bytes[1..33].try_into().expect("32 bytes");
        let keys: [u8; 32] = bytes[33..65].try_into().expect("32 bytes");
        let sig: [u8; 64] = bytes[65..129].try_into().expect("64 bytes");
        let card = GroupCard {
            node: Identity::from_bytes(&node).map_err(|_| CardError::NotAPoint)?,
            keys: VerifyingKey::from_bytes(&keys).map_err(|_| CardError::NotAPoint)?,
        };
        card.node
            .0
            .verify_strict(
                &card_message(meeting, &card.node, &card.keys, noise),
                &ed25519_dalek::Signature::from_bytes(&sig),
            )
            .map_err(|_| CardError::Signature)?;
        Ok(card)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::identity::PublisherSecret;

    #[test]
    fn a_secret_round_trips_and_a_typo_is_caught() {
        let s = GroupSecret::from_bytes([3; 32]);
        let text = s.to_text();
        assert!(text.starts_with("hypernar-group1:"), "{text}");
        assert_eq!(text.parse::<GroupSecret>().unwrap(), s);
        let mut typo = text.clone().into_bytes();
        let last = typo.len() - 1;
        typo[last] = if typo[last] == b'0' { b'1' } else { b'0' };
        assert!(String::from_utf8(typo)
            .unwrap()
            .parse::<GroupSecret>()
            .is_err());
        // Another kind of key never reads as a group secret.
        let id = PublisherSecret::from_bytes([3; 32]).identity().to_string();
        assert!(id.parse::<GroupSecret>().is_err());
        assert!(
            !format!("{s:?}").contains(&text[16..]),
            "Debug shows no secret"
        );
    }

    #[test]
    fn what_is_derived_differs_per_secret_and_is_stable() {
        let a = GroupSecret::from_bytes([1; 32]);
        let b = GroupSecret::from_bytes([2; 32]);
        assert_ne!(a.meeting_key(), b.meeting_key());
        assert_ne!(a.id(), b.id());
        assert_eq!(a.meeting_key(), a.clone().meeting_key());
        assert_eq!(a.meeting_header(), a.clone().meeting_header());
        // The id and the feed key are not the secret, nor each other.
        assert_ne!(&a.meeting_key().to_bytes()[..8], &a.id().0);
        assert_ne!(a.meeting_key().to_bytes(), [1; 32]);
        let audience = a.audience();
        assert!(
            audience.starts_with("group-") && audience.len() == 22,
            "{audience}"
        );
    }

    #[test]
    fn a_card_opens_only_for_its_group_its_maker_and_its_connection() {
        let maker = PublisherSecret::from_bytes([5; 32]);
        let node_key = maker.feed_signing_key(crate::format::identity::INDEX_FEED);
        let keys = maker.feed_signing_key("keys/audience/x").verifying_key();
        let card = GroupCard {
            node: maker.identity(),
            keys,
        };
        let meeting = GroupSecret::from_bytes([1; 32]).meeting_key();
        let noise = [9u8; 32];
        let bytes = card.signed(&meeting, &noise, &node_key);
        assert_eq!(bytes.len(), CARD_LEN);
        assert_eq!(GroupCard::open(&bytes, &meeting, &noise), Ok(card));
        // Another group, another connection's sender: refused.
        let other = GroupSecret::from_bytes([2; 32]).meeting_key();
        assert_eq!(
            GroupCard::open(&bytes, &other, &noise),
            Err(CardError::Signature)
        );
        assert_eq!(
            GroupCard::open(&bytes, &meeting, &[8; 32]),
            Err(CardError::Signature)
        );
        // A card for someone else's identity, signed by another key.
        let forger = PublisherSecret::from_bytes([6; 32]);
        let mut forged = GroupCard {
            node: forger.identity(),
            keys,
        }
        .signed(&meeting, &noise, &forger.feed_signing_key("index"));
        forged[1..33].copy_from_slice(&maker.identity().to_bytes());
        assert_eq!(
            GroupCard::open(&forged, &meeting, &noise),
            Err(CardError::Signature)
        );
        // Any byte changed breaks it.
        for i in [1, 40, 100, 128] {
            let mut b = bytes.clone();
            b[i] ^= 1;
            assert!(GroupCard::open(&b, &meeting, &noise).is_err(), "byte {i}");
        }
        assert_eq!(
            GroupCard::open(&bytes[..128], &meeting, &noise),
            Err(CardError::Length(128))
        );
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(
            GroupCard::open(&longer, &meeting, &noise),
            Err(CardError::Length(130))
        );
        let mut v2 = bytes.clone();
        v2[0] = 2;
        assert_eq!(
            GroupCard::open(&v2, &meeting, &noise),
            Err(CardError::Version(2))
        );
        assert_eq!(
            GroupCard::open(&[], &meeting, &noise),
            Err(CardError::Length(0))
        );
    }
}
