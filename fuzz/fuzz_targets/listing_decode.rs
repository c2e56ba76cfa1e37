//! Encoded NAR listings, as a publisher's listing blocks hand them over.
#![no_main]
use hypernar_feed::format::listing::{Kind, Listing, ListingError};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Whatever NAR size the bytes describe, decode against it.
    let decoded = match Listing::decode(data, 0) {
        Err(ListingError::Size { computed, .. }) => Listing::decode(data, computed),
        other => other,
    };
    if let Ok(l) = decoded {
        // What decodes encodes to a listing that decodes the same.
        let again = Listing::decode(&l.encode(), l.nar_size()).expect("re-encoded listing decodes");
        assert_eq!(again, l);
        for i in 0..l.len() as u32 {
            if let Kind::Regular { size, offset, .. } = l.get(i).unwrap().kind {
                assert!(offset.checked_add(size).is_some_and(|end| end <= l.nar_size()));
            }
        }
        let _ = l.to_nix_json();
    }
});
