//! Translation between Sluice's OpenAI face and providers that speak another dialect.

pub mod eventstream;
