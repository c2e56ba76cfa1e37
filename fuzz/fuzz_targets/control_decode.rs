//! Control socket frames (`hypernar publish` → `hypernar serve`).
#![no_main]
use hypernar_publisher::control::{decode_request_frame, encode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = decode_request_frame(data) {
        assert_eq!(decode_request_frame(&encode(&req)).unwrap(), req);
    }
});
