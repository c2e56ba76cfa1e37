//! The scheduler's decisions, pure: which wanted blocks come first, which
//! of them a peer is asked for, which peers are filled first, and when a
//! duplicate request held at a seed is withdrawn. `schedule.rs` is the
//! shell: it reads what these need from the hub's state and acts on what
//! they return, as `storage.rs` does with its `Verdict`.

use std::collections::BTreeSet;
use std::time::Duration;

use super::PeerId;

/// How long a reader waits on one block before it jumps the rarest-first
/// queue.
pub const URGENT_AFTER: Duration = Duration::from_secs(10);
/// How many of the best blocks a peer has one request is drawn from. Two
/// fetchers drawing the same block from a seed cost little since the seed
/// holds the second request until it is cancelled (`upload.rs`); a narrower
/// draw keeps blocks closer to reading order and newer blocks fewer, so
/// they spread faster. Measured in the swarm benchmark (efficiency, two
/// runs each): 32 → 0.83/0.86, 64 → 0.87/0.87, 128 → 0.84/0.82.
pub const SPREAD: usize = 64;

/// The blocks readers have waited on alone (a one-block want) for longer
/// than [`URGENT_AFTER`]: `(start, end, waited)` per reader.
pub fn urgent(waits: impl IntoIterator<Item = (u64, u64, Duration)>) -> BTreeSet<u64> {
    waits
        .into_iter()
        .filter(|&(start, end, waited)| end - start == 1 && waited > URGENT_AFTER)
        .map(|(start, _, _)| start)
        .collect()
}

/// Orders wanted blocks: urgent ones first (a block many peers have could
/// otherwise wait behind rarer ones past its reader's deadline), then the
/// rarest (fewest peers hold it), then the lowest index. Rarest first, as
/// BitTorrent does: nodes that start together ask the seed for different
/// blocks and trade the rest among themselves.
pub fn rank(
    mut wanted: Vec<u64>,
    urgent: &BTreeSet<u64>,
    holders: impl Fn(u64) -> usize,
) -> Vec<u64> {
    wanted.sort_by_cached_key(|&i| (!urgent.contains(&i), holders(i), i));
    wanted
}

/// What the shell knows of one block, for one peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Seen {
    /// The peer announced it.
    pub peer_has: bool,
    /// It is stored here.
    pub here: bool,
    /// It is asked of someone already.
    pub in_flight: bool,
    /// This peer failed it last (a timeout).
    pub peer_failed_it: bool,
}

/// The blocks of `order` that a peer may be asked for, best first, at most
/// `max(SPREAD, free)` of them: those it has that are neither here nor
/// asked of anyone. A peer that has had requests time out (`struck`), or
/// that failed this very block, is asked only when no healthy peer has it
/// (`healthy_other_has`, asked only then: it walks the peers).
pub fn candidates(
    order: &[u64],
    free: usize,
    struck: bool,
    seen: impl Fn(u64) -> Seen,
    healthy_other_has: impl Fn(u64) -> bool,
) -> Vec<u64> {
    let mut out = Vec::new();
    for &index in order {
        if out.len() == SPREAD.max(free) {
            break;
        }
        let s = seen(index);
        if !s.peer_has || s.here || s.in_flight {
            continue;
        }
        if (struck || s.peer_failed_it) && healthy_other_has(index) {
            continue;
        }
        out.push(index);
    }
    out
}

/// Which peers get their free request slots filled, in order: those with
/// a free slot, fewest strikes (timeouts) first, then fewest requests in
/// flight, then by id. `(peer, strikes, in flight, window)` per peer.
pub fn fill_order(peers: impl IntoIterator<Item = (PeerId, u32, usize, usize)>) -> Vec<PeerId> {
    let mut ids: Vec<(u32, usize, PeerId)> = peers
        .into_iter()
        .filter(|&(_, _, inflight, window)| inflight < window)
        .map(|(id, strikes, inflight, _)| (strikes, inflight, id))
        .collect();
    ids.sort_unstable();
    ids.into_iter().map(|(_, _, id)| id).collect()
}

