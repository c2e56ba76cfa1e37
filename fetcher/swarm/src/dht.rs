//! Peers anywhere: the BitTorrent Mainline DHT (BEP 5, the `mainline`
//! crate), used as it is, with no node of our own.
//!
//! **Topics.** A node announces itself, and looks for peers, under one
//! 20-byte info-hash per root feed ([`crate::swarm::Swarm::roots`]: trusted
//! publishers' indexes, feeds replicated by token, publishers' indexes it
//! stores):
//!
//! ```text
//! topic = BLAKE2b-256("hypernar/v1/dht-topic" ‖ discovery key)[..20]
//! ```
//!
//! The discovery key is itself a keyed hash of the feed's public key, so
//! the topic is computable only by whoever knows the key; it reveals
//! neither the key nor anything about store paths. A publisher's data and
//! key feeds have no topic of their own: the peers met through its index
//! are offered every feed both sides hold on the same connection. So the
//! number of announcements grows with the number of publishers and tokens a
//! node follows, not with its paths or feeds; at most [`MAX_TOPICS`] are
//! announced (the first ones, trusted publishers first), each once every
//! [`ANNOUNCE_EVERY`].
//!
//! **Peers.** Every address a lookup returns in a range it may name
//! ([`Reach::Internet`], or [`Reach::Anywhere`] with `--dht-allow-local`)
//! is dialled like a `--peer` (at most [`MAX_LEARNED`] at once), until
//! [`GIVE_UP_AFTER`] attempts in a row fail (no connection, or no Noise
//! handshake; one that answered TCP but never a handshake is then held back
//! for a while). The addresses that completed a handshake and the DHT nodes of the routing
//! table are saved in `DATA/dht-peers` and used at the next start, so a
//! restart neither waits for the DHT nor depends on the bootstrap nodes.

