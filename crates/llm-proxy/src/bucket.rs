//! Requests per second: a token bucket that refuses rather than queues (a queued flood would
//! still hold connections and memory).

use std::sync::Mutex;
use std::time::Instant;

#[derive(Debug)]
pub struct TokenBucket {
    rate: f64,
    capacity: f64,
    state: Mutex<(f64, Instant)>,
}

impl TokenBucket {
    /// Full at the start: `burst` requests at once, then `rate` a second.
    pub fn new(rate: f64, burst: u32) -> TokenBucket {
        let capacity = f64::from(burst);
        TokenBucket {
            rate,
            capacity,
            state: Mutex::new((capacity, Instant::now())),
        }
    }

    /// Takes one token if there is one.
    pub fn try_take(&self) -> bool {
        self.try_take_at(Instant::now())
    }

    fn try_take_at(&self, now: Instant) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let (tokens, last) = &mut *state;
        let elapsed = now.saturating_duration_since(*last).as_secs_f64();
        *tokens = (*tokens + elapsed * self.rate).min(self.capacity);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn burst_then_rate() {
        let bucket = TokenBucket::new(2.0, 3);
        let t0 = Instant::now();
        assert!((0..3).all(|_| bucket.try_take_at(t0)));
        assert!(!bucket.try_take_at(t0));
        assert!(bucket.try_take_at(t0 + Duration::from_millis(500)));
        assert!(!bucket.try_take_at(t0 + Duration::from_millis(600)));
        // Idle time refills only up to the burst.
        let later = t0 + Duration::from_secs(100);
        assert!((0..3).all(|_| bucket.try_take_at(later)));
        assert!(!bucket.try_take_at(later));
    }
}
