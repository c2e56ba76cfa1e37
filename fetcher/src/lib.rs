//! hypernar-fetcher: the user side of hypernar, in floors that import
//! only downward (docs/ARCHITECTURE.md; `tests/floors.rs` holds the line):
//!
//! - **swarm and catalog** — [`node`] (the feed and connection tables, the
//!   publishers, sets and pins it follows, eviction), with [`hub`],
//!   [`wire`], [`pump`], [`dialset`], [`dht`], [`mdns`], [`share`],
//!   [`writer`], [`publishers`], [`sets`], [`recent`], [`haves`],
//!   [`metrics`].
//! - **sources** — [`sources`]: where verified bytes of a path come from
//!   (peers, web seeds, the hedge over them, the upstream behind them) and
//!   the one path reader every front-end uses.
//! - **front-ends** — [`http`] (the binary-cache API), [`mount`] (the FUSE
//!   view's source), [`pins`] (pinned paths kept).

pub mod dht;
pub mod dialset;
mod fault;
pub mod haves;
pub mod http;
pub mod hub;
pub mod mdns;
pub mod metrics;
pub mod mount;
pub mod node;
pub mod pins;
pub mod publishers;
pub mod pump;
pub mod recent;
pub mod sets;
pub mod share;
pub mod sources;
pub mod wire;
pub mod writer;
