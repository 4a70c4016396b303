//! Aggregation, native histograms: the sparse exponential buckets of one Prometheus
//! native histogram series, counted from the integer values HAProxy logs.
//!
//! At schema `s` (-4..=8) the bucket base is `2^(2^-s)` and bucket `k` holds the values
//! `v` with `base^(k-1) < v <= base^k`; values up to [`ZERO_THRESHOLD`] go to the zero
//! bucket. Indices are computed from the bits of the float, so powers of two land
//! exactly on their boundary.
//!
//! A [`NativeLayout`] is built once per metric: the schema picked from the bucket
//! factor as client_golang picks it, and a table of the bucket index of every raw value
//! up to [`TABLE_MAX_RAW`] (16 s for a timer in milliseconds), 32 KiB of `i16` per
//! //! metric, built in about 2 million instructions. Larger values take the float path. A [`NativeBuckets`] is one series: dense counts
//! from its lowest populated index, so an observation is one table load and one
//! increment.
//!
//! Cost (callgrind, release build, x86-64, `cost` below): `observe` 32 instructions on
//! a table hit, 129 on the float path (raw above the table), counted from the entry of
//! an out-of-line call (of them 7 save and restore registers, which inlining into the
//! aggregator may save); a new bucket or a reduction costs more. The float path
//! estimates the sub-bucket with a quadratic and corrects it against the schema's 2^s
//! mantissa bounds (at most 2 KiB per metric), no `log2` nor `exp2` per value.
//!
//! Bucket limit: when an observation makes the number of populated buckets exceed the
//! limit, the series halves its resolution (schema - 1, bucket `k` goes to `ceil(k/2)`)
//! until it fits or reaches schema -4. client_golang halves once per observation; here
//! it repeats at once, which reaches the same schema sooner. client_golang's other
//! remedies (a reset after a minimum duration, widening the zero bucket) are not done:
//! a series keeps its reduced schema for its lifetime.
//!
//! Memory: 48 bytes per series when empty (no allocation), then 8 bytes per bucket
//! between the lowest and the highest populated one. With a bucket limit, that run too
//! halves the resolution when it passes four times the limit, so a few far outliers at
//! a fine schema cannot make a series large (at most 5 KiB at the default 160).

use std::fmt;

/// Values up to this go to the zero bucket: client_golang's default, 2^-128.
pub(crate) const ZERO_THRESHOLD: f64 = 2.938_735_877_055_719e-39;

/// The finest schema: 256 buckets per doubling.
pub(crate) const MAX_SCHEMA: i8 = 8;

/// The coarsest schema: one bucket per factor of 2^16.
pub(crate) const MIN_SCHEMA: i8 = -4;

/// The largest raw value whose bucket index the layout keeps in its table.
pub(crate) const TABLE_MAX_RAW: u64 = 16_384;

/// A series keeps counts for every bucket between its lowest and highest populated ones;
/// that run may be this many times the bucket limit before the resolution is halved.
const WIDTH_PER_BUCKET: usize = 4;

/// The table's mark of a raw value that goes to the zero bucket.
const ZERO_MARK: i16 = i16::MIN;

/// The schema for a bucket factor, as client_golang picks it: the widest buckets whose
/// growth factor `2^(2^-s)` is at most `factor` (the smallest such schema; its doc says
/// "largest", but finer schemas all qualify), clamped to -4..=8: 8 below 2^(2^-8), -4
/// from 2^16 up. `None` when the factor is not a number above 1.
pub(crate) fn schema_for_factor(factor: f64) -> Option<i8> {
    if !factor.is_finite() || factor <= 1.0 {
        return None;
    }
    // client_golang: -floor(log2(log2(factor))), clamped.
    let estimate = -factor.log2().log2().floor();
    let mut schema = estimate.clamp(f64::from(MIN_SCHEMA), f64::from(MAX_SCHEMA)) as i8;
    // The double logarithm may round across a boundary when the factor is one of the
    // growth factors: compare with them.
    while schema < MAX_SCHEMA && growth_factor(schema) > factor {
        schema += 1;
    }
    while schema > MIN_SCHEMA && growth_factor(schema - 1) <= factor {
        schema -= 1;
    }
    Some(schema)
}

/// `2^(2^-schema)`, the ratio of a bucket's upper bound to its lower bound.
pub(crate) fn growth_factor(schema: i8) -> f64 {
    (-f64::from(schema)).exp2().exp2()
}

