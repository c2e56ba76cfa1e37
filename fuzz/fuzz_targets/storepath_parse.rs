//! Store paths from narinfos, records and the command line.
#![no_main]
use hypernar_feed::format::storepath::StorePath;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(p) = StorePath::parse(text) {
        assert_eq!(p.as_str(), text);
        assert_eq!(StorePath::from_base_name(p.base_name()).unwrap(), p);
    }
    if let Ok(p) = StorePath::from_base_name(text) {
        assert_eq!(p.base_name(), text);
    }
});
