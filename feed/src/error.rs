//! The crate's error types, gathered for callers that handle them together.

pub use crate::catalog::CatalogError;
pub use crate::format::{IdentityError, NarInfoError, RecordError, SegmentError, StorePathError};
pub use crate::reader::ReadError;
pub use crate::store::StoreError;

/// The operating system's error somewhere in `e`'s chain of causes, if any.
pub fn io_cause<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a std::io::Error> {
    let mut cur = Some(e);
    while let Some(e) = cur {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return Some(io);
        }
        cur = e.source();
    }
    None
}

/// A local condition an operator must act on, in plain words: a full
/// disk, a read-only file system, a missing permission. `None` for errors
/// that say something about the data or the peers instead.
pub fn local_condition(e: &(dyn std::error::Error + 'static)) -> Option<&'static str> {
    use std::io::ErrorKind as K;
    Some(match io_cause(e)?.kind() {
        K::StorageFull => "the disk is full",
        K::QuotaExceeded => "the disk quota is used up",
        K::ReadOnlyFilesystem => "the file system is read-only",
        K::PermissionDenied => "permission denied",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_is_found_under_layers_of_context() {
        let full = std::io::Error::from_raw_os_error(28);
        let store = StoreError::Io {
            path: "/x".into(),
            source: full,
        };
        assert_eq!(local_condition(&store), Some("the disk is full"));
        assert_eq!(store.io_error().map(|e| e.raw_os_error()), Some(Some(28)));
        let other = StoreError::NoHeader { feed: "f".into() };
        assert_eq!(local_condition(&other), None);
        assert!(other.io_error().is_none());
        let rofs = std::io::Error::from_raw_os_error(30);
        assert_eq!(local_condition(&rofs), Some("the file system is read-only"));
    }
}
