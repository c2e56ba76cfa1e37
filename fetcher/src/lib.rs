//! hypernar-fetcher: the user side of hypernar (skeleton).
//!
//! Planned modules (issues 3 and after): the Hypercore replicator and block
//! scheduler that fetch verified blocks from many peers, the web-seed and
//! upstream fallbacks behind one block-source combinator, and the binary
//! cache HTTP API that hands NARs to Nix. Today the only block source is
//! the local feed store in `hypernar_feed`.
