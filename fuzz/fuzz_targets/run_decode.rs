//! Run pages and manifests (the index at scale), as a peer or a web seed
//! hands them over, checked against an arbitrary run and position.
#![no_main]
use hypernar_feed::format::record::Record;
use hypernar_feed::format::run::{bucket, RunRef};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first 9 bytes say which run and block the page was asked as.
    let [bits, a, b, c, d, e, f, g, h, block @ ..] = data else {
        return;
    };
    let first_block = u64::from(u16::from_le_bytes([*a, *b]));
    let at = u64::from(u32::from_le_bytes([*c, *d, *e, *f]));
    let page_no = u64::from(u16::from_le_bytes([*g, *h]));
    match Record::decode(block) {
        Ok(Record::RunPage(page)) => {
            let run = RunRef {
                first_block,
                bits: bits % 25,
                entries: page.entries.len() as u64,
                from: 0,
                to: at,
            };
            if page_no >= run.pages() {
                return;
            }
            if run.check_page(first_block + page_no, &page).is_ok() {
                for e in &page.entries {
                    assert_eq!(u64::from(bucket(&e.hash, run.bits)), page_no);
                    assert_eq!(run.page_block(&e.hash), first_block + page_no);
                    assert_eq!(page.find(&e.hash), Some(e));
                    assert!(e.index_seq < at);
                }
            }
        }
        Ok(Record::Manifest(m)) => {
            if m.check(at).is_ok() {
                let mut next = 0;
                for r in &m.runs {
                    assert_eq!(r.from, next);
                    assert!(r.end_block().is_some_and(|end| end <= at));
                    next = r.to;
                }
                assert_eq!(next, m.indexed_to);
            }
        }
        _ => {}
    }
});
