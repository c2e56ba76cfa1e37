//! The pump of one replication channel: it moves messages between the
//! channel and its feed's hub, in both directions, and is where a peer's
//! pace meets ours.
//!
//! - **Inbound**, it always takes what the channel has, so that the
//!   unbounded queues inside hypercore-protocol stay near empty, and holds
//!   it in a backlog until the hub takes it. The backlog is counted in the
//!   connection's [`Load`]: while it is full the socket is not read, and
//!   TCP slows the sender to the pace of our hubs.
//! - A peer sending more than [`FLOOD_RATE`] messages a second (with a
//!   burst of [`FLOOD_BURST`]) is flooding: an honest peer sends about one
//!   announcement per block it stores, a few thousand a second at most. Its
//!   connection is closed.
//! - **Outbound**, before passing on a block it waits while the connection
//!   has more than [`MAX_UNSENT`] bytes it could not write yet (woken by
//!   the socket's progress); if the connection writes nothing for
//!   [`WRITE_STALL`] meanwhile, the channel is closed.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use hypercore_protocol::schema::Extension;
use hypercore_protocol::{Channel, Message};
use tokio::sync::{mpsc, Notify};
use tracing::{debug, warn};

use crate::hub::{HubHandle, PeerId};
use crate::swarm::{Greeting, MAX_GREETINGS, MAX_GREETING_BYTES};
use crate::wire::{Load, MAX_UNSENT};

pub use crate::metrics::Traffic;

impl Traffic {
    fn block_bytes(msg: &Message) -> u64 {
        match msg {
            Message::Data(d) => d.block.as_ref().map_or(0, |b| b.value.len() as u64),
            _ => 0,
        }
    }

    fn inbound(&self, msg: &Message) {
        let n = Self::block_bytes(msg);
        if n > 0 {
            self.received.inc_by(n);
            self.all_received.inc_by(n);
        }
    }

    fn outbound(&self, msg: &Message) {
        let n = Self::block_bytes(msg);
        if n > 0 {
            self.uploaded.inc_by(n);
            self.all_uploaded.inc_by(n);
        }
    }
}

/// Messages queued from a hub to one peer channel (see `Hub::send`): room
/// for announcements besides the at most 64 block answers a hub queues for
/// one peer (an honest peer keeps at most 32 requests in flight).
pub const PEER_QUEUE: usize = 1024;
/// A channel waiting this long on a connection that writes nothing is closed.
pub const WRITE_STALL: Duration = Duration::from_secs(60);
/// Messages a second a peer may send on one channel, on average.
pub const FLOOD_RATE: f64 = 20_000.0;
/// Messages a peer may send at once above the average.
pub const FLOOD_BURST: f64 = 40_000.0;

/// Roughly what a message from a peer holds in memory.
pub fn message_bytes(msg: &Message) -> u64 {
    let body = match msg {
        Message::Data(d) => d
            .block
            .as_ref()
            .map_or(0, |b| b.value.len() + 40 * b.nodes.len()),
        Message::Bitfield(b) => 4 * b.bitfield.len(),
        Message::Extension(e) => e.message.len(),
        _ => 0,
    };
    body as u64 + 64
}

