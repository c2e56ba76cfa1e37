//! One connection per remote node.
//!
//! Two nodes can meet twice: each dials the other (`--peer` on both sides),
//! or one dials the other as a `--peer` and again when mDNS finds it. Two
//! connections make the seed send blocks twice (measured from outside: seed
//! egress 1.15–1.17 × F instead of 1.03–1.06, docs/benchmarks.md). A node's
//! Noise static key is the same on all its connections (one key per
//! process: `wire::protocol`), so once a handshake tells the remote's key,
//! a second connection to it is found and one of the two is closed:
//!
//! - initiated from different sides: the one whose *initiator* has the
//!   lower key is kept. Both sides compute the same answer and close the
//!   same connection, whichever finished its handshake first.
//! - initiated from the same side (it dialled twice): that side closes the
//!   newer one; the other side keeps both until it does.
//! - to itself (it dialled its own address): closed.
//!
//! [`choose`] is the pure rule; [`Remotes`] the registry `run_conn` asks.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// What to do with a connection whose handshake just completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Keep it: no other connection to that node.
    Only,
    /// Keep it and close the other one.
    KeepNew,
    /// Close it: the other one stays.
    KeepOld,
    /// Keep both for now: the other side, which dialled both, closes one.
    Both,
    /// It is this node itself.
    Itself,
}

/// The rule, for a new connection to `remote` while `old` (whether we
/// initiated it) may exist.
pub(crate) fn choose(
    own: &[u8; 32],
    remote: &[u8; 32],
    old_we_initiated: Option<bool>,
    new_we_initiated: bool,
) -> Verdict {
    if own == remote {
        return Verdict::Itself;
    }
    let Some(old) = old_we_initiated else {
        return Verdict::Only;
    };
    if old != new_we_initiated {
        // Keep the one the lower key initiated.
        let keep_ours = own < remote;
        if new_we_initiated == keep_ours {
            Verdict::KeepNew
        } else {
            Verdict::KeepOld
        }
    } else if new_we_initiated {
        Verdict::KeepOld
    } else {
        Verdict::Both
    }
}

/// A registered connection to a remote node.
#[derive(Debug, Clone)]
pub(crate) struct Registered {
    pub id: u64,
    pub we_initiated: bool,
    pub kill: Arc<Notify>,
    /// Cancelled when the connection ends (remembered, so a waiter that
    /// starts late still sees it).
    pub ended: CancellationToken,
}

/// The live connections to each remote node, by its Noise static key: the
/// first is the one kept; more are there only while the other side (which
/// dialled them all) has not closed them yet, and one of them takes over
/// if the first ends. Tracking every one matters: the two sides may finish
/// their handshakes in opposite orders, and a side that forgot a live
/// connection would take the next one for the only one.
#[derive(Debug, Default)]
pub(crate) struct Remotes {
    by_key: HashMap<[u8; 32], Vec<Registered>>,
}

/// What `run_conn` does after asking.
#[derive(Debug)]
pub(crate) enum Admit {
    /// Go on (registered, or kept beside another for now).
    Go,
    /// Close this one: `kept` is the connection that stays (if any), to
    /// wait for before dialling again.
    Close { kept: Option<CancellationToken> },
}

impl Remotes {
    pub(crate) fn admit(&mut self, own: &[u8; 32], remote: [u8; 32], new: Registered) -> Admit {
        let live = self.by_key.entry(remote).or_default();
        let first = live.first().map(|o| o.we_initiated);
        match choose(own, &remote, first, new.we_initiated) {
            Verdict::Only => {
                live.push(new);
                Admit::Go
            }
            Verdict::KeepNew => {
                let old = live.remove(0);
                old.kill.notify_one();
                live.insert(0, new);
                Admit::Go
            }
            Verdict::KeepOld => Admit::Close {
                kept: live.first().map(|o| o.ended.clone()),
            },
            Verdict::Both => {
                live.push(new);
                Admit::Go
            }
            Verdict::Itself => {
                if live.is_empty() {
                    self.by_key.remove(&remote);
                }
                Admit::Close { kept: None }
            }
        }
    }

