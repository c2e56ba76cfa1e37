//! Reopening feeds across hypercore's 32 768-block bitfield pages (the
//! bitfield patch in vendor/hypercore/HYPERNAR-PATCH.md): before it, any
//! feed past its first 4 KiB bitfield page panicked on open, and a replica
//! whose bitfield fit one page claimed blocks of later pages it never held.

use super::*;
use hypercore_schema::{RequestBlock, RequestUpgrade};

/// Lengths around the first page boundary, and a feed several pages long.
const LENGTHS: [u64; 4] = [32_767, 32_768, 32_769, 100_000];

/// A feed we write fsyncs each tree node it writes: 200 000 of them for a
/// 100 000-block feed cost a minute on ext4 here. Memory-backed files keep
/// these tests to seconds; what they test does not depend on the disk.
fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir_in("/dev/shm").unwrap_or_else(|_| tempfile::tempdir().unwrap())
}

fn block(i: u64) -> Vec<u8> {
    i.to_le_bytes().to_vec()
}

async fn writer(store: &FeedStore, seed: u8, n: u64) -> (SigningKey, Feed) {
    let key = SigningKey::from_bytes(&[seed; 32]);
    let mut feed = store.open_writable(&key).await.unwrap();
    let mut i = 0;
    while i < n {
        let end = (i + 20_000).min(n);
        let batch: Vec<Vec<u8>> = (i..end).map(block).collect();
        feed.append_batch(&batch).await.unwrap();
        i = end;
    }
    (key, feed)
}

/// The store at `dir` opened again, and `key`'s feed in it.
async fn reopen(dir: &std::path::Path, key: &SigningKey) -> (FeedStore, Feed) {
    let store = FeedStore::open(dir).unwrap();
    let feed = store
        .open_existing(&key.verifying_key())
        .await
        .unwrap()
        .unwrap();
    (store, feed)
}

/// Which of blocks `0..len` the feed says it holds, as runs `start..end`
/// (short to print when a test fails).
fn holding(feed: &Feed) -> Vec<std::ops::Range<u64>> {
    let mut runs: Vec<std::ops::Range<u64>> = Vec::new();
    for i in (0..feed.len()).filter(|&i| feed.has(i)) {
        match runs.last_mut() {
            Some(run) if run.end == i => run.end += 1,
            _ => runs.push(i..i + 1),
        }
    }
    runs
}

/// Copies block `index` (and the tree up to the writer's length) into the
/// replica through a verified proof, as a peer's answer would.
async fn copy_block(writer: &mut Feed, replica: &mut Feed, index: u64) {
    let upgrade = (replica.len() < writer.len()).then(|| RequestUpgrade {
        start: replica.len(),
        length: writer.len() - replica.len(),
    });
    let nodes = if upgrade.is_some() {
        0
    } else {
        replica.missing_nodes(index).await.unwrap()
    };
    let proof = writer
        .create_proof(Some(RequestBlock { index, nodes }), None, None, upgrade)
        .await
        .unwrap()
        .unwrap();
    assert!(replica.verify_and_apply(&proof).await.unwrap());
}

#[tokio::test]
async fn a_writable_feed_past_one_bitfield_page_reopens_with_every_block() {
    for (seed, n) in LENGTHS.into_iter().enumerate() {
        let tmp = tempdir();
        let store = FeedStore::open(tmp.path()).unwrap();
        let (key, mut feed) = writer(&store, seed as u8 + 1, n).await;
        feed.flush().await.unwrap();
        assert_eq!(
            holding(&feed),
            vec![0..n],
            "{n}: the writer holds every block"
        );
        drop(feed);
        drop(store);

        // Twice: the second open reads what the first one flushed back.
        for round in 0..2 {
            let (_store, mut feed) = reopen(tmp.path(), &key).await;
            let len = feed.len();
            assert_eq!(len, n + round, "{n}, round {round}");
            assert!(feed.writable(), "{n}, round {round}");
            assert_eq!(holding(&feed), vec![0..len], "{n}, round {round}");
            assert_eq!(feed.get(len - 1).await.unwrap(), block(len - 1));
            assert_eq!(feed.get(32_766).await.unwrap(), block(32_766));
            // Still appendable after the reopen; the next round checks it.
            feed.append_batch(&[block(len)]).await.unwrap();
            feed.flush().await.unwrap();
        }
    }
}

