//! One peer connection, from TCP to its end: the Noise handshake (and
//! one connection per remote node, `dedup.rs`), opening the feeds both
//! sides know, a pump per channel, and the bookkeeping when it ends.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use hypercore_protocol::Event;
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::{claim, dedup, reach, Conn, Swarm, HANDSHAKE_TIMEOUT, IDLE_TIMEOUT};
use crate::wire;

impl Swarm {
    /// Runs one connection until it ends; how it went (`on_handshake` is
    /// called when its handshake completes and it is kept).
    pub(super) async fn run_conn(
        self,
        stream: TcpStream,
        initiator: bool,
        dialled: Option<String>,
        on_handshake: Option<reach::OnHandshake>,
    ) -> reach::ConnEnd {
        let addr = stream.peer_addr().ok();
        let (traffic, _series) = crate::metrics::PeerSeries::open(&self.inner.metrics, addr);
        let (mut protocol, load) = match wire::protocol(stream, initiator, &self.inner.noise) {
            Ok(p) => p,
            Err(e) => {
                warn!(%e, "connection setup failed");
                return reach::ConnEnd::NoHandshake;
            }
        };
        let ended = CancellationToken::new();
        let mut remote_key: Option<[u8; 32]> = None;
        let mut outcome = reach::ConnEnd::NoHandshake;
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let kill = Arc::new(Notify::new());
        let opened = Arc::new(Mutex::new(HashSet::new()));
        let mut pumped = HashSet::new();
        self.inner.conns.lock().expect("conns lock").insert(
            id,
            Conn {
                addr,
                traffic: traffic.clone(),
                commands: protocol.commands(),
                kill: kill.clone(),
                dialled: dialled.clone(),
                opened: opened.clone(),
            },
        );
        let mut handshaken = false;
        let started = Instant::now();
        let mut check = tokio::time::interval(Duration::from_secs(1));
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let event = tokio::select! {
                _ = kill.notified() => break,
                _ = load.wait_ended() => {
                    debug!(conn = id, why = ?load.ended(), "connection ended");
                    break;
                }
                _ = check.tick() => {
                    if !handshaken && started.elapsed() > HANDSHAKE_TIMEOUT {
                        debug!(conn = id, "no handshake in time; closing");
                        break;
                    }
                    if load.idle() > IDLE_TIMEOUT {
                        debug!(conn = id, "idle; closing");
                        break;
                    }
                    continue;
                }
                ev = protocol.next() => ev,
            };
            match event {
                None => break,
                Some(Err(e)) => {
                    debug!(conn = id, %e, "connection closed");
                    break;
                }
                Some(Ok(Event::Handshake(remote))) => {
                    handshaken = true;
                    let admit = self.inner.remotes.lock().expect("remotes lock").admit(
                        &self.inner.noise_public,
                        remote,
                        dedup::Registered {
                            id,
                            we_initiated: initiator,
                            kill: kill.clone(),
                            ended: ended.clone(),
                        },
                    );
                    if let dedup::Admit::Close { kept } = admit {
                        debug!(conn = id, peer = ?dialled, "a second connection to a node already connected (or to this node itself); closing it");
                        outcome = reach::ConnEnd::Duplicate(kept);
                        break;
                    }
                    remote_key = Some(remote);
                    outcome = reach::ConnEnd::Handshaken;
                    if let Some(peer) = &dialled {
                        tracing::info!(%peer, "connected");
                    }
                    if let Some(f) = &on_handshake {
                        f();
                    }
                    let keys: Vec<[u8; 32]> = self
                        .inner
                        .feeds
                        .lock()
                        .expect("feeds lock")
                        .iter()
                        .filter(|(dkey, _)| claim(&opened, **dkey))
                        .map(|(_, e)| e.key)
                        .collect();
                    for key in keys {
                        if protocol.open(key).await.is_err() {
                            break;
                        }
                    }
                }
                Some(Ok(Event::DiscoveryKey(dkey))) => {
                    // The peer offers a feed: join in if we know its key.
                    let key = self
                        .inner
                        .feeds
                        .lock()
                        .expect("feeds lock")
                        .get(&dkey)
                        .map(|e| e.key);
                    if let Some(key) = key.filter(|_| claim(&opened, dkey)) {
                        let _ = protocol.open(key).await;
                    }
                }
                Some(Ok(Event::Channel(channel))) => {
                    if !pumped.insert(*channel.discovery_key()) {
                        debug!(conn = id, "second channel for one feed ignored");
                        continue;
                    }
                    let hub = self
                        .inner
                        .feeds
                        .lock()
                        .expect("feeds lock")
                        .get(channel.discovery_key())
                        .map(|e| e.hub.clone());
                    if let Some(hub) = hub {
                        let greeting = self
                            .greeting(channel.discovery_key())
                            .zip(remote_key)
                            .map(|((g, hello), remote)| (g, remote, hello));
                        let peer = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
                        self.inner
                            .peer_conn
                            .lock()
                            .expect("peer lock")
                            .insert(peer, id);
                        self.spawn(crate::pump::run(
                            channel,
                            hub,
                            peer,
                            load.clone(),
                            kill.clone(),
                            traffic.clone(),
                            greeting,
                        ));
                    }
                }
                Some(Ok(Event::Close(dkey))) => {
                    pumped.remove(&dkey);
                    opened.lock().expect("opened lock").remove(&dkey);
                }
                Some(Ok(_)) => {}
            }
        }
        self.inner.conns.lock().expect("conns lock").remove(&id);
        self.inner
            .peer_conn
            .lock()
            .expect("peer lock")
            .retain(|_, c| *c != id);
        if let Some(remote) = remote_key {
            self.inner
                .remotes
                .lock()
                .expect("remotes lock")
                .ended(&remote, id);
        }
        ended.cancel();
        outcome
    }
}
