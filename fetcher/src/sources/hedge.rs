//! The hedge: blocks from a primary supplier (the peers), with a secondary
//! (the web seeds) asked too when the primary is slow — whichever verifies
//! first is stored, and the primary's ask resolves either way, since both
//! bring blocks into the same replica.
//!
//! The timing is a pure function, [`step`], tested by table; [`Hedge`] is
//! the thin shell that waits, asks and reads as it says.

use std::time::Duration;

use tokio::time::Instant;
use tokio_util::task::AbortOnDropHandle;
use tracing::debug;

use super::supply::{Replica, Supplier, SupplyError};
use super::PathError;

/// After the first block a stream had to ask the secondary for, later ones
/// are asked of it this soon: the peers have shown they are slow.
pub const AGAIN_AFTER: Duration = Duration::from_millis(100);
/// With no peer on the feed, a block not here within this long is asked of
/// the secondary (long enough for the hub to answer for a stored block).
pub const WITHOUT_PEERS_AFTER: Duration = Duration::from_millis(50);
/// Blocks asked of the secondary at once, from the late one on: a web
/// seed's request size ([`super::webseed::BLOCKS_PER_REQUEST`]).
pub const SECONDARY_BLOCKS: u64 = super::webseed::BLOCKS_PER_REQUEST;
/// A block dropped between its arrival and its read (evicted) is asked
/// again after this pause.
pub const REASK_PAUSE: Duration = Duration::from_millis(20);

/// What the hedge knows when it decides, for one block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Moment {
    /// Since the block was first asked for.
    pub elapsed: Duration,
    /// How long the block may take at all.
    pub deadline: Duration,
    /// How long the primary has before the secondary is asked too.
    pub patience: Duration,
    /// The secondary was asked already for this block.
    pub hedged: bool,
    /// Someone is there for the primary to ask (a peer has the feed open).
    pub primary_present: bool,
    /// The secondary is there to ask at all (a web seed is configured).
    pub secondary_present: bool,
}

/// What to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The deadline has passed: fail.
    GiveUp,
    /// Wait up to `left` for the primary; when it runs out, ask the
    /// secondary if `then_hedge` (else decide again).
    Wait { left: Duration, then_hedge: bool },
}

/// The hedge's policy.
///
/// - Past the deadline, give up (the caller's next resort: the upstream).
/// - With no secondary, or once it was asked, wait for the primary until
///   the deadline.
/// - Otherwise wait the patience (1 s for the HTTP API, then
///   [`AGAIN_AFTER`] once a block had to be hedged), or
///   [`WITHOUT_PEERS_AFTER`] when no peer has the feed (nothing but the
///   secondary will come), then ask the secondary too.
/// - A patience that reaches the deadline never hedges: the secondary's
///   answer could not arrive in time to matter.
pub fn step(m: Moment) -> Step {
    if m.elapsed >= m.deadline {
        return Step::GiveUp;
    }
    let to_deadline = m.deadline - m.elapsed;
    let patience = if m.primary_present {
        m.patience
    } else {
        m.patience.min(WITHOUT_PEERS_AFTER)
    };
    if m.hedged || !m.secondary_present || patience >= m.deadline {
        return Step::Wait {
            left: to_deadline,
            then_hedge: false,
        };
    }
    Step::Wait {
        left: patience.saturating_sub(m.elapsed),
        then_hedge: true,
    }
}

/// Blocks of one feed, one at a time, from `primary`, hedged with
/// `secondary`, read from `replica` once brought. Stateful over a stream:
/// after one block was hedged on time, later ones are hedged sooner.
pub struct Hedge<P, S, R> {
    primary: P,
    secondary: S,
    replica: R,
    /// The secondary is asked for blocks below this only.
    end: u64,
    patience: Duration,
    deadline: Duration,
    /// The secondary's ask in flight, if any (ended when replaced or when
    /// the hedge is dropped).
    running: Option<AbortOnDropHandle<()>>,
}

