//! Index and key feed records, as a peer or a disk hands them over.
#![no_main]
use hypernar_feed::format::record::Record;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(record) = Record::decode(data) {
        // Unknown kinds are skipped by readers and never written back.
        if matches!(record, Record::Unknown(_)) {
            return;
        }
        // What decodes encodes to something that decodes the same.
        let again = Record::decode(&record.encode()).expect("re-encoded record decodes");
        assert_eq!(format!("{again:?}"), format!("{record:?}"));
    }
});
