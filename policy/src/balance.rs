//! Balancing: which of a route's usable targets goes first. Pure functions over a small
//! candidate list; the route supplies the randomness and the counter.
//!
//! - `weighted`: a smooth rotation by weight (weights 3:1 give exactly three of every four
//!   requests to the first), deterministic, so it can be tested exactly.
//! - `least_latency`: the lowest EWMA of time to first token; a target with no measurement
//!   yet counts as fastest, so new targets are tried.
//! - `p2c`: power of two choices (Mitzenmacher): two distinct candidates drawn at random, the
//!   better one wins, scored as EWMA latency × (1 + requests in flight). Under concurrency the
//!   in-flight factor spreads load before the best target queues up (no herd on the current
//!   best); a target that degrades loses traffic at once, and one that stays slow keeps
//!   losing every draw it is in. Distinct draws, not draws with replacement: with two targets,
//!   a quarter of the traffic would otherwise go to the slow one by chance alone.

use sluice_config::Balance;

/// One usable target, as balancing sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    pub weight: u32,
    /// Time to first token, EWMA, milliseconds; `None` before the first measurement.
    pub ewma_ms: Option<f64>,
    pub inflight: u32,
}

impl Candidate {
    fn latency(&self) -> f64 {
        self.ewma_ms.unwrap_or(0.0)
    }

    fn load_score(&self) -> f64 {
        self.latency() * (1.0 + f64::from(self.inflight))
    }
}

/// The index of the candidate to try first. `counter` is the route's request counter (for
/// `weighted`); `random` two independent random words (for `p2c`). `None` when empty.
pub fn pick(
    strategy: Balance,
    cands: &[Candidate],
    counter: u64,
    random: [u64; 2],
) -> Option<usize> {
    if cands.len() <= 1 {
        return (!cands.is_empty()).then_some(0);
    }
    Some(match strategy {
        Balance::Weighted => weighted(cands, counter),
        Balance::LeastLatency => least_latency(cands),
        Balance::P2c => p2c(cands, random),
    })
}

fn weighted(cands: &[Candidate], counter: u64) -> usize {
    let total: u64 = cands.iter().map(|c| u64::from(c.weight.max(1))).sum();
    let mut pos = counter % total.max(1);
    for (i, c) in cands.iter().enumerate() {
        let w = u64::from(c.weight.max(1));
        if pos < w {
            return i;
        }
        pos -= w;
    }
    0
}

fn least_latency(cands: &[Candidate]) -> usize {
    let mut best = 0;
    for (i, c) in cands.iter().enumerate().skip(1) {
        let b = &cands[best];
        let better =
            c.latency() < b.latency() || (c.latency() == b.latency() && c.inflight < b.inflight);
        if better {
            best = i;
        }
    }
    best
}

fn p2c(cands: &[Candidate], random: [u64; 2]) -> usize {
    let n = cands.len() as u64;
    let a = (random[0] % n) as usize;
    // The second draw is among the others.
    let b = ((a as u64 + 1 + random[1] % (n - 1)) % n) as usize;
    if cands[b].load_score() < cands[a].load_score() {
        b
    } else {
        a
    }
}

/// The order after the first pick: for `least_latency` and `p2c` the rest by latency score,
/// for `weighted` the declared order.
pub fn rest_order(strategy: Balance, cands: &[Candidate], first: usize) -> Vec<usize> {
    let mut rest: Vec<usize> = (0..cands.len()).filter(|&i| i != first).collect();
    if strategy != Balance::Weighted {
        rest.sort_by(|&x, &y| {
            cands[x]
                .load_score()
                .partial_cmp(&cands[y].load_score())
                .unwrap_or(std::cmp::Ordering::Equal)
        });
    }
    rest
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(weight: u32, ewma: Option<f64>, inflight: u32) -> Candidate {
        Candidate {
            weight,
            ewma_ms: ewma,
            inflight,
        }
    }

    /// xorshift64*: enough randomness for tests, seeded.
    fn rng(seed: &mut u64) -> u64 {
        *seed ^= *seed >> 12;
        *seed ^= *seed << 25;
        *seed ^= *seed >> 27;
        seed.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    #[test]
    fn weighted_picks_follow_the_weights_within_three_percent() {
        let cands = [c(5, None, 0), c(3, None, 0), c(2, None, 0)];
        let mut counts = [0u32; 3];
        // The route's counter starts wherever a reload left it: any start works.
        for n in 0..10_000u64 {
            let i = pick(Balance::Weighted, &cands, n + 7, [0, 0]).expect("one");
            counts[i] += 1;
        }
        for (count, share) in counts.iter().zip([0.5, 0.3, 0.2]) {
            let got = f64::from(*count) / 10_000.0;
            assert!((got - share).abs() <= 0.03 * share, "{counts:?}");
        }
    }

    #[test]
    fn least_latency_takes_the_fastest_and_tries_the_unmeasured() {
        let cands = [
            c(1, Some(80.0), 0),
            c(1, Some(20.0), 3),
            c(1, Some(50.0), 0),
        ];
        assert_eq!(pick(Balance::LeastLatency, &cands, 0, [0, 0]), Some(1));
        let fresh = [c(1, Some(20.0), 0), c(1, None, 0)];
        assert_eq!(pick(Balance::LeastLatency, &fresh, 0, [0, 0]), Some(1));
        assert_eq!(rest_order(Balance::LeastLatency, &cands, 1), vec![2, 0]);
    }

    #[test]
    fn p2c_sends_most_traffic_to_the_faster() {
        let two = [c(1, Some(100.0), 0), c(1, Some(10.0), 0)];
        let three = [
            c(1, Some(100.0), 0),
            c(1, Some(10.0), 0),
            c(1, Some(90.0), 0),
        ];
        let mut seed = 0x5eed_u64;
        let (mut fast2, mut fast3) = (0, 0);
        for _ in 0..10_000 {
            let r = [rng(&mut seed), rng(&mut seed)];
            fast2 += u32::from(pick(Balance::P2c, &two, 0, r) == Some(1));
            fast3 += u32::from(pick(Balance::P2c, &three, 0, r) == Some(1));
        }
        assert_eq!(fast2, 10_000, "of two, the draw is always both");
        // Of three, the fast one is in two draws out of three.
        assert!((6_400..=6_950).contains(&fast3), "{fast3}");
        // Load counts: a fast target with a queue loses to a slower idle one.
        let busy = [c(1, Some(30.0), 0), c(1, Some(10.0), 9)];
        assert_eq!(pick(Balance::P2c, &busy, 0, [0, 1]), Some(0));
    }

    #[test]
    fn one_or_no_candidate() {
        assert_eq!(pick(Balance::P2c, &[], 0, [1, 2]), None);
        assert_eq!(
            pick(Balance::Weighted, &[c(1, None, 0)], 9, [0, 0]),
            Some(0)
        );
    }
}
