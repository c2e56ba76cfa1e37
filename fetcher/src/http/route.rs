//! What a request to the binary-cache API asks for: a pure function of the
//! method and the path, so every hostile shape is a unit test.
//!
//! Nix asks for `nix-cache-info`, `<hash>.narinfo`, the NAR URL a narinfo
//! names, and (some commands) `log/…`, `realisations/…`, `<hash>.ls` and
//! `build-trace-v2/…`. Anything else is not part of the protocol.

use hypernar_feed::format::narinfo::NarHash;
use hypernar_feed::format::storepath::is_hash_part;

/// Longest request path we look at; Nix's are under 120 bytes.
pub const MAX_PATH_LEN: usize = 512;

/// A request, classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `/`: the status page.
    Status,
    /// `/nix-cache-info`.
    CacheInfo,
    /// `/metrics`: Prometheus text format.
    Metrics,
    /// `/<hash>.narinfo`.
    NarInfo(String),
    /// `/nar/<hash>-<narhash>.nar`: the NAR of the path with that hash,
    /// as long as its NarHash is still the one named (so a resumed
    /// transfer never mixes two versions of a path).
    Nar { hash: String, nar_hash: NarHash },
    /// `/<hash>.ls`: the NAR listing of the path with that hash.
    Listing(String),
    /// `log/<drv>` or `realisations/<id>.doi`: passed through from the
    /// upstreams (`sources::passthrough`); the path without its `/`.
    Passthrough(crate::sources::passthrough::Kind, String),
    /// A part of the protocol this node does not serve (build traces,
    /// debug info): "not here".
    NotHere,
    /// A path outside the protocol.
    Unknown,
    /// A path no client of the protocol sends: traversal, escapes,
    /// malformed hashes, overlong.
    Bad(&'static str),
    /// A method other than GET and HEAD.
    Method,
}

pub use hypernar_feed::format::narinfo::nar_url;

/// Classifies a request by its method and path (the query is ignored).
pub fn route(method: &http::Method, path: &str) -> Route {
    if method != http::Method::GET && method != http::Method::HEAD {
        return Route::Method;
    }
    if path.len() > MAX_PATH_LEN {
        return Route::Bad("request path too long");
    }
    let Some(rest) = path.strip_prefix('/') else {
        return Route::Bad("request path must start with /");
    };
    // Only the characters Nix's URLs use: no escapes, no traversal (a
    // realisation's id, `sha256:…!out`, has a colon and a bang).
    let realisation = rest.starts_with("realisations/");
    if !rest.bytes().all(|b| {
        b.is_ascii_alphanumeric()
            || matches!(b, b'.' | b'-' | b'_' | b'/' | b'+')
            || (realisation && matches!(b, b':' | b'!'))
    }) {
        return Route::Bad("unexpected character in request path");
    }
    if !rest.is_empty()
        && rest
            .split('/')
            .any(|seg| seg.is_empty() || seg == ".." || seg == ".")
    {
        return Route::Bad("path traversal");
    }
    match rest {
        "" | "index.html" => return Route::Status,
        "nix-cache-info" => return Route::CacheInfo,
        "metrics" => return Route::Metrics,
        _ => {}
    }
    if let Some(hash) = rest.strip_suffix(".narinfo") {
        return if is_hash_part(hash) {
            Route::NarInfo(hash.to_owned())
        } else {
            Route::Bad("malformed store path hash")
        };
    }
    if let Some(hash) = rest.strip_suffix(".ls") {
        return if is_hash_part(hash) {
            Route::Listing(hash.to_owned())
        } else {
            Route::Bad("malformed store path hash")
        };
    }
    if let Some(name) = rest.strip_prefix("nar/") {
        let Some(stem) = name.strip_suffix(".nar") else {
            // Compressed NAR URLs are another cache's; not ours.
            return Route::NotHere;
        };
        let Some((hash, nar)) = stem.split_once('-') else {
            return Route::NotHere;
        };
        if !is_hash_part(hash) {
            return Route::Bad("malformed store path hash");
        }
        return match NarHash::parse(&format!("sha256:{nar}")) {
            Ok(nar_hash) => Route::Nar {
                hash: hash.to_owned(),
                nar_hash,
            },
            Err(_) => Route::Bad("malformed NAR hash"),
        };
    }
    use crate::sources::passthrough::Kind;
    let mut parts = rest.split('/');
    let (top, name, more) = (parts.next().unwrap_or(""), parts.next(), parts.next());
    match (top, name, more) {
        ("log", Some(_), None) => return Route::Passthrough(Kind::Log, rest.to_owned()),
        ("realisations", Some(n), None) if n.ends_with(".doi") => {
            return Route::Passthrough(Kind::Realisation, rest.to_owned())
        }
        ("log" | "realisations" | "build-trace-v2" | "debuginfo", _, _) => return Route::NotHere,
        _ => {}
    }
    Route::Unknown
}

