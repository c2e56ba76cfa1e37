//! Progress for long commands: a bar on a terminal, nothing otherwise (the
//! caller prints a one-line summary either way).

use std::io::IsTerminal;

use hypernar_feed::format::storepath::StorePath;
use hypernar_publisher::{Outcome, Progress};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

#[derive(Debug)]
pub struct Bar {
    bar: ProgressBar,
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
                "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {bytes_per_sec} {msg}",
            )
            .expect("valid template"),
        );
        Bar { bar }
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl Progress for Bar {
    fn planned(&self, paths: u64, nar_bytes: u64) {
        self.bar.set_length(nar_bytes);
        self.bar.set_message(format!("{paths} paths"));
    }
    fn nar_bytes(&self, n: u64) {
        self.bar.inc(n);
    }
    fn path_done(&self, path: &StorePath, outcome: &Outcome) {
        match outcome {
            Outcome::Published { .. } => self.bar.set_message(path.name().to_owned()),
            Outcome::AlreadyPublished => {}
            Outcome::Failed(e) => self.bar.println(format!("failed: {e}")),
        }
    }
}
