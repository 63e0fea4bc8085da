//! scaffolding
