//! hypernar-swarm: the lowest floor of a node. Feeds, blocks, proofs and
//! peers — not store paths, path keys, HTTP, web seeds or upstreams (its
//! Cargo.toml has no reqwest, hyper or fuser, so the compiler holds that
//! line; docs/ARCHITECTURE.md).
//!
//! - [`swarm`]: the feed table, the connection table and their limits,
//!   dialling (`swarm/reach.rs`), one connection per remote node
//!   (`swarm/dedup.rs`), connections' life (`swarm/conn.rs`).
//! - [`hub`]: one actor per feed, owning its hypercore.
//! - [`wire`], [`pump`]: TCP framing, Noise, the Hypercore protocol, and a
//!   channel's messages to and from its hub.
//! - [`dht`], [`mdns`], [`dialset`]: finding peers, and bounding what is
//!   dialled.
//! - [`share`]: what replicas may be announced and served (`--share`).
//! - [`writer`]: a node's own feeds written through their hubs (`publish`
//!   inside `serve`).
//! - [`metrics`]: the node's counters (one registry, shared with the
//!   floors above).

pub mod dht;
pub mod dialset;
pub mod error;
mod fault;
pub mod haves;
pub mod hub;
pub mod mdns;
pub mod metrics;
pub mod pump;
pub mod share;
pub mod swarm;
pub mod wire;
pub mod writer;

pub use error::SwarmError;
pub use swarm::{Limits, PeerInfo, Swarm, SwarmConfig};
