//! The pure feed format: no I/O, no async. Everything a peer, a web seed or
//! a disk hands us is parsed here, so this is what the property tests and
//! fuzz targets exercise. docs/protocol.md is the prose version.

pub mod generation;
pub mod group;
pub mod identity;
pub mod listing;
pub mod narinfo;
pub mod nixbase32;
pub mod nixkey;
pub mod record;
pub mod run;
pub mod segment;
pub mod storepath;

pub use identity::{Identity, IdentityError, PublisherSecret};
pub use narinfo::{Compression, NarHash, NarInfo, NarInfoError};
pub use record::{
    FeedDecl, FeedHeader, FeedRole, KeyRelease, ListingRecord, PathRecord, Record, RecordError,
    WrappedKey,
};
pub use segment::{Layout, Opener, PathKey, Sealer, SegmentError};
pub use storepath::{StorePath, StorePathError};
