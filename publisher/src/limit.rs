//! Limits towards an upstream: requests per second and bytes per second,
//! each a token bucket shared by every request a publish makes (its
//! narinfo fetches and NAR downloads run on blocking threads, so a take
//! blocks by sleeping). The policy is pure ([`Bucket::debit`]: what a take
//! costs at an instant, as a wait); [`Bucket::take`] only sleeps it.
//!
//! Hand-rolled (docs/DEVELOPMENT.md): a bucket is a rate, a burst and a
//! balance that may go below zero (a 4 MiB read is taken at once and paid
//! for by the wait), which `governor`'s u32 cells and async waits do not
//! model for blocking readers.

use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The longest one take waits.
const MAX_WAIT: Duration = Duration::from_secs(86_400);

/// A token bucket: `rate` tokens a second, at most `burst` saved up.
#[derive(Debug)]
pub struct Bucket {
    rate: f64,
    burst: f64,
    state: Mutex<Balance>,
}

/// Tokens in the bucket (negative: owed) as of `at`.
#[derive(Debug, Clone, Copy)]
struct Balance {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    /// A bucket of `rate` per second (over 0) holding at most `burst`,
    /// full at first.
    pub fn new(rate: f64, burst: f64) -> Self {
        let rate = rate.max(f64::MIN_POSITIVE);
        let burst = burst.max(1.0);
        Bucket {
            rate,
            burst,
            state: Mutex::new(Balance {
                tokens: burst,
                at: Instant::now(),
            }),
        }
    }

    /// Takes `n` tokens at `now`: how long the taker must wait before it
    /// may go on (zero when the bucket held them).
    pub fn debit(&self, n: f64, now: Instant) -> Duration {
        let mut b = self.state.lock().expect("bucket lock");
        let earned = now.saturating_duration_since(b.at).as_secs_f64() * self.rate;
        b.tokens = (b.tokens + earned).min(self.burst) - n;
        b.at = now.max(b.at);
        if b.tokens >= 0.0 {
            Duration::ZERO
        } else {
            // Bounded: a rate too small to say in a Duration waits a day.
            Duration::try_from_secs_f64(-b.tokens / self.rate)
                .unwrap_or(MAX_WAIT)
                .min(MAX_WAIT)
        }
    }

    /// Takes `n` tokens, sleeping as long as that costs.
    pub fn take(&self, n: u64) {
        let wait = self.debit(n as f64, Instant::now());
        if !wait.is_zero() {
            std::thread::sleep(wait);
        }
    }
}

/// The limits of one source.
#[derive(Debug, Default, Clone)]
pub struct Limits {
    /// Requests per second, one at a time (no burst: an upstream that
    /// limits requests counts them in short windows).
    pub requests: Option<Arc<Bucket>>,
    /// Bytes per second of response bodies (a burst of one second's worth).
    pub bytes: Option<Arc<Bucket>>,
}

impl Limits {
    /// At most `requests` a second and `bytes` a second, if given.
    pub fn new(requests: Option<f64>, bytes: Option<u64>) -> Self {
        Limits {
            requests: requests.map(|r| Arc::new(Bucket::new(r, 1.0))),
            bytes: bytes.map(|b| Arc::new(Bucket::new(b as f64, b as f64))),
        }
    }

    /// Waits for a request's turn.
    pub fn request(&self) {
        if let Some(b) = &self.requests {
            b.take(1);
        }
    }

    /// `inner`, its reads paid for in bytes.
    pub fn reader(&self, inner: Box<dyn Read + Send>) -> Box<dyn Read + Send> {
        match &self.bytes {
            Some(b) => Box::new(Limited {
                inner,
                bucket: b.clone(),
            }),
            None => inner,
        }
    }
}

/// A reader whose bytes are taken from a bucket as they are read.
struct Limited {
    inner: Box<dyn Read + Send>,
    bucket: Arc<Bucket>,
}

impl Read for Limited {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        // At most a tenth of a second's worth at a time, so a large
        // buffer does not turn into one long burst then one long wait.
        let len = buf.len();
        let most = ((self.bucket.rate / 10.0) as usize)
            .clamp(1, len.max(1))
            .min(len);
        let n = self.inner.read(&mut buf[..most])?;
        self.bucket.take(n as u64);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_lets_its_burst_through_then_charges_the_rate() {
        let b = Bucket::new(10.0, 5.0);
        let t0 = Instant::now();
        for _ in 0..5 {
            assert_eq!(b.debit(1.0, t0), Duration::ZERO);
        }
        // The sixth is owed: a tenth of a second.
        let w = b.debit(1.0, t0);
        assert!((w.as_secs_f64() - 0.1).abs() < 1e-9, "{w:?}");
        // A second later, 10 more were earned, but at most the burst (5)
        // is held: 4 are free, a fifth more is owed.
        let w = b.debit(4.0, t0 + Duration::from_secs(1));
        assert_eq!(w, Duration::ZERO);
        let w = b.debit(2.0, t0 + Duration::from_secs(1));
        assert!((w.as_secs_f64() - 0.1).abs() < 1e-9, "{w:?}");
        // Never more than the burst is saved, however long it rests.
        let late = t0 + Duration::from_secs(100);
        assert_eq!(b.debit(5.0, late), Duration::ZERO);
        assert!(b.debit(1.0, late) > Duration::ZERO);
        // A large take is one long wait, not a refusal.
        let w = b.debit(20.0, late);
        assert!((w.as_secs_f64() - 2.1).abs() < 1e-9, "{w:?}");
        // An instant before the last one (another thread's) earns nothing.
        assert!(b.debit(0.0, t0) > Duration::ZERO);
    }

    #[test]
    fn a_limited_reader_reads_everything_at_the_rate() {
        let limits = Limits::new(None, Some(1 << 20));
        let data = vec![7u8; 3 << 19]; // 1.5 MiB: 1 MiB of burst, then 0.5 s
        let mut r = limits.reader(Box::new(std::io::Cursor::new(data.clone())));
        let t = Instant::now();
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        assert_eq!(out, data);
        assert!(
            t.elapsed() >= Duration::from_millis(400),
            "{:?}",
            t.elapsed()
        );
    }
}
