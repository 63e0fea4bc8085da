//! Sluice's LLM-as-judge: which answers get judged, and turning verdicts into a quality SLI.
//!
//! Owns: the sampling decision (made at admit time, deterministic per request id so a retry
//! of the same request is judged the same way). The queue, rubric prompts and verdict parsing
//! arrive with the judge issue; the gateway does not call into this crate yet.

/// Decides whether a request is sampled for judging, from a stable request hash and a ratio
/// in `[0, 1]`. Deterministic, so tests and replays agree.
pub fn sampled(request_hash: u64, ratio: f64) -> bool {
    if ratio.is_nan() || ratio <= 0.0 {
        return false;
    }
    if ratio >= 1.0 {
        return true;
    }
    // Compare in the integer domain: the top 53 bits give an exact uniform value in [0, 1).
    let unit = (request_hash >> 11) as f64 / (1u64 << 53) as f64;
    unit < ratio
}

#[cfg(test)]
mod tests {
    use super::sampled;

    #[test]
    fn ratio_bounds_and_proportion() {
        assert!(!sampled(u64::MAX, 0.0));
        assert!(sampled(0, 1.0));
        let hits = (0..10_000u64)
            .map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15))
            .filter(|h| sampled(*h, 0.25))
            .count();
        assert!((2_300..2_700).contains(&hits), "{hits}");
    }
}
