//! The catalog's tables, driven directly.

use super::*;
use hypernar_feed::format::identity::PublisherSecret;
use hypernar_feed::format::narinfo::NarHash;
use hypernar_feed::format::record::{wrap_path_key, FeedDecl, FeedRole};

/// A path record of `path` in data feed 0, its key `[3; 32]`.
fn record_of(path: &StorePath) -> PathRecord {
    let key = PathKey([3; 32]);
    PathRecord {
        references: vec![],
        wrapped_key: wrap_path_key(&[9; 32], path, &key),
        store_path: path.clone(),
        nar_hash: NarHash([1; 32]),
        nar_size: 10,
        deriver: None,
        ca: None,
        sigs: vec![],
        data_feed: 0,
        first_block: 1,
        block_count: 1,
        segment_size: 4096,
        key_check: key.check(),
    }
}

#[test]
fn a_path_found_by_lookup_is_taken_with_the_data_feed_its_manifest_declares() {
    let p = Publishers::default();
    let secret = PublisherSecret::from_bytes([4; 32]);
    let id = secret.identity();
    p.add(id);
    let runs = FeedKey::from(secret.feed_signing_key("runs").verifying_key());
    p.set_runs_feed(&id, runs);
    let data = FeedDecl {
        id: 0,
        role: FeedRole::Data,
        name: "data/0".into(),
        public_key: secret.feed_signing_key("data/0").verifying_key().to_bytes(),
    };
    let manifest = Manifest {
        indexed_to: 10,
        runs: vec![],
        keys_indexed_to: 1,
        feeds: vec![data],
        web_seeds: vec![],
    };
    p.set_manifest(&id, ManifestState::At(5, Arc::new(manifest)));
    let path = StorePath::from_base_name(&format!("{:0>32}-x", 1)).unwrap();
    let key = PathKey([3; 32]);
    let record = record_of(&path);
    // The index's own declaration of data/0 was never read (it is in
    // the part in runs): the manifest's is used.
    let release = KeyRelease {
        index_seq: 7,
        store_path: path.clone(),
        key: key.0,
    };
    p.insert_found(&id, 7, record.clone(), None, Some(release));
    assert_eq!(p.path_by_hash(path.hash_part()), Some(path.clone()));
    assert!(p.lookup(&path).is_ok());
    // A record naming a feed nobody declared is not taken, nor found
    // by its hash.
    let other = StorePath::from_base_name(&format!("{:0>32}-y", 2)).unwrap();
    let stray = PathRecord {
        store_path: other.clone(),
        data_feed: 9,
        ..record
    };
    p.insert_found(&id, 8, stray, None, None);
    assert_eq!(p.path_by_hash(other.hash_part()), None);
}

#[tokio::test(start_paused = true)]
async fn a_follower_that_does_not_move_stops_making_misses_wait() {
    let p = Publishers::default();
    let id = PublisherSecret::from_bytes([4; 32]).identity();
    assert!(!p.settling(), "no publisher");
    p.add(id);
    assert!(!p.settling(), "a publisher whose follower never reported");
    let mut changed = p.subscribe();
    changed.mark_unchanged();
    p.follower_at(&id, Followed::Index, 1, 10, 1, false);
    assert!(
        changed.has_changed().unwrap(),
        "progress wakes waiting misses"
    );
    assert!(p.settling());
    tokio::time::advance(SETTLE_WAIT - std::time::Duration::from_millis(1)).await;
    // The same report again does not count as moving.
    changed.mark_unchanged();
    p.follower_at(&id, Followed::Index, 1, 10, 1, false);
    assert!(!changed.has_changed().unwrap());
    tokio::time::advance(std::time::Duration::from_millis(1)).await;
    assert!(!p.settling(), "stalled: misses are answered");
    // A record applied (between the follower's reports) is a move.
    let decl = FeedDecl {
        id: 0,
        role: FeedRole::Data,
        name: "data/0".into(),
        public_key: [7; 32],
    };
    p.apply(&id, 1, Record::Feed(decl));
    assert!(p.settling(), "a record applied");
    tokio::time::advance(SETTLE_WAIT).await;
    p.follower_at(&id, Followed::Index, 5, 10, 1, false);
    assert!(p.settling(), "moving again");
    p.follower_at(&id, Followed::Index, 10, 10, 1, false);
    assert!(!p.settling(), "caught up");
    // The key feed counts as well: a record whose key is in its part
    // not read yet is not answered "no key" while it is being read.
    p.follower_at(&id, Followed::Keys, 3, 10, 1, false);
    assert!(p.settling(), "keys behind");
    tokio::time::advance(SETTLE_WAIT).await;
    assert!(!p.settling(), "keys stalled");
    let release = KeyRelease {
        index_seq: 1,
        store_path: StorePath::from_base_name(&format!("{:0>32}-k", 1)).unwrap(),
        key: [5; 32],
    };
    p.add_key(&id, release, Some(3));
    assert!(p.settling(), "a key read is a move");
    p.follower_at(&id, Followed::Keys, 10, 10, 1, false);
    assert!(!p.settling(), "keys caught up");
}

