//! Series storage: the series of the metrics that share one label list, in parallel
//! vectors indexed by slot, with the cap on label sets (the overflow series) and expiry.
//! docs/cardinality.md is the manual.

use std::collections::HashMap;
use std::sync::Arc;

use super::exemplar::Exemplar;
use super::labels::Label;
use super::native::NativeBuckets;

/// The value of every label of the overflow series.
pub const OVERFLOW: &str = "__overflow__";

/// Separates label values in a series key; never part of UTF-8 text.
pub(super) const SEPARATOR: u8 = 0xFF;

/// The metrics that share one label list and one number of Prometheus series per label
/// set (so one cap on label sets), and so one set of series.
pub(super) struct Group {
    pub labels: Vec<Label>,
    /// Indices of the group's metrics.
    pub metrics: Vec<usize>,
    /// Prometheus series each label set has in each metric: 1 for a counter.
    pub exposed: usize,
    /// Label sets that fit in `HLE_MAX_SERIES_PER_METRIC` series, the overflow one included.
    pub max_label_sets: usize,
    /// Counts per series.
    pub stride: usize,
    /// Sums per series.
    pub sum_stride: usize,
    /// Native histograms per series: one per histogram with `HLE_NATIVE_HISTOGRAMS` on.
    pub native_stride: usize,
    /// Exemplars per series: with `HLE_EXEMPLAR_LABEL`, one per counter and one per
    /// classic bucket (`+Inf` included) of each histogram.
    pub exemplar_stride: usize,
}

/// The series of one group, in parallel vectors indexed by slot.
#[derive(Default, Clone)]
pub(super) struct Series {
    index: HashMap<Arc<[u8]>, usize, foldhash::fast::RandomState>,
    pub keys: Vec<Arc<[u8]>>,
    /// When each series was last updated, in sweep ticks.
    pub touched: Vec<u32>,
    pub counts: Vec<u64>,
    /// Histogram sums in the unit HAProxy logs (milliseconds, queue slots): integers, so
    /// the sum does not depend on the order lines arrive in.
    pub sums: Vec<u64>,
    pub natives: Vec<NativeBuckets>,
    pub exemplars: Vec<Exemplar>,
    overflow: Option<usize>,
}

/// Where a label set's numbers are.
pub(super) struct Slot {
    pub slot: usize,
    /// The label set went to the overflow series.
    pub overflowed: bool,
    /// A series was added: the series gauges must be updated.
    pub added: bool,
}

impl Series {
    /// The series of a group, with the one series of a group without labels.
    pub fn new(group: &Group) -> Series {
        let mut series = Series::default();
        if group.labels.is_empty() {
            series.insert(Arc::from(&[][..]), group);
        }
        series
    }

    /// The slot of the series for `key`, created if there is room, else the overflow
    /// series.
    #[inline]
    pub fn slot(&mut self, group: &Group, key: &[u8]) -> Slot {
        match self.index.get(key) {
            Some(&slot) => Slot {
                slot,
                overflowed: Some(slot) == self.overflow,
                added: false,
            },
            None => self.new_slot(group, key),
        }
    }

    /// The slot for a key not seen yet: a new series, or the overflow one.
    #[cold]
    #[inline(never)]
    fn new_slot(&mut self, group: &Group, key: &[u8]) -> Slot {
        // One series is kept for the overflow, so the cap holds once it exists.
        let regular = self.keys.len() - usize::from(self.overflow.is_some());
        if regular + 1 < group.max_label_sets {
            let slot = self.insert(Arc::from(key), group);
            return Slot {
                slot,
                overflowed: false,
                added: true,
            };
        }
        let (slot, added) = match self.overflow {
            Some(slot) => (slot, false),
            None => {
                let mut key = Vec::new();
                for _ in &group.labels {
                    key.extend_from_slice(OVERFLOW.as_bytes());
                    key.push(SEPARATOR);
                }
                let slot = self.insert(Arc::from(key), group);
                self.overflow = Some(slot);
                (slot, true)
            }
        };
        Slot {
            slot,
            overflowed: true,
            added,
        }
    }

    /// Removes the series last touched `idle_limit` or more ticks before `now`; returns
    /// whether any was.
    pub fn expire(&mut self, group: &Group, now: u32, idle_limit: u32) -> bool {
        let before = self.keys.len();
        let mut slot = 0;
        while slot < self.keys.len() {
            if now.saturating_sub(self.touched[slot]) >= idle_limit {
                self.remove(slot, group);
            } else {
                slot += 1;
            }
        }
        self.keys.len() != before
    }

    /// The keys and numbers, without the index: what a scrape formats.
    pub fn numbers(&self) -> Series {
        Series {
            keys: self.keys.clone(),
            counts: self.counts.clone(),
            sums: self.sums.clone(),
            natives: self.natives.clone(),
            exemplars: self.exemplars.clone(),
            ..Series::default()
        }
    }

    /// The slots in the order of their keys, as the exposition lists them.
    pub fn sorted_slots(&self) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.keys.len()).collect();
        order.sort_unstable_by(|&a, &b| self.keys[a].cmp(&self.keys[b]));
        order
    }

    /// Adds a series with zero counts; returns its slot. The line that brought it
    /// stamps its time.
    fn insert(&mut self, key: Arc<[u8]>, group: &Group) -> usize {
        let slot = self.keys.len();
        self.index.insert(key.clone(), slot);
        self.keys.push(key);
        self.touched.push(0);
        self.counts.resize(self.counts.len() + group.stride, 0);
        self.sums.resize(self.sums.len() + group.sum_stride, 0);
        self.natives
            .resize_with(self.natives.len() + group.native_stride, Default::default);
        self.exemplars.resize_with(
            self.exemplars.len() + group.exemplar_stride,
            Default::default,
        );
        slot
    }

    /// Removes the series in `slot`; the last series moves into its place.
    fn remove(&mut self, slot: usize, group: &Group) {
        let last = self.keys.len() - 1;
        self.index.remove(&self.keys[slot]);
        self.keys.swap_remove(slot);
        self.touched.swap_remove(slot);
        swap_remove_run(&mut self.counts, slot, last, group.stride);
        swap_remove_run(&mut self.sums, slot, last, group.sum_stride);
        swap_remove_run(&mut self.natives, slot, last, group.native_stride);
        swap_remove_run(&mut self.exemplars, slot, last, group.exemplar_stride);
        if self.overflow == Some(slot) {
            self.overflow = None;
        }
        if slot != last {
            if let Some(moved) = self.index.get_mut(&self.keys[slot]) {
                *moved = slot;
            }
            if self.overflow == Some(last) {
                self.overflow = Some(slot);
            }
        }
    }
}

/// Removes the `width` values of `slot` from `values`, moving those of `last` there.
fn swap_remove_run<T>(values: &mut Vec<T>, slot: usize, last: usize, width: usize) {
    if slot != last {
        for i in 0..width {
            values.swap(slot * width + i, last * width + i);
        }
    }
    values.truncate(last * width);
}
