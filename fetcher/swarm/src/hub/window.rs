//! How many block requests to keep in flight to one peer.
//!
//! A delay-based controller in the manner of LEDBAT (RFC 6817), applied to
//! requests instead of bytes: the window grows while blocks come back as
//! fast as the quickest one this peer ever delivered, and shrinks once they
//! queue more than [`TARGET`] behind it. A fixed window cannot serve both
//! ends: one peer on a long fat link needs dozens of requests in flight,
//! while a seed shared by many fetchers needs each of them to keep about
//! one, or every fetcher's requests wait seconds in the seed's queue, where
//! nobody can see which blocks are already on their way to someone (and
//! the seed uploads them twice).

use std::time::Duration;

/// Queueing delay the window aims for, above the least response time.
pub const TARGET: Duration = Duration::from_millis(50);
/// The window never goes below one request, nor above this.
pub const MAX_WINDOW: f64 = 32.0;
/// The window of a new peer.
pub const INITIAL_WINDOW: f64 = 2.0;

#[derive(Debug, Clone)]
pub struct Window {
    size: f64,
    /// The least response time seen from this peer.
    base: Option<Duration>,
    /// Doubling each round trip until the first sign of queueing.
    slow_start: bool,
}

impl Default for Window {
    fn default() -> Self {
        Window {
            size: INITIAL_WINDOW,
            base: None,
            slow_start: true,
        }
    }
}

impl Window {
    /// Requests that may be in flight now.
    pub fn get(&self) -> usize {
        self.size as usize
    }

    /// A block came back `rtt` after it was asked for; `in_flight` requests
    /// (this one included) were out when it came. The window grows only
    /// when it was in use: a peer we had little to ask of has not shown it
    /// could take more (RFC 7661's rule for congestion windows).
    pub fn delivered(&mut self, rtt: Duration, in_flight: usize) {
        let base = *self.base.get_or_insert(rtt);
        let base = base.min(rtt);
        self.base = Some(base);
        let queued = rtt - base;
        let limited = in_flight < self.get();
        if limited && queued < TARGET {
            return;
        }
        if self.slow_start {
            if queued < TARGET {
                self.size += 1.0;
            } else {
                self.slow_start = false;
                self.size /= 2.0;
            }
        } else {
            // +1 per window of deliveries at no queueing, 0 at the target,
            // and shrinking in proportion beyond it.
            let off = (TARGET.as_secs_f64() - queued.as_secs_f64()) / TARGET.as_secs_f64();
            self.size += off.max(-4.0) / self.size;
        }
        self.size = self.size.clamp(1.0, MAX_WINDOW);
    }

    /// A request timed out: back to one request in flight.
    pub fn timed_out(&mut self) {
        self.slow_start = false;
        self.size = 1.0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn grows_without_queueing_up_to_the_cap() {
        let mut w = Window::default();
        for _ in 0..1000 {
            w.delivered(20 * MS, w.get());
        }
        assert_eq!(w.get(), MAX_WINDOW as usize);
    }

    #[test]
    fn shrinks_to_one_when_responses_queue_far_past_the_target() {
        let mut w = Window::default();
        for _ in 0..20 {
            w.delivered(20 * MS, w.get());
        }
        assert!(w.get() > 8);
        for _ in 0..200 {
            w.delivered(2000 * MS, w.get());
        }
        assert_eq!(w.get(), 1);
    }

    #[test]
    fn settles_where_the_queue_meets_the_target() {
        // A link that takes 25 ms a block: n requests in flight queue
        // (n - 1) × 25 ms behind the first.
        let mut w = Window::default();
        for _ in 0..2000 {
            let n = w.get() as u32;
            w.delivered(25 * MS * n, n as usize);
        }
        let n = w.get();
        assert!((4..=6).contains(&n), "window {n}");
    }

    #[test]
    fn an_unused_window_does_not_grow() {
        let mut w = Window::default();
        for _ in 0..100 {
            w.delivered(20 * MS, 1);
        }
        assert_eq!(w.get(), INITIAL_WINDOW as usize);
    }

    #[test]
    fn a_timeout_drops_to_one_and_growth_resumes_slowly() {
        let mut w = Window::default();
        for _ in 0..10 {
            w.delivered(20 * MS, w.get());
        }
        w.timed_out();
        assert_eq!(w.get(), 1);
        w.delivered(20 * MS, w.get());
        assert!(w.get() <= 2);
    }
}