use std::collections::VecDeque;
use std::io::Write;
use std::net::{SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use blake2::digest::consts::U32;
use blake2::{Blake2b, Digest};
use futures::StreamExt;
use mainline::async_dht::AsyncDht;
use mainline::Id;
use tracing::{debug, info, warn};

use crate::dialset::{may_dial, DialSet, Reach, Refused};
use crate::swarm::Swarm;

/// Well-known routers of the Mainline DHT, asked first unless
/// `--dht-bootstrap` says otherwise.
pub const DEFAULT_BOOTSTRAP: [&str; 4] = [
    "router.bittorrent.com:6881",
    "dht.transmissionbt.com:6881",
    "dht.libtorrent.org:25401",
    "router.utorrent.com:6881",
];
/// Most root feeds announced and looked up.
pub const MAX_TOPICS: usize = 64;
/// Most learned peers dialled at once, and saved.
pub const MAX_LEARNED: usize = 64;
/// Most peers learned from the DHT dialled at once at one IP address (a
/// DHT node can answer with any addresses: it gets this many dials of one
/// victim, and cannot fill the others' places).
pub const MAX_LEARNED_PER_IP: usize = 4;
/// Most DHT nodes saved for the next start.
pub const MAX_SAVED_NODES: usize = 64;
/// How often each topic is announced again (DHT nodes forget an
/// announcement after about 30 minutes).
pub const ANNOUNCE_EVERY: Duration = Duration::from_secs(15 * 60);
/// Connects in a row that may fail before a learned peer is dropped.
pub const GIVE_UP_AFTER: u32 = 5;
/// The first lookups come quickly (peers announce as they start), then
/// less often, up to this.
const LOOKUP_AT_MOST_EVERY: Duration = Duration::from_secs(5 * 60);
const FIRST_LOOKUP_AGAIN: Duration = Duration::from_secs(1);
/// The state file is read only up to this size.
const MAX_STATE_FILE: u64 = 64 * 1024;

/// Where and how to join the DHT.
#[derive(Debug, Clone)]
pub struct DhtConfig {
    /// DHT nodes to bootstrap from (`host:port`); empty for
    /// [`DEFAULT_BOOTSTRAP`].
    pub bootstrap: Vec<String>,
    /// The TCP port peers reach this node on (announced).
    pub port: u16,
    /// Where learned peers and DHT nodes are kept (`DATA/dht-peers`).
    pub state: PathBuf,
    /// Dial found addresses in private and loopback ranges too
    /// (`serve --dht-allow-local`); otherwise public ones only.
    pub allow_local: bool,
}

impl DhtConfig {
    fn reach(&self) -> Reach {
        if self.allow_local {
            Reach::Anywhere
        } else {
            Reach::Internet
        }
    }
}

/// The info-hash under which peers of the feed `key` meet.
pub fn topic(key: &[u8; 32]) -> Id {
    let dkey = hypercore_protocol::discovery_key(key);
    let mut h = Blake2b::<U32>::new();
    h.update(b"hypernar/v1/dht-topic");
    h.update(dkey);
    Id::from_bytes(&h.finalize()[..20]).expect("20 bytes make an id")
}

/// What `DATA/dht-peers` holds.
#[derive(Debug, Default, PartialEq)]
pub struct Saved {
    /// Hypernar peers that answered, most recent first.
    pub peers: Vec<SocketAddr>,
    /// DHT nodes, to bootstrap from.
    pub nodes: Vec<SocketAddr>,
}

impl Saved {
    /// Parses the state file's text; lines it does not understand are
    /// skipped, and each list is cut to its bound.
    pub fn parse(text: &str) -> Saved {
        let mut saved = Saved::default();
        for line in text.lines() {
            let mut words = line.split_whitespace();
            let (Some(kind), Some(addr), None) = (words.next(), words.next(), words.next()) else {
                continue;
            };
            let Ok(addr) = addr.parse::<SocketAddr>() else {
                continue;
            };
            let list = match kind {
                "peer" if saved.peers.len() < MAX_LEARNED => &mut saved.peers,
                "node" if saved.nodes.len() < MAX_SAVED_NODES => &mut saved.nodes,
                _ => continue,
            };
            if !list.contains(&addr) {
                list.push(addr);
            }
        }
        saved
    }

    /// The state file's text.
    pub fn render(&self) -> String {
        let mut out = String::from(
            "# hypernar serve: peers and DHT nodes it learned; rewritten as it runs\n",
        );
        for p in &self.peers {
            out.push_str(&format!("peer {p}\n"));
        }
        for n in &self.nodes {
            out.push_str(&format!("node {n}\n"));
        }
        out
    }

    /// Reads `path`; a missing, unreadable or odd file is an empty state.
    pub fn load(path: &Path) -> Saved {
        use std::io::Read;
        let mut text = String::new();
        match std::fs::File::open(path) {
            Ok(f) => {
                if let Err(e) = f.take(MAX_STATE_FILE).read_to_string(&mut text) {
                    warn!(path = %path.display(), %e, "could not read the saved DHT peers; starting without them");
                    return Saved::default();
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                warn!(path = %path.display(), %e, "could not read the saved DHT peers; starting without them");
            }
        }
        Saved::parse(&text)
    }

    /// Writes `path` whole or not at all (a temporary file, renamed).
    pub fn store(&self, path: &Path) -> std::io::Result<()> {
        let tmp = path.with_extension("tmp");
        let mut f = hypernar_feed::private::create_temp(&tmp)?;
        f.write_all(self.render().as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    }
}

/// Learned peers: those being dialled, and the recent ones to save.
#[derive(Debug)]
struct Learned {
    dialling: DialSet,
    /// Peers that completed a handshake, newest first: what is saved.
    recent: VecDeque<SocketAddr>,
    /// Whether a found address was refused for its range (said once).
    told_range: bool,
    /// Whether a lookup's answer was refused for one IP too many (said once).
    told_ip: bool,
}

impl Default for Learned {
    fn default() -> Self {
        Learned {
            dialling: DialSet::new(MAX_LEARNED, MAX_LEARNED_PER_IP),
            recent: VecDeque::new(),
            told_range: false,
            told_ip: false,
        }
    }
}

impl Learned {
    /// Whether `addr` should be dialled now (not already, and within the
    /// bounds); marks it dialled if so.
    fn take(&mut self, addr: SocketAddr, reach: Reach) -> bool {
        if !may_dial(addr, reach) {
            if !std::mem::replace(&mut self.told_range, true) {
                warn!(%addr, "the DHT named a peer in a local address range; not dialling such addresses (serve --dht-allow-local would; said once)");
            }
            return false;
        }
        match self.dialling.take(addr) {
            Ok(()) => true,
            Err(Refused::IpFull) => {
                if !std::mem::replace(&mut self.told_ip, true) {
                    warn!(%addr, "the DHT named more than {MAX_LEARNED_PER_IP} peers at one address; not dialling more of it (said once)");
                }
                false
            }
            Err(Refused::Already | Refused::Full | Refused::HeldBack) => false,
        }
    }

    fn remember(&mut self, addr: SocketAddr) {
        self.recent.retain(|a| *a != addr);
        self.recent.push_front(addr);
        self.recent.truncate(MAX_LEARNED);
    }
}

/// Whether `addr` (from a lookup) is this node itself.
fn is_self(addr: SocketAddrV4, port: u16, public: Option<SocketAddrV4>) -> bool {
    addr.port() == port
        && (addr.ip().is_loopback()
            || addr.ip().is_unspecified()
            || public.is_some_and(|p| p.ip() == addr.ip()))
}

/// Dials the peers saved last time, joins the DHT, and then announces this
/// node under every root feed's topic and dials the peers found there,
/// until `shutdown` (the discovery service; the dials it starts are the
/// swarm's connections, which [`Swarm::shutdown`] closes).
pub async fn run(node: Swarm, config: DhtConfig, shutdown: tokio_util::sync::CancellationToken) {
    let saved = Saved::load(&config.state);
    let learned = Arc::new(Mutex::new(Learned::default()));
    let reach = config.reach();
    let peers: Vec<SocketAddr> = saved
        .peers
        .iter()
        .copied()
        .filter(|a| may_dial(*a, reach))
        .collect();
    for addr in peers.iter().rev() {
        learned.lock().expect("learned lock").remember(*addr);
    }
    for addr in &peers {
        dial(&node, &learned, *addr, reach);
    }
    if !peers.is_empty() {
        info!(
            peers = peers.len(),
            "dialling the peers learned from the DHT last time"
        );
    }
    tokio::select! {
        _ = shutdown.cancelled() => {}
        _ = follow(node, config, saved.nodes, learned) => {}
    }
}

/// A DHT client bootstrapped from `bootstrap` (names resolved now, off the
/// async threads) and the nodes saved last time.
async fn join(bootstrap: Vec<String>, saved: Vec<SocketAddr>) -> std::io::Result<AsyncDht> {
    tokio::task::spawn_blocking(move || {
        let mut builder = mainline::Dht::builder();
        builder.bootstrap(&bootstrap);
        builder.extra_bootstrap(&saved);
        builder.build().map(mainline::Dht::as_async)
    })
    .await
    .map_err(std::io::Error::other)?
}

/// Dials `addr` until it stops answering, if the bounds allow (and it is
/// not dialled already); whether it is dialled now.
/// It is remembered (saved for the next start) once it completes a
/// handshake, and held back for [`QUARANTINE`](crate::dialset::QUARANTINE)
/// if it answers TCP but never completes one.
fn dial(node: &Swarm, learned: &Arc<Mutex<Learned>>, addr: SocketAddr, reach: Reach) -> bool {
    if !learned.lock().expect("learned lock").take(addr, reach) {
        return false;
    }
    let (task_node, learned) = (node.clone(), learned.clone());
    node.spawn(async move {
        let on = learned.clone();
        let on_handshake: crate::swarm::OnHandshake = Arc::new(move || {
            on.lock().expect("learned lock").remember(addr);
        });
        let why = task_node
            .dial_while_reachable(addr.to_string(), GIVE_UP_AFTER, Some(on_handshake))
            .await;
        let mut l = learned.lock().expect("learned lock");
        l.dialling.release(addr);
        // A node reached another way stays worth saving.
        if why != crate::swarm::GaveUp::AlreadyConnected {
            l.recent.retain(|a| *a != addr);
        }
        if why == crate::swarm::GaveUp::NotHypernar {
            l.dialling.hold_back(addr, Instant::now());
            debug!(%addr, "not a hypernar node: not dialled again for a while");
        }
    });
    true
}

async fn follow(
    node: Swarm,
    config: DhtConfig,
    saved_nodes: Vec<SocketAddr>,
    learned: Arc<Mutex<Learned>>,
) {
    node.find_stored_indexes().await;
    let bootstrap: Vec<String> = if config.bootstrap.is_empty() {
        DEFAULT_BOOTSTRAP.iter().map(|s| s.to_string()).collect()
    } else {
        config.bootstrap.clone()
    };
    // Joined once a DHT node answers; until then tried again every minute,
    // names resolved afresh (a laptop comes online).
    let mut told_offline = false;
    let dht = loop {
        match join(bootstrap.clone(), saved_nodes.clone()).await {
            Ok(dht) if dht.bootstrapped().await => break dht,
            Ok(_) if !told_offline => {
                warn!("no DHT node answered (is this machine offline?); the DHT will be tried again every minute");
                told_offline = true;
            }
            Err(e) if !told_offline => {
                warn!(%e, "cannot start the DHT client; it will be tried again every minute");
                told_offline = true;
            }
            _ => {}
        }
        tokio::time::sleep(Duration::from_secs(60)).await;
    };
    info!("joined the Mainline DHT");
    let mut next_announce = Instant::now();
    let mut wait = FIRST_LOOKUP_AGAIN;
    let mut warned_topics = false;
    // The topics of the last round.
    let mut announced: std::collections::HashSet<[u8; 32]> = std::collections::HashSet::new();
    let mut last_saved = Saved::default();
    loop {
        let mut roots = node.roots();
        if roots.len() > MAX_TOPICS && !warned_topics {
            warn!(
                roots = roots.len(),
                "more feeds to announce than {MAX_TOPICS}; announcing the first {MAX_TOPICS}"
            );
            warned_topics = true;
        }
        roots.truncate(MAX_TOPICS);
        let public = dht.info().await.public_address();
        // `--share none`: look, never announce.
        let announce = node.share().mode() != crate::share::ShareMode::None;
        // A topic new since the last round (a generation followed, a set
        // written here) is announced and looked up now, not at the next
        // round of announcements or lookups.
        let new: Vec<[u8; 32]> = roots
            .iter()
            .filter(|k| !announced.contains(*k))
            .copied()
            .collect();
        if !new.is_empty() && !announced.is_empty() {
            wait = FIRST_LOOKUP_AGAIN;
        }
        let due = Instant::now() >= next_announce;
        if announce && (due || !new.is_empty()) {
            for key in roots.iter().filter(|k| due || new.contains(*k)) {
                match dht.announce_peer(topic(key), Some(config.port)).await {
                    Ok(_) => debug!(topic = %topic(key), "announced on the DHT"),
                    Err(e) => debug!(topic = %topic(key), %e, "announcing on the DHT failed"),
                }
            }
            if due {
                next_announce = Instant::now() + ANNOUNCE_EVERY;
            }
        }
        announced = roots.iter().copied().collect();
        for key in &roots {
            let mut found = dht.get_peers(topic(key));
            while let Some(batch) = found.next().await {
                for addr in batch {
                    if is_self(addr, config.port, public) {
                        continue;
                    }
                    let addr = SocketAddr::V4(addr);
                    if dial(&node, &learned, addr, config.reach()) {
                        info!(peer = %addr, "found on the DHT");
                    }
                }
            }
        }
        let peers: Vec<SocketAddr> = {
            let l = learned.lock().expect("learned lock");
            l.recent.iter().copied().collect()
        };
        let now = Saved {
            peers,
            nodes: dht
                .to_bootstrap()
                .await
                .iter()
                .filter_map(|n| n.parse().ok())
                .take(MAX_SAVED_NODES)
                .collect(),
        };
        if now != last_saved {
            match now.store(&config.state) {
                Ok(()) => last_saved = now,
                Err(e) => {
                    warn!(path = %config.state.display(), %e, "could not save the peers learned from the DHT")
                }
            }
        }
        // Until the next round, or sooner when the topics change.
        let until = Instant::now() + wait;
        while Instant::now() < until {
            let left = until.saturating_duration_since(Instant::now());
            tokio::time::sleep(left.min(Duration::from_secs(1))).await;
            let mut now = node.roots();
            now.truncate(MAX_TOPICS);
            if now.iter().any(|k| !announced.contains(k)) {
                break;
            }
        }
        wait = (wait * 2).min(LOOKUP_AT_MOST_EVERY);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_topic_is_derived_from_the_discovery_key_not_the_key() {
        let key = [7u8; 32];
        let t = topic(&key);
        assert_eq!(t, topic(&key));
        assert_ne!(t, topic(&[8u8; 32]));
        // Neither the key nor its discovery key shows in the topic.
        assert_ne!(t.as_bytes()[..], key[..20]);
        assert_ne!(
            t.as_bytes()[..],
            hypercore_protocol::discovery_key(&key)[..20]
        );
    }

    #[test]
    fn the_state_file_round_trips_and_skips_what_it_does_not_understand() {
        let saved = Saved {
            peers: vec![
                "1.2.3.4:7469".parse().unwrap(),
                "[::1]:7469".parse().unwrap(),
            ],
            nodes: vec!["5.6.7.8:6881".parse().unwrap()],
        };
        assert_eq!(Saved::parse(&saved.render()), saved);
        let odd = "peer 1.2.3.4:7469\npeer nonsense\nnode\npeer 1.2.3.4:7469\nwho 9.9.9.9:1\npeer 2.2.2.2:1 extra\n\u{0}\u{ff}\nnode 5.6.7.8:6881";
        assert_eq!(
            Saved::parse(odd),
            Saved {
                peers: vec!["1.2.3.4:7469".parse().unwrap()],
                nodes: vec!["5.6.7.8:6881".parse().unwrap()],
            }
        );
    }

    #[test]
    fn the_state_file_keeps_at_most_its_bounds() {
        let text: String = (0..1000u32)
            .map(|i| {
                format!(
                    "peer 10.0.{}.{}:7469\nnode 10.1.{}.{}:6881\n",
                    i / 256,
                    i % 256,
                    i / 256,
                    i % 256
                )
            })
            .collect();
        let saved = Saved::parse(&text);
        assert_eq!(saved.peers.len(), MAX_LEARNED);
        assert_eq!(saved.nodes.len(), MAX_SAVED_NODES);
    }

    #[test]
    fn a_missing_state_file_is_an_empty_state_and_writing_replaces_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dht-peers");
        assert_eq!(Saved::load(&path), Saved::default());
        let saved = Saved {
            peers: vec!["1.2.3.4:7469".parse().unwrap()],
            nodes: vec![],
        };
        saved.store(&path).unwrap();
        assert_eq!(Saved::load(&path), saved);
        Saved::default().store(&path).unwrap();
        assert_eq!(Saved::load(&path), Saved::default());
    }

    #[test]
    fn learned_peers_are_dialled_once_and_at_most_max_learned() {
        let mut l = Learned::default();
        let a: SocketAddr = "1.1.1.1:1".parse().unwrap();
        assert!(l.take(a, Reach::Internet));
        assert!(!l.take(a, Reach::Internet));
        // Local ranges only when the operator allows them.
        let private = SocketAddr::from(([10, 9, 9, 9], 1));
        assert!(!l.take(private, Reach::Internet));
        assert!(l.told_range);
        // One address answering for many ports gets a few dials.
        let many =
            (0..100u16).filter(|p| l.take(SocketAddr::from(([10, 9, 9, 9], *p)), Reach::Anywhere));
        assert_eq!(many.count(), MAX_LEARNED_PER_IP);
        for i in 0..(MAX_LEARNED as u32 * 2) {
            l.take(
                SocketAddr::from(([10, 0, (i / 256) as u8, (i % 256) as u8], 1)),
                Reach::Anywhere,
            );
        }
        assert_eq!(l.dialling.len(), MAX_LEARNED);
        assert!(
            l.recent.is_empty(),
            "only peers that completed a handshake are remembered"
        );
        // One found to be no hypernar node is not dialled again for a while.
        let b: SocketAddr = "1.1.1.2:1".parse().unwrap();
        l.dialling.release(a);
        l.dialling.hold_back(b, Instant::now());
        assert!(!l.take(b, Reach::Internet));
    }

    #[test]
    fn only_this_nodes_own_address_is_itself() {
        let port = 7469;
        let public = Some("203.0.113.5:6881".parse().unwrap());
        assert!(is_self("127.0.0.1:7469".parse().unwrap(), port, public));
        assert!(is_self("203.0.113.5:7469".parse().unwrap(), port, public));
        assert!(!is_self("203.0.113.5:7470".parse().unwrap(), port, public));
        assert!(!is_self("203.0.113.6:7469".parse().unwrap(), port, public));
        assert!(!is_self("127.0.0.1:7470".parse().unwrap(), port, None));
    }
}