    /// Connection `id` ended: forget it (the next live one, if any, is kept
    /// from now on).
    pub(crate) fn ended(&mut self, remote: &[u8; 32], id: u64) {
        if let Some(live) = self.by_key.get_mut(remote) {
            live.retain(|r| r.id != id);
            if live.is_empty() {
                self.by_key.remove(remote);
            }
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.by_key.values().map(Vec::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: [u8; 32] = [1; 32];
    const B: [u8; 32] = [2; 32];

    /// Both sides of every pair of connections between A and B agree on
    /// which to keep when they were dialled from different sides.
    #[test]
    fn both_sides_keep_the_connection_the_lower_key_dialled() {
        // A dialled one (conn 1), B dialled the other (conn 2); each side
        // may see either first.
        for a_sees_first_1 in [true, false] {
            for b_sees_first_1 in [true, false] {
                // A's view: conn 1 is ours, conn 2 theirs.
                let a_keeps_1 = if a_sees_first_1 {
                    choose(&A, &B, Some(true), false) == Verdict::KeepOld
                } else {
                    choose(&A, &B, Some(false), true) == Verdict::KeepNew
                };
                let b_keeps_1 = if b_sees_first_1 {
                    choose(&B, &A, Some(false), true) == Verdict::KeepOld
                } else {
                    choose(&B, &A, Some(true), false) == Verdict::KeepNew
                };
                assert!(a_keeps_1 && b_keeps_1, "{a_sees_first_1} {b_sees_first_1}");
            }
        }
    }

    #[test]
    fn a_node_that_dialled_twice_closes_the_newer_and_the_other_waits() {
        assert_eq!(choose(&A, &B, Some(true), true), Verdict::KeepOld);
        assert_eq!(choose(&B, &A, Some(true), true), Verdict::KeepOld);
        assert_eq!(choose(&B, &A, Some(false), false), Verdict::Both);
        assert_eq!(choose(&A, &B, None, true), Verdict::Only);
        assert_eq!(choose(&A, &A, None, true), Verdict::Itself);
        assert_eq!(choose(&A, &A, Some(false), false), Verdict::Itself);
    }

    fn reg(id: u64, we_initiated: bool) -> Registered {
        Registered {
            id,
            we_initiated,
            kill: Arc::new(Notify::new()),
            ended: CancellationToken::new(),
        }
    }

    #[tokio::test]
    async fn the_registry_kills_the_loser_and_forgets_only_the_kept_one() {
        let mut r = Remotes::default();
        let first = reg(1, false);
        let killed = first.kill.clone();
        assert!(matches!(r.admit(&A, B, first), Admit::Go));
        // A dials B: A's key is lower, so its own connection wins.
        assert!(matches!(r.admit(&A, B, reg(2, true)), Admit::Go));
        tokio::time::timeout(std::time::Duration::from_secs(1), killed.notified())
            .await
            .expect("the losing connection is told to close");
        // The loser's end does not forget the winner.
        r.ended(&B, 1);
        assert_eq!(r.len(), 1);
        assert!(matches!(
            r.admit(&A, B, reg(3, true)),
            Admit::Close { kept: Some(_) }
        ));
        r.ended(&B, 2);
        assert_eq!(r.len(), 0);
        assert!(matches!(
            r.admit(&A, A, reg(4, true)),
            Admit::Close { kept: None }
        ));
        assert_eq!(r.len(), 0);
    }

    /// B's view when A dialled it twice and B finished the handshakes in
    /// the opposite order to A: B must not forget the one A keeps.
    #[test]
    fn a_side_that_saw_handshakes_in_another_order_keeps_track_of_both() {
        let mut r = Remotes::default();
        // B (own) holds conn 2 first, then conn 1, both dialled by A.
        assert!(matches!(r.admit(&B, A, reg(2, false)), Admit::Go));
        assert!(matches!(r.admit(&B, A, reg(1, false)), Admit::Go));
        assert_eq!(r.len(), 2);
        // A closes conn 2 (its newer); conn 1 is still known.
        r.ended(&A, 2);
        assert_eq!(r.len(), 1);
        // So when B now dials A itself, A's key is lower: B's own new
        // connection loses to conn 1 (A dialled it), on B's side as on A's.
        assert!(matches!(
            r.admit(&B, A, reg(3, true)),
            Admit::Close { kept: Some(_) }
        ));
    }
}
