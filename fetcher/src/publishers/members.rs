//! Group members among the publishers (`crate::groups`): a member's node is
//! followed like a publisher but trusted for nothing. Only its paths that
//! one of the node's trusted Nix keys signed are taken (the group grants
//! reading, not trust), and each NAR is checked whole before a byte of it
//! is served (`Sources::check_whole`).

use std::collections::HashSet;
use std::sync::Arc;

use hypernar_feed::format::identity::Identity;
use hypernar_feed::format::nixkey::{record_signed_by, NixPublicKey};
use hypernar_feed::format::record::PathRecord;
use hypernar_feed::format::storepath::StorePath;

use super::Publishers;

/// What the catalog keeps of a member, beside its index.
#[derive(Debug)]
pub(super) struct Member {
    /// A path is taken only if one of these signed it.
    keys: Arc<Vec<NixPublicKey>>,
    /// Paths whose NAR did not check: never taken again.
    refused: HashSet<StorePath>,
    /// Paths whose NAR checked whole, with where its blocks are (a record
    /// republished elsewhere is checked again): its blocks are then
    /// verified against the same signed tree, so it is not read whole
    /// again.
    checked: HashSet<(StorePath, u32, u64)>,
}

fn at(record: &PathRecord) -> (StorePath, u32, u64) {
    (
        record.store_path.clone(),
        record.data_feed,
        record.first_block,
    )
}

impl Member {
    /// Whether the member's record of a path is taken.
    pub(super) fn takes(&self, record: &PathRecord) -> bool {
        !self.refused.contains(&record.store_path) && record_signed_by(record, &self.keys).is_some()
    }

    /// Whether this record's NAR has checked whole already.
    pub(super) fn is_checked(&self, record: &PathRecord) -> bool {
        self.checked.contains(&at(record))
    }
}

impl Publishers {
    /// Adds a group member's node (unless its identity is trusted already):
    /// only its paths that one of `keys` signed are taken.
    pub(crate) fn add_vouched(&self, id: Identity, keys: Arc<Vec<NixPublicKey>>) {
        self.add_as(
            id,
            Some(Member {
                keys,
                refused: HashSet::new(),
                checked: HashSet::new(),
            }),
        );
    }

    /// A group member's path whose NAR checked whole (see `checked`).
    pub(crate) fn mark_checked(&self, id: &Identity, record: &PathRecord) {
        let mut by_id = self.by_id.lock().expect("publishers lock");
        if let Some(k) = by_id.get_mut(&id.to_bytes()) {
            let listed = k.index.paths.contains_key(&record.store_path);
            if let (Some(m), true) = (k.member.as_mut(), listed) {
                m.checked.insert(at(record));
            }
        }
    }

    /// Drops a group member's path whose NAR did not check against its
    /// signed narinfo, for good (a trusted publisher's is never dropped).
    pub(crate) fn refuse(&self, id: &Identity, path: &StorePath) {
        let mut by_id = self.by_id.lock().expect("publishers lock");
        let Some(k) = by_id.get_mut(&id.to_bytes()) else {
            return;
        };
        let Some(m) = k.member.as_mut() else {
            return;
        };
        m.refused.insert(path.clone());
        k.index.paths.remove(path);
        k.index.listings.remove(path);
        k.found.pop(path);
        drop(by_id);
        self.bump_content();
    }
}
