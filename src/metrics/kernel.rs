//! The kernel's own counts for the syslog UDP socket, a collector read at each scrape:
//! what the socket lost before the exporter could read it.

use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::sync::{Mutex, PoisonError};

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{IntCounter, IntGauge};

/// `haproxy_log_exporter_udp_receive_drops_total` and `..._udp_receive_buffer_bytes`:
/// the kernel's own counts for our UDP socket, read from `/proc/net/udp` and
/// `/proc/net/udp6` at each scrape (the `drops` column: datagrams the kernel discarded
/// because the socket's receive buffer was full, the count `SO_RXQ_OVFL` reports).
pub struct UdpKernelStats {
    inode: u64,
    drops: IntCounter,
    buffer: IntGauge,
    /// The kernel's count at the last scrape, to advance the counter by the difference.
    seen: Mutex<u64>,
}

impl UdpKernelStats {
    /// Stats of `socket`, whose receive buffer the kernel reported as `buffer_bytes`.
    pub fn new(socket: &impl AsRawFd, buffer_bytes: usize) -> Result<Self, prometheus::Error> {
        let inode = std::fs::metadata(format!("/proc/self/fd/{}", socket.as_raw_fd()))
            .map(|meta| meta.ino())
            .unwrap_or(0);
        let drops = IntCounter::new(
            "haproxy_log_exporter_udp_receive_drops_total",
            "Datagrams the kernel dropped for the syslog UDP socket because its receive buffer was full.",
        )?;
        let buffer = IntGauge::new(
            "haproxy_log_exporter_udp_receive_buffer_bytes",
            "Receive buffer of the syslog UDP socket as the kernel reports it (SO_RCVBUF; on Linux twice the usable size).",
        )?;
        buffer.set(i64::try_from(buffer_bytes).unwrap_or(i64::MAX));
        Ok(UdpKernelStats {
            inode,
            drops,
            buffer,
            seen: Mutex::new(0),
        })
    }
}

impl Collector for UdpKernelStats {
    fn desc(&self) -> Vec<&Desc> {
        self.drops
            .desc()
            .into_iter()
            .chain(self.buffer.desc())
            .collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let table = ["/proc/net/udp", "/proc/net/udp6"]
            .iter()
            .filter(|_| self.inode != 0)
            .filter_map(|path| std::fs::read_to_string(path).ok())
            .find_map(|table| socket_drops(&table, self.inode));
        if let Some(now) = table {
            let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
            self.drops.inc_by(now.saturating_sub(*seen));
            *seen = now.max(*seen);
        }
        let mut families = self.drops.collect();
        families.extend(self.buffer.collect());
        families
    }
}

/// The `drops` column (the last) of the row of `/proc/net/udp{,6}` whose inode (the
/// tenth column) is `inode`.
pub(crate) fn socket_drops(table: &str, inode: u64) -> Option<u64> {
    table.lines().skip(1).find_map(|row| {
        let columns: Vec<&str> = row.split_whitespace().collect();
        let row_inode: u64 = columns.get(9)?.parse().ok()?;
        (row_inode == inode).then(|| columns.last()?.parse().ok())?
    })
}
