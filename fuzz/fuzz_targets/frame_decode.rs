//! The wire's frames (`u24le(length) || bytes`), as a stranger sends them
//! before and after the handshake.
#![no_main]
use bytes::BytesMut;
use hypernar_fetcher::wire::{codec, MAX_FRAME, MAX_HANDSHAKE_FRAME};
use libfuzzer_sys::fuzz_target;
use tokio_util::codec::Decoder;

fuzz_target!(|data: &[u8]| {
    for max in [MAX_HANDSHAKE_FRAME, MAX_FRAME] {
        let mut c = codec(max);
        let mut buf = BytesMut::from(data);
        // Frames until the input runs out or a frame is refused.
        while let Ok(Some(frame)) = c.decode(&mut buf) {
            assert!(frame.len() <= max);
        }
    }
});
