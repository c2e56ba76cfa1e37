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
            let store = FeedStore::open(tmp.path()).unwrap();
            let mut feed = store
                .open_existing(&key.verifying_key())
                .await
                .unwrap()
                .unwrap();
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
            let rstore = FeedStore::open(rtmp.path()).unwrap();
            let mut r = rstore
                .open_existing(&key.verifying_key())
                .await
                .unwrap()
                .unwrap();
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
        let rstore = FeedStore::open(rtmp.path()).unwrap();
        let r = rstore
            .open_existing(&key.verifying_key())
            .await
            .unwrap()
            .unwrap();
        let next = 40_000.min(n - 2);
        let fetched_later = last && !wanted.contains(&next);
        assert_eq!(r.has(next), fetched_later || wanted.contains(&next), "{n}");
        let count = (0..n).filter(|&i| r.has(i)).count();
        assert_eq!(count, wanted.len() + usize::from(fetched_later));
    }
}