#[tokio::test]
async fn a_sparse_replica_past_one_bitfield_page_claims_exactly_what_it_stored() {
    // With the last block, the replica's bitfield has pages beyond the
    // first; without it, a feed longer than one page keeps a one-page
    // bitfield (where 0.16 built phantom later pages from page 0's bytes).
    let cases = LENGTHS.into_iter().flat_map(|n| [(n, true), (n, false)]);
    for (seed, (n, last)) in cases.enumerate() {
        let wtmp = tempdir();
        let wstore = FeedStore::open(wtmp.path()).unwrap();
        let (key, mut w) = writer(&wstore, seed as u8 + 10, n).await;
        let rtmp = tempdir();
        let rstore = FeedStore::open(rtmp.path()).unwrap();
        let mut r = rstore.open_replica(&key.verifying_key()).await.unwrap();

        let mut wanted: Vec<u64> = vec![0, 1, 31, 32, 8_191, 8_192, 16_384, 24_575, 32_766];
        if last {
            wanted.push(n - 1);
        }
        wanted.sort_unstable();
        wanted.dedup();
        for &i in &wanted {
            copy_block(&mut w, &mut r, i).await;
        }
        r.flush().await.unwrap();
        let mut before = holding(&r);
        let held: Vec<u64> = before.iter().flat_map(|run| run.clone()).collect();
        assert_eq!(held, wanted, "{n}: before closing");
        drop(r);
        drop(rstore);

        for round in 0..2 {
            let (_rstore, mut r) = reopen(rtmp.path(), &key).await;
            assert_eq!(r.len(), n, "{n}, round {round}");
            assert!(!r.writable());
            assert_eq!(holding(&r), before, "{n}, round {round}: after reopening");
            for &i in &wanted {
                assert_eq!(r.get(i).await.unwrap(), block(i));
            }
            // And it goes on storing blocks of later pages after a reopen.
            let next = 40_000.min(n - 2);
            if round == 0 && last && !r.has(next) {
                copy_block(&mut w, &mut r, next).await;
                r.flush().await.unwrap();
                assert!(r.has(next));
                before = holding(&r);
            }
            drop(r);
        }
        // The block fetched after the first reopen survived the second.
        let (_rstore, r) = reopen(rtmp.path(), &key).await;
        let next = 40_000.min(n - 2);
        let fetched_later = last && !wanted.contains(&next);
        assert_eq!(r.has(next), fetched_later || wanted.contains(&next), "{n}");
        let count = (0..n).filter(|&i| r.has(i)).count();
        assert_eq!(count, wanted.len() + usize::from(fetched_later));
    }
}

