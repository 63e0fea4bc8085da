//! Routes and the attempt plan: the pure decision of which targets to try, in which order.
//!
//! The first target is picked by weight with a per-route counter (smooth and deterministic:
//! weights 3:1 give exactly three of every four requests to the first), the remaining targets
//! follow in declared order, then the fallbacks. `retry.max_attempts` bounds the walk; when it
//! exceeds the number of distinct targets the order repeats, which is how a single-target route
//! retries its one provider.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use sluice_config::{CacheConfig, ModelKind, RetryConfig, RouteConfig, Timeouts};

use crate::runtime::RuntimeState;
use crate::{Error, Result, Target};

/// Whether the route came from the `routes` section or stands for a bare catalog model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteOrigin {
    Configured,
    Implicit,
}

#[derive(Debug)]
pub struct Route {
    pub name: Arc<str>,
    pub origin: RouteOrigin,
    pub retry: RetryConfig,
    pub timeouts: Timeouts,
    /// Over this duration a request is kept by the tail sampler as slow (route override).
    pub slow: Option<std::time::Duration>,
    /// The route's response cache settings; `None` caches nothing.
    pub cache: Option<CacheConfig>,
    targets: Vec<(Arc<Target>, u32)>,
    fallbacks: Vec<Arc<Target>>,
    total_weight: u64,
    /// The weighted pick's position: runtime state, so a reload does not restart the cycle.
    counter: Arc<AtomicU64>,
}

/// The ordered targets for one request. Borrowed from the policy snapshot the request holds.
#[derive(Debug, Clone, Copy)]
pub struct AttemptPlan<'p> {
    pub route: &'p Route,
    /// The public model name the client asked for (a policy name, so a closed set).
    pub requested: &'p Arc<str>,
    first: usize,
}

// === impl Route ===

impl Route {
    pub(crate) fn configured(
        rc: &RouteConfig,
        catalog: &HashMap<String, Arc<Target>>,
        runtime: &RuntimeState,
    ) -> Result<Self> {
        let lookup = |model: &str| {
            catalog
                .get(model)
                .cloned()
                .ok_or_else(|| Error::UnknownModel {
                    route: rc.name.clone(),
                    model: model.to_owned(),
                })
        };
        let targets = rc
            .targets
            .iter()
            .map(|t| Ok((lookup(&t.model)?, t.weight.max(1))))
            .collect::<Result<Vec<_>>>()?;
        let fallbacks = rc
            .fallbacks
            .iter()
            .map(|m| lookup(m))
            .collect::<Result<Vec<_>>>()?;
        let mut route = Self::new(
            Arc::from(rc.name.as_str()),
            RouteOrigin::Configured,
            rc.retry.clone(),
            rc.timeouts,
            targets,
            fallbacks,
            runtime.route_counter(&rc.name),
        );
        route.slow = rc.slow;
        route.cache = rc.cache;
        Ok(route)
    }

    pub(crate) fn implicit(target: Arc<Target>) -> Self {
        Self::new(
            Arc::clone(&target.model),
            RouteOrigin::Implicit,
            RetryConfig::default(),
            Timeouts::default(),
            vec![(target, 1)],
            Vec::new(),
            // One target: the counter is never read.
            Arc::default(),
        )
    }

    fn new(
        name: Arc<str>,
        origin: RouteOrigin,
        retry: RetryConfig,
        timeouts: Timeouts,
        targets: Vec<(Arc<Target>, u32)>,
        fallbacks: Vec<Arc<Target>>,
        counter: Arc<AtomicU64>,
    ) -> Self {
        let total_weight = targets.iter().map(|(_, w)| u64::from(*w)).sum();
        Self {
            name,
            origin,
            retry,
            timeouts,
            slow: None,
            cache: None,
            targets,
            fallbacks,
            total_weight,
            counter,
        }
    }

    /// The kind every target of this route serves (validation keeps them uniform).
    pub fn kind(&self) -> ModelKind {
        self.targets
            .first()
            .map_or(ModelKind::Chat, |(t, _)| t.kind)
    }

    /// Distinct targets, primary ones first, then fallbacks.
    pub fn distinct_targets(&self) -> usize {
        self.targets.len() + self.fallbacks.len()
    }

    pub(crate) fn plan<'p>(&'p self, requested: &'p Arc<str>) -> AttemptPlan<'p> {
        let first = if self.targets.len() <= 1 {
            0
        } else {
            let mut pos = self.counter.fetch_add(1, Ordering::Relaxed) % self.total_weight.max(1);
            let mut pick = 0;
            for (i, (_, w)) in self.targets.iter().enumerate() {
                if pos < u64::from(*w) {
                    pick = i;
                    break;
                }
                pos -= u64::from(*w);
            }
            pick
        };
        AttemptPlan {
            route: self,
            requested,
            first,
        }
    }

    /// The `i`-th distinct target in plan order for a plan whose weighted pick is `first`.
    fn nth_in_order(&self, first: usize, i: usize) -> &Arc<Target> {
        let n = self.targets.len();
        if i < n {
            // The weighted pick first, then the other targets in declared order.
            let ix = if i == 0 {
                first
            } else if i <= first {
                i - 1
            } else {
                i
            };
            &self.targets[ix].0
        } else {
            &self.fallbacks[i - n]
        }
    }
}

// === impl AttemptPlan ===

impl<'p> AttemptPlan<'p> {
    /// How many attempts this plan allows in all.
    pub fn max_attempts(&self) -> usize {
        usize::try_from(self.route.retry.max_attempts)
            .unwrap_or(usize::MAX)
            .max(1)
    }

    /// The target of attempt `attempt` (0-based), or `None` past `max_attempts`.
    pub fn target(&self, attempt: usize) -> Option<&'p Arc<Target>> {
        if attempt >= self.max_attempts() {
            return None;
        }
        let distinct = self.route.distinct_targets();
        if distinct == 0 {
            return None;
        }
        Some(self.route.nth_in_order(self.first, attempt % distinct))
    }

    /// Every attempt's target in order.
    pub fn targets(&self) -> impl Iterator<Item = &'p Arc<Target>> + '_ {
        (0..self.max_attempts()).map_while(|i| self.target(i))
    }
}
