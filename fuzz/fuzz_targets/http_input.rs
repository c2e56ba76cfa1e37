//! What an HTTP client or a web seed sends the substituter: request paths
//! (the router), `Range` headers, web-seed heads, and upstream narinfos as
//! they are rewritten for pull-through.
#![no_main]
use hypernar_feed::format::narinfo::NarInfo;
use hypernar_feed::webseed::Head;
use hypernar_fetcher::http::route::{parse_range, route, RangeAsk};
use hypernar_fetcher::sources::upstream::proxied_narinfo;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    match sel % 4 {
        0 => {
            let method = if sel & 0x10 == 0 {
                http::Method::GET
            } else {
                http::Method::HEAD
            };
            if let Ok(path) = std::str::from_utf8(rest) {
                let _ = route(&method, path);
            }
        }
        1 => {
            let len = u64::from(sel) << 20 | rest.len() as u64;
            if let RangeAsk::Part(r) = parse_range(Some(rest), len) {
                assert!(r.start < r.end && r.end <= len, "{r:?} of {len}");
            }
        }
        2 => {
            if let Ok(h) = Head::parse(rest) {
                assert_eq!(Head::parse(h.render().as_bytes()).unwrap(), h);
            }
        }
        _ => {
            if let Ok(text) = std::str::from_utf8(rest) {
                if let Ok(before) = NarInfo::parse(rest) {
                    let after = NarInfo::parse(proxied_narinfo(text, "nar/x.nar").as_bytes())
                        .expect("a rewritten narinfo parses");
                    assert_eq!(after.nar_hash, before.nar_hash);
                    assert_eq!(after.sigs, before.sigs);
                    assert_eq!(after.url, "nar/x.nar");
                }
            }
        }
    }
});
