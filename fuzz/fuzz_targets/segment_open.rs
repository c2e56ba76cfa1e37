//! Segment envelopes: blocks from peers (which cannot forge the AEAD), and
//! envelopes sealed by a publisher that holds the key and means harm (a
//! codec byte and payload of its choosing: a zstd bomb, a lying length).
#![no_main]
use hypernar_feed::format::segment::{Layout, Opener, PathKey, Sealer};
use hypernar_feed::format::storepath::StorePath;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let segment_size = 4096u32 << (data[0] % 8); // 4 KiB .. 512 KiB
    let nar_size = u64::from(data[1]) * 1000 + 1;
    let index = u64::from(data[2] % 4);
    let body = &data[3..];
    let path = StorePath::parse("/nix/store/dvy33zhzyzyqssgblsj9zn6xikj3y7w8-fuzz").unwrap();
    let key = PathKey([7; 32]);
    let Ok(layout) = Layout::new(path, nar_size, segment_size) else {
        return;
    };
    let Ok(expected) = layout.len(index) else {
        return;
    };
    let mut opener = Opener::new(layout.clone(), &key).unwrap();
    // Raw bytes as a block: authentication fails, nothing is appended.
    let mut out = Vec::new();
    let mut block = body.to_vec();
    assert!(opener.open_into(index, &mut block, &mut out).is_err());
    assert!(out.is_empty());
    // The same bytes sealed as an envelope body by the key holder: opened
    // or refused, never more than the segment's length.
    let sealer = Sealer::new(layout, &key, 1).unwrap();
    let mut block = sealer.seal_body_as_is(index, body);
    let mut out = Vec::new();
    if opener.open_into(index, &mut block, &mut out).is_ok() {
        assert_eq!(out.len(), expected);
    }
    assert!(out.len() <= expected);
});