/// The upper bound of bucket `index` at `schema`: `2^(index / 2^schema)`.
#[cfg(test)]
pub(crate) fn upper_bound(index: i32, schema: i8) -> f64 {
    (f64::from(index) * (-f64::from(schema)).exp2()).exp2()
}

/// `ceil(k / 2^shift)`, right for negative `k` too (an arithmetic shift is a floor).
/// Indices are within ±2^19 (2^1024 at schema 8) and shifts at most 12.
#[inline]
fn ceil_shift(k: i32, shift: u8) -> i32 {
    let shift = u32::from(shift & 15);
    (k + ((1 << shift) - 1)) >> shift
}

/// `2^(j / 2^schema)` for `j` in `0..=2^schema` at a positive schema (empty otherwise):
/// the bounds of the sub-buckets of a mantissa in [1, 2].
fn mantissa_bounds(schema: i8) -> Box<[f64]> {
    if schema <= 0 {
        return Box::new([]);
    }
    let n = 1u32 << schema;
    (0..=n)
        .map(|j| (f64::from(j) / f64::from(n)).exp2())
        .collect()
}

/// The bucket index of `v` at `schema`, `v` above [`ZERO_THRESHOLD`]; `bounds` are the
/// schema's [`mantissa_bounds`].
fn exact_index(v: f64, schema: i8, bounds: &[f64]) -> i32 {
    // Above 2^-128 and at most f64::MAX, `v` is a normal float: v = m * 2^e, m in [1, 2).
    let v = v.clamp(f64::MIN_POSITIVE, f64::MAX);
    let bits = v.to_bits();
    let e = ((bits >> 52) & 0x7ff) as i32 - 1023;
    let mantissa = bits & ((1u64 << 52) - 1);
    if schema <= 0 {
        // Boundaries are powers of two: v in (2^e, 2^(e+1)] is in the bucket of 2^(e+1),
        // and 2^e itself in the bucket of 2^e.
        let e = if mantissa == 0 { e } else { e + 1 };
        return ceil_shift(e, schema.unsigned_abs());
    }
    let per_doubling = 1i32 << schema;
    if mantissa == 0 {
        return e * per_doubling;
    }
    // m in (1, 2): sub-bucket j in 1..=2^s with bounds[j-1] < m <= bounds[j]. The
    // estimate log2(1 + x) ~ x (1.3466 - 0.3466 x) is within 0.008, so at most 2 steps
    // off at schema 8; the bounds correct it.
    let m = f64::from_bits(mantissa | (1023u64 << 52));
    let x = m - 1.0;
    let estimate = x * (1.3466 - 0.3466 * x) * f64::from(per_doubling);
    // Truncation + 1 rather than `ceil`, a libm call on baseline x86-64.
    let mut j = (estimate as i32 + 1).clamp(1, per_doubling);
    let bound = |j: i32| bounds.get(j as usize).copied().unwrap_or(2.0);
    while j > 1 && m <= bound(j - 1) {
        j -= 1;
    }
    while j < per_doubling && m > bound(j) {
        j += 1;
    }
    e * per_doubling + j
}

/// How one metric's values map to buckets: the schema, the unit and the bucket limit,
/// built once per metric.
pub(crate) struct NativeLayout {
    schema: i8,
    per_unit: f64,
    max_buckets: usize,
    /// The schema's [`mantissa_bounds`], for values above the table.
    bounds: Box<[f64]>,
    /// Bucket index at `schema` of raw values 0..=TABLE_MAX_RAW, [`ZERO_MARK`] for the
    /// zero bucket; empty if an index does not fit an `i16` (an extreme `per_unit`).
    table: Box<[i16]>,
}

impl fmt::Debug for NativeLayout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NativeLayout")
            .field("schema", &self.schema)
            .field("per_unit", &self.per_unit)
            .field("max_buckets", &self.max_buckets)
            .field("table_len", &self.table.len())
            .finish()
    }
}

impl NativeLayout {
    /// The layout for a bucket factor (see [`schema_for_factor`]), raw values per exposed
    /// unit (1000 for milliseconds exposed in seconds) and a limit of populated buckets
    /// per series (0: none). `None` if the factor is not above 1 or `per_unit` is not a
    /// positive number.
    pub(crate) fn new(factor: f64, per_unit: f64, max_buckets: usize) -> Option<Self> {
        Self::with_schema(schema_for_factor(factor)?, per_unit, max_buckets)
    }

