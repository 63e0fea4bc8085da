//! The per-signal state machine that turns "outside the band" into a flagged anomaly, with a
//! hold before flagging and another before clearing, so noise around the band's edge neither
//! flags nor flaps.
//!
//! | state | on a tick | to |
//! |---|---|---|
//! | `learning` | a band exists | `normal` (then as below) |
//! | `normal` | out of band | `pending` |
//! | `pending` | back in band, or too few events | `normal` |
//! | `pending` | out of band for `hold` | `anomalous` (**started**) |
//! | `anomalous` | back in band, or too few events | `clearing` |
//! | `clearing` | out of band again | `anomalous` |
//! | `clearing` | in band (or unknown) for `clear` | `normal` (**ended**) |
//!
//! Too few events never flags and never keeps a flag: with no data there is nothing to say,
//! and remediation's probe (which reads the same status) calls that "no data", not healthy.

use tokio::time::Instant;

use sluice_policy::remediation::AnomalyState;

/// Where one signal stands; `since` is when the current state began (for `anomalous` and
/// `clearing`, `flagged` is when the anomaly started).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Detector {
    pub state: AnomalyState,
    pub since: Option<Instant>,
    pub flagged: Option<Instant>,
    /// The largest directed score while flagged.
    pub peak: f64,
}

/// What a tick saw.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Reading {
    /// No band yet.
    Learning,
    /// A band, but too few events.
    Unknown,
    /// A band and a value; `out` when past the band in the bad direction.
    Known { out: bool, directed: f64 },
}

/// A change worth an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Edge {
    Started,
    Ended,
}

impl Default for Detector {
    fn default() -> Self {
        Self {
            state: AnomalyState::Learning,
            since: None,
            flagged: None,
            peak: 0.0,
        }
    }
}

impl Detector {
    /// One tick at `now`.
    pub fn step(
        &mut self,
        now: Instant,
        reading: Reading,
        hold: std::time::Duration,
        clear: std::time::Duration,
    ) -> Option<Edge> {
        use AnomalyState::{Anomalous, Clearing, Learning, Normal, Pending};
        let (out, directed) = match reading {
            Reading::Learning => {
                if self.state.is_active() {
                    // The band went away (a restore replaced it): end what it flagged.
                    *self = Self::default();
                    return Some(Edge::Ended);
                }
                *self = Self::default();
                return None;
            }
            Reading::Unknown => (false, f64::NEG_INFINITY),
            Reading::Known { out, directed } => (out, directed),
        };
        let elapsed = |since: Option<Instant>| {
            since.map_or(std::time::Duration::ZERO, |s| {
                now.saturating_duration_since(s)
            })
        };
        if self.state == Learning {
            self.enter(Normal, now);
        }
        match self.state {
            Learning | Normal => {
                if out {
                    self.enter(Pending, now);
                    return self.step(now, reading, hold, clear);
                }
                None
            }
            Pending => {
                if !out {
                    self.enter(Normal, now);
                    None
                } else if elapsed(self.since) >= hold {
                    self.enter(Anomalous, now);
                    self.flagged = Some(now);
                    self.peak = directed;
                    Some(Edge::Started)
                } else {
                    None
                }
            }
            Anomalous => {
                if out {
                    self.peak = self.peak.max(directed);
                    None
                } else {
                    self.enter(Clearing, now);
                    self.step_clearing(now, clear)
                }
            }
            Clearing => {
                if out {
                    self.enter(Anomalous, now);
                    self.peak = self.peak.max(directed);
                    None
                } else {
                    self.step_clearing(now, clear)
                }
            }
        }
    }

    fn step_clearing(&mut self, now: Instant, clear: std::time::Duration) -> Option<Edge> {
        let since = self.since.unwrap_or(now);
        if now.saturating_duration_since(since) >= clear {
            self.enter(AnomalyState::Normal, now);
            self.flagged = None;
            self.peak = 0.0;
            Some(Edge::Ended)
        } else {
            None
        }
    }

    fn enter(&mut self, state: AnomalyState, now: Instant) {
        self.state = state;
        self.since = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const HOLD: Duration = Duration::from_secs(120);
    const CLEAR: Duration = Duration::from_secs(180);

    fn out(d: f64) -> Reading {
        Reading::Known {
            out: true,
            directed: d,
        }
    }

    fn inside() -> Reading {
        Reading::Known {
            out: false,
            directed: 1.0,
        }
    }

    #[test]
    fn flags_after_the_hold_and_clears_after_the_clear_time() {
        use AnomalyState::*;
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        // (second, reading, state after, edge)
        let script: Vec<(u64, Reading, AnomalyState, Option<Edge>)> = vec![
            (0, Reading::Learning, Learning, None),
            (10, inside(), Normal, None),
            (20, out(5.0), Pending, None),
            (80, inside(), Normal, None),
            (90, out(5.0), Pending, None),
            (150, Reading::Unknown, Normal, None),
            (160, out(5.0), Pending, None),
            (279, out(6.0), Pending, None),
            (280, out(6.0), Anomalous, Some(Edge::Started)),
            (300, out(9.0), Anomalous, None),
            (310, inside(), Clearing, None),
            (400, out(5.0), Anomalous, None),
            (410, Reading::Unknown, Clearing, None),
            (589, inside(), Clearing, None),
            (590, inside(), Normal, Some(Edge::Ended)),
            (600, inside(), Normal, None),
        ];
        let mut d = Detector::default();
        for (s, reading, state, edge) in script {
            let got = d.step(at(s), reading, HOLD, CLEAR);
            assert_eq!((d.state, got), (state, edge), "at {s}s");
            if s == 300 {
                assert_eq!(d.flagged, Some(at(280)));
                assert_eq!(d.peak, 9.0);
            }
            if s == 400 {
                assert_eq!(d.flagged, Some(at(280)), "a relapse keeps the start");
            }
        }
        assert_eq!(d.flagged, None);
    }

    #[test]
    fn a_zero_hold_flags_at_once_and_a_lost_band_ends_the_flag() {
        let t0 = Instant::now();
        let mut d = Detector::default();
        assert_eq!(
            d.step(t0, out(5.0), Duration::ZERO, CLEAR),
            Some(Edge::Started)
        );
        assert_eq!(d.state, AnomalyState::Anomalous);
        assert_eq!(
            d.step(t0, Reading::Learning, Duration::ZERO, CLEAR),
            Some(Edge::Ended)
        );
        assert_eq!(d, Detector::default());
    }
}
