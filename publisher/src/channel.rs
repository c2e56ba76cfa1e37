//! Nix channels as `channels.nixos.org` serves them: a channel URL
//! redirects to a release directory (`…/nixos-24.05.1234.abcdef0/`) that
//! holds `store-paths.xz` (the release's job outputs, one store path per
//! line; not their closure) and `git-revision`. The pure part: what a
//! release is called and which of two is newer, and the store-path list
//! read with bounds. Fetching is the follower's (`crate::follow`).
//!
//! A release name ends `.<revision count>.<short git revision>`, as
//! NixOS's release names do (`nixos-24.05.5725.7e1ca67996af`,
//! `nixpkgs-25.05pre800000.abc1234`): the revision count is the number of
//! commits on the branch, so a newer release has a larger one. A name
//! without one cannot be ordered and is compared by the time its
//! `store-paths.xz` was last modified instead.

use std::io::Read;

use hypernar_feed::format::storepath::StorePath;

/// The most store paths a release may list (nixos-unstable lists about
/// 10^5 job outputs; its closure is about 10^6).
pub const MAX_ROOTS: usize = 4 << 20;
/// The most bytes `store-paths.xz` may decompress to (a line is at most
/// about 220 bytes).
pub const MAX_STORE_PATHS_BYTES: u64 = 1 << 30;

/// Why a release's store-path list was refused.
#[derive(Debug, thiserror::Error)]
pub enum StorePathsError {
    #[error("store-paths.xz does not decompress: {0}")]
    Xz(std::io::Error),
    #[error("store-paths.xz decompresses to more than {MAX_STORE_PATHS_BYTES} bytes")]
    TooLarge,
    #[error("store-paths.xz lists more than {MAX_ROOTS} paths")]
    TooMany,
    #[error("store-paths.xz line {line} is not a store path: {text:?}")]
    Line { line: usize, text: String },
}

/// The store paths a release's `store-paths.xz` lists (`compressed`),
/// in order, each once.
pub fn store_paths(compressed: &[u8]) -> Result<Vec<StorePath>, StorePathsError> {
    let mut text = Vec::new();
    xz2::read::XzDecoder::new(compressed)
        .take(MAX_STORE_PATHS_BYTES + 1)
        .read_to_end(&mut text)
        .map_err(StorePathsError::Xz)?;
    if text.len() as u64 > MAX_STORE_PATHS_BYTES {
        return Err(StorePathsError::TooLarge);
    }
    let text = String::from_utf8_lossy(&text);
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let path = StorePath::parse(line).map_err(|_| StorePathsError::Line {
            line: i + 1,
            text: line.chars().take(240).collect(),
        })?;
        if seen.insert(path.clone()) {
            if out.len() >= MAX_ROOTS {
                return Err(StorePathsError::TooMany);
            }
            out.push(path);
        }
    }
    Ok(out)
}

/// A release of a channel: its name (the release directory's last path
/// segment) and what orders it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    pub name: String,
    /// The release directory, ending in `/`.
    pub url: String,
    /// The revision count its name carries, if it does.
    pub revision_count: Option<u64>,
    /// When its `store-paths.xz` was last modified (seconds since the
    /// epoch), if the server said.
    pub modified: Option<u64>,
}

/// The revision count a release name carries: the number before its last
/// `.`-separated part, when that part is a short git revision (hex).
pub fn revision_count(name: &str) -> Option<u64> {
    let mut parts = name.rsplit('.');
    let rev = parts.next()?;
    if rev.len() < 7 || !rev.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let before = parts.next()?;
    // `25.05pre800000`: the count after `pre`; `24.05.5725`: all of it.
    let digits = before.rsplit_once("pre").map_or(before, |(_, d)| d);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// How `next` stands against `last`, the release last committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// The same release: nothing to do (or a run to finish).
    Same,
    Newer,
    /// Older than the last committed: refused (a channel going back is a
    /// stale mirror, or a hostile redirect).
    Older,
    /// Nothing tells: different names and no revision counts or times to
    /// compare. Taken as newer: the channel moved.
    Unordered,
}

/// Orders `next` against `last`: by revision count, then by time.
pub fn order(last: &Release, next: &Release) -> Order {
    if last.name == next.name {
        return Order::Same;
    }
    let by = |a: Option<u64>, b: Option<u64>| match (a, b) {
        (Some(a), Some(b)) if b > a => Some(Order::Newer),
        (Some(a), Some(b)) if b < a => Some(Order::Older),
        _ => None,
    };
    by(last.revision_count, next.revision_count)
        .or_else(|| by(last.modified, next.modified))
        .unwrap_or(Order::Unordered)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn xz(text: &str) -> Vec<u8> {
        let mut e = xz2::write::XzEncoder::new(Vec::new(), 6);
        e.write_all(text.as_bytes()).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn a_store_path_list_is_read_in_order_once_each_and_bounded() {
        let a = "/nix/store/yzpnsva739ix5g71hc0yfpy1szrpa0hm-hn-b";
        let b = "/nix/store/dvy33zhzyzyqssgblsj9zn6xikj3y7w8-hn-a";
        let got = store_paths(&xz(&format!("{a}\n\n{b}\n{a}\n"))).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].as_str(), a);
        assert_eq!(store_paths(&xz("")).unwrap(), vec![]);
        let err = store_paths(&xz(&format!("{a}\n/etc/passwd\n"))).unwrap_err();
        assert!(
            matches!(err, StorePathsError::Line { line: 2, .. }),
            "{err}"
        );
        assert!(matches!(
            store_paths(b"not xz").unwrap_err(),
            StorePathsError::Xz(_)
        ));
    }

    #[test]
    fn release_names_carry_their_revision_count() {
        assert_eq!(revision_count("nixos-24.05.5725.7e1ca67996af"), Some(5725));
        assert_eq!(
            revision_count("nixpkgs-25.05pre800000.abc1234"),
            Some(800_000)
        );
        assert_eq!(revision_count("nixos-test.101.0123456"), Some(101));
        for none in [
            "",
            "nixos",
            "nixos-24.05",
            "nixos-24.05.x.7e1ca67",
            "a.1.xyz1234",
            "a.1.abc",
        ] {
            assert_eq!(revision_count(none), None, "{none:?}");
        }
    }

    #[test]
    fn releases_are_ordered_by_revision_count_then_time() {
        let r = |name: &str, modified| Release {
            name: name.into(),
            url: format!("http://x/{name}/"),
            revision_count: revision_count(name),
            modified,
        };
        let one = r("nixos-test.100.aaaaaaa", Some(50));
        assert_eq!(order(&one, &one.clone()), Order::Same);
        assert_eq!(
            order(&one, &r("nixos-test.101.bbbbbbb", Some(10))),
            Order::Newer
        );
        assert_eq!(
            order(&one, &r("nixos-test.99.ccccccc", Some(90))),
            Order::Older
        );
        assert_eq!(order(&r("a", Some(5)), &r("b", Some(6))), Order::Newer);
        assert_eq!(order(&r("a", Some(5)), &r("b", Some(4))), Order::Older);
        assert_eq!(order(&r("a", None), &r("b", None)), Order::Unordered);
    }
}
