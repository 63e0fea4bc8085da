//! The counts root-cause hints are computed from: per dimension value, a ring of per-interval
//! cells (requests, failed, slow, tokens, spend) over the recent and the reference window.
//!
//! Bounded: each dimension tracks at most a fixed number of values; the rest are summed into
//! one `other` row. Tenants are the one open-ended dimension, so their table also evicts rows
//! idle over the whole ring, and keeps a tiny Space-Saving summary (Metwally et al., 2005) of
//! the untracked tenants so a heavy newcomer — the tenant whose burst an incident is about —
//! gets a row on the next tick even when the table is full.

use std::borrow::Borrow;
use std::hash::Hash;
use std::sync::Arc;

use foldhash::{HashMap, HashMapExt};

use super::rootcause::{BreakdownView, Counts, Dimension, DimensionCounts, ValueCounts};
use super::sample::{AiopsSample, ErrorCause};
use crate::metrics::NONE;
use crate::record::Endpoint;

/// The aggregate row's name.
pub const OTHER: &str = "other";
/// Values tracked per dimension at most, besides tenants (providers, models and routes come
/// from the policy; error causes are a bounded set).
const MAX_VALUES: usize = 256;
/// Untracked tenants the Space-Saving summary follows.
const CANDIDATES: usize = 8;
const ENDPOINTS: [Endpoint; 7] = [
    Endpoint::ChatCompletions,
    Endpoint::Completions,
    Endpoint::Embeddings,
    Endpoint::Models,
    Endpoint::Responses,
    Endpoint::Messages,
    Endpoint::Other,
];

/// A Space-Saving counter: `count` overestimates the tenant's requests by at most `error`
/// (what it inherited when it took its place).
#[derive(Debug, Clone)]
struct Candidate {
    tenant: Arc<str>,
    count: u64,
    error: u64,
}

/// One interval of one value.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Cell {
    pub total: u32,
    pub failed: u32,
    pub slow: u32,
    pub tokens: u64,
    pub cost: f64,
}

#[derive(Debug, Clone)]
struct Row {
    head: i64,
    cells: Box<[Cell]>,
}

#[derive(Debug, Clone)]
struct Table<K> {
    index: HashMap<K, usize>,
    keys: Vec<K>,
    rows: Vec<Row>,
    other: Row,
    cap: usize,
}

/// Every dimension's table.
#[derive(Debug, Clone)]
pub(crate) struct Breakdown {
    len: usize,
    recent: usize,
    provider: Table<Arc<str>>,
    model: Table<Arc<str>>,
    route: Table<Arc<str>>,
    tenant: Table<Arc<str>>,
    endpoint: [Row; ENDPOINTS.len()],
    error: Table<ErrorCause>,
    /// Space-Saving counters of tenants that fell into `other` since the last tick.
    candidates: Vec<Candidate>,
}

// === impl Row ===

impl Row {
    fn new(len: usize, head: i64) -> Self {
        Self {
            head,
            cells: vec![Cell::default(); len.max(1)].into_boxed_slice(),
        }
    }

    fn len(&self) -> i64 {
        i64::try_from(self.cells.len()).unwrap_or(i64::MAX)
    }

    fn slot(&self, ix: i64) -> usize {
        usize::try_from(ix.rem_euclid(self.len())).unwrap_or(0)
    }

    fn advance(&mut self, ix: i64) {
        if ix <= self.head {
            return;
        }
        let steps = (ix - self.head).min(self.len());
        for k in 1..=steps {
            let slot = self.slot(self.head + k);
            self.cells[slot] = Cell::default();
        }
        self.head = ix;
    }

    fn add(&mut self, ix: i64, d: &Cell) {
        self.advance(ix);
        if ix <= self.head - self.len() {
            return;
        }
        let slot = self.slot(ix);
        let c = &mut self.cells[slot];
        c.total = c.total.saturating_add(d.total);
        c.failed = c.failed.saturating_add(d.failed);
        c.slow = c.slow.saturating_add(d.slow);
        c.tokens = c.tokens.saturating_add(d.tokens);
        c.cost += d.cost;
    }

    /// Counts over intervals `lo..=hi` of those held.
    fn sum(&self, lo: i64, hi: i64) -> Counts {
        let lo = lo.max(self.head - self.len() + 1);
        let hi = hi.min(self.head);
        let mut out = Counts::default();
        for ix in lo..=hi {
            let c = &self.cells[self.slot(ix)];
            out.total += u64::from(c.total);
            out.failed += u64::from(c.failed);
            out.slow += u64::from(c.slow);
            out.tokens = out.tokens.saturating_add(c.tokens);
            out.cost_usd += c.cost;
        }
        out
    }

    /// Requests over the whole ring as of interval `cur`.
    fn requests(&self, cur: i64) -> u64 {
        self.sum(cur - self.len() + 1, cur).total
    }

    fn merge_into(&self, other: &mut Row) {
        for ix in (self.head - self.len() + 1)..=self.head {
            let c = self.cells[self.slot(ix)];
            if c.total > 0 {
                other.add(ix, &c);
            }
        }
    }
}

