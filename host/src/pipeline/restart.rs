//! Restart strategies, Flink's way: how long to wait before running a
//! failed job again, and when to give up.

use crate::job::{RestartConfig, RestartStrategyKind};
use std::time::Duration;

/// The waits between restarts of one job.
#[derive(Debug, Clone)]
pub struct RestartStrategy {
    kind: Kind,
    /// Restarts so far (since the last reset).
    restarts: u32,
    /// Random state for the jitter (seeded per strategy).
    seed: u64,
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    None,
    Fixed { attempts: u32, delay: Duration },
    Exponential { initial: Duration, max: Duration, multiplier: f64, jitter: f64, reset_after: Duration },
}

impl RestartStrategy {
    /// The strategy a `[restart]` section gives; `Err` names the field
    /// (`attempts`, …) and what is wrong with it.
    pub fn new(config: &RestartConfig) -> Result<RestartStrategy, (&'static str, String)> {
        let c = config;
        let unused = |fields: &[(&'static str, bool)]| match fields.iter().find(|(_, set)| *set) {
            Some((field, _)) => {
                Err((*field, format!("does not apply to strategy = \"{}\"", name(c.strategy))))
            }
            None => Ok(()),
        };
        let exponential_fields = [
            ("initial", c.initial.is_some()),
            ("max", c.max.is_some()),
            ("multiplier", c.multiplier.is_some()),
            ("jitter", c.jitter.is_some()),
            ("reset_after", c.reset_after.is_some()),
        ];
        let fixed_fields = [("attempts", c.attempts.is_some()), ("delay", c.delay.is_some())];
        let kind = match c.strategy {
            RestartStrategyKind::None => {
                unused(&fixed_fields)?;
                unused(&exponential_fields)?;
                Kind::None
            }
            RestartStrategyKind::FixedDelay => {
                unused(&exponential_fields)?;
                Kind::Fixed {
                    attempts: c.attempts.unwrap_or(3),
                    delay: c.delay.unwrap_or(Duration::from_secs(10)),
                }
            }
            RestartStrategyKind::ExponentialDelay => {
                unused(&fixed_fields)?;
                let initial = c.initial.unwrap_or(Duration::from_secs(1));
                let max = c.max.unwrap_or(Duration::from_secs(300));
                let multiplier = c.multiplier.unwrap_or(2.0);
                let jitter = c.jitter.unwrap_or(0.1);
                if initial.is_zero() {
                    return Err(("initial", "must be longer than 0".into()));
                }
                if max < initial {
                    return Err(("max", format!("{max:?} is shorter than initial, {initial:?}")));
                }
                if !(multiplier >= 1.0 && multiplier.is_finite()) {
                    return Err(("multiplier", format!("must be at least 1, got {multiplier}")));
                }
                if !(0.0..=1.0).contains(&jitter) {
                    return Err(("jitter", format!("must be between 0 and 1, got {jitter}")));
                }
                let reset_after = c.reset_after.unwrap_or(Duration::from_secs(3600));
                Kind::Exponential { initial, max, multiplier, jitter, reset_after }
            }
        };
        let seed = crate::time::now_ms() as u64 ^ u64::from(std::process::id());
        Ok(RestartStrategy { kind, restarts: 0, seed })
    }

    /// A strategy that never restarts (a job without `[restart]`).
    pub fn none() -> RestartStrategy {
        RestartStrategy { kind: Kind::None, restarts: 0, seed: 0 }
    }

    /// After a run that failed having lasted `ran`: the wait before the next
    /// restart, or `None` to give up.
    pub fn next_delay(&mut self, ran: Duration) -> Option<Duration> {
        match self.kind {
            Kind::None => None,
            Kind::Fixed { attempts, delay } => {
                if self.restarts >= attempts {
                    return None;
                }
                self.restarts += 1;
                Some(delay)
            }
            Kind::Exponential { initial, max, multiplier, jitter, reset_after } => {
                if ran >= reset_after {
                    self.restarts = 0;
                }
                let base = initial.as_secs_f64() * multiplier.powi(self.restarts.min(1000) as i32);
                let base = base.min(max.as_secs_f64());
                self.restarts += 1;
                // Uniform in [1 - jitter, 1 + jitter] of the wait, within max.
                self.seed = self.seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let unit = (self.seed >> 11) as f64 / (1u64 << 53) as f64;
                let wait = base * (1.0 + jitter * (2.0 * unit - 1.0));
                Some(Duration::from_secs_f64(wait.clamp(0.0, max.as_secs_f64())))
            }
        }
    }

    /// Restarts so far (since the last reset).
    pub fn restarts(&self) -> u32 {
        self.restarts
    }

    /// The most restarts allowed in a row, if there is a limit.
    pub fn limit(&self) -> Option<u32> {
        match self.kind {
            Kind::None => Some(0),
            Kind::Fixed { attempts, .. } => Some(attempts),
            Kind::Exponential { .. } => None,
        }
    }
}

fn name(kind: RestartStrategyKind) -> &'static str {
    match kind {
        RestartStrategyKind::None => "none",
        RestartStrategyKind::FixedDelay => "fixed-delay",
        RestartStrategyKind::ExponentialDelay => "exponential-delay",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> RestartConfig {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn fixed_delay_gives_its_attempts_then_gives_up() {
        let mut s =
            RestartStrategy::new(&config("strategy = \"fixed-delay\"\nattempts = 2\ndelay = \"250ms\""))
                .unwrap();
        let ms = Duration::from_millis;
        assert_eq!(s.next_delay(ms(1)), Some(ms(250)));
        assert_eq!(s.next_delay(ms(1)), Some(ms(250)));
        assert_eq!(s.next_delay(ms(1)), None);
        assert_eq!(s.restarts(), 2);
        assert_eq!(RestartStrategy::none().next_delay(ms(1)), None);
    }

    #[test]
    fn exponential_delay_grows_within_its_jitter_caps_at_max_and_resets() {
        let text = "strategy = \"exponential-delay\"\ninitial = \"100ms\"\nmax = \"1s\"\nmultiplier = 3.0\njitter = 0.2\nreset_after = \"10s\"";
        let mut s = RestartStrategy::new(&config(text)).unwrap();
        let short = Duration::from_millis(5);
        for base in [0.1, 0.3, 0.9, 1.0, 1.0] {
            let wait = s.next_delay(short).unwrap().as_secs_f64();
            assert!(wait >= base * 0.8 - 1e-9 && wait <= (base * 1.2).min(1.0) + 1e-9, "{wait} for {base}");
        }
        // A run that lasted reset_after starts over.
        let wait = s.next_delay(Duration::from_secs(10)).unwrap().as_secs_f64();
        assert!((0.08..=0.12).contains(&wait), "{wait}");
    }

    #[test]
    fn fields_of_another_strategy_and_bad_values_are_named() {
        let err = |text: &str| RestartStrategy::new(&config(text)).unwrap_err();
        assert_eq!(err("strategy = \"fixed-delay\"\nmultiplier = 2.0").0, "multiplier");
        assert_eq!(err("strategy = \"exponential-delay\"\nattempts = 2").0, "attempts");
        assert_eq!(err("strategy = \"none\"\ndelay = \"1s\"").0, "delay");
        assert_eq!(err("strategy = \"exponential-delay\"\njitter = 2.0").0, "jitter");
        assert_eq!(err("strategy = \"exponential-delay\"\ninitial = \"2s\"\nmax = \"1s\"").0, "max");
        assert_eq!(err("strategy = \"exponential-delay\"\nmultiplier = 0.5").0, "multiplier");
    }
}
