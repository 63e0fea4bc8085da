//! A ring of fixed time buckets holding bad and total counts.
//!
//! Buckets are addressed by their index since the engine's origin (in bucket widths; negative
//! before it, which restored history can be). The ring holds the `len` newest indices up to its
//! head; moving the head forward clears the slots it passes, so an idle ring costs nothing until
//! it is next touched.

/// Counts of one bucket. `u32` halves the memory; a bucket would need four billion events to
/// saturate (adds saturate rather than wrap).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Count {
    pub bad: u32,
    pub total: u32,
}

#[derive(Debug, Clone)]
pub(crate) struct Ring {
    /// Index of the newest bucket held.
    head: i64,
    buckets: Box<[Count]>,
}

impl Ring {
    /// An empty ring of `len` buckets whose newest is `head`.
    pub fn new(len: usize, head: i64) -> Self {
        Self {
            head,
            buckets: vec![Count::default(); len.max(1)].into_boxed_slice(),
        }
    }

    fn len(&self) -> i64 {
        i64::try_from(self.buckets.len()).unwrap_or(i64::MAX)
    }

    /// The oldest index still held.
    pub fn oldest(&self) -> i64 {
        self.head - self.len() + 1
    }

    fn slot(&self, ix: i64) -> usize {
        usize::try_from(ix.rem_euclid(self.len())).unwrap_or(0)
    }

    /// Moves the newest bucket forward to `ix`, clearing the buckets it passes.
    pub fn advance(&mut self, ix: i64) {
        if ix <= self.head {
            return;
        }
        let steps = (ix - self.head).min(self.len());
        for k in 1..=steps {
            let slot = self.slot(self.head + k);
            self.buckets[slot] = Count::default();
        }
        self.head = ix;
    }

    /// Adds to bucket `ix`; `false` (and nothing added) when it is older than the ring holds.
    pub fn add(&mut self, ix: i64, bad: u32, total: u32) -> bool {
        self.advance(ix);
        if ix < self.oldest() {
            return false;
        }
        let slot = self.slot(ix);
        let c = &mut self.buckets[slot];
        c.bad = c.bad.saturating_add(bad);
        c.total = c.total.saturating_add(total);
        true
    }

    /// `(bad, total)` over the `n` buckets ending with `now` (inclusive), of those held.
    pub fn sum(&self, now: i64, n: usize) -> (u64, u64) {
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        let lo = now.saturating_sub(n - 1).max(self.oldest());
        let hi = now.min(self.head);
        let (mut bad, mut total) = (0_u64, 0_u64);
        for ix in lo..=hi {
            let c = self.buckets[self.slot(ix)];
            bad += u64::from(c.bad);
            total += u64::from(c.total);
        }
        (bad, total)
    }

    /// The non-empty buckets, oldest first, with their index.
    pub fn iter(&self) -> impl Iterator<Item = (i64, Count)> + '_ {
        (self.oldest()..=self.head)
            .map(|ix| (ix, self.buckets[self.slot(ix)]))
            .filter(|(_, c)| c.total > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_clears_and_drops_what_is_too_old() {
        let mut r = Ring::new(4, 0);
        assert!(r.add(0, 1, 10));
        assert!(r.add(1, 0, 10));
        assert!(r.add(3, 2, 10));
        assert_eq!(r.sum(3, 4), (3, 30));
        assert_eq!(r.sum(3, 1), (2, 10));
        assert_eq!(r.sum(3, 3), (2, 20), "buckets 1..=3");
        // Moving to 5 drops buckets 0 and 1.
        assert!(r.add(5, 1, 1));
        assert_eq!(r.sum(5, 4), (3, 11));
        assert!(!r.add(1, 5, 5), "older than the ring");
        assert!(r.add(2, 0, 4), "still held");
        assert_eq!(r.sum(5, 100), (3, 15));
        // A long gap clears everything.
        r.advance(100);
        assert_eq!(r.sum(100, 4), (0, 0));
        assert_eq!(r.iter().count(), 0);
        // Negative indices (restored history from before the origin) work the same.
        let mut r = Ring::new(3, -1);
        assert!(r.add(-3, 1, 2));
        assert!(!r.add(-4, 1, 2));
        assert_eq!(
            r.iter().collect::<Vec<_>>(),
            [(-3, Count { bad: 1, total: 2 })]
        );
        // Sums never look past the head.
        assert_eq!(r.sum(10, 20), (1, 2));
    }
}
