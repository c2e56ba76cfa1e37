//! What a `hypernar follow` run inside this node (`serve` holding the
//! follower's data directory) is doing, per channel: for `hypernar
//! status`, the status page and `/metrics`. A pure record of the figures
//! ([`FollowStatus`]) and a table of them the follow job updates.
//!
//! The figures: the release the channel points at and the one committed
//! last, the phase, the walk's paths by state and NAR bytes done of
//! planned, the rate and the time left at it, and the **lag**: how long the
//! channel has pointed at a release not committed yet (0 when current).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use hypernar_swarm::metrics::{ChannelLabel, FollowBytesLabel, FollowPathsLabel, Metrics};

/// Where a channel's follower is.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Phase {
    /// Between looks at the channel.
    #[default]
    Waiting,
    /// Reading the channel, its release and walking the closure.
    Walking,
    /// Publishing the paths not published yet.
    Publishing,
    /// The last look failed (it is tried again at the next).
    Failed(String),
    /// The follow ended (its client went away, or the serve is stopping).
    Stopped,
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Phase::Waiting => write!(f, "waiting for the next look"),
            Phase::Walking => write!(f, "walking the release's closure"),
            Phase::Publishing => write!(f, "publishing"),
            Phase::Failed(why) => write!(f, "the last look failed: {why}"),
            Phase::Stopped => write!(f, "not following (its client went away)"),
        }
    }
}

/// Paths of a release's walk by what became of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PathCounts {
    /// To publish (not published before).
    pub planned: u64,
    pub published: u64,
    /// Published before this walk.
    pub already: u64,
    /// Refused or failed (missing and refused included).
    pub failed: u64,
    /// Of `failed`: the upstream does not have them.
    pub missing: u64,
    /// Of `failed`: no trusted key signed their narinfo.
    pub refused: u64,
}

/// One channel's follower.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FollowStatus {
    pub url: String,
    /// The release the channel pointed at when last looked at.
    pub target: Option<String>,
    /// The release committed last, and when (seconds since the epoch).
    pub committed: Option<(String, u64)>,
    pub phase: Phase,
    pub paths: PathCounts,
    pub bytes_done: u64,
    pub bytes_planned: u64,
    /// When publishing began (for the rate).
    pub publishing_since: Option<Instant>,
    /// Since when the channel has pointed at a release not committed.
    pub behind_since: Option<SystemTime>,
}

impl FollowStatus {
    /// NAR bytes a second since publishing began.
    pub fn rate(&self, now: Instant) -> Option<f64> {
        let secs = now.duration_since(self.publishing_since?).as_secs_f64();
        (secs >= 1.0).then(|| self.bytes_done as f64 / secs)
    }

    /// Time left at the rate so far.
    pub fn eta(&self, now: Instant) -> Option<Duration> {
        let rate = self.rate(now).filter(|r| *r > 0.0)?;
        let left = self.bytes_planned.saturating_sub(self.bytes_done) as f64;
        Some(Duration::from_secs_f64(left / rate))
    }

    /// How long the channel has been ahead of what is committed.
    pub fn lag(&self, now: SystemTime) -> Duration {
        self.behind_since
            .and_then(|t| now.duration_since(t).ok())
            .unwrap_or_default()
    }

    /// The channel points at `release`: behind unless it is the one
    /// committed (the lag counts from the first look that saw it).
    pub fn saw(&mut self, release: &str, now: SystemTime) {
        let current = self.committed.as_ref().is_some_and(|(r, _)| r == release);
        if current {
            self.behind_since = None;
        } else if self.target.as_deref() != Some(release) || self.behind_since.is_none() {
            self.behind_since = Some(now);
        }
        self.target = Some(release.to_owned());
    }

    /// `release` was committed at `at`.
    pub fn committed(&mut self, release: &str, at: u64) {
        self.committed = Some((release.to_owned(), at));
        if self.target.as_deref() == Some(release) {
            self.behind_since = None;
        }
        self.phase = Phase::Waiting;
    }

    /// A new walk begins: the counts start again.
    pub fn walk(&mut self) {
        self.phase = Phase::Walking;
        self.paths = PathCounts::default();
        self.bytes_done = 0;
        self.bytes_planned = 0;
        self.publishing_since = None;
    }

    /// One line for a log or `hypernar status`.
    pub fn line(&self, now: Instant, wall: SystemTime) -> String {
        let p = &self.paths;
        let mut out = format!(
            "{}; channel at {}, committed {}",
            self.phase,
            self.target.as_deref().unwrap_or("?"),
            self.committed.as_ref().map_or("none", |(r, _)| r.as_str()),
        );
        if self.phase == Phase::Publishing || p.published + p.already + p.failed > 0 {
            out.push_str(&format!(
                "; paths: {} of {} published, {} before, {} failed ({} missing upstream, {} refused); {} of {}",
                p.published,
                p.planned,
                p.already,
                p.failed,
                p.missing,
                p.refused,
                human(self.bytes_done),
                human(self.bytes_planned)
            ));
            if let Some(r) = self.rate(now) {
                out.push_str(&format!(" at {}/s", human(r as u64)));
            }
            if let Some(eta) = self.eta(now) {
                out.push_str(&format!(", about {}s left", eta.as_secs()));
            }
        }
        let lag = self.lag(wall);
        if lag.as_secs() > 0 {
            out.push_str(&format!("; {}s behind the channel", lag.as_secs()));
        }
        out
    }
}

