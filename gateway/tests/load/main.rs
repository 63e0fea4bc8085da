//! Load tests: the real `sluice` binary under thousands of requests. A test binary of their
//! own, because cargo runs test binaries one after another: the load never shares the machine
//! with the end-to-end tests that measure time (a Retry-After waited, a stream's total limit,
//! a judge that must not slow answers down).

#[path = "../e2e/common.rs"]
#[expect(
    dead_code,
    reason = "the shared e2e harness; these tests use part of it"
)]
mod common;

mod cardinality;
