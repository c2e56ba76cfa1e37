//! Publisher identities, feed tokens and key files, as users paste them.
#![no_main]
use hypernar_feed::format::identity::{parse_feed_key_text, Identity, PublisherSecret};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(id) = text.parse::<Identity>() {
        assert_eq!(id.to_string().parse::<Identity>().unwrap().to_bytes(), id.to_bytes());
    }
    let _ = parse_feed_key_text(text);
    if let Ok(secret) = PublisherSecret::from_key_file(text) {
        let again = PublisherSecret::from_key_file(&secret.to_key_file()).unwrap();
        assert_eq!(again.identity().to_bytes(), secret.identity().to_bytes());
    }
});
