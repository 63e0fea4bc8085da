//! Scenario files (`loadtest/scenarios/*.yaml`): what load to offer, for how long, and how the
//! mock provider behind it is paced.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// One benchmark scenario.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Short name, used in reports.
    pub name: String,
    /// One line on what it measures.
    #[serde(default)]
    pub description: String,
    /// `open` (constant rate, `rate` req/s) or `closed` (`concurrency` requests in flight).
    pub mode: ModeKind,
    /// Requests per second (open loop).
    #[serde(default)]
    pub rate: f64,
    /// Requests in flight (closed loop); also the connection count there.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Keep-alive connections the open loop may use (a request waits for a free one, and that
    /// wait counts in its latency).
    #[serde(default = "default_connections")]
    pub connections: usize,
    /// Length of one measured phase.
    #[serde(with = "human")]
    pub duration: Duration,
    /// Hard cap on requests per phase.
    pub max_requests: u64,
    /// Unmeasured load per target before the first round.
    #[serde(default, with = "human")]
    pub warmup: Duration,
    /// Measured phases per target in `compare` (interleaved: A B C, B C A, …).
    #[serde(default = "one")]
    pub rounds: u32,
    /// Share of requests that stream (0..=1).
    #[serde(default)]
    pub stream_share: f64,
    /// Prompt sizes in bytes; each request picks one uniformly.
    #[serde(default = "default_prompts")]
    pub prompt_bytes: Vec<usize>,
    /// `max_tokens` of every request (the mock answers with that many words, at most 16).
    #[serde(default)]
    pub max_tokens: Option<u32>,
    /// Per-request timeout; also how long a phase may drain after its duration.
    #[serde(default = "default_timeout", with = "human")]
    pub timeout: Duration,
    /// The mock provider's latency profile.
    #[serde(default)]
    pub mock: MockProfile,
    /// Which targets `compare` runs, in round-1 order.
    #[serde(default = "default_targets")]
    pub targets: Vec<TargetKind>,
    /// RSS sampling period of the proxy processes (`compare`).
    #[serde(default = "default_rss_every", with = "human")]
    pub rss_every: Duration,
    /// Goal checks that apply to this scenario.
    #[serde(default)]
    pub goals: Goals,
}

/// Load shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModeKind {
    /// Constant arrival rate, latency from the scheduled time.
    Open,
    /// Fixed number of requests in flight.
    Closed,
}

/// The things `compare` measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetKind {
    /// mock-llm itself.
    Direct,
    /// nginx as a plain reverse proxy in front of mock-llm.
    Nginx,
    /// Sluice in front of mock-llm.
    Sluice,
    /// Another `sluice` binary (`compare --baseline`, e.g. an earlier commit's build) with the
    /// same policy on its own ports.
    Baseline,
}

impl TargetKind {
    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            TargetKind::Direct => "direct",
            TargetKind::Nginx => "nginx",
            TargetKind::Sluice => "sluice",
            TargetKind::Baseline => "baseline",
        }
    }

    /// The target named `name` (as [`name`](Self::name) spells it).
    pub fn from_name(name: &str) -> Option<TargetKind> {
        [
            TargetKind::Direct,
            TargetKind::Nginx,
            TargetKind::Sluice,
            TargetKind::Baseline,
        ]
        .into_iter()
        .find(|k| k.name() == name)
    }
}

/// mock-llm pacing (`--ttft-ms`, `--tokens-per-s`, `--burst`).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MockProfile {
    /// Milliseconds before the first event (and before non-stream answers).
    #[serde(default)]
    pub ttft_ms: u64,
    /// Content events per second after the first; 0 = no delay.
    #[serde(default)]
    pub tokens_per_s: f64,
    /// Every stream in one socket write (head, events, end of body), after the time its pacing
    /// adds up to.
    #[serde(default)]
    pub burst: bool,
}

/// Goal checks the report evaluates for this scenario (the DESIGN §8 budget).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Goals {
    /// CPU per request ≤ 2× nginx's.
    #[serde(default)]
    pub cpu: bool,
    /// req/s ≥ 0.6× nginx's (closed loop only).
    #[serde(default)]
    pub throughput: bool,
    /// Added p50 ≤ 0.2 ms and p99 ≤ 1 ms over direct.
    #[serde(default)]
    pub latency: bool,
    /// Added time to first content chunk ≤ 0.2 ms.
    #[serde(default)]
    pub ttft: bool,
    /// Peak RSS of Sluice at most this many MB.
    #[serde(default)]
    pub rss_mb: Option<u64>,
    /// Sluice RSS flat over the run (last tenth within 10 % / 4 MB of the second tenth).
    #[serde(default)]
    pub flat_rss: bool,
}

