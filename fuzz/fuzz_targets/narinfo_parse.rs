//! Narinfos, as an upstream cache serves them.
#![no_main]
use hypernar_feed::format::narinfo::NarInfo;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(info) = NarInfo::parse(data) {
        let again = NarInfo::parse(info.render().as_bytes()).expect("rendered narinfo parses");
        assert_eq!(again, info);
    }
});
