//! hypernar-feed: the feed format and local feed storage of hypernar.
//!
//! A publisher turns a Nix binary cache into Hypercore feeds: an index feed
//! (its public key is the publisher identity) of path records, data feeds of
//! encrypted NAR segments, and key feeds that release per-path keys. This
//! crate defines those formats and reads and writes them on disk. It knows
//! nothing of HTTP, FUSE or the command line.
//!
//! Modules:
//! - [`format`]: pure formats (no I/O): store paths, narinfo, nix32,
//!   identities and key derivation, records, the segment envelope.
//! - [`store`]: hypercores on disk, one directory per feed.
//! - [`file`]: hypercore storage files with positioned I/O.
//! - [`oplog`]: works around two crash-safety bugs in hypercore 0.16's
//!   operation log.
//! - [`private`]: a data directory only its owner can read (0700/0600).
//! - [`io`]: reading and appending a feed through whoever owns it.
//! - [`catalog`]: a store read back as publishers, paths and released keys.
//! - [`lookup`]: one path found by lookup in a publisher's runs and tail.
//! - [`reader`]: streaming a path's NAR out of its blocks, verified.
//! - [`set`]: a safe-path set as its entries make it.
//! - [`error`]: the error types in one place.
//!
//! docs/protocol.md describes the formats in prose.

pub mod catalog;
pub mod error;
pub mod file;
pub mod format;
pub mod io;
pub mod lookup;
pub mod oplog;
pub mod private;
pub mod reader;
pub mod set;
pub mod store;
pub mod webseed;

pub use catalog::{Catalog, PublisherIndex};
pub use store::{Feed, FeedStore};
