//! hypernar-fetcher: the user side of hypernar, in floors that import only
//! downward (docs/ARCHITECTURE.md; `tests/floors.rs` holds the line):
//!
//! - **swarm** — the `hypernar-swarm` crate below this one: feeds, hubs,
//!   connections, dialling, discovery (re-exported here as [`swarm`] and
//!   its modules, for the command line and the tests).
//! - **catalog** — [`node`] (the node: the swarm and what it knows and
//!   keeps; following indexes, keys and sets, pins' computation, the
//!   bounded disk), with [`publishers`], [`sets`], [`recent`].
//! - **sources** — [`sources`]: where verified bytes of a path come from
//!   (peers, web seeds, the hedge over them, the upstream behind them) and
//!   the one path reader every front-end uses.
//! - **front-ends** — [`http`] (the binary-cache API), [`mount`] (the FUSE
//!   view's source), [`pins`] (pinned paths kept).

pub mod channels;
mod fault;
pub mod following;
pub mod groups;
pub mod http;
pub mod mount;
pub mod node;
pub mod pins;
pub mod publishers;
pub mod recent;
pub mod sets;
pub mod sources;

pub use hypernar_swarm as swarm;
pub use hypernar_swarm::{dht, dialset, haves, hub, mdns, metrics, pump, share, wire, writer};
