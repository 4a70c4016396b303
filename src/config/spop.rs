//! The SPOE agent's settings (`HLE_SPOE_*`): where HAProxy's SPOE filter connects, how
//! large a frame may be, and whether its messages feed the metrics. Off by default.

use std::net::SocketAddr;

use super::reader::Reader;
use super::sources::{allow_list, AllowList};
use crate::spop::frame::MIN_FRAME_SIZE;

/// The largest `HLE_SPOE_MAX_FRAME_SIZE`: HAProxy's own limit is `tune.bufsize` - 4.
const MAX_FRAME_SIZE: usize = 1 << 20;

/// The SPOE agent, when `HLE_SPOE_ADDR` is set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoeConfig {
    pub addr: SocketAddr,
    /// Ours; the handshake takes the smaller of this and HAProxy's.
    pub max_frame_size: u32,
    pub max_connections: usize,
    /// Whether response messages feed the traffic metrics (off: the agent only sends
    /// routes back, for traffic whose logs this exporter also reads).
    pub metrics: bool,
    /// Who may connect (`HLE_SPOE_ALLOWED_SOURCES`).
    pub allowed_sources: AllowList,
}

pub(super) fn spoe(r: &mut Reader) -> Option<SpoeConfig> {
    let addr = r.optional_addr("HLE_SPOE_ADDR");
    let max_frame_size = r.number(
        "HLE_SPOE_MAX_FRAME_SIZE",
        MIN_FRAME_SIZE as usize,
        MAX_FRAME_SIZE,
    );
    let max_connections = r.number("HLE_SPOE_MAX_CONNECTIONS", 1, 1_000_000);
    let metrics = match r.get("HLE_SPOE_METRICS").trim() {
        "true" => true,
        "false" => false,
        other => {
            r.problem(format!("HLE_SPOE_METRICS={other:?}: must be true or false"));
            true
        }
    };
    let allowed_sources = allow_list(r, "HLE_SPOE_ALLOWED_SOURCES");
    Some(SpoeConfig {
        addr: addr?,
        max_frame_size: u32::try_from(max_frame_size?).ok()?,
        max_connections: max_connections?,
        metrics,
        allowed_sources,
    })
}
