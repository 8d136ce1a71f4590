//! The default retry policy: exponential backoff with jitter.

use std::time::Duration;

/// Delay before retrying a failed event job that has no `on_error`:
/// `base × 2^(tries−1)`, capped at `max`, spread by ±`jitter`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryBackoff {
    /// The delay after the first failure (default 1 s).
    pub base: Duration,
    /// The longest delay (default 1 h).
    pub max: Duration,
    /// The spread, as a fraction of the delay (default 0.1: ±10 %).
    pub jitter: f64,
}

impl Default for RetryBackoff {
    fn default() -> Self {
        RetryBackoff {
            base: Duration::from_secs(1),
            max: Duration::from_secs(3600),
            jitter: 0.1,
        }
    }
}

impl RetryBackoff {
    /// The delay after the execution numbered `tries` (1 for the first) failed, at most
    /// [`MAX_DURATION`](crate::MAX_DURATION).
    pub fn delay(&self, tries: u32) -> Duration {
        let exponent = tries.saturating_sub(1).min(40);
        let factor = 2u32.saturating_pow(exponent);
        let delay = crate::limits::capped(self.base.saturating_mul(factor).min(self.max));
        let jitter = if self.jitter.is_finite() {
            self.jitter.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let spread = 1.0 + jitter * (fastrand::f64() * 2.0 - 1.0);
        Duration::try_from_secs_f64(delay.as_secs_f64() * spread)
            .map_or(delay, crate::limits::capped)
    }

    /// Checks the policy as `start_workers` does: `base` and `max` at most
    /// [`MAX_DURATION`](crate::MAX_DURATION), `jitter` a number from 0 to 1; anything else is a
    /// `Config` error naming `retry_backoff`.
    pub fn validate(&self) -> crate::Result<()> {
        crate::limits::check_duration("retry_backoff.base", self.base)?;
        crate::limits::check_duration("retry_backoff.max", self.max)?;
        if !(0.0..=1.0).contains(&self.jitter) {
            return Err(crate::Error::config(format!(
                "retry_backoff.jitter is {}; it must be a fraction from 0 to 1",
                self.jitter
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_then_caps_within_jitter() {
        let backoff = RetryBackoff::default();
        for (tries, expected) in [
            (1, 1.0),
            (2, 2.0),
            (3, 4.0),
            (10, 512.0),
            (13, 3600.0),
            (40, 3600.0),
        ] {
            let secs = backoff.delay(tries).as_secs_f64();
            assert!(
                (expected * 0.9..=expected * 1.1).contains(&secs),
                "tries {tries}: {secs}s, expected about {expected}s"
            );
        }
    }
}
