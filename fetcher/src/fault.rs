//! Fault switches for the tests, read from the environment of the process
//! at start. Compiled in only with the `fault-injection` feature (the test
//! command turns it on; a release build leaves it off, and then these are
//! constant `false`). Nothing a peer sends can turn them on.

/// Whether the environment variable `name` is `1`, in a build with
/// fault injection.
fn switch(name: &str) -> bool {
    cfg!(feature = "fault-injection") && std::env::var_os(name).is_some_and(|v| v == "1")
}

/// `HYPERNAR_FAULT_EVICT_FAST=1`: check the disk bound every half second
/// and protect recently used paths for no time, so eviction tests need not
/// wait out the production intervals.
pub(crate) fn evict_fast() -> bool {
    switch("HYPERNAR_FAULT_EVICT_FAST")
}

/// `HYPERNAR_FAULT_EVICT_READING=1`: evict paths even while their NAR is
/// being sent, as a mount read can be between two segments, so a test can
/// show a reader gets its blocks again.
pub(crate) fn evict_reading() -> bool {
    switch("HYPERNAR_FAULT_EVICT_READING")
}