impl<P, S, R> std::fmt::Debug for Hedge<P, S, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hedge")
            .field("end", &self.end)
            .field("patience", &self.patience)
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

impl<P: Supplier, S: Supplier, R: Replica> Hedge<P, S, R> {
    /// A hedge for blocks below `end`, each within `deadline`, the
    /// secondary asked after `patience`.
    pub fn new(
        primary: P,
        secondary: S,
        replica: R,
        end: u64,
        patience: Duration,
        deadline: Duration,
    ) -> Self {
        Hedge {
            primary,
            secondary,
            replica,
            end,
            patience,
            deadline,
            running: None,
        }
    }

    /// The primary supplier (for a read-ahead over a whole range).
    pub fn primary(&self) -> &P {
        &self.primary
    }

    /// Block `index`, verified; or [`PathError::Deadline`] once the
    /// deadline passed without it, or the error neither supplier can mend.
    pub async fn get(&mut self, index: u64) -> Result<Vec<u8>, PathError> {
        Ok(self.fetch(index, true).await?.expect("read"))
    }

    /// Brings block `index` here without reading it (a read-ahead, a pin),
    /// with the same timing as [`Hedge::get`].
    pub async fn bring(&mut self, index: u64) -> Result<(), PathError> {
        self.fetch(index, false).await.map(|_| ())
    }

