//! STUB until the native branch lands.
#![allow(dead_code)]
pub(crate) const ZERO_THRESHOLD: f64 = 2.938_735_877_055_719e-39;

pub(crate) fn schema_for_factor(factor: f64) -> Option<i8> {
    if !(factor.is_finite() && factor > 1.0) {
        return None;
    }
    let mut s: i8 = 8;
    while s > -4 && 2f64.powf(2f64.powi(-(s as i32))) > factor {
        s -= 1;
    }
    Some(s)
}

pub(crate) struct NativeLayout {
    schema: i8,
    per_unit: f64,
    max_buckets: usize,
}

impl NativeLayout {
    pub fn new(factor: f64, per_unit: f64, max_buckets: usize) -> Option<Self> {
        Some(NativeLayout {
            schema: schema_for_factor(factor)?,
            per_unit,
            max_buckets,
        })
    }
    pub fn schema(&self) -> i8 {
        self.schema
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct NativeBuckets {
    schema: Option<i8>,
    zero: u64,
    map: std::collections::BTreeMap<i32, u64>,
}

fn index(v: f64, schema: i8) -> i32 {
    let scale = 2f64.powi(schema as i32);
    let mut k = (v.log2() * scale).ceil() as i32;
    let bound = |k: i32| 2f64.powf(k as f64 / scale);
    while bound(k - 1) >= v {
        k -= 1;
    }
    while bound(k) < v {
        k += 1;
    }
    k
}

impl NativeBuckets {
    pub fn observe(&mut self, layout: &NativeLayout, raw: u64) {
        let schema = *self.schema.get_or_insert(layout.schema);
        let v = raw as f64 / layout.per_unit;
        if v <= ZERO_THRESHOLD {
            self.zero += 1;
            return;
        }
        *self.map.entry(index(v, schema)).or_default() += 1;
        while layout.max_buckets > 0
            && self.map.len() > layout.max_buckets
            && self.schema.unwrap_or(0) > -4
        {
            let old = std::mem::take(&mut self.map);
            for (k, c) in old {
                *self.map.entry((k + 1).div_euclid(2)).or_default() += c;
            }
            self.schema = self.schema.map(|s| s - 1);
        }
    }
    pub fn schema(&self, layout: &NativeLayout) -> i8 {
        self.schema.unwrap_or(layout.schema)
    }
    pub fn zero_count(&self) -> u64 {
        self.zero
    }
    pub fn populated(&self) -> usize {
        self.map.len()
    }
    pub fn spans_and_deltas(&self) -> (Vec<(i32, u32)>, Vec<i64>) {
        let mut spans: Vec<(i32, u32)> = Vec::new();
        let mut deltas = Vec::new();
        let mut prev_count = 0i64;
        let mut next: Option<i32> = None;
        for (&k, &c) in &self.map {
            match next {
                Some(n) if k - n <= 2 => {
                    for _ in n..k {
                        deltas.push(-prev_count);
                        prev_count = 0;
                    }
                    if let Some(last) = spans.last_mut() {
                        last.1 += (k - n) as u32 + 1;
                    }
                }
                Some(n) => spans.push((k - n, 1)),
                None => spans.push((k, 1)),
            }
            deltas.push(c as i64 - prev_count);
            prev_count = c as i64;
            next = Some(k + 1);
        }
        (spans, deltas)
    }
    pub fn buckets(&self) -> impl Iterator<Item = (i32, u64)> + '_ {
        self.map.iter().map(|(&k, &c)| (k, c))
    }
    pub fn heap_bytes(&self) -> usize {
        self.map.len() * 24
    }
}
