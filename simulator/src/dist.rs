//! Random distributions for task durations and arrival processes, drawn from the seeded
//! [`SplitMix64`] so that a seed fixes every draw.

use proffer_master_core::core::rng::SplitMix64;
use serde::Deserialize;

/// A uniform draw in `[0, 1)`.
pub fn unit(rng: &mut SplitMix64) -> f64 {
    (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// An exponential draw with the given mean.
pub fn exponential(rng: &mut SplitMix64, mean: f64) -> f64 {
    -mean * (1.0 - unit(rng)).ln()
}

/// A standard normal draw (Box–Muller).
pub fn normal(rng: &mut SplitMix64) -> f64 {
    let u1 = 1.0 - unit(rng);
    let u2 = unit(rng);
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// How long tasks run.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "dist", rename_all = "lowercase", try_from = "RawDuration")]
pub enum DurationDist {
    /// Always `value_s`.
    Constant {
        /// Seconds.
        value_s: f64,
    },
    /// Exponential with mean `mean_s`.
    Exponential {
        /// Mean seconds.
        mean_s: f64,
    },
    /// Uniform in `[min_s, max_s]`.
    Uniform {
        /// Shortest.
        min_s: f64,
        /// Longest.
        max_s: f64,
    },
    /// Log-normal with median `median_s` and shape `sigma` (heavy-tailed, like real jobs).
    Lognormal {
        /// Median seconds.
        median_s: f64,
        /// Shape (standard deviation of the log).
        sigma: f64,
    },
    /// Runs until the simulation ends (services).
    Forever,
}

#[derive(Deserialize)]
#[serde(tag = "dist", rename_all = "lowercase", deny_unknown_fields)]
enum RawDuration {
    Constant { value_s: f64 },
    Exponential { mean_s: f64 },
    Uniform { min_s: f64, max_s: f64 },
    Lognormal { median_s: f64, sigma: f64 },
    Forever,
}

/// Largest arrival rate accepted (tasks per second): beyond it a scenario would only exhaust
/// memory, never finish.
pub const MAX_RATE_PER_S: f64 = 1e6;
/// Largest mean burst accepted (tasks per burst), for the same reason.
pub const MAX_BURST_SIZE: f64 = 1e6;

/// A positive arrival rate, at most [`MAX_RATE_PER_S`].
fn rate(v: f64) -> Result<f64, String> {
    let v = positive("rate_per_s", v)?;
    if v > MAX_RATE_PER_S {
        return Err(format!(
            "`rate_per_s` must be at most {MAX_RATE_PER_S} tasks per second, got {v}"
        ));
    }
    Ok(v)
}

fn positive(field: &str, v: f64) -> Result<f64, String> {
    if v.is_finite() && v > 0.0 {
        Ok(v)
    } else {
        Err(format!("`{field}` must be a positive number, got {v}"))
    }
}

fn non_negative(field: &str, v: f64) -> Result<f64, String> {
    if v.is_finite() && v >= 0.0 {
        Ok(v)
    } else {
        Err(format!("`{field}` must be a non-negative number, got {v}"))
    }
}

impl TryFrom<RawDuration> for DurationDist {
    type Error = String;
    fn try_from(r: RawDuration) -> Result<Self, String> {
        Ok(match r {
            RawDuration::Constant { value_s } => DurationDist::Constant {
                value_s: positive("value_s", value_s)?,
            },
            RawDuration::Exponential { mean_s } => DurationDist::Exponential {
                mean_s: positive("mean_s", mean_s)?,
            },
            RawDuration::Uniform { min_s, max_s } => {
                let min_s = non_negative("min_s", min_s)?;
                let max_s = positive("max_s", max_s)?;
                if max_s < min_s {
                    return Err(format!(
                        "`max_s` ({max_s}) must be at least `min_s` ({min_s})"
                    ));
                }
                DurationDist::Uniform { min_s, max_s }
            }
            RawDuration::Lognormal { median_s, sigma } => DurationDist::Lognormal {
                median_s: positive("median_s", median_s)?,
                sigma: non_negative("sigma", sigma)?,
            },
            RawDuration::Forever => DurationDist::Forever,
        })
    }
}

impl DurationDist {
    /// Draws a duration in milliseconds (`None` = runs forever); at least 1 ms.
    pub fn sample_ms(&self, rng: &mut SplitMix64) -> Option<u64> {
        let s = match self {
            DurationDist::Constant { value_s } => *value_s,
            DurationDist::Exponential { mean_s } => exponential(rng, *mean_s),
            DurationDist::Uniform { min_s, max_s } => min_s + (max_s - min_s) * unit(rng),
            DurationDist::Lognormal { median_s, sigma } => median_s * (sigma * normal(rng)).exp(),
            DurationDist::Forever => return None,
        };
        Some(secs_to_ms(s).max(1))
    }
}

/// Seconds to whole milliseconds (rounded, saturating).
pub fn secs_to_ms(s: f64) -> u64 {
    if s.is_finite() && s > 0.0 {
        (s * 1000.0).round().min(u64::MAX as f64) as u64
    } else {
        0
    }
}

/// When new tasks arrive at a framework.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "process", rename_all = "lowercase", try_from = "RawArrivals")]
pub enum Arrivals {
    /// Poisson arrivals, one task each.
    Poisson {
        /// Tasks per second.
        rate_per_s: f64,
    },
    /// Poisson bursts; each burst brings a geometric number of tasks with mean `burst_size`.
    Bursty {
        /// Bursts per second.
        rate_per_s: f64,
        /// Mean tasks per burst (≥ 1).
        burst_size: f64,
    },
    /// Poisson arrivals whose rate follows a sine over `period_s` (a day by default):
    /// `rate_per_s × (1 + amplitude × sin(2πt / period_s))`.
    Diurnal {
        /// Mean tasks per second.
        rate_per_s: f64,
        /// Relative swing, 0 to 1.
        amplitude: f64,
        /// Period in seconds.
        period_s: f64,
    },
}

#[derive(Deserialize)]
#[serde(tag = "process", rename_all = "lowercase", deny_unknown_fields)]
enum RawArrivals {
    Poisson {
        rate_per_s: f64,
    },
    Bursty {
        rate_per_s: f64,
        burst_size: f64,
    },
    Diurnal {
        rate_per_s: f64,
        #[serde(default = "half")]
        amplitude: f64,
        #[serde(default = "day")]
        period_s: f64,
    },
}

fn half() -> f64 {
    0.5
}

fn day() -> f64 {
    86_400.0
}

impl TryFrom<RawArrivals> for Arrivals {
    type Error = String;
    fn try_from(r: RawArrivals) -> Result<Self, String> {
        Ok(match r {
            RawArrivals::Poisson { rate_per_s } => Arrivals::Poisson {
                rate_per_s: rate(rate_per_s)?,
            },
            RawArrivals::Bursty {
                rate_per_s,
                burst_size,
            } => {
                if !(burst_size.is_finite() && (1.0..=MAX_BURST_SIZE).contains(&burst_size)) {
                    return Err(format!(
                        "`burst_size` must be within 1..={MAX_BURST_SIZE}, got {burst_size}"
                    ));
                }
                Arrivals::Bursty {
                    rate_per_s: rate(rate_per_s)?,
                    burst_size,
                }
            }
            RawArrivals::Diurnal {
                rate_per_s,
                amplitude,
                period_s,
            } => {
                if !(0.0..=1.0).contains(&amplitude) {
                    return Err(format!("`amplitude` must be within 0..=1, got {amplitude}"));
                }
                Arrivals::Diurnal {
                    rate_per_s: rate(rate_per_s)?,
                    amplitude,
                    period_s: positive("period_s", period_s)?,
                }
            }
        })
    }
}

impl Arrivals {
    /// Draws the next arrival after `now_ms`: its time and how many tasks it brings.
    pub fn next(&self, rng: &mut SplitMix64, now_ms: u64) -> (u64, u32) {
        match self {
            Arrivals::Poisson { rate_per_s } => {
                (now_ms.saturating_add(gap_ms(rng, *rate_per_s)), 1)
            }
            Arrivals::Bursty {
                rate_per_s,
                burst_size,
            } => {
                // Geometric on {1, 2, …} with mean `burst_size`.
                let p = 1.0 / burst_size;
                let mut n = 1u32;
                while unit(rng) >= p && n < 1_000_000 {
                    n += 1;
                }
                (now_ms.saturating_add(gap_ms(rng, *rate_per_s)), n)
            }
            Arrivals::Diurnal {
                rate_per_s,
                amplitude,
                period_s,
            } => {
                // Thinning (Lewis–Shedler) against the peak rate.
                let peak = rate_per_s * (1.0 + amplitude);
                let mut t = now_ms;
                loop {
                    t = t.saturating_add(gap_ms(rng, peak));
                    let phase = std::f64::consts::TAU * (t as f64 / 1000.0) / period_s;
                    let rate = rate_per_s * (1.0 + amplitude * phase.sin());
                    if unit(rng) * peak <= rate {
                        return (t, 1);
                    }
                }
            }
        }
    }
}

/// An exponential gap for `rate` events per second, in whole ms (at least 1).
fn gap_ms(rng: &mut SplitMix64, rate_per_s: f64) -> u64 {
    secs_to_ms(exponential(rng, 1.0 / rate_per_s)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn means_are_about_right() {
        let mut rng = SplitMix64::new(3);
        let n = 20_000;
        let d = DurationDist::Exponential { mean_s: 10.0 };
        let mean: f64 = (0..n)
            .map(|_| d.sample_ms(&mut rng).unwrap_or(0) as f64)
            .sum::<f64>()
            / n as f64;
        assert!((mean - 10_000.0).abs() < 400.0, "mean {mean}");
        let a = Arrivals::Poisson { rate_per_s: 2.0 };
        let (mut t, mut count) = (0, 0);
        while t < 1_000_000 {
            let (next, k) = a.next(&mut rng, t);
            t = next;
            count += k;
        }
        assert!((1900..2100).contains(&count), "count {count}");
        assert_eq!(DurationDist::Forever.sample_ms(&mut rng), None);
    }

    #[test]
    fn bad_values_are_refused() {
        let r: Result<DurationDist, _> = toml::from_str("dist = \"exponential\"\nmean_s = -1");
        let msg = r.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(msg.contains("mean_s"), "{msg}");
        let r: Result<Arrivals, _> =
            toml::from_str("process = \"diurnal\"\nrate_per_s = 1\namplitude = 2");
        assert!(r.is_err());
    }

    #[test]
    fn workloads_that_could_only_exhaust_memory_are_refused() {
        let table = [
            (
                "process = \"bursty\"\nrate_per_s = 1\nburst_size = 1e300",
                "burst_size",
            ),
            (
                "process = \"bursty\"\nrate_per_s = 1\nburst_size = 1000001",
                "burst_size",
            ),
            ("process = \"poisson\"\nrate_per_s = 1e300", "rate_per_s"),
            (
                "process = \"bursty\"\nrate_per_s = 2e6\nburst_size = 2",
                "rate_per_s",
            ),
            (
                "process = \"diurnal\"\nrate_per_s = 1e7\namplitude = 0.5\nperiod_s = 60",
                "rate_per_s",
            ),
        ];
        for (text, field) in table {
            let r: Result<Arrivals, _> = toml::from_str(text);
            let msg = r.err().map(|e| e.to_string()).unwrap_or_default();
            assert!(
                msg.contains(field) && msg.contains("at most") || msg.contains("within"),
                "{text}: {msg}"
            );
        }
        // The largest accepted values still parse.
        let ok: Result<Arrivals, _> =
            toml::from_str("process = \"bursty\"\nrate_per_s = 1e6\nburst_size = 1e6");
        assert!(ok.is_ok(), "{ok:?}");
    }
}