// === impl Table ===

impl<K: Hash + Eq + Clone> Table<K> {
    fn new(cap: usize, len: usize, head: i64) -> Self {
        Self {
            index: HashMap::new(),
            keys: Vec::new(),
            rows: Vec::new(),
            other: Row::new(len, head),
            cap,
        }
    }

    /// Adds to `q`'s row, creating it while under the cap; `false` when it went to `other`.
    fn add<Q>(&mut self, q: &Q, make: impl FnOnce() -> K, ix: i64, d: &Cell) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        if let Some(&i) = self.index.get(q) {
            self.rows[i].add(ix, d);
            return true;
        }
        if self.rows.len() >= self.cap {
            self.other.add(ix, d);
            return false;
        }
        let len = self.other.cells.len();
        self.insert(make(), Row::new(len, ix)).add(ix, d);
        true
    }

    fn insert(&mut self, key: K, row: Row) -> &mut Row {
        self.index.insert(key.clone(), self.rows.len());
        self.keys.push(key);
        self.rows.push(row);
        let last = self.rows.len() - 1;
        &mut self.rows[last]
    }

    fn remove(&mut self, i: usize) -> Row {
        let key = self.keys.swap_remove(i);
        self.index.remove(&key);
        let row = self.rows.swap_remove(i);
        if let Some(moved) = self.keys.get(i) {
            self.index.insert(moved.clone(), i);
        }
        row
    }

    fn view(
        &self,
        dimension: Dimension,
        name: impl Fn(&K) -> Arc<str>,
        windows: (i64, i64, i64),
    ) -> DimensionCounts {
        let (recent_lo, cur, ref_lo) = windows;
        let counts = |row: &Row| (row.sum(recent_lo, cur), row.sum(ref_lo, recent_lo - 1));
        let mut values: Vec<ValueCounts> = self
            .keys
            .iter()
            .zip(&self.rows)
            .map(|(k, row)| {
                let (recent, reference) = counts(row);
                ValueCounts {
                    value: name(k),
                    aggregate: false,
                    recent,
                    reference,
                }
            })
            .collect();
        let (recent, reference) = counts(&self.other);
        if recent.total > 0 || reference.total > 0 {
            values.push(ValueCounts {
                value: Arc::from(OTHER),
                aggregate: true,
                recent,
                reference,
            });
        }
        values.retain(|v| v.recent.total > 0 || v.reference.total > 0);
        values.sort_by(|a, b| a.value.cmp(&b.value));
        DimensionCounts { dimension, values }
    }

    fn footprint(&self, key_bytes: usize) -> usize {
        let row = std::mem::size_of::<Row>() + self.other.cells.len() * std::mem::size_of::<Cell>();
        // Each row: the row itself, its key in `keys` and in the map (with the index).
        (self.rows.len() + 1) * row
            + self.index.capacity() * (key_bytes + std::mem::size_of::<usize>())
            + self.keys.capacity() * key_bytes
    }
}

// === impl Breakdown ===

impl Breakdown {
    pub fn new(recent: u32, reference: u32, max_tenants: usize, head: i64) -> Self {
        let recent = usize::try_from(recent).unwrap_or(usize::MAX).max(1);
        let len = recent.saturating_add(usize::try_from(reference).unwrap_or(usize::MAX));
        Self {
            len,
            recent,
            provider: Table::new(MAX_VALUES, len, head),
            model: Table::new(MAX_VALUES, len, head),
            route: Table::new(MAX_VALUES, len, head),
            tenant: Table::new(max_tenants, len, head),
            endpoint: std::array::from_fn(|_| Row::new(len, head)),
            error: Table::new(MAX_VALUES, len, head),
            candidates: Vec::with_capacity(CANDIDATES),
        }
    }

    /// Counts one sample in interval `ix`.
    pub fn add(&mut self, ix: i64, sample: &AiopsSample, failed: bool, slow: bool) {
        let d = Cell {
            total: 1,
            failed: u32::from(failed),
            slow: u32::from(slow),
            tokens: sample.input_tokens.saturating_add(sample.output_tokens),
            cost: if sample.cost_usd.is_finite() {
                sample.cost_usd.max(0.0)
            } else {
                0.0
            },
        };
        let none = || Arc::<str>::from(NONE);
        match &sample.target {
            Some(t) => {
                self.provider
                    .add(&*t.provider, || Arc::clone(&t.provider), ix, &d);
                self.model.add(&*t.model, || Arc::clone(&t.model), ix, &d);
            }
            None => {
                self.provider.add(NONE, none, ix, &d);
                self.model.add(NONE, none, ix, &d);
            }
        }
        self.route
            .add(&*sample.route, || Arc::clone(&sample.route), ix, &d);
        let tracked = match &sample.tenant {
            Some(t) => self.tenant.add(&**t, || Arc::clone(t), ix, &d),
            None => self.tenant.add(NONE, none, ix, &d),
        };
        if !tracked && let Some(t) = &sample.tenant {
            self.count_candidate(t);
        }
        let e = ENDPOINTS
            .iter()
            .position(|e| *e == sample.endpoint)
            .unwrap_or(ENDPOINTS.len() - 1);
        self.endpoint[e].add(ix, &d);
        if failed && let Some(cause) = sample.error {
            self.error.add(&cause, || cause, ix, &d);
        }
    }

