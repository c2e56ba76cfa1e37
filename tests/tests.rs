//! Integration and end-to-end tests, built as one binary. They run the real
//! `hypernar` binary as a separate process; the Nix tests drive real Nix.

mod util;

mod cli;
mod faults;
mod nix;
