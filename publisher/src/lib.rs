//! hypernar-publisher: turns a Nix binary cache into signed, encrypted feeds.
//!
//! For each store path: fetch the narinfo and NAR from the upstream cache
//! ([`source`]), check NarHash and NarSize while cutting, compressing and
//! sealing the NAR into a spool file ([`spool`]), then commit: append the
//! blocks to the data feed, the path record to the index feed and the key
//! to the public key feed, under a journal ([`journal`]) that lets a killed
//! run be finished by the next one ([`publisher`]).
//!
//! Modules: [`source`], [`spool`], [`journal`], [`publisher`], [`error`].

pub mod channel;
pub mod control;
pub mod data;
pub mod error;
pub mod follow;
mod generations;
pub mod journal;
pub mod limit;
pub mod local;
pub mod origin;
mod published;
pub mod publisher;
mod release;
pub mod runs;
pub mod sets;
pub mod spool;

pub use error::PublishError;
pub use origin::{Origin, OriginError};
pub use publisher::{
    audience_feed_name, NoProgress, Outcome, Progress, PublishOptions, PublishSummary, Publisher,
    ReleaseSummary,
};
pub use spool::SealSettings;
#[cfg(feature = "sample")]
pub mod sample;
#[cfg(feature = "sample")]
pub mod synth;
