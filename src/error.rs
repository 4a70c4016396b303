//! Start-up and fatal errors.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Why the exporter could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A listener could not be bound: the message names the variable to change.
    #[error("cannot bind {var}={addr}: {}; {}", cause(.source), addr_advice(.var, .source))]
    Bind {
        /// The variable that gave the address, e.g. `HLE_WEB_LISTEN_ADDR`.
        var: &'static str,
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("cannot bind {UNIX_PATH}={}: {}; {}", path.display(), cause(.source), path_advice(.source))]
    BindUnix {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot register metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

const UNIX_PATH: &str = "HLE_SYSLOG_UNIX_PATH";

/// What went wrong, shortly for the common errors of the system; our own refusals (of a
/// socket file in use, say) as they are written.
fn cause(source: &io::Error) -> String {
    if source.raw_os_error().is_none() {
        return source.to_string();
    }
    match source.kind() {
        io::ErrorKind::AddrInUse => "address in use".to_string(),
        io::ErrorKind::AddrNotAvailable => "address not available on this host".to_string(),
        io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        _ => source.to_string(),
    }
}

/// What to do about a listener address that cannot be bound.
fn addr_advice(var: &str, source: &io::Error) -> String {
    match source.kind() {
        io::ErrorKind::AddrInUse => format!("set {var} to a free address"),
        io::ErrorKind::AddrNotAvailable => {
            format!("set {var} to an address of this host, or 0.0.0.0 for all of them")
        }
        io::ErrorKind::PermissionDenied => format!(
            "set {var} to a port of 1024 or more, or give the exporter CAP_NET_BIND_SERVICE"
        ),
        _ => format!("check {var}"),
    }
}

/// What to do about a unix socket path that cannot be bound.
fn path_advice(source: &io::Error) -> String {
    match source.kind() {
        io::ErrorKind::NotFound => format!("set {UNIX_PATH} to a path in an existing directory"),
        io::ErrorKind::PermissionDenied => {
            format!("set {UNIX_PATH} to a path in a directory the exporter may write to")
        }
        _ => format!("set {UNIX_PATH} to a free path"),
    }
}