    /// The layout at a given schema; `None` if it is outside -4..=8 or `per_unit` is not
    /// a positive number.
    pub(crate) fn with_schema(schema: i8, per_unit: f64, max_buckets: usize) -> Option<Self> {
        if !(MIN_SCHEMA..=MAX_SCHEMA).contains(&schema) || !per_unit.is_finite() || per_unit <= 0.0
        {
            return None;
        }
        let mut layout = NativeLayout {
            schema,
            per_unit,
            max_buckets,
            bounds: mantissa_bounds(schema),
            table: Box::new([]),
        };
        let table: Option<Box<[i16]>> = (0..=TABLE_MAX_RAW)
            .map(|raw| match layout.compute_index(raw) {
                None => Some(ZERO_MARK),
                Some(k) => i16::try_from(k).ok().filter(|&k| k != ZERO_MARK),
            })
            .collect();
        layout.table = table.unwrap_or_default();
        Some(layout)
    }

    /// The schema a new series starts at.
    #[cfg(test)]
    pub(crate) fn schema(&self) -> i8 {
        self.schema
    }

    /// The tables' size in bytes.
    #[cfg(test)]
    pub(crate) fn table_bytes(&self) -> usize {
        std::mem::size_of_val(&*self.table) + std::mem::size_of_val(&*self.bounds)
    }

    /// The bucket index of `raw` at the layout's schema, `None` for the zero bucket.
    #[inline]
    pub(crate) fn index(&self, raw: u64) -> Option<i32> {
        match usize::try_from(raw).ok().and_then(|i| self.table.get(i)) {
            Some(&ZERO_MARK) => None,
            Some(&k) => Some(i32::from(k)),
            None => self.compute_index(raw),
        }
    }

    /// [`index`](Self::index) without the table. Out of line: the table hit then saves
    /// no registers.
    #[inline(never)]
    fn compute_index(&self, raw: u64) -> Option<i32> {
        let v = raw as f64 / self.per_unit;
        if v <= ZERO_THRESHOLD {
            return None;
        }
        Some(exact_index(v, self.schema, &self.bounds))
    }
}

/// The buckets of one native histogram series: the zero bucket and the positive buckets
/// (values are never negative). `Default` is the empty series at the layout's schema,
/// without allocation.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct NativeBuckets {
    /// Counts of the buckets `first..first + counts.len()` at the series' schema; the
    /// first and the last are populated.
    counts: Vec<u64>,
    zero_count: u64,
    first: i32,
    /// Non-zero entries of `counts`.
    populated: u32,
    /// The layout's schema minus the series' schema.
    reduction: u8,
}

impl NativeBuckets {
    /// Counts one raw value.
    #[inline]
    pub(crate) fn observe(&mut self, layout: &NativeLayout, raw: u64) {
        let Some(k) = layout.index(raw) else {
            self.zero_count += 1;
            return;
        };
        let k = ceil_shift(k, self.reduction);
        if self.add(k, 1) && layout.max_buckets != 0 && self.over(layout) {
            self.reduce(layout);
        }
    }

    /// Adds `n` to bucket `k`; true if the bucket was empty.
    #[inline]
    fn add(&mut self, k: i32, n: u64) -> bool {
        // Below `first` wraps to a position past any Vec of counts.
        let pos = k.wrapping_sub(self.first) as u32 as usize;
        if let Some(count) = self.counts.get_mut(pos) {
            if *count != 0 {
                *count += n;
                return false;
            }
            *count = n;
            self.populated += 1;
            return true;
        }
        self.add_outside(k, n);
        true
    }

    /// Adds `n` to bucket `k`, outside the dense span (or the series is empty).
    #[cold]
    fn add_outside(&mut self, k: i32, n: u64) {
        if self.counts.is_empty() {
            self.first = k;
            self.counts.push(n);
        } else if k < self.first {
            let grow = self.first.abs_diff(k) as usize;
            self.counts
                .splice(0..0, std::iter::repeat_n(0, grow))
                .for_each(drop);
            self.first = k;
            if let Some(count) = self.counts.first_mut() {
                *count = n;
            }
        } else {
            let len = self.first.abs_diff(k) as usize + 1;
            self.counts.resize(len, 0);
            if let Some(count) = self.counts.last_mut() {
                *count = n;
            }
        }
        self.populated += 1;
    }

