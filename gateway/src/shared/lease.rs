//! A replica's local allowance: request slots leased from Redis in one round trip and handed
//! out here without one. Leased slots are already counted in Redis, so replicas together
//! never admit more than the limit; slots a lease leaves unused when it ends are lost, which
//! errs towards admitting fewer (at most `local_allowance` per replica and key per lease).

use std::time::Duration;

use sluice_policy::Headroom;
use tokio::time::Instant;

/// How long leased slots stay usable. Short, so a lease never hides for long a budget spent
/// or a token limit reached elsewhere (neither is checked while a lease lasts).
pub const LEASE_FOR: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, Default)]
pub struct Lease {
    until: Option<Instant>,
    left: u32,
    /// What Redis said was left beyond this lease when it was granted.
    headroom: Headroom,
}

impl Lease {
    /// Takes one leased slot at `now`; the headroom to report with it.
    pub fn take(&mut self, now: Instant) -> Option<Headroom> {
        let until = self.until?;
        if now >= until || self.left == 0 {
            return None;
        }
        self.left -= 1;
        let mut h = self.headroom;
        // The client may count on Redis's remainder plus what this replica still holds.
        if let Some((limit, remaining, reset)) = h.requests {
            h.requests = Some((limit, remaining.saturating_add(u64::from(self.left)), reset));
        }
        Some(h)
    }

    /// Adds `slots` granted at `now` (beyond the one the granting request used). Slots of a
    /// lease still running are kept.
    pub fn grant(&mut self, slots: u32, headroom: Headroom, now: Instant) {
        if slots == 0 {
            return;
        }
        let live = self.until.is_some_and(|u| now < u);
        self.left = if live {
            self.left.saturating_add(slots)
        } else {
            slots
        };
        self.until = Some(now + LEASE_FOR);
        self.headroom = headroom;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headroom(remaining: u64) -> Headroom {
        Headroom {
            requests: Some((100, remaining, Duration::from_secs(1))),
            tokens: None,
        }
    }

    #[test]
    fn leased_slots_run_out_then_expire() {
        let now = Instant::now();
        let mut l = Lease::default();
        assert_eq!(l.take(now), None, "nothing leased yet");
        l.grant(2, headroom(50), now);
        let h = l.take(now).expect("first slot");
        assert_eq!(
            h.requests.map(|r| r.1),
            Some(51),
            "Redis's 50 and one still held"
        );
        assert_eq!(l.take(now).and_then(|h| h.requests).map(|r| r.1), Some(50));
        assert_eq!(l.take(now), None, "both slots used");

        l.grant(5, headroom(10), now);
        assert!(l.take(now + LEASE_FOR - Duration::from_millis(1)).is_some());
        assert_eq!(l.take(now + LEASE_FOR), None, "the lease ended");
    }

    #[test]
    fn a_grant_adds_to_a_running_lease_and_replaces_an_ended_one() {
        let now = Instant::now();
        let mut l = Lease::default();
        l.grant(3, headroom(10), now);
        l.grant(2, headroom(8), now + Duration::from_millis(10));
        let mut n = 0;
        while l.take(now + Duration::from_millis(20)).is_some() {
            n += 1;
        }
        assert_eq!(n, 5);
        l.grant(4, headroom(8), now + LEASE_FOR * 3);
        l.grant(0, headroom(0), now + LEASE_FOR * 3);
        let mut n = 0;
        while l.take(now + LEASE_FOR * 3).is_some() {
            n += 1;
        }
        assert_eq!(n, 4, "an empty grant changes nothing");
    }
}