fn human(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// The followers running in this node, by channel name.
#[derive(Debug)]
pub struct Following {
    by_channel: Mutex<BTreeMap<String, FollowStatus>>,
    metrics: Arc<Metrics>,
}

impl Following {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Following {
            by_channel: Mutex::new(BTreeMap::new()),
            metrics,
        }
    }

    /// Changes `channel`'s status (made if new), and its metrics with it.
    pub fn update(&self, channel: &str, f: impl FnOnce(&mut FollowStatus)) {
        let mut all = self.by_channel.lock().expect("following lock");
        let s = all.entry(channel.to_owned()).or_default();
        f(s);
        let s = s.clone();
        drop(all);
        self.export(channel, &s);
    }

    /// Every channel followed here, by name.
    pub fn all(&self) -> Vec<(String, FollowStatus)> {
        let all = self.by_channel.lock().expect("following lock");
        all.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    fn export(&self, channel: &str, s: &FollowStatus) {
        let m = &self.metrics;
        let p = &s.paths;
        for (state, n) in [
            ("planned", p.planned),
            ("published", p.published),
            ("already", p.already),
            ("failed", p.failed),
            ("missing", p.missing),
            ("refused", p.refused),
        ] {
            let label = FollowPathsLabel {
                channel: channel.to_owned(),
                state,
            };
            m.follow_paths.get_or_create(&label).set(n as i64);
        }
        for (what, n) in [("done", s.bytes_done), ("planned", s.bytes_planned)] {
            let label = FollowBytesLabel {
                channel: channel.to_owned(),
                what,
            };
            m.follow_bytes.get_or_create(&label).set(n as i64);
        }
        let label = ChannelLabel {
            channel: channel.to_owned(),
        };
        m.follow_lag
            .get_or_create(&label)
            .set(s.lag(SystemTime::now()).as_secs() as i64);
        m.follow_committed
            .get_or_create(&label)
            .set(s.committed.as_ref().map_or(0, |(_, at)| *at as i64));
    }

    /// Brings the lag gauges up to date (the lag grows with no event).
    pub fn refresh(&self) {
        for (channel, s) in self.all() {
            self.export(&channel, &s);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lag_counts_from_the_first_look_at_a_release_not_committed() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let at = |s| t0 + Duration::from_secs(s);
        let mut s = FollowStatus::default();
        s.saw("r1", t0);
        assert_eq!(s.lag(at(30)), Duration::from_secs(30));
        // Seen again: still counted from the first look.
        s.saw("r1", at(10));
        assert_eq!(s.lag(at(30)), Duration::from_secs(30));
        s.committed("r1", 1030);
        assert_eq!(s.lag(at(40)), Duration::ZERO);
        s.saw("r1", at(50));
        assert_eq!(s.lag(at(60)), Duration::ZERO);
        // The channel moves on.
        s.saw("r2", at(100));
        assert_eq!(s.lag(at(160)), Duration::from_secs(60));
        assert!(s
            .line(Instant::now(), at(160))
            .contains("60s behind the channel"));
    }

    #[test]
    fn the_rate_and_time_left_come_from_the_bytes_done_so_far() {
        let now = Instant::now();
        let mut s = FollowStatus {
            bytes_planned: 300,
            bytes_done: 100,
            publishing_since: Some(now),
            phase: Phase::Publishing,
            ..FollowStatus::default()
        };
        assert_eq!(s.rate(now), None, "no rate in the first second");
        let later = now + Duration::from_secs(10);
        assert_eq!(s.rate(later), Some(10.0));
        assert_eq!(s.eta(later), Some(Duration::from_secs(20)));
        s.paths.planned = 3;
        s.paths.published = 1;
        let line = s.line(later, SystemTime::now());
        assert!(line.contains("1 of 3 published"), "{line}");
        assert!(line.contains("about 20s left"), "{line}");
        s.walk();
        assert_eq!((s.bytes_done, s.paths.published), (0, 0));
    }

    #[test]
    fn updates_reach_the_metrics() {
        let m = Arc::new(Metrics::default());
        let f = Following::new(m.clone());
        f.update("c", |s| {
            s.paths.published = 7;
            s.bytes_done = 5;
        });
        let text = m.encode();
        assert!(
            text.contains("hypernar_follow_paths{channel=\"c\",state=\"published\"} 7"),
            "{text}"
        );
        assert!(
            text.contains("hypernar_follow_bytes{channel=\"c\",what=\"done\"} 5"),
            "{text}"
        );
        assert!(
            text.contains("hypernar_follow_lag_seconds{channel=\"c\"} 0"),
            "{text}"
        );
        assert_eq!(f.all().len(), 1);
    }
}