    /// Whether the series is over the bucket limit: more populated buckets than it, or a
    /// run of counts (empty buckets between the lowest and highest included) more than
    /// `WIDTH_PER_BUCKET` times it, which bounds a series' memory when a few outliers
    /// sit far from the rest (client_golang stores buckets sparsely and needs no such
    /// bound).
    fn over(&self, layout: &NativeLayout) -> bool {
        self.populated() > layout.max_buckets
            || self.counts.len() > layout.max_buckets.saturating_mul(WIDTH_PER_BUCKET)
    }

    /// Halves the resolution until the populated buckets fit the limit or the schema
    /// is the coarsest.
    #[cold]
    fn reduce(&mut self, layout: &NativeLayout) {
        while self.over(layout) && self.schema(layout) > MIN_SCHEMA {
            self.halve();
        }
    }

    /// Schema - 1: bucket `k` goes to `ceil(k/2)`.
    fn halve(&mut self) {
        let new_first = ceil_shift(self.first, 1);
        // Each new bucket takes one or two old ones at or after its position: moving
        // forwards never overwrites a count not yet moved.
        for pos in 0..self.counts.len() {
            let k = self.first + pos as i32;
            let to = (ceil_shift(k, 1) - new_first) as usize;
            let count = std::mem::take(&mut self.counts[pos]);
            self.counts[to] += count;
        }
        let last = self.first + self.counts.len() as i32 - 1;
        self.counts
            .truncate((ceil_shift(last, 1) - new_first) as usize + 1);
        self.first = new_first;
        self.populated = self.counts.iter().filter(|&&c| c != 0).count() as u32;
        self.reduction += 1;
    }

    /// The series' schema: the layout's, less the reductions.
    pub(crate) fn schema(&self, layout: &NativeLayout) -> i8 {
        layout.schema - self.reduction as i8
    }

    /// Observations in the zero bucket.
    pub(crate) fn zero_count(&self) -> u64 {
        self.zero_count
    }

    /// Populated (non-zero) buckets, the zero bucket not included.
    pub(crate) fn populated(&self) -> usize {
        self.populated as usize
    }

    /// All observations, the zero bucket's included.
    #[cfg(test)]
    pub(crate) fn count(&self) -> u64 {
        self.zero_count + self.counts.iter().sum::<u64>()
    }

