//! Test-only fault switches, read from the environment of the process at
//! start. Off by default; nothing a peer sends can turn them on.

/// `HYPERNAR_FAULT_CORRUPT_UPLOADS=1`: flip a bit in every block this node
/// uploads, so tests can check that peers detect and ban it.
pub fn corrupt_uploads() -> bool {
    std::env::var_os("HYPERNAR_FAULT_CORRUPT_UPLOADS").is_some_and(|v| v == "1")
}

/// `HYPERNAR_FAULT_SILENT_UPLOADS=1`: never answer a block request, so
/// tests can check that requests time out and go to other peers.
pub fn silent_uploads() -> bool {
    std::env::var_os("HYPERNAR_FAULT_SILENT_UPLOADS").is_some_and(|v| v == "1")
}
