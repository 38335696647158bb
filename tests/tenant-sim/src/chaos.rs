//! Chaos: random faults at set rates on every Graph request of a tenant, for soak and chaos runs
//! (`PUT /_sim/tenants/{t}/chaos`). Each request rolls once: throttled (429 with `Retry-After`), a
//! server error (500/502/503/504), a timeout (a hang past the client's timeout), a reset connection
//! (all four *before* the request runs), or, for writes only, carried out and then its answer lost
//! (reset, 504 or hang: [`FaultAction::commits_first`]). The generator is seeded, so a run's fault
//! sequence can be told and compared (the order requests arrive in is the client's business).

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::faults::{FaultAction, MAX_HANG_MS};

/// Rates of each fault, as fractions of requests (0.10 = 10 %), and how the faults look.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChaosSpec {
    /// Seed of the generator.
    pub seed: u64,
    /// 429 `TooManyRequests` with [`ChaosSpec::retry_after`].
    pub throttle: f64,
    /// 500, 502, 503 or 504 without `Retry-After`, before the request runs.
    pub server_error: f64,
    /// A hang of [`ChaosSpec::hang_ms`] before the request runs (the client times out).
    pub timeout: f64,
    /// A reset connection before the request runs.
    pub reset: f64,
    /// Writes only: carried out, then reset, answered 504 or hung.
    pub commit_then_drop: f64,
    /// How long a timeout fault hangs; set it above the client's request timeout.
    pub hang_ms: u64,
    /// `Retry-After` of a 429, verbatim.
    pub retry_after: String,
}

impl Default for ChaosSpec {
    fn default() -> Self {
        ChaosSpec {
            seed: 0,
            throttle: 0.0,
            server_error: 0.0,
            timeout: 0.0,
            reset: 0.0,
            commit_then_drop: 0.0,
            hang_ms: 5_000,
            retry_after: "1".into(),
        }
    }
}

impl ChaosSpec {
    /// Checks the rates, naming the first that is wrong.
    pub fn validate(&self) -> Result<(), String> {
        let rates = [
            ("throttle", self.throttle),
            ("server_error", self.server_error),
            ("timeout", self.timeout),
            ("reset", self.reset),
            ("commit_then_drop", self.commit_then_drop),
        ];
        for (name, rate) in rates {
            if !(0.0..=1.0).contains(&rate) {
                return Err(format!("{name}: {rate} is not a fraction between 0 and 1"));
            }
        }
        let before: f64 = rates[..4].iter().map(|(_, r)| r).sum();
        if before + self.commit_then_drop > 1.0 {
            return Err("the rates add up to more than 1".into());
        }
        if self.hang_ms > MAX_HANG_MS {
            return Err(format!(
                "hang_ms: {} is over the maximum of {MAX_HANG_MS}",
                self.hang_ms
            ));
        }
        Ok(())
    }
}

/// A tenant's chaos: the spec and its generator.
#[derive(Debug)]
pub struct Chaos {
    spec: ChaosSpec,
    rng: StdRng,
}

const SERVER_ERRORS: [u16; 4] = [500, 502, 503, 504];

impl Chaos {
    /// Chaos by `spec` (validate it first).
    pub fn new(spec: ChaosSpec) -> Chaos {
        let rng = StdRng::seed_from_u64(spec.seed);
        Chaos { spec, rng }
    }

    /// The spec it runs by.
    pub fn spec(&self) -> &ChaosSpec {
        &self.spec
    }

    /// The fault for one request, if its roll says so.
    pub fn roll(&mut self, method: &str) -> Option<FaultAction> {
        let s = &self.spec;
        let r: f64 = self.rng.r#gen();
        let mut edge = s.throttle;
        if r < edge {
            return Some(FaultAction::Status {
                status: 429,
                retry_after: Some(s.retry_after.clone()),
                code: None,
            });
        }
        edge += s.server_error;
        if r < edge {
            let status = SERVER_ERRORS[self.rng.gen_range(0..SERVER_ERRORS.len())];
            return Some(FaultAction::Status {
                status,
                retry_after: None,
                code: None,
            });
        }
        edge += s.timeout;
        if r < edge {
            return Some(FaultAction::Hang { ms: s.hang_ms });
        }
        edge += s.reset;
        if r < edge {
            return Some(FaultAction::Reset);
        }
        edge += s.commit_then_drop;
        if r < edge && !method.eq_ignore_ascii_case("GET") {
            return Some(match self.rng.gen_range(0..3) {
                0 => FaultAction::CommitThenReset,
                1 => FaultAction::CommitThenStatus { status: 504 },
                _ => FaultAction::CommitThenHang { ms: s.hang_ms },
            });
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_kept_and_reads_never_commit_then_drop() {
        let spec = ChaosSpec {
            seed: 7,
            throttle: 0.1,
            server_error: 0.05,
            timeout: 0.02,
            reset: 0.01,
            commit_then_drop: 0.02,
            ..ChaosSpec::default()
        };
        spec.validate().unwrap();
        let mut chaos = Chaos::new(spec);
        let n = 20_000;
        let mut throttled = 0;
        let mut committed = 0;
        for _ in 0..n {
            match chaos.roll("POST") {
                Some(FaultAction::Status { status: 429, .. }) => throttled += 1,
                Some(a) if a.commits_first() => committed += 1,
                _ => {}
            }
        }
        assert!((1_700..2_300).contains(&throttled), "{throttled}");
        assert!((300..500).contains(&committed), "{committed}");
        assert!((0..n).all(|_| !chaos.roll("GET").is_some_and(|a| a.commits_first())));
        let bad = ChaosSpec {
            throttle: 1.5,
            ..ChaosSpec::default()
        };
        assert!(bad.validate().unwrap_err().contains("throttle"));
    }
}