    /// The populated buckets, ascending: (index at the series' schema, count).
    pub(crate) fn buckets(&self) -> impl Iterator<Item = (i32, u64)> + '_ {
        let first = self.first;
        self.counts
            .iter()
            .enumerate()
            .filter(|(_, &count)| count != 0)
            .map(move |(pos, &count)| (first + pos as i32, count))
    }

    /// The positive buckets in the protobuf encoding: spans (the first's offset is the
    /// index of its first bucket, a later one's the gap after the previous span) and
    /// count deltas over the buckets of the spans. Gaps of up to 2 empty buckets stay
    /// inside a span as zero counts, as client_golang encodes them.
    pub(crate) fn spans_and_deltas(&self) -> (Vec<(i32, u32)>, Vec<i64>) {
        let mut spans: Vec<(i32, u32)> = Vec::new();
        let mut deltas = Vec::with_capacity(self.counts.len());
        let mut previous = 0i64;
        // The index after the last bucket written.
        let mut next = 0i32;
        for (k, count) in self.buckets() {
            let gap = k - next;
            match spans.last_mut() {
                Some(span) if gap <= 2 => {
                    for _ in 0..gap {
                        deltas.push(-previous);
                        previous = 0;
                    }
                    span.1 += gap as u32 + 1;
                }
                // First bucket: `next` is 0, so the gap is the index.
                _ => spans.push((gap, 1)),
            }
            let count = count as i64;
            deltas.push(count - previous);
            previous = count;
            next = k + 1;
        }
        (spans, deltas)
    }

    /// Heap memory held by the series.
    #[cfg(test)]
    pub(crate) fn heap_bytes(&self) -> usize {
        self.counts.capacity() * std::mem::size_of::<u64>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn layout(schema: i8, per_unit: f64, max_buckets: usize) -> NativeLayout {
        NativeLayout::with_schema(schema, per_unit, max_buckets).unwrap()
    }

    fn index_at(v: f64, schema: i8) -> i32 {
        exact_index(v, schema, &mantissa_bounds(schema))
    }

    /// The index by the definition, in f64: the smallest k with v <= base^k.
    fn reference_index(v: f64, schema: i8) -> i32 {
        let mut k = (v.log2() * f64::from(schema).exp2()).ceil() as i32;
        while v <= upper_bound(k - 1, schema) {
            k -= 1;
        }
        while v > upper_bound(k, schema) {
            k += 1;
        }
        k
    }

    #[test]
    fn zero_threshold_is_two_to_minus_128() {
        assert_eq!(ZERO_THRESHOLD, (-128f64).exp2());
    }

    #[test]
    fn powers_of_two_fall_on_boundaries() {
        assert_eq!(index_at(1.0, 0), 0);
        assert_eq!(index_at(1.0, 8), 0);
        assert_eq!(index_at(1.0, -4), 0);
        assert_eq!(index_at(0.5, 3), -8);
        assert_eq!(index_at(2.0, 3), 8);
        assert_eq!(index_at(2.0, -1), 1);
        assert_eq!(index_at(4.0, -1), 1);
        assert_eq!(index_at(8.0, -1), 2);
        assert_eq!(index_at(0.25, -1), -1);
        assert_eq!(index_at(0.125, -1), -1);
        assert_eq!(index_at(65536.0, -4), 1);
        assert_eq!(index_at(65537.0, -4), 2);
        for schema in MIN_SCHEMA..=MAX_SCHEMA {
            for e in -20i32..=20 {
                let v = f64::from(e).exp2();
                // 2^e is base^(e * 2^s): an upper bound when e * 2^s is an integer.
                let expected = ceil_shift_f(f64::from(e) * f64::from(schema).exp2());
                assert_eq!(index_at(v, schema), expected, "2^{e} at schema {schema}");
                // Buckets are upper-inclusive: just above a boundary is the next
                // bucket, just below is the same one.
                let above = f64::from_bits(v.to_bits() + 1);
                assert_eq!(
                    index_at(above, schema),
                    expected + i32::from(is_boundary(e, schema)),
                    "above 2^{e} at schema {schema}"
                );
                let below = f64::from_bits(v.to_bits() - 1);
                assert_eq!(index_at(below, schema), expected, "below 2^{e}");
            }
        }
    }

    fn ceil_shift_f(x: f64) -> i32 {
        x.ceil() as i32
    }

    /// 2^e is the upper bound of a bucket at `schema`.
    fn is_boundary(e: i32, schema: i8) -> bool {
        schema >= 0 || e % (1 << -schema) == 0
    }

    #[test]
    fn exact_index_matches_the_definition() {
        for schema in MIN_SCHEMA..=MAX_SCHEMA {
            for raw in 1..5000u64 {
                let v = raw as f64 / 1000.0;
                assert_eq!(
                    index_at(v, schema),
                    reference_index(v, schema),
                    "{v} schema {schema}"
                );
            }
            // Far from 1 too: 7e-4 .. 1.4e19.
            let mut v = 7e-4;
            while v < 1.4e19 {
                assert_eq!(
                    index_at(v, schema),
                    reference_index(v, schema),
                    "{v} {schema}"
                );
                v *= 1.0123;
            }
        }
    }

    #[test]
    fn interior_boundaries_at_a_positive_schema() {
        // sqrt(2) is the bound of index 1 at schema 1: values just below and above.
        let b = upper_bound(1, 1);
        assert_eq!(index_at(b, 1), 1);
        assert_eq!(index_at(f64::from_bits(b.to_bits() + 1), 1), 2);
        assert_eq!(index_at(f64::from_bits(b.to_bits() - 1), 1), 1);
        assert_eq!(index_at(1.0001, 1), 1);
        assert_eq!(index_at(1.5, 1), 2);
    }

    #[test]
    fn schema_from_factor() {
        assert_eq!(schema_for_factor(1.1), Some(3));
        assert_eq!(schema_for_factor(2.0), Some(0));
        assert_eq!(schema_for_factor(4.0), Some(-1));
        assert_eq!(schema_for_factor(1.0001), Some(8));
        // client_golang clamps to -4 (floor(log2(log2(f))) >= 4).
        assert_eq!(schema_for_factor(1e9), Some(-4));
        assert_eq!(schema_for_factor(65536.0), Some(-4));
        assert_eq!(schema_for_factor(65535.0), Some(-3));
        assert_eq!(schema_for_factor(1.09), Some(4));
        assert_eq!(schema_for_factor(1.0), None);
        assert_eq!(schema_for_factor(0.5), None);
        assert_eq!(schema_for_factor(f64::NAN), None);
        assert_eq!(schema_for_factor(f64::INFINITY), None);
        // Each growth factor maps back to its schema.
        for schema in MIN_SCHEMA..=MAX_SCHEMA {
            assert_eq!(schema_for_factor(growth_factor(schema)), Some(schema));
            // Just below: the next finer schema.
            let below = f64::from_bits(growth_factor(schema).to_bits() - 1);
            let expected = (schema + 1).min(MAX_SCHEMA);
            assert_eq!(schema_for_factor(below), Some(expected), "below {schema}");
        }
        // client_golang's formula where it is not on a boundary.
        for factor in [1.001, 1.01, 1.05, 1.2, 1.5, 3.0, 10.0, 100.0, 1000.0] {
            let golang = (-f64::log2(f64::log2(factor)).floor()).clamp(-4.0, 8.0) as i8;
            assert_eq!(schema_for_factor(factor), Some(golang), "{factor}");
        }
    }

    #[test]
    fn layout_rejects_bad_input() {
        assert!(NativeLayout::new(1.0, 1000.0, 160).is_none());
        assert!(NativeLayout::new(1.1, 0.0, 160).is_none());
        assert!(NativeLayout::new(1.1, f64::NAN, 160).is_none());
        assert!(NativeLayout::with_schema(9, 1.0, 160).is_none());
        assert!(NativeLayout::with_schema(-5, 1.0, 160).is_none());
        let layout = NativeLayout::new(1.1, 1000.0, 160).unwrap();
        assert_eq!(layout.schema(), 3);
        assert_eq!(
            layout.table_bytes(),
            2 * (TABLE_MAX_RAW as usize + 1) + 8 * 9
        );
    }

    #[test]
    fn table_agrees_with_the_computation() {
        for schema in MIN_SCHEMA..=MAX_SCHEMA {
            for per_unit in [1.0, 1000.0] {
                let layout = layout(schema, per_unit, 0);
                assert_eq!(layout.table.len(), TABLE_MAX_RAW as usize + 1);
                for raw in 0..=TABLE_MAX_RAW {
                    assert_eq!(
                        layout.index(raw),
                        layout.compute_index(raw),
                        "raw {raw} schema {schema} per_unit {per_unit}"
                    );
                }
                assert_eq!(layout.index(0), None);
                assert_eq!(layout.index(1), Some(index_at(1.0 / per_unit, schema)));
            }
        }
    }

    #[test]
    fn extreme_values_do_not_panic() {
        for per_unit in [1e-300, 1e300, f64::MIN_POSITIVE, 1.0] {
            let layout = layout(8, per_unit, 160);
            let mut buckets = NativeBuckets::default();
            for raw in [0, 1, 2, u64::MAX, u64::MAX / 3] {
                buckets.observe(&layout, raw);
            }
            assert_eq!(buckets.count(), 5);
        }
    }

    #[test]
    fn empty_series() {
        assert_eq!(std::mem::size_of::<NativeBuckets>(), 48);
        let buckets = NativeBuckets::default();
        assert_eq!(buckets.heap_bytes(), 0);
        assert_eq!(buckets.spans_and_deltas(), (vec![], vec![]));
        assert_eq!(buckets.buckets().count(), 0);
        assert_eq!(buckets.populated(), 0);
        let layout = layout(3, 1000.0, 160);
        assert_eq!(buckets.schema(&layout), 3);
    }

    #[test]
    fn zero_bucket() {
        let layout = layout(3, 1000.0, 160);
        let mut buckets = NativeBuckets::default();
        buckets.observe(&layout, 0);
        buckets.observe(&layout, 0);
        buckets.observe(&layout, 1000);
        assert_eq!(buckets.zero_count(), 2);
        assert_eq!(buckets.populated(), 1);
        assert_eq!(buckets.buckets().collect::<Vec<_>>(), vec![(0, 1)]);
        // A divisor so large that 1 is below the threshold.
        let tiny = layout_huge();
        let mut buckets = NativeBuckets::default();
        buckets.observe(&tiny, 1);
        assert_eq!(buckets.zero_count(), 1);
    }

    fn layout_huge() -> NativeLayout {
        layout(0, 1e39, 0)
    }

    /// Buckets back from spans and deltas, empty ones left out.
    fn decode(spans: &[(i32, u32)], deltas: &[i64]) -> Vec<(i32, u64)> {
        let mut out = Vec::new();
        let mut deltas = deltas.iter();
        let mut count = 0i64;
        let mut k = 0i32;
        for (n, &(offset, length)) in spans.iter().enumerate() {
            k += offset;
            assert!(n == 0 || offset > 0, "adjacent spans");
            for _ in 0..length {
                count += deltas.next().expect("a delta per bucket");
                assert!(count >= 0);
                if count > 0 {
                    out.push((k, count as u64));
                }
                k += 1;
            }
        }
        assert!(deltas.next().is_none(), "deltas left over");
        out
    }

    #[test]
    fn spans_keep_small_gaps() {
        let layout = layout(0, 1.0, 0);
        let mut buckets = NativeBuckets::default();
        // Indices at schema 0: raw 2^k is index k.
        for (raw, times) in [(1u64, 3), (2, 1), (8, 2), (64, 1), (1024, 5)] {
            for _ in 0..times {
                buckets.observe(&layout, raw);
            }
        }
        // Indices 0, 1, 3, 6, 10: gaps 1 (kept), 2 (kept), 3 (new span).
        let (spans, deltas) = buckets.spans_and_deltas();
        assert_eq!(spans, vec![(0, 7), (3, 1)]);
        assert_eq!(deltas, vec![3, -2, -1, 2, -2, 0, 1, 4]);
        assert_eq!(
            decode(&spans, &deltas),
            buckets.buckets().collect::<Vec<_>>()
        );
    }

    #[test]
    fn spans_from_a_negative_index() {
        let layout = layout(3, 1000.0, 0);
        let mut buckets = NativeBuckets::default();
        buckets.observe(&layout, 500);
        buckets.observe(&layout, 250);
        let (spans, deltas) = buckets.spans_and_deltas();
        assert_eq!(spans, vec![(-16, 1), (7, 1)]);
        assert_eq!(deltas, vec![1, 0]);
    }

    #[test]
    fn reduction_halves_to_the_limit() {
        let layout = layout(3, 1000.0, 10);
        let mut buckets = NativeBuckets::default();
        for raw in 1..=20_000u64 {
            buckets.observe(&layout, raw);
        }
        assert!(buckets.populated() <= 10);
        assert!(buckets.schema(&layout) < 3);
        assert_eq!(buckets.count(), 20_000);
        let direct = direct(buckets.schema(&layout), 1000.0, 1..=20_000u64);
        assert_eq!(buckets.buckets().collect::<Vec<_>>(), direct);
    }

    #[test]
    fn reduction_stops_at_the_coarsest_schema() {
        let layout = layout(-3, 1.0, 1);
        let mut buckets = NativeBuckets::default();
        for raw in [1, 1 << 20, 1 << 40, 1 << 60] {
            buckets.observe(&layout, raw);
        }
        assert_eq!(buckets.schema(&layout), -4);
        assert_eq!(buckets.populated(), 4);
    }

    fn direct(schema: i8, per_unit: f64, raws: impl IntoIterator<Item = u64>) -> Vec<(i32, u64)> {
        let layout = layout(schema, per_unit, 0);
        let mut buckets = NativeBuckets::default();
        for raw in raws {
            buckets.observe(&layout, raw);
        }
        buckets.buckets().collect()
    }

    #[test]
    fn quantile_within_the_relative_error() {
        let layout = NativeLayout::new(1.1, 1000.0, 160).unwrap();
        let mut buckets = NativeBuckets::default();
        // A skewed sample: 1 ms .. about 30 s.
        let mut sample: Vec<u64> = (1..=3000u64).map(|i| i * i / 300 + 1).collect();
        for &raw in &sample {
            buckets.observe(&layout, raw);
        }
        sample.sort_unstable();
        let schema = buckets.schema(&layout);
        let error = growth_factor(schema) - 1.0;
        for q in [0.5, 0.9, 0.99, 0.999] {
            let rank = (q * sample.len() as f64).ceil() as u64;
            let truth = sample[rank as usize - 1] as f64 / 1000.0;
            let mut seen = buckets.zero_count();
            let (k, _) = buckets
                .buckets()
                .find(|&(_, c)| {
                    seen += c;
                    seen >= rank
                })
                .unwrap();
            let estimate = upper_bound(k, schema);
            assert!(estimate >= truth, "q {q}: {estimate} < {truth}");
            assert!(
                (estimate - truth) / truth <= error,
                "q {q}: {estimate} vs {truth}, error {error}"
            );
        }
    }

    proptest! {
        #[test]
        fn reduced_equals_direct(
            raws in prop::collection::vec(
                prop_oneof![0u64..100, 0u64..20_000, 0u64..u64::MAX],
                1..400,
            ),
            schema in MIN_SCHEMA..=MAX_SCHEMA,
            max_buckets in 1usize..40,
            per_unit in prop_oneof![Just(1.0), Just(1000.0)],
        ) {
            let layout = layout(schema, per_unit, max_buckets);
            let mut buckets = NativeBuckets::default();
            for &raw in &raws {
                buckets.observe(&layout, raw);
            }
            let reduced = buckets.schema(&layout);
            prop_assert!(buckets.populated() <= max_buckets || reduced == MIN_SCHEMA);
            prop_assert_eq!(buckets.count(), raws.len() as u64);
            prop_assert_eq!(
                buckets.zero_count(),
                raws.iter().filter(|&&r| r == 0).count() as u64
            );
            let got: Vec<_> = buckets.buckets().collect();
            prop_assert_eq!(&got, &direct(reduced, per_unit, raws.iter().copied()));
            prop_assert_eq!(got.len(), buckets.populated());
            let (spans, deltas) = buckets.spans_and_deltas();
            prop_assert_eq!(decode(&spans, &deltas), got);
            for &(_, length) in &spans {
                prop_assert!(length > 0);
            }
            // Later spans start after a gap of more than 2 empty buckets.
            for &(offset, _) in spans.iter().skip(1) {
                prop_assert!(offset > 2);
            }
        }
    }

    #[test]
    fn far_outliers_halve_the_resolution_before_the_run_of_counts_grows_past_its_bound() {
        // Two values 2^40 apart: two populated buckets, but at schema 3 a run of 321.
        let l = layout(3, 1000.0, 10);
        let mut h = NativeBuckets::default();
        h.observe(&l, 1);
        h.observe(&l, 1 << 40);
        assert_eq!(h.populated(), 2);
        assert!(
            h.counts.len() <= 10 * WIDTH_PER_BUCKET,
            "{}",
            h.counts.len()
        );
        assert!(h.schema(&l) < 3);
        assert_eq!(h.count(), 2);
        // Without a limit, no bound either.
        let l = layout(3, 1000.0, 0);
        let mut h = NativeBuckets::default();
        h.observe(&l, 1);
        h.observe(&l, 1 << 40);
        assert_eq!(h.schema(&l), 3);
    }
}

