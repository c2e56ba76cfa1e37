//! Progress for long commands: a bar on a terminal, nothing otherwise (the
//! caller prints a one-line summary either way).

use std::io::IsTerminal;

use hypernar_feed::format::storepath::StorePath;
use hypernar_publisher::{Outcome, Progress};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

#[derive(Debug)]
pub struct Bar {
    bar: ProgressBar,
    /// Paths planned and done (committed, skipped or failed).
    paths: std::sync::atomic::AtomicU64,
    done: std::sync::atomic::AtomicU64,
}

impl Bar {
    pub fn new() -> Self {
        let target = if std::io::stderr().is_terminal() {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        let bar = ProgressBar::with_draw_target(Some(0), target);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {bytes_per_sec} ETA {eta} {msg}",
            )
            .expect("valid template"),
        );
        Bar {
            bar,
            paths: Default::default(),
            done: Default::default(),
        }
    }

    /// A line above the bar (or on stderr when there is none).
    #[allow(clippy::print_stderr)]
    pub fn println(&self, line: &str) {
        if self.bar.is_hidden() {
            eprintln!("{line}");
        } else {
            self.bar.println(line);
        }
    }

    fn count(&self, name: &str) {
        use std::sync::atomic::Ordering::Relaxed;
        let done = self.done.load(Relaxed);
        let paths = self.paths.load(Relaxed);
        self.bar.set_message(format!("{done}/{paths} paths {name}"));
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl Progress for Bar {
    fn planned(&self, paths: u64, nar_bytes: u64) {
        self.bar.set_length(nar_bytes);
        self.paths
            .store(paths, std::sync::atomic::Ordering::Relaxed);
        self.count("");
    }
    fn nar_bytes(&self, n: u64) {
        self.bar.inc(n);
    }
    fn path_done(&self, path: &StorePath, outcome: &Outcome) {
        match outcome {
            Outcome::Published { .. } => {
                self.done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                self.count(path.name());
            }
            Outcome::AlreadyPublished => {}
            Outcome::Failed(e) => {
                self.done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                self.bar.println(format!("failed: {e}"));
            }
        }
    }
}
