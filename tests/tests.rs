//! Integration and end-to-end tests, built as one binary. They run the real
//! `hypernar` binary as a separate process; the Nix tests drive real Nix.

#![allow(clippy::print_stderr, clippy::print_stdout)]

mod util;

mod cli;
mod discovery;
mod disk;
mod evict;
mod faults;
mod follow;
mod fuse;
mod group;
mod hostile;
mod http;
mod interop;
mod keep;
mod large;
mod lifecycle;
mod local;
mod nix;
mod runs;
mod runs_hostile;
mod sets;
mod share;
mod swarm;
mod upstream;
mod webseed;
