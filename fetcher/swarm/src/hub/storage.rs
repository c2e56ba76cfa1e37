//! What a hub does when its own disk fails it.
//!
//! A local error is never a reason to delete data. When storing a verified
//! block fails for a local reason (the disk is full, read-only, failing, or
//! a permission changed), the hub:
//!
//! 1. stops asking for blocks and tells its readers why at once
//!    ([`SwarmError::Storage`]): a reader must not wait out a deadline for
//!    blocks that cannot be stored;
//! 2. keeps every block already stored and goes on serving them to peers;
//! 3. after a back-off ([`FIRST_RETRY`], doubling to [`MAX_RETRY`]) reopens
//!    the feed from disk, which drops whatever the failed write left half
//!    done (the oplog repair in `feed/src/oplog.rs`), and tries again;
//! 4. says so in the log once, then at most once every [`LOG_EVERY`] with
//!    a count, and once more when storage works again.
//!
//! A replica that fails with a hypercore inconsistency rather than an I/O
//! error (a crash left its files out of step) is reopened first; only if it
//! fails again right after, and no I/O error was seen on it recently, is
//! that one feed started afresh (`FeedStore::reset_replica`): its blocks
//! are verified copies that peers have.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hypernar_feed::store::StoreError;
use tracing::{info, warn};

use super::{Hub, PeerId, SwarmError};

/// The first wait before storage is tried again.
pub const FIRST_RETRY: Duration = Duration::from_secs(1);
/// The longest wait between tries.
pub const MAX_RETRY: Duration = Duration::from_secs(60);
/// A repeating failure is logged at most this often.
pub const LOG_EVERY: Duration = Duration::from_secs(60);
/// An I/O error this recent forbids starting a replica afresh.
pub const IO_MEMORY: Duration = Duration::from_secs(600);

/// Why local storage failed, in the words an operator acts on.
pub fn describe(e: &StoreError) -> String {
    match (hypernar_feed::error::local_condition(e), e.io_error()) {
        (Some(condition), _) => format!("{condition} ({e})"),
        (None, Some(_)) => format!("an I/O error ({e})"),
        (None, None) => format!("the local replica is inconsistent ({e})"),
    }
}

/// The storage health of one feed: a pure state machine over time.
#[derive(Debug, Default)]
pub struct Health {
    stall: Option<Stall>,
    /// When an I/O error was last seen.
    last_io: Option<Instant>,
    /// A reopen to cure an inconsistency happened and nothing was stored
    /// since.
    reopened_for_damage: bool,
}

#[derive(Debug)]
struct Stall {
    since: Instant,
    retry_at: Instant,
    backoff: Duration,
    /// The retry is under way: writes are allowed to find out.
    probing: bool,
    logged_at: Instant,
    unlogged: u64,
}

/// A log line due about a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Log {
    /// Storage just started failing.
    First,
    /// Still failing: `failures` since the last line, this one included.
    Again { failures: u64 },
}

/// What the hub should do about a failure.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Stop writing; try again at the back-off. `log`: what to say now.
    Stall {
        log: Option<Log>,
        retry_in: Duration,
    },
    /// Reopen the feed from disk now and carry on.
    Reopen,
    /// Start this replica afresh.
    Reset,
}

impl Health {
    /// A write failed at `now`; `io`: for an I/O reason.
    pub fn failed(&mut self, io: bool, now: Instant) -> Verdict {
        if io {
            self.last_io = Some(now);
        } else if self.stall.is_none() {
            let io_recently = self
                .last_io
                .is_some_and(|t| now.saturating_duration_since(t) < IO_MEMORY);
            if !self.reopened_for_damage {
                self.reopened_for_damage = true;
                return Verdict::Reopen;
            }
            if !io_recently {
                self.reopened_for_damage = false;
                return Verdict::Reset;
            }
        }
        match &mut self.stall {
            None => {
                self.stall = Some(Stall {
                    since: now,
                    retry_at: now + FIRST_RETRY,
                    backoff: FIRST_RETRY,
                    probing: false,
                    logged_at: now,
                    unlogged: 0,
                });
                Verdict::Stall {
                    log: Some(Log::First),
                    retry_in: FIRST_RETRY,
                }
            }
            Some(s) => {
                // A failure while stalled (an answer that was on its way)
                // does not put the retry off; a failed retry doubles the wait.
                if s.probing {
                    s.backoff = (s.backoff * 2).min(MAX_RETRY);
                    s.retry_at = now + s.backoff;
                    s.probing = false;
                }
                s.unlogged += 1;
                let log = if now.saturating_duration_since(s.logged_at) >= LOG_EVERY {
                    s.logged_at = now;
                    Some(Log::Again {
                        failures: std::mem::take(&mut s.unlogged),
                    })
                } else {
                    None
                };
                Verdict::Stall {
                    log,
                    retry_in: s.backoff,
                }
            }
        }
    }