fn default_concurrency() -> usize {
    32
}
fn default_connections() -> usize {
    64
}
fn one() -> u32 {
    1
}
fn default_prompts() -> Vec<usize> {
    vec![40]
}
fn default_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_targets() -> Vec<TargetKind> {
    vec![TargetKind::Direct, TargetKind::Nginx, TargetKind::Sluice]
}
fn default_rss_every() -> Duration {
    Duration::from_millis(500)
}

impl Scenario {
    /// Reads and checks a scenario file.
    pub fn load(path: &Path) -> Result<Scenario, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Parses and checks scenario YAML.
    pub fn parse(text: &str) -> Result<Scenario, String> {
        let s: Scenario = serde_saphyr::from_str(text).map_err(|e| e.to_string())?;
        s.check()?;
        Ok(s)
    }

    /// Rejects scenarios that would not run, or not be bounded.
    pub fn check(&self) -> Result<(), String> {
        match self.mode {
            ModeKind::Open if !(self.rate.is_finite() && self.rate > 0.0) => {
                return Err("open mode needs a positive `rate`".into());
            }
            ModeKind::Open if self.connections == 0 => {
                return Err("`connections` must be at least 1".into());
            }
            ModeKind::Closed if self.concurrency == 0 => {
                return Err("closed mode needs `concurrency` ≥ 1".into());
            }
            _ => {}
        }
        if self.duration.is_zero() || self.max_requests == 0 {
            return Err("`duration` and `max_requests` must be positive".into());
        }
        if !(0.0..=1.0).contains(&self.stream_share) {
            return Err("`stream_share` must be within 0..=1".into());
        }
        if self.prompt_bytes.is_empty() {
            return Err("`prompt_bytes` needs at least one size".into());
        }
        if self.rounds == 0 || self.targets.is_empty() {
            return Err("`rounds` and `targets` must not be empty".into());
        }
        if !(self.mock.tokens_per_s.is_finite() && self.mock.tokens_per_s >= 0.0) {
            return Err("`mock.tokens_per_s` must be ≥ 0".into());
        }
        Ok(())
    }
}

/// `humantime` strings (`10s`, `250ms`, `30m`) for durations.
mod human {
    use super::*;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_minimal_open_scenario() {
        let s = Scenario::parse(
            "name: t\nmode: open\nrate: 500\nduration: 2s\nmax_requests: 2000\nstream_share: 0.5\n",
        )
        .unwrap();
        assert_eq!(s.mode, ModeKind::Open);
        assert_eq!(s.duration, Duration::from_secs(2));
        assert_eq!(s.targets.len(), 3);
        assert_eq!(s.prompt_bytes, vec![40]);
        assert_eq!(s.rounds, 1);
        assert!(!s.mock.burst);
    }

    #[test]
    fn target_names_round_trip() {
        for kind in [
            TargetKind::Direct,
            TargetKind::Nginx,
            TargetKind::Sluice,
            TargetKind::Baseline,
        ] {
            assert_eq!(TargetKind::from_name(kind.name()), Some(kind));
        }
        assert_eq!(TargetKind::from_name("envoy"), None);
        let s = Scenario::parse(
            "name: t\nmode: closed\nduration: 1s\nmax_requests: 9\ntargets: [sluice, baseline]\nmock: { burst: true }\n",
        )
        .unwrap();
        assert_eq!(s.targets, vec![TargetKind::Sluice, TargetKind::Baseline]);
        assert!(s.mock.burst);
    }

    #[test]
    fn rejects_unbounded_or_broken_scenarios() {
        for bad in [
            "name: t\nmode: open\nduration: 2s\nmax_requests: 10\n",
            "name: t\nmode: closed\nconcurrency: 0\nduration: 2s\nmax_requests: 10\n",
            "name: t\nmode: closed\nduration: 2s\nmax_requests: 0\n",
            "name: t\nmode: closed\nduration: 2s\nmax_requests: 10\nstream_share: 2\n",
            "name: t\nmode: closed\nduration: 2s\n",
            "name: t\nmode: closed\nduration: 2s\nmax_requests: 10\nbogus: 1\n",
        ] {
            assert!(Scenario::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn every_shipped_scenario_parses() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
        let mut n = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "yaml") {
                Scenario::load(&path).unwrap();
                n += 1;
            }
        }
        assert!(n >= 5);
    }
}
