//! The unix datagram socket file (`HLE_SYSLOG_UNIX_PATH`): created with its final mode,
//! never over a socket another process uses, and removed at exit only while it is ours.
//! Reading it is `datagram`'s job.

use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use socket2::{Domain, SockAddr, Socket, Type};

use crate::error::Error;

/// The socket file we created: its path and identity, to tell it from a file that
/// replaced it.
#[derive(Debug)]
pub struct SocketFile {
    path: PathBuf,
    dev: u64,
    ino: u64,
}

impl SocketFile {
    /// Removes the file if it is still our socket, so that a sender gets an error instead
    /// of writing into the void; a file someone put there since is left alone.
    pub fn remove_if_ours(&self) {
        match std::fs::symlink_metadata(&self.path) {
            Ok(meta) if self.is(&meta) => {
                if let Err(err) = std::fs::remove_file(&self.path) {
                    tracing::warn!(path = %self.path.display(), error = %err, "cannot remove the unix socket");
                }
            }
            Ok(_) => tracing::info!(
                path = %self.path.display(),
                "not removing the unix socket path: another file replaced our socket"
            ),
            Err(_) => {}
        }
    }

    fn is(&self, meta: &std::fs::Metadata) -> bool {
        meta.file_type().is_socket() && meta.dev() == self.dev && meta.ino() == self.ino
    }
}

/// Binds the unix datagram socket at `path` with permissions `mode`.
///
/// A socket file nobody is bound to (left by a process that was killed) is replaced; a
/// socket some process uses, of any type, or any other kind of file, is an error. The
/// socket is bound in a private directory next to `path`, given its mode there, and only
/// then linked to `path`: at no moment is a socket with wider permissions reachable, and
/// the process's umask (shared by every thread) is never touched.
pub fn bind(
    path: &Path,
    mode: u32,
) -> Result<(std::os::unix::net::UnixDatagram, SocketFile), Error> {
    let fail = |source: io::Error| Error::BindUnix {
        path: path.to_path_buf(),
        source,
    };
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if let Some(why) = in_use(path).map_err(fail)? {
                return Err(fail(refusal(why)));
            }
            std::fs::remove_file(path).map_err(fail)?;
        }
        Ok(_) => return Err(fail(refusal("exists and is not a socket".into()))),
        Err(err) if err.kind() == io::ErrorKind::NotFound => {}
        Err(err) => return Err(fail(err)),
    }
    let staged = Staged::bind(path, mode).map_err(fail)?;
    let bound = staged.publish(path).map_err(fail)?;
    warn_if_short_queue();
    Ok(bound)
}

/// The kernel queues at most `net.unix.max_dgram_qlen` datagrams for a unix socket, and
/// HAProxy drops a log line rather than wait when the queue is full.
fn warn_if_short_queue() {
    const ENOUGH: u64 = 256;
    let qlen = std::fs::read_to_string("/proc/sys/net/unix/max_dgram_qlen")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok());
    if let Some(qlen) = qlen.filter(|q| *q < ENOUGH) {
        tracing::warn!(
            max_dgram_qlen = qlen,
            "net.unix.max_dgram_qlen is small: HAProxy drops log lines when the unix socket \
             queue is full; raise it (sysctl, per network namespace) or log over UDP"
        );
    }
}

fn refusal(why: String) -> io::Error {
    io::Error::new(io::ErrorKind::AddrInUse, why)
}

/// Why the socket file at `path` must be kept, or `None` when no socket of any type is
/// bound to it. Each type is probed, because a connect of the wrong type fails
/// (`EPROTOTYPE`) whether or not anyone listens. Only `ECONNREFUSED` for every type
/// means nobody does; any other failure is taken as a sign of use.
fn in_use(path: &Path) -> io::Result<Option<String>> {
    let addr = SockAddr::unix(path)?;
    let mut doubt = None;
    for (ty, kind) in [
        (Type::DGRAM, "datagram"),
        (Type::STREAM, "stream"),
        (Type::SEQPACKET, "seqpacket"),
    ] {
        let probe = Socket::new(Domain::UNIX, ty, None)?;
        // A listener whose backlog is full would make a blocking connect wait.
        probe.set_nonblocking(true)?;
        match probe.connect(&addr) {
            Ok(()) => {
                return Ok(Some(format!(
                    "another process is receiving on it (a {kind} socket)"
                )))
            }
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                return Ok(Some(format!(
                    "another process is receiving on it (a {kind} socket, its backlog full)"
                )))
            }
            Err(err) if err.kind() == io::ErrorKind::ConnectionRefused => {}
            Err(err) => {
                doubt.get_or_insert(err);
            }
        }
    }
    Ok(doubt
        .map(|err| format!("another process may be using it ({err}); remove it if it is stale")))
}