    /// Whether writes are stopped now (not while a retry probes).
    pub fn stalled(&self) -> bool {
        self.stall.as_ref().is_some_and(|s| !s.probing)
    }

    /// Whether a stalled feed is due to be tried again; marks it probing.
    pub fn retry_due(&mut self, now: Instant) -> bool {
        match &mut self.stall {
            Some(s) if !s.probing && now >= s.retry_at => {
                s.probing = true;
                true
            }
            _ => false,
        }
    }

    /// Reopening for a retry failed: wait longer.
    pub fn retry_failed(&mut self, now: Instant) {
        if let Some(s) = &mut self.stall {
            s.backoff = (s.backoff * 2).min(MAX_RETRY);
            s.probing = false;
            s.retry_at = now + s.backoff;
        }
    }

    /// A write succeeded: returns how long storage had been failing.
    pub fn stored(&mut self, now: Instant) -> Option<Duration> {
        self.reopened_for_damage = false;
        let s = self.stall.take()?;
        Some(now.saturating_duration_since(s.since))
    }
}

impl Hub {
    /// Storing what a peer sent failed for a local reason (see the module
    /// documentation).
    pub(super) async fn local_failure(&mut self, e: StoreError) {
        let why = describe(&e);
        let now = Instant::now();
        let error = Arc::new(e);
        match self.health.failed(error.io_error().is_some(), now) {
            Verdict::Stall { log, retry_in } => {
                match log {
                    Some(Log::First) => warn!(
                        feed = self.feed.name(),
                        "cannot store blocks: {why}; keeping what is stored and serving it, trying again in {retry_in:?}"
                    ),
                    Some(Log::Again { failures }) => warn!(
                        feed = self.feed.name(),
                        failures,
                        "still cannot store blocks: {why}; trying again in {retry_in:?}"
                    ),
                    None => {}
                }
                let e = SwarmError::Storage {
                    feed: self.feed.name().to_owned(),
                    reason: why,
                    source: error,
                };
                self.storage_error = Some(e.clone());
                self.stop_downloads(e).await;
            }
            Verdict::Reopen => {
                warn!(feed = self.feed.name(), "{why}; reopening it from disk");
                self.reopen(false).await;
            }
            Verdict::Reset => {
                warn!(
                    feed = self.feed.name(),
                    "{why} again after reopening; starting this replica afresh"
                );
                self.reopen(true).await;
            }
        }
    }

    /// Withdraws every request and fails every reader with `error`.
    async fn stop_downloads(&mut self, error: SwarmError) {
        self.downloads.abandon_all(Instant::now());
        for w in &mut self.waiters {
            w.answer(Err(error.clone()));
        }
        self.prune_waiters();
    }

    /// Called on every tick: a stalled feed whose back-off is over is
    /// reopened and writes are tried again.
    pub(super) async fn retry_storage(&mut self) {
        if self.health.retry_due(Instant::now()) {
            info!(feed = self.feed.name(), "trying to store blocks again");
            if !self.reopen(false).await {
                self.health.retry_failed(Instant::now());
            }
        }
    }

    /// A write succeeded.
    pub(super) fn storage_works(&mut self) {
        self.storage_error = None;
        if let Some(down) = self.health.stored(Instant::now()) {
            info!(
                feed = self.feed.name(),
                "storing blocks again after {down:.0?} of failures"
            );
        }
    }