#[test]
fn records_found_by_lookup_and_a_cut_tail_are_bounded_and_pinned_ones_kept() {
    let p = Publishers::default();
    let secret = PublisherSecret::from_bytes([4; 32]);
    let id = secret.identity();
    p.add(id);
    p.set_runs_feed(
        &id,
        FeedKey::from(secret.feed_signing_key("runs").verifying_key()),
    );
    let data = FeedDecl {
        id: 0,
        role: FeedRole::Data,
        name: "data/0".into(),
        public_key: secret.feed_signing_key("data/0").verifying_key().to_bytes(),
    };
    let manifest = |indexed_to| Manifest {
        indexed_to,
        runs: vec![],
        keys_indexed_to: 1,
        feeds: vec![data.clone()],
        web_seeds: vec![],
    };
    p.set_manifest(&id, ManifestState::At(5, Arc::new(manifest(10))));
    let path = |i: usize| StorePath::from_base_name(&format!("{i:0>32}-x")).unwrap();
    let record = |i: usize| record_of(&path(i));
    // Two paths in the tail (read by the follower), past block 10.
    p.apply(&id, 10, Record::Feed(data.clone()));
    p.apply(&id, 11, Record::Path(Box::new(record(1))));
    p.apply(&id, 12, Record::Path(Box::new(record(2))));
    // A cut puts them in a run: now they count as found, oldest first.
    p.set_manifest(&id, ManifestState::At(6, Arc::new(manifest(13))));
    // One found and pinned, then enough others to pass the bound.
    p.insert_found(&id, 3, record(3), None, None);
    p.keep(Arc::new([path(3)].into_iter().collect()));
    // (The pinned path leaves the count when its turn comes, and is
    // kept: one more than the bound pushes out the first of these.)
    for i in 0..=FOUND_MAX {
        p.insert_found(&id, 100 + i as u64, record(100 + i), None, None);
    }
    assert!(p.path_count() <= FOUND_MAX + 1, "{}", p.path_count());
    for gone in [1, 2, 100] {
        assert_eq!(p.path_by_hash(path(gone).hash_part()), None, "{gone}");
        assert!(p.find(&path(gone)).is_none(), "{gone}");
    }
    assert!(p.find(&path(3)).is_some(), "the pinned path was forgotten");
    let newest = path(100 + FOUND_MAX);
    assert_eq!(p.path_by_hash(newest.hash_part()), Some(newest));

    // A key the key follower read (the path's run entry had none) is
    // kept when its found record is forgotten: found again, the path
    // is served.
    p.insert_found(&id, 50, record(50), None, None);
    let release = KeyRelease {
        index_seq: 50,
        store_path: path(50),
        key: [3; 32],
    };
    p.add_key(&id, release, Some(7));
    // And a record the index follower applied is the tail's: a found
    // one's forgetting does not take it.
    p.insert_found(&id, 60, record(60), None, None);
    p.apply(&id, 20, Record::Path(Box::new(record(60))));
    for i in 0..=FOUND_MAX {
        p.insert_found(&id, 30_000 + i as u64, record(30_000 + i), None, None);
    }
    assert!(p.find(&path(50)).is_none(), "not forgotten");
    assert!(
        p.find(&path(60)).is_some(),
        "the tail's record was forgotten"
    );
    p.insert_found(&id, 50, record(50), None, None);
    let got = p.lookup(&path(50));
    assert!(
        got.is_ok(),
        "the followed key was forgotten: {:?}",
        got.err()
    );
}

