//! Replication messages, as a peer sends them after the handshake:
//! hypercore-protocol's decoders, then every check we apply to the numbers
//! in them (request bounds, announced ranges and bitfields).
#![no_main]
use compact_encoding::CompactEncoding;
use hypercore_protocol::schema::{Bitfield, Data, NoData, Range, Request, Synchronize};
use hypernar_fetcher::haves::Haves;
use hypernar_fetcher::hub::out_of_bounds;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&kind, rest)) = data.split_first() else {
        return;
    };
    let mut haves = Haves::default();
    match kind % 6 {
        0 => {
            if let Ok((req, _)) = Request::decode(rest) {
                for (len, bytes) in [(0, 0), (1, 1), (1000, 1 << 20), (u64::MAX, u64::MAX)] {
                    let _ = out_of_bounds(&req, len, bytes);
                }
            }
        }
        1 => {
            if let Ok((r, _)) = Range::decode(rest) {
                haves.set_range(r.start, r.length, !r.drop);
                let _ = r.start.saturating_add(r.length);
            }
        }
        2 => {
            if let Ok((b, _)) = Bitfield::decode(rest) {
                haves.set_words(b.start, &b.bitfield);
            }
        }
        3 => {
            let _ = Data::decode(rest);
        }
        4 => {
            let _ = Synchronize::decode(rest);
        }
        _ => {
            let _ = NoData::decode(rest);
        }
    }
});