pub use crate::sources::ByteRange;

/// What a `Range` header asks of a body of `len` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeAsk {
    /// No header, or one we answer with the whole body (several ranges, a
    /// unit other than bytes, a malformed value: RFC 9110 lets a server
    /// ignore it).
    Whole,
    /// One satisfiable range: 206.
    Part(ByteRange),
    /// A range that starts past the end: 416.
    Unsatisfiable,
}

/// Parses a `Range` header value against a body of `len` bytes.
pub fn parse_range(value: Option<&[u8]>, len: u64) -> RangeAsk {
    let Some(value) = value else {
        return RangeAsk::Whole;
    };
    let Ok(value) = std::str::from_utf8(value) else {
        return RangeAsk::Whole;
    };
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return RangeAsk::Whole;
    };
    if spec.contains(',') {
        return RangeAsk::Whole;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return RangeAsk::Whole;
    };
    let num = |s: &str| -> Option<u64> {
        (!s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    match (a.trim(), b.trim()) {
        ("", suffix) => match num(suffix) {
            // The last `n` bytes.
            Some(0) => RangeAsk::Unsatisfiable,
            Some(_) if len == 0 => RangeAsk::Unsatisfiable,
            Some(n) => RangeAsk::Part(ByteRange {
                start: len.saturating_sub(n),
                end: len,
            }),
            None => RangeAsk::Whole,
        },
        (first, "") => match num(first) {
            Some(s) if s >= len => RangeAsk::Unsatisfiable,
            Some(s) => RangeAsk::Part(ByteRange { start: s, end: len }),
            None => RangeAsk::Whole,
        },
        (first, last) => match (num(first), num(last)) {
            (Some(s), Some(e)) if s > e => RangeAsk::Whole,
            (Some(s), Some(_)) if s >= len => RangeAsk::Unsatisfiable,
            (Some(s), Some(e)) => RangeAsk::Part(ByteRange {
                start: s,
                end: e.saturating_add(1).min(len),
            }),
            _ => RangeAsk::Whole,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;

    const H: &str = "0c6kzph7l0dcbyxf0q1vn8ak8g2x2b9b";
    const N: &str = "1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s";

    fn get(p: &str) -> Route {
        route(&Method::GET, p)
    }

    #[test]
    fn the_protocol_s_paths() {
        assert_eq!(get("/"), Route::Status);
        assert_eq!(get("/nix-cache-info"), Route::CacheInfo);
        assert_eq!(get("/metrics"), Route::Metrics);
        assert_eq!(get(&format!("/{H}.narinfo")), Route::NarInfo(H.into()));
        assert_eq!(
            route(&Method::HEAD, &format!("/{H}.narinfo")),
            Route::NarInfo(H.into())
        );
        let nar = NarHash::parse(&format!("sha256:{N}")).unwrap();
        assert_eq!(
            get(&format!("/{}", nar_url(H, &nar))),
            Route::Nar {
                hash: H.into(),
                nar_hash: nar
            }
        );
        assert_eq!(
            get(&format!("/nar/{H}-{N}.nar")),
            get(&format!("/{}", nar_url(H, &nar)))
        );
        assert_eq!(get(&format!("/{H}.ls")), Route::Listing(H.into()));
        assert_eq!(get("/xyz.ls"), Route::Bad("malformed store path hash"));
        use crate::sources::passthrough::Kind;
        assert_eq!(
            get(&format!("/log/{H}-hello.drv")),
            Route::Passthrough(Kind::Log, format!("log/{H}-hello.drv"))
        );
        let id = "realisations/sha256:1b7a8b9c!out.doi";
        assert_eq!(
            get(&format!("/{id}")),
            Route::Passthrough(Kind::Realisation, id.into())
        );
        for p in [
            "/build-trace-v2/x".to_owned(),
            format!("/nar/{N}.nar.xz"),
            "/log".into(),
            "/log/a/b".into(),
            "/realisations/x.json".into(),
            "/realisations/a/b.doi".into(),
        ] {
            assert_eq!(get(&p), Route::NotHere, "{p}");
        }
        // A colon or a bang is a realisation's only.
        assert!(matches!(get("/log/a:b"), Route::Bad(_)));
        assert!(matches!(get("/nar/a!b.nar"), Route::Bad(_)));
        assert_eq!(get("/favicon.ico"), Route::Unknown);
    }

    #[test]
    fn hostile_paths_are_bad_requests() {
        for p in [
            "nix-cache-info",
            "/../etc/passwd",
            "/nar/../../etc/passwd",
            "/nar/./x.nar",
            "/%2e%2e/etc",
            "//nix-cache-info",
            "/nar//x.nar",
            "/a b",
            "/\u{e9}.narinfo",
            "/0c6kzph7l0dcbyxf0q1vn8ak8g2x2b9.narinfo",
            "/0c6kzph7l0dcbyxf0q1vn8ak8g2x2b9e.narinfo",
            "/0C6KZPH7L0DCBYXF0Q1VN8AK8G2X2B9B.narinfo",
            "/nar/0c6kzph7l0dcbyxf0q1vn8ak8g2x2b9b-zzz.nar",
            "/nar/short-1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s.nar",
        ] {
            assert!(matches!(get(p), Route::Bad(_)), "{p:?} gave {:?}", get(p));
        }
        assert!(matches!(
            get(&format!("/{}", "a".repeat(600))),
            Route::Bad(_)
        ));
        assert_eq!(route(&Method::POST, "/nix-cache-info"), Route::Method);
        assert_eq!(route(&Method::PUT, &format!("/{H}.narinfo")), Route::Method);
        assert_eq!(route(&Method::DELETE, "/"), Route::Method);
    }

    fn part(start: u64, end: u64) -> RangeAsk {
        RangeAsk::Part(ByteRange { start, end })
    }

    #[test]
    fn ranges_at_their_boundaries() {
        let r = |v: &str, len| parse_range(Some(v.as_bytes()), len);
        assert_eq!(parse_range(None, 100), RangeAsk::Whole);
        assert_eq!(r("bytes=0-", 100), part(0, 100));
        assert_eq!(r("bytes=0-0", 100), part(0, 1));
        assert_eq!(r("bytes=99-", 100), part(99, 100));
        assert_eq!(r("bytes=100-", 100), RangeAsk::Unsatisfiable);
        assert_eq!(r("bytes=100-200", 100), RangeAsk::Unsatisfiable);
        assert_eq!(r("bytes=10-19", 100), part(10, 20));
        assert_eq!(r("bytes=10-1000", 100), part(10, 100));
        assert_eq!(r("bytes=10-18446744073709551615", 100), part(10, 100));
        assert_eq!(
            r("bytes=18446744073709551615-", 100),
            RangeAsk::Unsatisfiable
        );
        assert_eq!(r("bytes=-10", 100), part(90, 100));
        assert_eq!(r("bytes=-1000", 100), part(0, 100));
        assert_eq!(r("bytes=-0", 100), RangeAsk::Unsatisfiable);
        assert_eq!(r("bytes=0-", 0), RangeAsk::Unsatisfiable);
        // Ignored: answered with the whole body.
        for v in [
            "bytes=5-1",
            "bytes=0-1,5-6",
            "items=0-1",
            "bytes=",
            "bytes=-",
            "bytes=a-b",
            "bytes=+1-2",
            "bytes=99999999999999999999999-",
            "bytes 0-1",
        ] {
            assert_eq!(r(v, 100), RangeAsk::Whole, "{v}");
        }
        assert_eq!(parse_range(Some(b"bytes=\xff-1"), 100), RangeAsk::Whole);
    }
}
