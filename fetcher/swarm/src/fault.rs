//! Fault switches for the tests, read from the environment of the process
//! at start. Compiled in only with the `fault-injection` feature (the test
//! command turns it on; a release build leaves it off, and then these are
//! constant `false`). Nothing a peer sends can turn them on.

/// Whether the environment variable `name` is `1`, in a build with
/// fault injection.
fn switch(name: &str) -> bool {
    cfg!(feature = "fault-injection") && std::env::var_os(name).is_some_and(|v| v == "1")
}

/// `HYPERNAR_FAULT_CORRUPT_UPLOADS=1`: flip a bit in every block this node
/// uploads, so tests can check that peers detect and ban it.
pub(crate) fn corrupt_uploads() -> bool {
    switch("HYPERNAR_FAULT_CORRUPT_UPLOADS")
}

/// `HYPERNAR_FAULT_SILENT_UPLOADS=1`: never answer a block request, so
/// tests can check that requests time out and go to other peers.
pub(crate) fn silent_uploads() -> bool {
    switch("HYPERNAR_FAULT_SILENT_UPLOADS")
}

/// `HYPERNAR_FAULT_SILENT_AFTER_BYTES=N`: answer block requests of each feed
/// until N bytes of blocks went out, then never again (a peer that dies
/// mid-transfer, without closing its connections).
pub(crate) fn silent_after_bytes() -> Option<u64> {
    if !cfg!(feature = "fault-injection") {
        return None;
    }
    std::env::var("HYPERNAR_FAULT_SILENT_AFTER_BYTES")
        .ok()?
        .parse()
        .ok()
}
