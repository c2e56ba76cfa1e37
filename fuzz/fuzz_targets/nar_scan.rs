//! NARs, as an upstream cache or a peer's segments hand them over, through
//! the scanner that lists them.
#![no_main]
use hypernar_feed::format::listing::{scan, Kind, Listing, NarScanner};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let whole = scan(data);
    // Fed in uneven pieces, the scanner says the same.
    let mut s = NarScanner::new();
    let mut fed = Ok(());
    for piece in data.chunks(7) {
        fed = s.feed(piece);
        if fed.is_err() {
            break;
        }
    }
    let pieces = fed.and_then(|()| s.finish());
    assert_eq!(whole.is_ok(), pieces.is_ok());
    if let (Ok(l), Ok(p)) = (whole, pieces) {
        assert_eq!(l, p);
        assert_eq!(l.nar_size(), data.len() as u64);
        assert_eq!(Listing::decode(&l.encode(), l.nar_size()).unwrap(), l);
        for i in 0..l.len() as u32 {
            if let Kind::Regular { size, offset, .. } = l.get(i).unwrap().kind {
                assert!(offset + size <= data.len() as u64);
            }
        }
    }
});
