//! Groups of machines (`serve --group SECRET`): the members this node has
//! met, and what it does when it meets one (docs/protocol.md, "Groups").
//!
//! A member is met on a connection whose meeting-feed channel opened (both
//! sides proved they know the group's meeting key), when its card arrives
//! there. From a card the node follows the member's index and its key feed
//! for the group, as it follows a trusted publisher's — but the member is
//! trusted for nothing: `Publishers::add_vouched` takes only the member's
//! paths that a key of `--trusted-public-key` signed, and the HTTP front
//! checks each such NAR whole before serving a byte of it.

use std::collections::BTreeMap;
use std::sync::Mutex;

use hypernar_feed::format::group::{GroupCard, GroupId, GroupSecret};
use hypernar_feed::format::identity::Identity;

/// The most members a node follows per group: a card past that is not
/// taken (each member is an index and a key feed replicated).
pub const MAX_MEMBERS: usize = 256;

/// A group this node is a member of.
#[derive(Debug, Clone)]
pub struct Membership {
    pub secret: GroupSecret,
    /// What this node tells members: its node identity and its key feed
    /// for the group, and the identity's signing key the card is signed
    /// with. `None` when it keeps nothing (`--no-keep`): it then reads the
    /// members' paths and offers none.
    pub card: Option<(GroupCard, ed25519_dalek::SigningKey)>,
}

/// A member met, for `status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub node: Identity,
    /// Milliseconds since the epoch when its card first came.
    pub since_ms: u64,
}

/// One group, for `status`.
#[derive(Debug, Clone)]
pub struct GroupStatus {
    pub id: GroupId,
    /// Whether this node offers its own kept paths to the group.
    pub offers: bool,
    pub members: Vec<Member>,
}

/// What a node knows of its groups.
#[derive(Debug, Default)]
pub struct Groups {
    groups: Mutex<BTreeMap<GroupId, Entry>>,
}

#[derive(Debug)]
struct Entry {
    /// This node hands members a card.
    offers: bool,
    /// Members met, by node identity.
    members: BTreeMap<[u8; 32], Member>,
}

/// What to do with a card that came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Met {
    /// A member not met before: follow it.
    New,
    /// Met already (on another connection, or before a reconnect).
    Known,
    /// The group has [`MAX_MEMBERS`] already.
    Full,
    /// The card names this node itself.
    Itself,
}

impl Groups {
    pub(crate) fn add(&self, m: &Membership) {
        self.groups
            .lock()
            .expect("groups lock")
            .entry(m.secret.id())
            .or_insert_with(|| Entry {
                offers: m.card.is_some(),
                members: BTreeMap::new(),
            });
    }

    /// Takes in a card of group `id`; `me` is this node's own identity.
    pub(crate) fn meet(
        &self,
        id: GroupId,
        card: &GroupCard,
        me: Option<Identity>,
        now_ms: u64,
    ) -> Met {
        if me == Some(card.node) {
            return Met::Itself;
        }
        let mut groups = self.groups.lock().expect("groups lock");
        let Some(Entry { members, .. }) = groups.get_mut(&id) else {
            return Met::Full;
        };
        let key = card.node.to_bytes();
        if members.contains_key(&key) {
            return Met::Known;
        }
        if members.len() >= MAX_MEMBERS {
            return Met::Full;
        }
        members.insert(
            key,
            Member {
                node: card.node,
                since_ms: now_ms,
            },
        );
        Met::New
    }

    /// Forgets a member (following it failed: its next card is taken).
    pub(crate) fn forget(&self, id: GroupId, node: &Identity) {
        if let Some(e) = self.groups.lock().expect("groups lock").get_mut(&id) {
            e.members.remove(&node.to_bytes());
        }
    }

    /// Every group and the members met, for `status`.
    pub fn status(&self) -> Vec<GroupStatus> {
        self.groups
            .lock()
            .expect("groups lock")
            .iter()
            .map(|(id, e)| GroupStatus {
                id: *id,
                offers: e.offers,
                members: e.members.values().cloned().collect(),
            })
            .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.groups.lock().expect("groups lock").is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hypernar_feed::format::identity::PublisherSecret;

    fn card(seed: u8) -> GroupCard {
        let s = PublisherSecret::from_bytes([seed; 32]);
        GroupCard {
            node: s.identity(),
            keys: s.feed_signing_key("keys/audience/g").verifying_key(),
        }
    }

    #[test]
    fn a_member_is_new_once_and_the_node_itself_never() {
        let g = Groups::default();
        let m = Membership {
            secret: GroupSecret::from_bytes([1; 32]),
            card: Some((
                card(9),
                PublisherSecret::from_bytes([9; 32]).feed_signing_key("index"),
            )),
        };
        g.add(&m);
        let id = m.secret.id();
        let me = Some(card(9).node);
        assert_eq!(g.meet(id, &card(9), me, 1), Met::Itself);
        assert_eq!(g.meet(id, &card(2), me, 1), Met::New);
        assert_eq!(g.meet(id, &card(2), me, 2), Met::Known);
        // A group this node is not in takes no card.
        let other = GroupSecret::from_bytes([2; 32]).id();
        assert_eq!(g.meet(other, &card(3), me, 1), Met::Full);
        g.forget(id, &card(2).node);
        assert_eq!(
            g.meet(id, &card(2), me, 3),
            Met::New,
            "forgotten, met again"
        );
        let s = g.status();
        assert_eq!(s.len(), 1);
        assert!(s[0].offers);
        assert_eq!(
            s[0].members,
            vec![Member {
                node: card(2).node,
                since_ms: 3
            }]
        );
    }

    #[test]
    fn a_group_takes_at_most_max_members() {
        let g = Groups::default();
        let m = Membership {
            secret: GroupSecret::from_bytes([1; 32]),
            card: None,
        };
        g.add(&m);
        let id = m.secret.id();
        let mut new = 0;
        for i in 0..(MAX_MEMBERS + 10) {
            let mut seed = [0u8; 32];
            seed[..8].copy_from_slice(&(i as u64).to_le_bytes());
            let c = GroupCard {
                node: PublisherSecret::from_bytes(seed).identity(),
                keys: card(1).keys,
            };
            if g.meet(id, &c, None, 0) == Met::New {
                new += 1;
            }
        }
        assert_eq!(new, MAX_MEMBERS);
        assert!(!g.status()[0].offers);
    }
}