    async fn fetch(&mut self, index: u64, read: bool) -> Result<Option<Vec<u8>>, PathError> {
        let started = Instant::now();
        let mut hedged = false;
        loop {
            let moment = Moment {
                elapsed: started.elapsed(),
                deadline: self.deadline,
                patience: self.patience,
                hedged,
                primary_present: self.primary.present(),
                secondary_present: self.secondary.present(),
            };
            let (left, then_hedge) = match step(moment) {
                Step::GiveUp => {
                    return Err(PathError::Deadline {
                        index,
                        deadline: self.deadline,
                    })
                }
                Step::Wait { left, then_hedge } => (left, then_hedge),
            };
            let to = index
                .saturating_add(SECONDARY_BLOCKS)
                .min(self.end)
                .max(index + 1);
            match tokio::time::timeout(left, self.primary.bring(index, index + 1)).await {
                Ok(Ok(())) if !read => return Ok(None),
                Ok(Ok(())) => match self.replica.read(index).await {
                    Err(SupplyError::NotHere { .. }) => {
                        debug!(
                            index,
                            "a block went between its arrival and its read; asking again"
                        );
                        tokio::time::sleep(REASK_PAUSE).await;
                    }
                    got => {
                        return got
                            .map(Some)
                            .map_err(|source| PathError::Block { index, source })
                    }
                },
                // The primary does not know the feed that far (no peer told
                // it): the secondary may, and it is asked at once.
                Ok(Err(SupplyError::PastEnd { .. })) if !hedged && self.secondary.present() => {
                    hedged = true;
                    let until = started + self.deadline;
                    let asked =
                        tokio::time::timeout_at(until, self.secondary.bring(index, to)).await;
                    if let Ok(Err(e)) = asked {
                        debug!(index, "secondary: {e}");
                    }
                }
                Ok(Err(source)) => return Err(PathError::Block { index, source }),
                Err(_) if then_hedge => {
                    hedged = true;
                    self.patience = AGAIN_AFTER;
                    let ask = self.secondary.bring(index, to);
                    self.running = Some(AbortOnDropHandle::new(tokio::spawn(async move {
                        if let Err(e) = ask.await {
                            debug!(index, "secondary: {e}");
                        }
                    })));
                }
                Err(_) => {}
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use futures::future::BoxFuture;
    use std::collections::HashSet;
    use std::sync::{Arc, Mutex};
    use tokio::sync::Notify;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    fn m(elapsed: u64, patience: u64, hedged: bool, peers: bool, web: bool) -> Moment {
        Moment {
            elapsed: MS(elapsed),
            deadline: MS(8000),
            patience: MS(patience),
            hedged,
            primary_present: peers,
            secondary_present: web,
        }
    }

    fn wait(left: u64, then_hedge: bool) -> Step {
        Step::Wait {
            left: MS(left),
            then_hedge,
        }
    }

    #[test]
    fn the_timing_policy() {
        let table = [
            // Peers there, a web seed there: patience, then hedge.
            (m(0, 1000, false, true, true), wait(1000, true)),
            (m(400, 1000, false, true, true), wait(600, true)),
            (m(1000, 1000, false, true, true), wait(0, true)),
            (m(1500, 1000, false, true, true), wait(0, true)),
            // After a first hedge, later blocks are hedged sooner.
            (m(0, 100, false, true, true), wait(100, true)),
            // Hedged already: wait for whoever delivers, to the deadline.
            (m(1500, 1000, true, true, true), wait(6500, false)),
            // No peer on the feed: only the web seed will come, soon.
            (m(0, 1000, false, false, true), wait(50, true)),
            (m(0, 20, false, false, true), wait(20, true)),
            (m(70, 1000, false, false, true), wait(0, true)),
            // No web seed: the primary until the deadline.
            (m(0, 1000, false, true, false), wait(8000, false)),
            (m(0, 1000, false, false, false), wait(8000, false)),
            (m(7999, 1000, false, true, false), wait(1, false)),
            // The deadline.
            (m(8000, 1000, false, true, true), Step::GiveUp),
            (m(9000, 1000, true, false, false), Step::GiveUp),
            // A patience that reaches the deadline never hedges.
            (m(0, 8000, false, true, true), wait(8000, false)),
            (m(0, 9000, false, true, true), wait(8000, false)),
        ];
        for (moment, want) in table {
            assert_eq!(step(moment), want, "{moment:?}");
        }
    }

    /// A feed's replica in memory: which blocks are stored.
    #[derive(Default)]
    pub(crate) struct FakeFeed {
        pub(crate) stored: Mutex<HashSet<u64>>,
        pub(crate) arrived: Notify,
        /// Reads that find the block gone (evicted) once each.
        pub(crate) evict_once: Mutex<HashSet<u64>>,
        /// The bytes of blocks, where a test gives them (else
        /// [`block_bytes`]).
        pub(crate) content: Mutex<std::collections::HashMap<u64, Vec<u8>>>,
    }

    impl FakeFeed {
        pub(crate) fn store(&self, range: std::ops::Range<u64>) {
            self.stored.lock().unwrap().extend(range);
            self.arrived.notify_waiters();
        }

        fn has(&self, range: &std::ops::Range<u64>) -> bool {
            let s = self.stored.lock().unwrap();
            range.clone().all(|i| s.contains(&i))
        }
    }

    /// The block bytes a fake feed holds at `index`.
    pub(crate) fn block_bytes(index: u64) -> Vec<u8> {
        index.to_le_bytes().to_vec()
    }

    impl Replica for FakeFeed {
        fn read(&self, index: u64) -> BoxFuture<'static, Result<Vec<u8>, SupplyError>> {
            if self.evict_once.lock().unwrap().remove(&index) {
                self.stored.lock().unwrap().remove(&index);
            }
            let got = if self.stored.lock().unwrap().contains(&index) {
                let content = self.content.lock().unwrap().get(&index).cloned();
                Ok(content.unwrap_or_else(|| block_bytes(index)))
            } else {
                Err(SupplyError::NotHere { index })
            };
            Box::pin(async move { got })
        }
    }

    /// How a fake supplier behaves.
    #[derive(Clone, Copy, Debug)]
    pub(crate) enum Behaviour {
        /// Stores what is asked after this long.
        After(Duration),
        /// Never delivers (but resolves when another stored the blocks).
        Silent,
        /// The feed is not known that far.
        PastEnd,
        /// Fails after this long.
        FailsAfter(Duration),
    }

    /// A supplier that stores asked blocks into a fake feed as told, and
    /// writes down what it was asked and when.
    #[derive(Clone)]
    pub(crate) struct Fake {
        pub(crate) feed: Arc<FakeFeed>,
        pub(crate) how: Behaviour,
        pub(crate) present: bool,
        pub(crate) asked: Arc<Mutex<Vec<(u64, u64, Duration)>>>,
        pub(crate) t0: Instant,
    }

    impl Fake {
        pub(crate) fn new(feed: &Arc<FakeFeed>, how: Behaviour) -> Self {
            Fake {
                feed: feed.clone(),
                how,
                present: true,
                asked: Arc::default(),
                t0: Instant::now(),
            }
        }

        pub(crate) fn absent(mut self) -> Self {
            self.present = false;
            self
        }

        pub(crate) fn asks(&self) -> Vec<(u64, u64, Duration)> {
            self.asked.lock().unwrap().clone()
        }
    }

    impl Supplier for Fake {
        fn bring(&self, start: u64, end: u64) -> BoxFuture<'static, Result<(), SupplyError>> {
            let me = self.clone();
            me.asked.lock().unwrap().push((start, end, me.t0.elapsed()));
            Box::pin(async move {
                let range = start..end;
                let deliver_at = match me.how {
                    Behaviour::After(d) => Some(Instant::now() + d),
                    Behaviour::Silent => None,
                    Behaviour::PastEnd => {
                        if me.feed.has(&range) {
                            return Ok(());
                        }
                        return Err(SupplyError::PastEnd { length: start });
                    }
                    Behaviour::FailsAfter(d) => {
                        tokio::time::sleep(d).await;
                        return Err(SupplyError::NotHere { index: start });
                    }
                };
                loop {
                    let arrived = me.feed.arrived.notified();
                    if me.feed.has(&range) {
                        return Ok(());
                    }
                    match deliver_at {
                        Some(at) => tokio::select! {
                            _ = tokio::time::sleep_until(at) => me.feed.store(range.clone()),
                            _ = arrived => {}
                        },
                        None => arrived.await,
                    }
                }
            })
        }

        fn present(&self) -> bool {
            self.present
        }
    }

    fn hedge(p: &Fake, s: &Fake, feed: &Arc<FakeFeed>) -> Hedge<Fake, Fake, Arc<FakeFeed>> {
        Hedge::new(
            p.clone(),
            s.clone(),
            feed.clone(),
            100,
            Duration::from_secs(1),
            Duration::from_secs(8),
        )
    }

    #[tokio::test(start_paused = true)]
    async fn fast_peers_never_bother_the_web_seed() {
        let feed = Arc::new(FakeFeed::default());
        let peers = Fake::new(&feed, Behaviour::After(MS(10)));
        let web = Fake::new(&feed, Behaviour::After(MS(10)));
        let mut h = hedge(&peers, &web, &feed);
        let t = Instant::now();
        assert_eq!(h.get(3).await.unwrap(), block_bytes(3));
        assert_eq!(t.elapsed(), MS(10));
        assert!(web.asks().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn slow_peers_are_hedged_after_the_patience_then_sooner() {
        let feed = Arc::new(FakeFeed::default());
        let peers = Fake::new(&feed, Behaviour::Silent);
        let web = Fake::new(&feed, Behaviour::After(MS(30)));
        let mut h = hedge(&peers, &web, &feed);
        assert_eq!(h.get(90).await.unwrap(), block_bytes(90));
        // Asked after the patience, for the late block and those after it,
        // up to the end.
        assert_eq!(web.asks(), vec![(90, 100, MS(1000))]);
        // The web seed brought the next ones too: no second ask.
        assert_eq!(h.get(91).await.unwrap(), block_bytes(91));
        assert_eq!(web.asks().len(), 1);
        // Past what it brought, the next hedge comes after 100 ms.
        let t = Instant::now();
        assert_eq!(h.get(100).await.unwrap(), block_bytes(100));
        let asks = web.asks();
        assert_eq!(asks.len(), 2);
        assert_eq!(
            asks[1].0..asks[1].1,
            100..101,
            "never past the end but the block"
        );
        assert_eq!(t.elapsed(), AGAIN_AFTER + MS(30));
    }

    #[tokio::test(start_paused = true)]
    async fn with_no_peer_the_web_seed_is_asked_at_once() {
        let feed = Arc::new(FakeFeed::default());
        let peers = Fake::new(&feed, Behaviour::Silent).absent();
        let web = Fake::new(&feed, Behaviour::After(MS(5)));
        let mut h = hedge(&peers, &web, &feed);
        h.get(0).await.unwrap();
        assert_eq!(web.asks(), vec![(0, 16, WITHOUT_PEERS_AFTER)]);
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_web_seed_a_block_fails_at_its_deadline() {
        let feed = Arc::new(FakeFeed::default());
        let peers = Fake::new(&feed, Behaviour::Silent);
        let web = Fake::new(&feed, Behaviour::After(MS(5))).absent();
        let mut h = hedge(&peers, &web, &feed);
        let t = Instant::now();
        let err = h.get(0).await.unwrap_err();
        assert!(matches!(err, PathError::Deadline { index: 0, .. }), "{err}");
        assert_eq!(t.elapsed(), Duration::from_secs(8));
        assert!(web.asks().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_web_seed_leaves_the_deadline_to_decide() {
        let feed = Arc::new(FakeFeed::default());
        let peers = Fake::new(&feed, Behaviour::Silent);
        let web = Fake::new(&feed, Behaviour::FailsAfter(MS(10)));
        let mut h = hedge(&peers, &web, &feed);
        let t = Instant::now();
        assert!(matches!(
            h.get(0).await,
            Err(PathError::Deadline { index: 0, .. })
        ));
        assert_eq!(t.elapsed(), Duration::from_secs(8));
        assert_eq!(web.asks().len(), 1, "asked once per block");
    }

    #[tokio::test(start_paused = true)]
    async fn a_feed_the_peers_do_not_know_that_far_is_asked_of_the_web_seed_at_once() {
        let feed = Arc::new(FakeFeed::default());
        let peers = Fake::new(&feed, Behaviour::PastEnd);
        let web = Fake::new(&feed, Behaviour::After(MS(5)));
        let mut h = hedge(&peers, &web, &feed);
        let t = Instant::now();
        assert_eq!(h.get(7).await.unwrap(), block_bytes(7));
        assert_eq!(t.elapsed(), MS(5));
        assert_eq!(web.asks(), vec![(7, 23, Duration::ZERO)]);
        // With no web seed, past the end is an error at once.
        let feed = Arc::new(FakeFeed::default());
        let peers = Fake::new(&feed, Behaviour::PastEnd);
        let web = Fake::new(&feed, Behaviour::After(MS(5))).absent();
        let mut h = hedge(&peers, &web, &feed);
        let err = h.get(7).await.unwrap_err();
        assert!(
            matches!(
                err,
                PathError::Block {
                    index: 7,
                    source: SupplyError::PastEnd { .. }
                }
            ),
            "{err}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_block_evicted_between_arrival_and_read_is_asked_again() {
        let feed = Arc::new(FakeFeed::default());
        feed.evict_once.lock().unwrap().insert(4);
        let peers = Fake::new(&feed, Behaviour::After(MS(10)));
        let web = Fake::new(&feed, Behaviour::After(MS(10))).absent();
        let mut h = hedge(&peers, &web, &feed);
        assert_eq!(h.get(4).await.unwrap(), block_bytes(4));
        assert_eq!(peers.asks().len(), 2);
    }
}
