//! Spend from the catalog's prices (USD per million tokens).

use sluice_config::Pricing;

use crate::record::TokenUsage;

/// Cached input tokens are billed at `cached_input` and tokens written to the cache at
/// `cache_write_input` where the catalog gives them, else at the input price.
pub fn cost_usd(usage: &TokenUsage, pricing: &Pricing) -> f64 {
    let cached = usage.cached_input.min(usage.input);
    let written = usage.cache_write_input.min(usage.input - cached);
    let fresh = usage.input - cached - written;
    let cached_price = pricing.cached_input.unwrap_or(pricing.input);
    let write_price = pricing.cache_write_input.unwrap_or(pricing.input);
    (fresh as f64 * pricing.input
        + cached as f64 * cached_price
        + written as f64 * write_price
        + usage.output as f64 * pricing.output)
        / 1_000_000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::UsageSource;

    #[test]
    fn prices_fresh_cached_and_output_tokens() {
        let p = Pricing {
            input: 2.5,
            output: 10.0,
            cached_input: Some(1.25),
            cache_write_input: None,
        };
        let u = TokenUsage {
            input: 1_000,
            output: 500,
            cached_input: 400,
            cache_write_input: 0,
            reasoning: 0,
            source: UsageSource::Provider,
        };
        let want = (600.0 * 2.5 + 400.0 * 1.25 + 500.0 * 10.0) / 1e6;
        assert!((cost_usd(&u, &p) - want).abs() < 1e-12);
        let p = Pricing {
            input: 1.0,
            output: 2.0,
            cached_input: None,
            cache_write_input: None,
        };
        assert!((cost_usd(&u, &p) - (1000.0 + 1000.0) / 1e6).abs() < 1e-12);
    }

    #[test]
    fn cache_writes_are_priced_apart_when_the_catalog_says() {
        let p = Pricing {
            input: 3.0,
            output: 15.0,
            cached_input: Some(0.3),
            cache_write_input: Some(3.75),
        };
        let u = TokenUsage {
            input: 1_000,
            output: 100,
            cached_input: 500,
            cache_write_input: 200,
            reasoning: 0,
            source: UsageSource::Provider,
        };
        let want = (300.0 * 3.0 + 500.0 * 0.3 + 200.0 * 3.75 + 100.0 * 15.0) / 1e6;
        assert!((cost_usd(&u, &p) - want).abs() < 1e-12);
    }
}