/// Whether a request for a block out at `at`, sent `sent_ago`, is
/// withdrawn because `holder` just announced the block: a complete peer
/// (a seed) most likely sent it to `holder` a moment ago and holds our
/// request as a duplicate (`upload.rs`), so its upload is better spent on
/// a block nobody has. Only young requests (within `dup_window`): an old
/// one is on its way.
pub fn withdraw_duplicate(
    at: PeerId,
    holder: PeerId,
    at_is_complete: bool,
    sent_ago: Duration,
    dup_window: Duration,
) -> bool {
    at != holder && at_is_complete && sent_ago <= dup_window
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn only_one_block_waits_past_the_patience_are_urgent() {
        let got = urgent([
            (5, 6, S(11)),  // alone, long: urgent
            (7, 8, S(10)),  // alone, exactly the limit: not yet
            (9, 12, S(60)), // a range: never urgent
            (20, 21, S(1)), // alone, fresh
            (30, 31, S(100)),
        ]);
        assert_eq!(got.into_iter().collect::<Vec<_>>(), [5, 30]);
    }

    #[test]
    fn urgent_first_then_rarest_then_lowest() {
        let holders = |i: u64| match i {
            1 => 3,
            2 => 1,
            3 => 1,
            4 => 0,
            _ => 2,
        };
        let urgent: BTreeSet<u64> = [3, 5].into();
        assert_eq!(
            rank(vec![1, 2, 3, 4, 5, 6], &urgent, holders),
            [3, 5, 4, 2, 6, 1]
        );
        assert_eq!(rank(vec![6, 5, 4], &BTreeSet::new(), holders), [4, 5, 6]);
    }

    fn seen_all(i: u64) -> Seen {
        Seen {
            peer_has: i.is_multiple_of(2),
            here: i == 4,
            in_flight: i == 6,
            peer_failed_it: i == 8,
        }
    }

    #[test]
    fn a_peer_is_asked_only_for_what_it_has_and_nobody_else_brings() {
        let order: Vec<u64> = (0..12).collect();
        // Healthy peer; another healthy peer has block 8 too.
        let got = candidates(&order, 4, false, seen_all, |i| i == 8);
        assert_eq!(got, [0, 2, 10], "8 goes to the other peer");
        // Nobody else has 8: it is asked of this peer after all.
        let got = candidates(&order, 4, false, seen_all, |_| false);
        assert_eq!(got, [0, 2, 8, 10]);
        // A struck peer gets only what no healthy peer has.
        let got = candidates(&order, 4, true, seen_all, |i| i < 3);
        assert_eq!(got, [8, 10]);
    }

    #[test]
    fn candidates_are_bounded_by_the_spread_or_the_free_slots() {
        let order: Vec<u64> = (0..1000).collect();
        let every = |_| Seen {
            peer_has: true,
            ..Seen::default()
        };
        assert_eq!(candidates(&order, 1, false, every, |_| false).len(), SPREAD);
        assert_eq!(candidates(&order, 200, false, every, |_| false).len(), 200);
        assert_eq!(
            candidates(&order[..10], 200, false, every, |_| false).len(),
            10
        );
    }

    #[test]
    fn the_least_struck_and_least_loaded_are_filled_first_and_full_ones_not_at_all() {
        let got = fill_order([
            (1, 0, 5, 8),
            (2, 1, 0, 8),
            (3, 0, 2, 8),
            (4, 0, 8, 8), // full
            (5, 0, 2, 8),
        ]);
        assert_eq!(got, [3, 5, 1, 2]);
    }

    #[test]
    fn a_duplicate_is_withdrawn_only_from_a_seed_while_young() {
        let w = Duration::from_millis(500);
        let ms = Duration::from_millis;
        assert!(withdraw_duplicate(1, 2, true, ms(100), w));
        assert!(withdraw_duplicate(1, 2, true, w, w));
        assert!(!withdraw_duplicate(1, 2, true, ms(501), w), "on its way");
        assert!(!withdraw_duplicate(1, 2, false, ms(100), w), "not a seed");
        assert!(
            !withdraw_duplicate(2, 2, true, ms(100), w),
            "the holder itself"
        );
    }
}