/// Blocks of a feed we write, dropped because they can be made again: the
/// space comes back, a block made again is taken only if the signed tree
/// says it is that block, and both survive a reopen.
#[tokio::test]
async fn own_blocks_cleared_are_taken_back_only_as_the_tree_signed_them() {
    let tmp = tempdir();
    let store = FeedStore::open(tmp.path()).unwrap();
    let key = SigningKey::from_bytes(&[9; 32]);
    let big = |i: u64| vec![i as u8 ^ 0x5a; 256 << 10];
    let mut feed = store.open_writable(&key).await.unwrap();
    let blocks: Vec<Vec<u8>> = (0..8).map(big).collect();
    feed.append_batch(&blocks).await.unwrap();
    feed.flush().await.unwrap();
    let used = || {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(feed_dir(&store, &key).join("data"))
            .unwrap()
            .blocks()
            * 512
    };
    let before = used();
    feed.clear_own(2, 6).await.unwrap();
    assert_eq!(holding(&feed), vec![0..2, 6..8]);
    assert!(
        used() + (1 << 20) <= before,
        "{} bytes after clearing 1 MiB, {before} before",
        used()
    );
    assert!(matches!(
        feed.get(3).await,
        Err(StoreError::MissingBlock { .. })
    ));
    // Not the block: refused, nothing stored.
    let mut wrong = big(3);
    wrong[1000] ^= 1;
    let e = feed.restore(3, wrong).await.unwrap_err();
    assert!(Feed::is_bad_proof(&e), "{e}");
    assert!(feed.restore(3, big(4)).await.is_err());
    assert!(!feed.has(3));
    // The block: taken back.
    feed.restore(3, big(3)).await.unwrap();
    assert_eq!(feed.get(3).await.unwrap(), big(3));
    assert!(feed.restore(3, big(3)).await.is_ok(), "held: nothing to do");
    assert!(feed.restore(8, big(8)).await.is_err(), "past the end");
    drop(feed);
    drop(store);

    let (_store, mut feed) = reopen(tmp.path(), &key).await;
    assert_eq!(holding(&feed), vec![0..2, 3..4, 6..8]);
    assert_eq!(feed.get(3).await.unwrap(), big(3));
    feed.restore(4, big(4)).await.unwrap();
    assert_eq!(feed.get(4).await.unwrap(), big(4));
    // Appending goes on after blocks were cleared and taken back.
    feed.append_batch(&[big(8)]).await.unwrap();
    assert_eq!(feed.get(8).await.unwrap(), big(8));

    // A replica's blocks are not cleared this way.
    let rtmp = tempdir();
    let rstore = FeedStore::open(rtmp.path()).unwrap();
    let mut r = rstore.open_replica(&key.verifying_key()).await.unwrap();
    assert!(r.clear_own(0, 1).await.is_err());
}

fn feed_dir(store: &FeedStore, key: &SigningKey) -> std::path::PathBuf {
    store
        .root()
        .join(hex::encode(key.verifying_key().as_bytes()))
}

/// Blocks dropped deep in a long feed we write are taken back after a
/// reopen (the tree read from disk, no node cached), each only as itself.
#[tokio::test]
async fn an_own_block_deep_in_a_long_feed_is_taken_back_after_a_reopen() {
    let tmp = tempdir();
    let key = SigningKey::from_bytes(&[11; 32]);
    let n = 4_200;
    {
        let store = FeedStore::open(tmp.path()).unwrap();
        let (_, mut feed) = writer(&store, 11, n).await;
        feed.clear_own(1_000, 3_000).await.unwrap();
        feed.flush().await.unwrap();
    }
    let (_store, mut feed) = reopen(tmp.path(), &key).await;
    for i in [1_158, 1_000, 2_999, 2_047, 2_048] {
        assert!(!feed.has(i));
        feed.restore(i, block(i))
            .await
            .unwrap_or_else(|e| panic!("block {i}: {e}"));
        assert_eq!(feed.get(i).await.unwrap(), block(i));
    }
    assert!(feed.restore(1_500, block(1_501)).await.is_err());
}

/// A clear a stop interrupted (its range written to `clearing`, the holes
/// maybe punched, the bitfield not yet written) is finished when the feed
/// is next opened, before anything reads it; a clear that ran to its end
/// is in the bitfield file at once.
#[tokio::test]
async fn an_interrupted_clear_is_finished_on_open_and_a_finished_one_is_on_disk() {
    let tmp = tempdir();
    let key = SigningKey::from_bytes(&[14; 32]);
    let dir = {
        let store = FeedStore::open(tmp.path()).unwrap();
        let (_, mut feed) = writer(&store, 14, 10).await;
        feed.clear_own(0, 2).await.unwrap();
        assert!(!feed.dir().join("clearing").exists());
        feed.dir().to_owned()
    };
    // What a stop between hypercore's hole punch and its flush leaves.
    std::fs::write(dir.join("clearing"), "5 7\n").unwrap();
    let (store, feed) = reopen(tmp.path(), &key).await;
    assert_eq!(holding(&feed), vec![2..5, 7..10]);
    assert!(!dir.join("clearing").exists());
    drop(feed);
    drop(store);
    // And it stays so.
    let (_store, mut feed) = reopen(tmp.path(), &key).await;
    assert_eq!(holding(&feed), vec![2..5, 7..10]);
    assert_eq!(feed.get(8).await.unwrap(), block(8));
}