/// A socket bound and given its mode in a private directory, not yet at its path.
struct Staged {
    socket: std::os::unix::net::UnixDatagram,
    dir: PathBuf,
    file: PathBuf,
}

/// Tells apart the private directories of two binds in one process.
static STAGING: AtomicU64 = AtomicU64::new(0);

impl Staged {
    /// Binds in a new directory next to `path` that only we may enter. Its name is
    /// short: a socket path has at most 107 bytes, and this one is bound first.
    fn bind(path: &Path, mode: u32) -> io::Result<Staged> {
        let parent = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        let n = STAGING.fetch_add(1, Ordering::Relaxed);
        let dir = parent.join(format!(".hle{}-{n}", std::process::id()));
        std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
        let file = dir.join("s");
        let staged = std::os::unix::net::UnixDatagram::bind(&file)
            .and_then(|socket| {
                std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode))?;
                Ok(socket)
            })
            .map_err(|err| {
                let _ = std::fs::remove_file(&file);
                let _ = std::fs::remove_dir(&dir);
                if err.kind() == io::ErrorKind::InvalidInput {
                    // Too long for a socket address: say which path was bound.
                    io::Error::new(err.kind(), format!("{err}: {}", file.display()))
                } else {
                    err
                }
            })?;
        Ok(Staged {
            socket: staged,
            dir,
            file,
        })
    }

    /// Gives the socket its path: a hard link, which fails rather than replace a file
    /// that appeared at `path` since it was checked. Where the file system has no hard
    /// links, a rename does it.
    fn publish(self, path: &Path) -> io::Result<(std::os::unix::net::UnixDatagram, SocketFile)> {
        let linked = match std::fs::hard_link(&self.file, path) {
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => Err(refusal(
                "a file appeared at the path while the socket was bound".into(),
            )),
            Err(_) => std::fs::rename(&self.file, path),
            Ok(()) => Ok(()),
        };
        let _ = std::fs::remove_file(&self.file);
        let _ = std::fs::remove_dir(&self.dir);
        linked?;
        let meta = std::fs::symlink_metadata(path)?;
        Ok((
            self.socket,
            SocketFile {
                path: path.to_path_buf(),
                dev: meta.dev(),
                ino: meta.ino(),
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("hle-unix-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        dir
    }

    fn mode_of(path: &Path) -> u32 {
        std::fs::symlink_metadata(path).unwrap().mode() & 0o7777
    }

    /// The mechanism that keeps the mode from ever being wider than configured: before
    /// the socket is at its path, it has its final mode, in a directory only we enter.
    #[test]
    fn the_socket_has_its_mode_before_it_appears_at_its_path() {
        let dir = temp_dir("staged");
        let path = dir.join("log.sock");
        let staged = Staged::bind(&path, 0o640).unwrap();
        assert!(!path.exists(), "not at its path yet");
        assert_eq!(mode_of(&staged.file), 0o640);
        assert_eq!(
            mode_of(&staged.dir) & 0o077,
            0,
            "nobody else enters the directory"
        );
        let staging = staged.dir.clone();
        let (_socket, file) = staged.publish(&path).unwrap();
        assert_eq!(mode_of(&path), 0o640);
        assert!(!staging.exists(), "the private directory is removed");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        file.remove_if_ours();
        assert!(!path.exists());
        std::fs::remove_dir(&dir).unwrap();
    }

    #[test]
    fn a_file_that_appears_meanwhile_is_not_replaced() {
        let dir = temp_dir("race");
        let path = dir.join("log.sock");
        let staged = Staged::bind(&path, 0o660).unwrap();
        std::fs::write(&path, "theirs").unwrap();
        let err = staged.publish(&path).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "theirs");
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            1,
            "nothing left behind"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
