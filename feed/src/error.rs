//! The crate's error types, gathered for callers that handle them together.

pub use crate::catalog::CatalogError;
pub use crate::format::{IdentityError, NarInfoError, RecordError, SegmentError, StorePathError};
pub use crate::reader::ReadError;
pub use crate::store::StoreError;
