//! Convenience wrapper to import all of Hypercore's core.
pub use crate::common::{HypercoreError, Store};
pub use crate::core::Hypercore;
pub use crate::crypto::PartialKeypair;
pub use crate::storage::Storage;