    /// Space-Saving: a tenant already followed counts one more; otherwise it takes the place of
    /// the least counted one and inherits its count (an overestimate by at most that count).
    fn count_candidate(&mut self, tenant: &Arc<str>) {
        if let Some(c) = self.candidates.iter_mut().find(|c| *c.tenant == **tenant) {
            c.count += 1;
            return;
        }
        if self.candidates.len() < CANDIDATES {
            self.candidates.push(Candidate {
                tenant: Arc::clone(tenant),
                count: 1,
                error: 0,
            });
            return;
        }
        if let Some(min) = self.candidates.iter_mut().min_by_key(|c| c.count) {
            *min = Candidate {
                tenant: Arc::clone(tenant),
                count: min.count + 1,
                error: min.count,
            };
        }
    }

    /// Once per tick at interval `cur`: drops tenant rows idle over the whole ring, then gives
    /// rows to the heaviest untracked tenants — into free places, or in place of the lightest
    /// tracked tenant (not one promoted this tick) when a candidate surely sent more since the
    /// last tick (its count less its error) than that tenant did over the whole ring. A
    /// replaced tenant's counts move to `other`, so totals stay whole.
    pub fn tick(&mut self, cur: i64) {
        let table = &mut self.tenant;
        let mut i = 0;
        while i < table.rows.len() {
            if table.rows[i].requests(cur) == 0 {
                table.remove(i);
            } else {
                i += 1;
            }
        }
        let mut candidates = std::mem::take(&mut self.candidates);
        candidates.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.tenant.cmp(&b.tenant)));
        let mut promoted: Vec<Arc<str>> = Vec::new();
        for c in candidates.drain(..) {
            if table.index.contains_key(&*c.tenant) {
                continue;
            }
            if table.rows.len() >= table.cap {
                let sure = c.count - c.error;
                let lightest = (0..table.rows.len())
                    .filter(|&i| !promoted.contains(&table.keys[i]))
                    .map(|i| (i, table.rows[i].requests(cur)))
                    .min_by_key(|(_, n)| *n);
                match lightest {
                    Some((i, n)) if n < sure => {
                        let row = table.remove(i);
                        row.merge_into(&mut table.other);
                    }
                    _ => continue,
                }
            }
            promoted.push(Arc::clone(&c.tenant));
            table.insert(c.tenant, Row::new(self.len, cur));
        }
        self.candidates = candidates;
    }

    /// The counts as of interval `cur`, `into_cur` minutes into it: the newest `recent`
    /// intervals (the last one partial) and the rest of the ring before them.
    pub fn view(&self, cur: i64, interval_minutes: f64, into_cur: f64) -> BreakdownView {
        let recent = i64::try_from(self.recent).unwrap_or(i64::MAX);
        let len = i64::try_from(self.len).unwrap_or(i64::MAX);
        let windows = (cur - recent + 1, cur, cur - len + 1);
        let name = |k: &Arc<str>| Arc::clone(k);
        let mut endpoint = Vec::new();
        for (e, row) in ENDPOINTS.iter().zip(&self.endpoint) {
            let recent = row.sum(windows.0, cur);
            let reference = row.sum(windows.2, windows.0 - 1);
            if recent.total > 0 || reference.total > 0 {
                endpoint.push(ValueCounts {
                    value: Arc::from(e.as_str()),
                    aggregate: false,
                    recent,
                    reference,
                });
            }
        }
        BreakdownView {
            recent_minutes: (self.recent - 1) as f64 * interval_minutes
                + into_cur.clamp(0.0, interval_minutes),
            reference_minutes: (self.len - self.recent) as f64 * interval_minutes,
            dimensions: vec![
                self.provider.view(Dimension::Provider, name, windows),
                self.tenant.view(Dimension::Tenant, name, windows),
                self.model.view(Dimension::Model, name, windows),
                self.route.view(Dimension::Route, name, windows),
                DimensionCounts {
                    dimension: Dimension::Endpoint,
                    values: endpoint,
                },
                self.error
                    .view(Dimension::Error, |e| Arc::from(e.to_string()), windows),
            ],
        }
    }

    /// Tenants with their own row.
    pub fn tenants(&self) -> usize {
        self.tenant.rows.len()
    }

    /// Bytes held (rows, keys, maps; the name strings themselves are shared with the policy).
    pub fn footprint(&self) -> usize {
        let name = std::mem::size_of::<Arc<str>>();
        let row = std::mem::size_of::<Row>() + self.len * std::mem::size_of::<Cell>();
        std::mem::size_of::<Self>()
            + self.provider.footprint(name)
            + self.model.footprint(name)
            + self.route.footprint(name)
            + self.tenant.footprint(name)
            + self.error.footprint(std::mem::size_of::<ErrorCause>())
            + ENDPOINTS.len() * row
            + self.candidates.capacity() * std::mem::size_of::<Candidate>()
    }
}
