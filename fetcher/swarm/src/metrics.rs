//! What a node counts, for `GET /metrics` (Prometheus/OpenMetrics text,
//! by prometheus-client) and the status page.
//!
//! Per-peer series exist while the peer is connected (removed when its
//! connection closes), so their number is bounded by the connection caps.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Where bytes came from.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabel {
    pub source: &'static str,
}

/// A narinfo answer: `hit` (a trusted publisher lists it), `proxied` (an
/// upstream had it), `miss` (404).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AnswerLabel {
    pub answer: &'static str,
}

/// A connected peer, by its address.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PeerLabel {
    pub peer: String,
}

/// A followed channel (`hypernar follow` run inside this node).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ChannelLabel {
    pub channel: String,
}

/// A followed channel's paths in one state (planned, published, already,
/// failed, missing, refused).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FollowPathsLabel {
    pub channel: String,
    pub state: &'static str,
}

/// A followed channel's NAR bytes (`done`, `planned`).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FollowBytesLabel {
    pub channel: String,
    pub what: &'static str,
}

/// Byte sources.
pub const PEER: SourceLabel = SourceLabel { source: "peer" };
pub const UPSTREAM: SourceLabel = SourceLabel { source: "upstream" };
pub const WEB_SEED: SourceLabel = SourceLabel { source: "web_seed" };

/// The node's counters.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// NAR bytes sent to HTTP clients (Nix).
    pub served: Counter,
    /// Block or NAR bytes received, by source.
    pub received: Family<SourceLabel, Counter>,
    /// Block bytes uploaded to peers.
    pub uploaded: Counter,
    /// Narinfo requests by answer.
    pub narinfo: Family<AnswerLabel, Counter>,
    /// Block bytes received from / uploaded to each connected peer.
    pub peer_received: Family<PeerLabel, Counter>,
    pub peer_uploaded: Family<PeerLabel, Counter>,
    /// Bytes that failed verification, by source (a peer is dropped, an
    /// upstream transfer cut).
    pub verification_failures: Family<SourceLabel, Counter>,
    /// NAR responses that went on from another source than peers.
    pub fallbacks: Family<SourceLabel, Counter>,
    /// Peer connections open now.
    pub connections: Gauge,
    /// Block requests withdrawn from peers because no reader wanted them
    /// any more (an HTTP client went away mid-NAR).
    pub requests_cancelled: Counter,
    /// A channel follower's current walk: paths by state, NAR bytes, how
    /// long the channel has been ahead of the last commit, and when that
    /// was (`hypernar follow` through this serve).
    pub follow_paths: Family<FollowPathsLabel, Gauge>,
    pub follow_bytes: Family<FollowBytesLabel, Gauge>,
    pub follow_lag: Family<ChannelLabel, Gauge>,
    pub follow_committed: Family<ChannelLabel, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("hypernar");
        let m = Metrics {
            served: Counter::default(),
            received: Family::default(),
            uploaded: Counter::default(),
            narinfo: Family::default(),
            peer_received: Family::default(),
            peer_uploaded: Family::default(),
            verification_failures: Family::default(),
            fallbacks: Family::default(),
            connections: Gauge::default(),
            requests_cancelled: Counter::default(),
            follow_paths: Family::default(),
            follow_bytes: Family::default(),
            follow_lag: Family::default(),
            follow_committed: Family::default(),
            registry: Registry::default(),
        };
        registry.register(
            "served_bytes",
            "NAR bytes sent to Nix over HTTP",
            m.served.clone(),
        );
        registry.register(
            "received_bytes",
            "Bytes received, by source (peer blocks, upstream NARs)",
            m.received.clone(),
        );
        registry.register(
            "uploaded_bytes",
            "Block bytes uploaded to peers",
            m.uploaded.clone(),
        );
        registry.register(
            "narinfo_requests",
            "Narinfo requests by answer (hit, proxied, miss)",
            m.narinfo.clone(),
        );
        registry.register(
            "peer_received_bytes",
            "Block bytes received from a connected peer",
            m.peer_received.clone(),
        );
        registry.register(
            "peer_uploaded_bytes",
            "Block bytes uploaded to a connected peer",
            m.peer_uploaded.clone(),
        );
        registry.register(
            "verification_failures",
            "Data that failed verification, by source",
            m.verification_failures.clone(),
        );
        registry.register(
            "fallbacks",
            "NAR responses continued from another source than peers",
            m.fallbacks.clone(),
        );
        registry.register(
            "peer_connections",
            "Peer connections open",
            m.connections.clone(),
        );
        registry.register(
            "requests_cancelled",
            "Block requests withdrawn from peers because no reader wanted them any more",
            m.requests_cancelled.clone(),
        );
        registry.register(
            "follow_paths",
            "A channel follower's walk: paths by state (planned, published, already, failed, missing, refused)",
            m.follow_paths.clone(),
        );
        registry.register(
            "follow_bytes",
            "A channel follower's walk: NAR bytes done and planned",
            m.follow_bytes.clone(),
        );
        registry.register(
            "follow_lag_seconds",
            "How long the channel has pointed at a release not committed yet",
            m.follow_lag.clone(),
        );
        registry.register(
            "follow_committed_time_seconds",
            "When the release last committed was committed (seconds since the epoch)",
            m.follow_committed.clone(),
        );
        Metrics { registry, ..m }
    }
}

