//! The metrics sink: the catalogue of traffic metrics (`catalog`), their labels and
//! label rules (`labels`, `path`, `client_ip`), the aggregator that counts each record
//! into series (`aggregator`, `store`) and writes them out (`exposition`), and the
//! exporter's own metrics (`selfmon`, `kernel`). docs/metrics.md and
//! docs/cardinality.md are the manual.

mod aggregator;
mod catalog;
pub mod client_ip;
mod exemplar;
mod exposition;
pub(crate) mod gathered;
mod kernel;
mod labels;
mod native;
pub mod path;
pub(crate) mod proto;
mod selfmon;
mod store;

pub use aggregator::{
    Aggregator, Cardinality, Format, NativeHistograms, NativeMode, DEFAULT_MAX_SERIES,
};
pub use catalog::{
    Kind, MetricConfig, MetricDef, Source, TimerField, METRICS, NAMESPACE, QUEUE_BUCKETS,
    SECONDS_BUCKETS,
};
#[cfg(test)]
pub(crate) use kernel::socket_drops;
pub use kernel::UdpKernelStats;
pub use labels::{Label, MAX_LABELS};
pub(crate) use selfmon::RateLimit;
pub use selfmon::{
    CountingWatch, SelfMetrics, Snapshot, Transport, INCOMPLETE_FRAME, NOTHING_COUNTED_PERIOD,
    OVERSIZE_FRAME, REFUSED_LISTENERS, TCP_BUFFER_BUDGET,
};
pub use store::OVERFLOW;