    /// Opens the feed again from disk (afresh with `reset`), and tells
    /// peers where it stands; false if that failed. A feed we write is
    /// never reset.
    async fn reopen(&mut self, reset: bool) -> bool {
        let key = *self.feed.public_key();
        let opened = if reset && !self.feed.writable() {
            self.store.reset_replica(&key).await
        } else if self.feed.writable() {
            return true;
        } else {
            self.store.open_replica(&key).await
        };
        match opened {
            Ok(feed) => {
                self.feed = feed;
                if reset {
                    for w in &mut self.waiters {
                        w.want.rewind();
                    }
                }
            }
            Err(e) => {
                warn!(
                    feed = self.feed.name(),
                    "cannot reopen the feed: {}",
                    describe(&e)
                );
                return false;
            }
        }
        self.downloads.abandon_all(Instant::now());
        let ids: Vec<PeerId> = self.peers.keys().copied().collect();
        for id in ids {
            let msg = self.sync_message(&self.peers[&id]);
            self.send(id, msg).await;
            self.maybe_upgrade(id).await;
        }
        self.publish_state();
        self.reschedule().await;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stall(v: Verdict) -> (Option<Log>, Duration) {
        match v {
            Verdict::Stall { log, retry_in } => (log, retry_in),
            other => panic!("expected a stall, got {other:?}"),
        }
    }

    #[test]
    fn an_io_failure_stalls_backs_off_and_logs_rarely() {
        let t = Instant::now();
        let mut h = Health::default();
        assert_eq!(stall(h.failed(true, t)), (Some(Log::First), FIRST_RETRY));
        assert!(h.stalled());
        // Failing over and over before any retry: no new lines, no faster retry.
        for i in 1..1000 {
            let (log, _) = stall(h.failed(true, t + Duration::from_millis(i)));
            assert_eq!(log, None);
        }
        assert!(!h.retry_due(t + FIRST_RETRY / 2));
        let mut now = t + FIRST_RETRY;
        let (mut waits, mut logs) = (Vec::new(), Vec::new());
        for _ in 0..10 {
            assert!(h.retry_due(now));
            assert!(!h.stalled(), "probing lets writes through");
            let (log, wait) = stall(h.failed(true, now));
            waits.push(wait.as_secs());
            logs.push(log);
            now += wait;
        }
        assert_eq!(waits, [2, 4, 8, 16, 32, 60, 60, 60, 60, 60]);
        // Failures at 1, 3, 7, 15, 31, 63, 123, ... s: the first a minute
        // after the first line says how many went unsaid.
        assert_eq!(logs[..5], [None; 5]);
        assert!(
            matches!(logs[5], Some(Log::Again { failures }) if failures >= 1000),
            "{logs:?}"
        );
        assert_eq!(logs[6..], [Some(Log::Again { failures: 1 }); 4]);
    }

    #[test]
    fn a_success_ends_the_stall_and_resets_the_back_off() {
        let t = Instant::now();
        let mut h = Health::default();
        h.failed(true, t);
        assert!(h.retry_due(t + FIRST_RETRY));
        assert_eq!(h.stored(t + FIRST_RETRY), Some(FIRST_RETRY));
        assert!(!h.stalled());
        assert_eq!(h.stored(t), None);
        assert_eq!(
            stall(h.failed(true, t + LOG_EVERY)),
            (Some(Log::First), FIRST_RETRY)
        );
    }

    #[test]
    fn a_failed_reopen_waits_longer() {
        let t = Instant::now();
        let mut h = Health::default();
        h.failed(true, t);
        assert!(h.retry_due(t + FIRST_RETRY));
        h.retry_failed(t + FIRST_RETRY);
        assert!(h.stalled());
        assert!(!h.retry_due(t + FIRST_RETRY * 2));
        assert!(h.retry_due(t + FIRST_RETRY * 3));
    }

    #[test]
    fn an_inconsistency_reopens_then_resets_but_never_near_an_io_error() {
        let t = Instant::now();
        let mut h = Health::default();
        assert_eq!(h.failed(false, t), Verdict::Reopen);
        assert_eq!(h.failed(false, t), Verdict::Reset);
        // Cured by a reopen: the next inconsistency reopens again.
        assert_eq!(h.failed(false, t), Verdict::Reopen);
        h.stored(t);
        assert_eq!(h.failed(false, t), Verdict::Reopen);
        h.stored(t);
        // After a full disk, an inconsistency is never cured by deleting.
        let mut h = Health::default();
        h.failed(true, t);
        assert!(h.retry_due(t + FIRST_RETRY));
        h.stored(t + FIRST_RETRY);
        let later = t + FIRST_RETRY;
        assert_eq!(h.failed(false, later), Verdict::Reopen);
        assert!(matches!(h.failed(false, later), Verdict::Stall { .. }));
        // Once the I/O error is long past, the reset is allowed again.
        assert!(h.retry_due(later + MAX_RETRY));
        h.stored(later + MAX_RETRY);
        let much_later = t + IO_MEMORY * 2;
        assert_eq!(h.failed(false, much_later), Verdict::Reopen);
        assert_eq!(h.failed(false, much_later), Verdict::Reset);
    }
}