#[test]
fn uses_are_kept_for_paths_an_index_in_runs_holds_no_record_of_and_capped() {
    let p = Publishers::default();
    let secret = PublisherSecret::from_bytes([4; 32]);
    let id = secret.identity();
    p.add(id);
    let path = |i: usize| StorePath::from_base_name(&format!("{i:0>32}-x")).unwrap();
    // Read whole, a path is listed: a use of an unlisted one goes.
    let decl = FeedDecl {
        id: 0,
        role: FeedRole::Data,
        name: "data/0".into(),
        public_key: [7; 32],
    };
    p.apply(&id, 1, Record::Feed(decl));
    let record = record_of(&path(1));
    p.apply(&id, 2, Record::Path(Box::new(record)));
    p.touch(&path(1));
    p.touch(&path(2));
    let kept: Vec<StorePath> = p.recent().unwrap().into_iter().map(|u| u.0).collect();
    assert_eq!(kept, vec![path(1)]);
    // In runs, the catalog holds part of what is listed: kept.
    p.set_runs_feed(
        &id,
        FeedKey::from(secret.feed_signing_key("runs").verifying_key()),
    );
    p.touch(&path(2));
    assert_eq!(p.recent().unwrap().len(), 2);
    // At most MAX_ENTRIES, the newest.
    let max = crate::recent::MAX_ENTRIES;
    p.remember_used((0..max + 5).map(|i| (path(i + 10), i as u64)).collect());
    p.touch(&path(3));
    let uses = p.recent().unwrap();
    assert!(uses.len() <= max, "{}", uses.len());
    assert!(uses.len() >= max - 1, "{}", uses.len());
    assert!(uses.iter().any(|u| u.0 == path(3)));
    assert!(!uses.iter().any(|u| u.0 == path(10)), "the oldest is kept");
}

#[test]
fn a_walk_widens_the_gate_as_it_goes_and_its_end_sets_it_exactly() {
    let p = Publishers::default();
    let path = |i: usize| StorePath::from_base_name(&format!("{i:0>32}-x")).unwrap();
    let set = |v: &[usize]| v.iter().map(|&i| path(i)).collect::<HashSet<_>>();
    // No gate: widening makes none.
    p.widen_gate(&set(&[1]));
    assert!(p.admits(&path(9)));
    p.set_gate(Some(set(&[1])));
    assert!(!p.admits(&path(2)));
    p.widen_gate(&set(&[2]));
    assert!(p.admits(&path(1)) && p.admits(&path(2)));
    assert!(!p.admits(&path(3)));
    p.set_gate(Some(set(&[2])));
    assert!(!p.admits(&path(1)), "the walk's end narrows it exactly");
}

#[test]
fn a_path_is_being_read_while_any_of_its_readers_lives() {
    let p = Publishers::default();
    let path = StorePath::from_base_name(&format!("{:0>32}-x", 1)).unwrap();
    assert!(!p.is_being_read(&path));
    let a = p.reading(&path);
    let b = p.reading(&path);
    drop(a);
    assert!(p.is_being_read(&path));
    drop(b);
    assert!(!p.is_being_read(&path));
    assert!(p.reading.lock().unwrap().is_empty());
}

/// A group member never makes a miss wait. One that kept nothing has an
/// index nobody holds; the other members that follow it too are its
/// "peers" on this node's hub. Seen in the group benchmark: with three
/// members, every miss waited the whole SETTLE_WAIT. A trusted publisher
/// in the same state still waits.
#[tokio::test(start_paused = true)]
async fn a_group_member_whose_index_nobody_holds_makes_no_miss_wait() {
    let p = Publishers::default();
    let member = PublisherSecret::from_bytes([5; 32]).identity();
    p.add_vouched(member, Arc::new(Vec::new()));
    p.follower_at(&member, Followed::Index, 0, 0, 2, false);
    p.follower_at(&member, Followed::Keys, 0, 0, 2, false);
    assert!(!p.settling(), "an empty member index made a miss wait");
    assert!(
        !p.unheard_of(),
        "a member is met, never waited for at start"
    );
    // Nor when it holds something: a hostile member could drip its index.
    p.follower_at(&member, Followed::Index, 1, 5, 2, false);
    assert!(!p.settling());
    // A trusted publisher told of by a peer, length not yet known: waits.
    let trusted = PublisherSecret::from_bytes([6; 32]).identity();
    let q = Publishers::default();
    q.add(trusted);
    q.follower_at(&trusted, Followed::Index, 0, 0, 1, false);
    assert!(q.settling());
}

/// A fresh node's index arrives first; its key feed's hub starts once the
/// index declares it, and its follower reports from past the header before
/// any peer has told its length: that key feed is not heard of yet, so a
/// node still reaching its peers waits rather than answer "no key".
#[tokio::test(start_paused = true)]
async fn a_key_feed_no_peer_has_told_of_is_unheard_of_though_its_follower_started() {
    let p = Publishers::default();
    let id = PublisherSecret::from_bytes([7; 32]).identity();
    p.add(id);
    p.follower_at(&id, Followed::Index, 5, 5, 1, false);
    p.follower_at(&id, Followed::Keys, 1, 0, 0, false);
    assert!(p.unheard_of());
    p.follower_at(&id, Followed::Keys, 1, 3, 1, false);
    assert!(!p.unheard_of());
}
