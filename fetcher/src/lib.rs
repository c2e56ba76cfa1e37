//! hypernar-fetcher: the user side of hypernar.
//!
//! Peers replicate publishers' feeds over the Hypercore protocol. Modules:
//! - [`wire`]: TCP framing, Noise handshake, the Hypercore protocol.
//! - [`http`]: the binary-cache HTTP API that hands NARs to Nix.
//! - [`upstream`]: upstream caches, the fallback and pull-through proxy.
//! - [`webseed`]: static HTTP copies of feeds, read with range requests.
//!
//! Planned: the web-seed and upstream fallbacks behind one block-source
//! combinator.

pub mod dht;
pub mod dialset;
mod fault;
pub mod fetch;
pub mod haves;
pub mod http;
pub mod hub;
pub mod listing;
pub mod mdns;
pub mod metrics;
pub mod mount;
pub mod node;
pub mod publishers;
pub mod pump;
pub mod recent;
pub mod sets;
pub mod share;
pub mod upstream;
pub mod webseed;
pub mod wire;
pub mod writer;
