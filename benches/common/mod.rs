//! Shared pieces of the benchmarks.

#![allow(dead_code)]

use std::path::Path;
use std::time::{Duration, Instant};

/// Concatenated contents of files under `dirs`, up to `budget` bytes:
/// real binaries, libraries and data, compressible as real NARs are.
pub fn usr_bytes(dirs: &[&str], budget: usize) -> Vec<u8> {
    fn walk(dir: &Path, out: &mut Vec<u8>, budget: usize) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        let mut entries: Vec<_> = entries.flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            if out.len() >= budget {
                return;
            }
            let Ok(meta) = e.path().symlink_metadata() else {
                continue;
            };
            if meta.is_file() {
                if let Ok(bytes) = std::fs::read(e.path()) {
                    out.extend_from_slice(&bytes);
                }
            } else if meta.is_dir() {
                walk(&e.path(), out, budget);
            }
        }
    }
    let mut out = Vec::with_capacity(budget);
    for d in dirs {
        walk(Path::new(d), &mut out, budget);
    }
    out.truncate(budget);
    out
}

pub fn time<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let t = Instant::now();
    let v = f();
    (v, t.elapsed())
}

/// CPU seconds (user + system) of finished, waited-for child processes.
pub fn children_cpu() -> f64 {
    #[allow(unsafe_code)]
    // SAFETY: rusage is plain old data (all-zero is valid), and getrusage
    // only writes into the struct we pass.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru);
        ru
    };
    ru.ru_utime.tv_sec as f64
        + ru.ru_utime.tv_usec as f64 / 1e6
        + ru.ru_stime.tv_sec as f64
        + ru.ru_stime.tv_usec as f64 / 1e6
}
