//! The one place an error becomes an HTTP status and body. The match is
//! exhaustive, so a new kind of error forces a decision here; a body never
//! carries an internal error's text (that goes to the log), only what the
//! catalog says of a path (not listed, no key, not in a set).

use http::StatusCode;

use crate::sources::PathError;

/// What was asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ask {
    /// `<hash>.narinfo`: never a 5xx, whatever went wrong — Nix aborts a
    /// build on a narinfo error but goes on to its next substituter on a
    /// 404.
    NarInfo,
    /// `nar/…`, before any byte is sent.
    Nar,
    /// `<hash>.ls`.
    Listing,
}

/// The status and body for `e` when `ask` failed.
pub fn answer(ask: Ask, e: &PathError) -> (StatusCode, String) {
    use PathError::*;
    let (status, body) = match e {
        // What the catalog says: a path this node does not serve (now).
        NotReady(why) => (StatusCode::NOT_FOUND, why.to_string()),
        // Passing: the swarm, the web seeds or the upstream may do better
        // in a moment.
        Open(_) | Deadline { .. } | Block { .. } | Upstream(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "this path's blocks cannot be had now; try again later".to_owned(),
        ),
        // A trusted publisher's data that does not check: waiting will not
        // mend it.
        Layout { .. } | Segment(_) | Listing(_) | Nar(_) => (
            StatusCode::BAD_GATEWAY,
            "this path's published data does not check (see the node's log)".to_owned(),
        ),
    };
    match ask {
        Ask::NarInfo if status.is_server_error() => (StatusCode::NOT_FOUND, body),
        _ => (status, body),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::publishers::NotFound;
    use crate::sources::SupplyError;
    use hypernar_feed::format::storepath::StorePath;
    use std::time::Duration;

    fn errors() -> Vec<PathError> {
        let path =
            StorePath::parse("/nix/store/0c6kzph7l0dcbyxf0q1vn8ak8g2x2b9b-hello-2.12").unwrap();
        vec![
            PathError::NotReady(NotFound::NoKey(path)),
            PathError::Deadline {
                index: 3,
                deadline: Duration::from_secs(8),
            },
            PathError::Block {
                index: 3,
                source: SupplyError::NotHere { index: 3 },
            },
            PathError::Layout {
                nar_size: 1,
                segment_size: 1,
                computed: 1,
                recorded: 2,
            },
        ]
    }

    #[test]
    fn a_narinfo_is_never_a_server_error() {
        for e in errors() {
            let (status, _) = answer(Ask::NarInfo, &e);
            assert_eq!(status, StatusCode::NOT_FOUND, "{e}");
        }
    }

    #[test]
    fn statuses_by_kind_and_no_internal_text_in_a_body() {
        let got: Vec<StatusCode> = errors().iter().map(|e| answer(Ask::Nar, e).0).collect();
        assert_eq!(
            got,
            [
                StatusCode::NOT_FOUND,
                StatusCode::SERVICE_UNAVAILABLE,
                StatusCode::SERVICE_UNAVAILABLE,
                StatusCode::BAD_GATEWAY,
            ]
        );
        for e in errors().iter().skip(1) {
            let (_, body) = answer(Ask::Listing, e);
            assert!(!body.contains("block 3") && !body.contains("00"), "{body}");
        }
        let (_, body) = answer(Ask::Nar, &errors()[0]);
        assert!(body.contains("no key has been released"), "{body}");
    }
}