/// A token bucket: `allow` says whether one more message fits the rate.
#[derive(Debug)]
pub struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    pub fn new(now: Instant) -> Self {
        Bucket {
            tokens: FLOOD_BURST,
            at: now,
        }
    }

    pub fn allow(&mut self, now: Instant) -> bool {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = now;
        self.tokens = (self.tokens + dt * FLOOD_RATE).min(FLOOD_BURST);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Waits until the connection has no more than [`MAX_UNSENT`] bytes
/// unwritten; false if it wrote nothing for [`WRITE_STALL`] meanwhile.
async fn writable(load: Arc<Load>) -> bool {
    let (mut progress, mut sent) = (Instant::now(), load.sent());
    loop {
        let notified = load.progress();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if load.unsent() <= MAX_UNSENT {
            return true;
        }
        if load.sent() != sent {
            (progress, sent) = (Instant::now(), load.sent());
        }
        let left = WRITE_STALL.saturating_sub(progress.elapsed());
        if left.is_zero() || load.ended().is_some() {
            return false;
        }
        let _ = tokio::time::timeout(left, notified).await;
    }
}

type Wait = Pin<Box<dyn Future<Output = bool> + Send>>;

/// Runs the pump until the channel or the hub ends; `kill` closes the
/// whole connection (a flooding peer).
///
/// Inbound is read from the channel's receiver, taken out of it, so that a
/// send waiting for room in the protocol's outbound queue (a peer that does
/// not read) never stops the pump from draining what the peer sends.
pub async fn run(
    mut channel: Channel,
    hub: HubHandle,
    peer: PeerId,
    load: Arc<Load>,
    kill: Arc<Notify>,
    traffic: Traffic,
    greeting: Option<(Greeting, [u8; 32], Vec<u8>)>,
) {
    let Some(mut inbound) = channel.take_receiver() else {
        warn!(peer, "a channel without its receiver; closing it");
        let _ = channel.close().await;
        return;
    };
    if let Some((g, _, hello)) = &greeting {
        let hello = Message::Extension(Extension {
            name: g.name.clone(),
            message: hello.clone(),
        });
        if channel.send(hello).await.is_err() {
            return;
        }
    }
    let mut greeted = 0usize;
    let (tx, mut rx) = mpsc::channel(PEER_QUEUE);
    let answers = Arc::new(AtomicUsize::new(0));
    hub.join(peer, tx, answers.clone()).await;
    let mut backlog: VecDeque<(Message, u64)> = VecDeque::new();
    let mut bucket = Bucket::new(Instant::now());
    // A block waiting for the connection to write what it has.
    let mut held: Option<(Message, Wait)> = None;
    // A message on its way into the protocol's outbound queue.
    let mut sending: Option<Pin<Box<dyn Future<Output = bool> + Send + '_>>> = None;
    let mut open = true;
    while open || !backlog.is_empty() {
        tokio::select! {
            msg = inbound.next(), if open => match msg {
                Some(msg) => {
                    if !bucket.allow(Instant::now()) {
                        warn!(peer, "peer sends more than {FLOOD_RATE} messages a second; closing its connection");
                        kill.notify_one();
                        break;
                    }
                    if let Message::Extension(e) = &msg {
                        // Extensions go to the greeting only, never to the hub.
                        match &greeting {
                            Some((g, remote, _))
                                if e.name == g.name
                                    && greeted < MAX_GREETINGS
                                    && e.message.len() <= MAX_GREETING_BYTES =>
                            {
                                greeted += 1;
                                (g.on_receive)(remote, &e.message);
                            }
                            _ => debug!(peer, name = %e.name, "extension message ignored"),
                        }
                        continue;
                    }
                    let bytes = message_bytes(&msg);
                    traffic.inbound(&msg);
                    load.take(bytes);
                    backlog.push_back((msg, bytes));
                }
                None => open = false,
            },
            permit = hub.delivery(), if !backlog.is_empty() => {
                let Some(permit) = permit else { break };
                let (msg, bytes) = backlog.pop_front().expect("not empty");
                load.handed(bytes);
                permit.send(peer, msg);
            }
            ok = async { sending.as_mut().expect("sending").await }, if sending.is_some() => {
                sending = None;
                if !ok {
                    break;
                }
            }
            ok = async { held.as_mut().expect("held").1.as_mut().await },
                if held.is_some() && sending.is_none() =>
            {
                let (msg, _) = held.take().expect("held");
                if !ok {
                    warn!(peer, "peer has read nothing for a minute; closing its channel");
                    break;
                }
                sending = Some(Box::pin(send(&channel, &load, msg)));
            }
            out = rx.recv(), if held.is_none() && sending.is_none() && open => match out {
                Some(msg) => {
                    traffic.outbound(&msg);
                    if let Message::Data(_) = &msg {
                        answers.fetch_sub(1, Ordering::Relaxed);
                        if load.unsent() > MAX_UNSENT {
                            held = Some((msg, Box::pin(writable(load.clone()))));
                            continue;
                        }
                    }
                    sending = Some(Box::pin(send(&channel, &load, msg)));
                }
                // The hub dropped this peer.
                None => break,
            },
        }
    }
    drop(sending);
    for (_, bytes) in backlog {
        load.handed(bytes);
    }
    debug!(peer, "channel pump ends");
    hub.leave(peer).await;
    let _ = channel.close().await;
}

/// Sends one message, counting a block's bytes as queued on the connection.
async fn send(channel: &Channel, load: &Load, msg: Message) -> bool {
    if let Message::Data(d) = &msg {
        let bytes = d.block.as_ref().map_or(0, |b| b.value.len());
        load.queue(bytes as u64 + 64);
    }
    channel.send(msg).await.is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_allows_the_rate_and_the_burst_and_no_more() {
        let t = Instant::now();
        let mut b = Bucket::new(t);
        let burst = (0..100_000).take_while(|_| b.allow(t)).count();
        assert_eq!(burst, FLOOD_BURST as usize);
        assert!(!b.allow(t));
        // A second later, a second's worth.
        let t1 = t + Duration::from_secs(1);
        let more = (0..100_000).take_while(|_| b.allow(t1)).count();
        assert_eq!(more, FLOOD_RATE as usize);
        // A long quiet refills no more than the burst.
        let t2 = t1 + Duration::from_secs(3600);
        let again = (0..100_000).take_while(|_| b.allow(t2)).count();
        assert_eq!(again, FLOOD_BURST as usize);
    }

    #[test]
    fn an_honest_pace_is_never_cut() {
        // 5 000 announcements a second for a minute.
        let t = Instant::now();
        let mut b = Bucket::new(t);
        for i in 0..300_000u64 {
            assert!(b.allow(t + Duration::from_micros(i * 200)), "message {i}");
        }
    }
}