/// The figures of the module doc: `observe` on a table hit and on the float path, one
/// test each, through a function kept out of line so that callgrind counts its calls:
/// `valgrind --tool=callgrind <release test binary> --ignored --exact
/// metrics::native::cost::table` (or `::float`), then `callgrind_annotate
/// --inclusive=yes` and divide the cost of `cost::observe` by its 100,000 calls.
#[cfg(test)]
mod cost {
    use super::*;
    use std::hint::black_box;

    const N: u64 = 100_000;

    #[inline(never)]
    fn observe(buckets: &mut NativeBuckets, layout: &NativeLayout, raw: u64) {
        buckets.observe(layout, raw);
    }

    /// N observations of `raw(i)` at the default factor, every bucket from 1 ms to
    /// 4.5 h populated beforehand so that no call grows the counts.
    fn measure(raw: impl Fn(u64) -> u64) {
        // No limit: the 190 buckets stay at schema 3.
        let layout = NativeLayout::new(1.1, 1000.0, 0).unwrap();
        let mut buckets = NativeBuckets::default();
        let mut prefill = 0;
        let mut v = 1;
        while v <= 16_400_000 {
            buckets.observe(&layout, v);
            prefill += 1;
            v += 1 + v / 64;
        }
        let populated = buckets.populated();
        for i in 0..N {
            observe(&mut buckets, &layout, black_box(raw(i)));
        }
        assert_eq!(buckets.count(), prefill + N);
        assert_eq!(buckets.populated(), populated);
        assert_eq!(buckets.schema(&layout), 3);
    }

    #[test]
    #[ignore = "a measurement: run under callgrind"]
    fn table() {
        measure(|i| 1 + (i * 7919) % TABLE_MAX_RAW);
    }

    #[test]
    #[ignore = "a measurement: run under callgrind"]
    fn float() {
        measure(|i| TABLE_MAX_RAW + 1 + (i * 7919) % 16_000_000);
    }
}