/// The block bytes one connection moves, counted for metrics and the
/// status page.
#[derive(Debug, Clone)]
pub struct Traffic {
    /// This peer's bytes.
    pub received: prometheus_client::metrics::counter::Counter,
    pub uploaded: prometheus_client::metrics::counter::Counter,
    /// The node's totals (`received` from peers, `uploaded`).
    pub all_received: prometheus_client::metrics::counter::Counter,
    pub all_uploaded: prometheus_client::metrics::counter::Counter,
}

impl Traffic {
    /// Counters for one peer's connection.
    pub fn new(metrics: &Metrics, peer: &PeerLabel) -> Self {
        Traffic {
            received: metrics.peer_received.get_or_create(peer).clone(),
            uploaded: metrics.peer_uploaded.get_or_create(peer).clone(),
            all_received: metrics.received.get_or_create(&PEER).clone(),
            all_uploaded: metrics.uploaded.clone(),
        }
    }
}

/// A connected peer's series: counted while its connection is open,
/// removed when this is dropped (however the connection ends).
#[derive(Debug)]
pub struct PeerSeries {
    metrics: Arc<Metrics>,
    label: PeerLabel,
}

impl PeerSeries {
    /// Opens the series of a connection to `addr`; returns its counters.
    pub fn open(
        metrics: &Arc<Metrics>,
        addr: Option<std::net::SocketAddr>,
    ) -> (Traffic, PeerSeries) {
        let label = PeerLabel {
            peer: addr.map_or_else(|| "unknown".to_owned(), |a| a.to_string()),
        };
        metrics.connections.inc();
        let traffic = Traffic::new(metrics, &label);
        (
            traffic,
            PeerSeries {
                metrics: metrics.clone(),
                label,
            },
        )
    }
}

impl Drop for PeerSeries {
    fn drop(&mut self) {
        self.metrics.peer_received.remove(&self.label);
        self.metrics.peer_uploaded.remove(&self.label);
        self.metrics.connections.dec();
    }
}

impl Metrics {
    /// The OpenMetrics text of every counter.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }

    /// Sum of a family over its label sets.
    pub fn total(family: &Family<SourceLabel, Counter>, label: &SourceLabel) -> u64 {
        family.get_or_create(label).get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_appear_in_the_text_and_peers_go_away() {
        let m = Metrics::default();
        m.served.inc_by(1000);
        m.received.get_or_create(&PEER).inc_by(7);
        m.narinfo
            .get_or_create(&AnswerLabel { answer: "hit" })
            .inc();
        let peer = PeerLabel {
            peer: "127.0.0.1:7469".into(),
        };
        m.peer_received.get_or_create(&peer).inc_by(5);
        let text = m.encode();
        for line in [
            "hypernar_served_bytes_total 1000",
            "hypernar_received_bytes_total{source=\"peer\"} 7",
            "hypernar_narinfo_requests_total{answer=\"hit\"} 1",
            "hypernar_peer_received_bytes_total{peer=\"127.0.0.1:7469\"} 5",
            "# EOF",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
        assert!(m.peer_received.remove(&peer));
        assert!(!m.encode().contains("127.0.0.1:7469"));
    }
}
