//! Sluice's compiled, immutable policy and the store that swaps it.
//!
//! Owns: turning a validated [`sluice_config::Config`] into lookup structures the hot path reads
//! without locks (route table by public model name, model catalog, virtual keys by SHA-256),
//! the pure routing decision (which targets to try, in which order), each key's rate limiter,
//! and the pure remediation decision over SLO state ([`remediation`]).
//! Does not own: any I/O (DNS, sockets, files) or metrics; the gateway does those.

pub mod balance;
pub mod budget;
pub mod health;
mod keys;
mod limits;
pub mod remediation;
mod route;
pub mod runtime;
pub mod spend;
mod store;

use std::collections::HashMap;
use std::sync::Arc;

use sluice_config::{Config, ModelKind, Pricing, ProviderConfig, ServerConfig, TelemetryConfig};

use crate::runtime::{ProviderKindId, TargetIdentity};

pub use keys::{KeyEntry, hash_key};
pub use limits::{Denied, Headroom, KeyLimiter, LimitKind, TokioClock};
pub use route::{AttemptPlan, Route, RouteOrigin, SkipReason, Step};
pub use runtime::{AttemptGuard, Availability, RuntimeState, TargetState, TenantState};
pub use store::PolicyStore;

/// Errors from compiling a policy. Validation already rejected bad input, so these only
/// guard the invariants compile relies on.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("model `{model}` names provider `{provider}`, which is not configured")]
    UnknownProvider { model: String, provider: String },
    #[error("route `{route}` names model `{model}`, which is not in the catalog")]
    UnknownModel { route: String, model: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Index of a provider in [`Policy::providers`]; stable for the life of one policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProviderId(pub u16);

/// One upstream provider as configured (secrets already resolved by `sluice-config`).
#[derive(Debug)]
pub struct Provider {
    pub id: ProviderId,
    /// The configured name, shared so records and labels can hold it without a copy.
    pub name: Arc<str>,
    pub config: ProviderConfig,
}

/// A catalog model: where it lives and what it costs.
#[derive(Debug)]
pub struct Target {
    /// The catalog name (what metrics and spans call it).
    pub model: Arc<str>,
    /// The name sent upstream in the request body.
    pub upstream_model: Arc<str>,
    pub provider: Arc<Provider>,
    pub kind: ModelKind,
    pub pricing: Option<Pricing>,
    /// Live state (cooldowns, and health as it arrives); outlives reloads.
    pub state: Arc<TargetState>,
}

/// An entry of `GET /v1/models`.
#[derive(Debug, Clone)]
pub struct PublicModel {
    pub id: String,
    pub owned_by: String,
}

/// The compiled policy. Immutable: a reload builds a new one and swaps it in. Live state
/// (limiter windows, cooldowns) is not part of it: it is borrowed from a [`RuntimeState`].
#[derive(Debug)]
pub struct Policy {
    /// Set by [`PolicyStore`]: 1 for the policy the process started with, +1 per reload.
    pub generation: u64,
    /// The validated file this policy was compiled from (for diffs and the admin view).
    pub config: Arc<Config>,
    pub server: ServerConfig,
    pub telemetry: TelemetryConfig,
    /// Admin tokens by SHA-256, to the holder's name.
    admin_tokens: HashMap<[u8; 32], Arc<str>>,
    providers: Vec<Arc<Provider>>,
    catalog: HashMap<String, Arc<Target>>,
    routes: Vec<Route>,
    by_model: HashMap<String, (usize, Arc<str>)>,
    /// Routes chosen by a header, in file order, with the model names they also need.
    header_routes: Vec<(usize, Vec<Arc<str>>)>,
    keys: HashMap<[u8; 32], KeyEntry>,
    public_models: Vec<PublicModel>,
    /// Every route's remediation rules, in file order.
    rules: Vec<remediation::Rule>,
    /// The targets of every configured route, for the remediation decision.
    route_targets: Vec<remediation::RouteTargets>,
}

// === impl Target ===

impl Target {
    /// The target as SLOs and remediation name it: (provider, catalog model).
    pub fn key(&self) -> remediation::TargetKey {
        remediation::TargetKey {
            provider: Arc::clone(&self.provider.name),
            model: Arc::clone(&self.model),
        }
    }
}

// === impl Policy ===

impl Policy {
    /// Builds the lookup tables from a validated config, taking each rule's live state from
    /// `runtime` (kept when the rule's identity did not change).
    pub fn compile(config: &Config, runtime: &RuntimeState) -> Result<Self> {
        let mut providers = Vec::with_capacity(config.providers.len());
        let mut provider_ix = HashMap::with_capacity(config.providers.len());
        for (i, (name, p)) in config.providers.iter().enumerate() {
            let id = ProviderId(u16::try_from(i).unwrap_or(u16::MAX));
            provider_ix.insert(name.as_str(), providers.len());
            providers.push(Arc::new(Provider {
                id,
                name: Arc::from(name.as_str()),
                config: p.clone(),
            }));
        }

        let mut catalog = HashMap::with_capacity(config.models.len());
        for (name, m) in &config.models {
            let provider = provider_ix
                .get(m.provider.as_str())
                .map(|&i| Arc::clone(&providers[i]))
                .ok_or_else(|| Error::UnknownProvider {
                    model: name.clone(),
                    provider: m.provider.clone(),
                })?;
            let state = runtime.target(
                &m.provider,
                name,
                TargetIdentity {
                    provider: ProviderKindId::of(&provider.config.kind),
                    upstream_model: m.upstream_model.clone(),
                },
            );
            catalog.insert(
                name.clone(),
                Arc::new(Target {
                    model: Arc::from(name.as_str()),
                    upstream_model: Arc::from(m.upstream_model.as_str()),
                    provider,
                    kind: m.kind,
                    pricing: m.pricing,
                    state,
                }),
            );
        }

        let mut routes = Vec::with_capacity(config.routes.len() + config.models.len());
        let mut by_model = HashMap::new();
        let mut header_routes = Vec::new();
        for rc in &config.routes {
            let route = Route::configured(rc, &catalog, runtime)?;
            if rc.header.is_some() {
                let models: Vec<Arc<str>> =
                    rc.models.iter().map(|m| Arc::from(m.as_str())).collect();
                header_routes.push((routes.len(), models));
            } else {
                for m in &rc.models {
                    by_model.insert(m.clone(), (routes.len(), Arc::from(m.as_str())));
                }
            }
            routes.push(route);
        }
        // A catalog model no route claims is still reachable by its own name, on its own.
        for (name, target) in &catalog {
            if !by_model.contains_key(name) {
                by_model.insert(name.clone(), (routes.len(), Arc::clone(&target.model)));
                routes.push(Route::implicit(Arc::clone(target), runtime));
            }
        }

        let mut keys: HashMap<[u8; 32], KeyEntry> = config
            .keys
            .iter()
            .map(|k| {
                (
                    k.key_sha256,
                    KeyEntry::compile(k, config.tenants.get(&k.tenant), runtime),
                )
            })
            .collect();
        for k in runtime.internal_keys() {
            let mut entry = KeyEntry::compile(&k, config.tenants.get(&k.tenant), runtime);
            entry.internal = true;
            keys.insert(k.key_sha256, entry);
        }
        let admin_tokens = config
            .admin
            .tokens
            .iter()
            .map(|t| (t.token_sha256, Arc::from(t.name.as_str())))
            .collect();

        let names: std::collections::BTreeSet<&str> = by_model
            .keys()
            .map(String::as_str)
            .chain(
                header_routes
                    .iter()
                    .flat_map(|(_, models)| models.iter().map(|m| &**m)),
            )
            .collect();
        let mut public_models: Vec<PublicModel> = names
            .into_iter()
            .map(|id| PublicModel {
                id: id.to_owned(),
                owned_by: catalog
                    .get(id)
                    .map_or_else(|| "sluice".to_owned(), |t| t.provider.config.name.clone()),
            })
            .collect();
        public_models.sort_by(|a, b| a.id.cmp(&b.id));

        let rules = config
            .routes
            .iter()
            .flat_map(|r| {
                r.remediation
                    .iter()
                    .map(|c| remediation::Rule::from_config(&r.name, c))
            })
            .collect();
        let route_targets = routes
            .iter()
            .filter(|r| r.origin == RouteOrigin::Configured)
            .map(|r| remediation::RouteTargets {
                route: Arc::clone(&r.name),
                targets: r
                    .all_targets()
                    .map(|(t, weight)| remediation::RouteTarget {
                        target: t.key(),
                        weight,
                    })
                    .collect(),
            })
            .collect();

        Ok(Self {
            generation: 0,
            rules,
            route_targets,
            config: Arc::new(config.clone()),
            admin_tokens,
            server: config.server.clone(),
            telemetry: config.telemetry.clone(),
            providers,
            catalog,
            routes,
            by_model,
            header_routes,
            keys,
            public_models,
        })
    }

    /// The route that serves `model` for a request, and the public name to record; `has(name,
    /// value)` says whether the request carries that header (lowercase name) with that value.
    /// A route chosen by a header wins over the model's own route.
    pub fn find_route(
        &self,
        model: &str,
        has: impl Fn(&str, &str) -> bool,
    ) -> Option<(&Route, &Arc<str>)> {
        for (ix, models) in &self.header_routes {
            let route = &self.routes[*ix];
            let Some(h) = &route.header else { continue };
            if !has(&h.name, &h.value) {
                continue;
            }
            if models.is_empty() {
                return Some((route, &route.name));
            }
            if let Some(public) = models.iter().find(|m| &***m == model) {
                return Some((route, public));
            }
        }
        let (ix, public) = self.by_model.get(model)?;
        Some((&self.routes[*ix], public))
    }

    /// A plan for `model` right now (tests and tools; the gateway plans with its own
    /// randomness through [`Route::plan`]).
    pub fn route(&self, model: &str, has: impl Fn(&str, &str) -> bool) -> Option<AttemptPlan<'_>> {
        let (route, public) = self.find_route(model, has)?;
        Some(route.plan(
            public,
            tokio::time::Instant::now(),
            [0x9e37_79b9_7f4a_7c15, 0xbf58_476d_1ce4_e5b9],
            None,
        ))
    }

    /// Every route's remediation rules, in file order.
    pub fn remediation_rules(&self) -> &[remediation::Rule] {
        &self.rules
    }

    /// The targets of every configured route (primaries, then fallbacks with weight 0).
    pub fn route_targets(&self) -> &[remediation::RouteTargets] {
        &self.route_targets
    }

    /// Looks a presented virtual key up by its SHA-256; the plaintext is never stored.
    pub fn authenticate(&self, presented: &str) -> Option<&KeyEntry> {
        self.keys.get(&hash_key(presented))
    }

    /// The holder of a presented admin token (compared by SHA-256), if it is one.
    pub fn admin(&self, presented: &str) -> Option<&Arc<str>> {
        self.admin_tokens.get(&hash_key(presented))
    }

    /// The holder of the admin token whose SHA-256 is `hash`: a console session keeps the
    /// hash, never the token, and stops working when a reload removes the token.
    pub fn admin_by_hash(&self, hash: &[u8; 32]) -> Option<&Arc<str>> {
        self.admin_tokens.get(hash)
    }

    /// Every virtual key's entry.
    pub fn keys(&self) -> impl Iterator<Item = &KeyEntry> {
        self.keys.values()
    }

    pub fn providers(&self) -> &[Arc<Provider>] {
        &self.providers
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    pub fn catalog_model(&self, name: &str) -> Option<&Arc<Target>> {
        self.catalog.get(name)
    }

    /// What `GET /v1/models` lists: every name a client may send, sorted.
    pub fn public_models(&self) -> &[PublicModel] {
        &self.public_models
    }
}

#[cfg(test)]
mod tests;
