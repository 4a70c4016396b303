//! Helpers for the end-to-end tests through syslog relays (`tests/relays.rs`,
//! and `tests/forward.rs`, whose exporters forward to rsyslog):
//!
//! - [`SyslogNg`]: where syslog-ng is, installed or unpacked from its Debian
//!   package by `.ci/fetch-syslog-ng` (it cannot be installed beside rsyslog);
//! - [`start_exporters`]: several exporters at once, each on its own ports;
//! - [`udp_bound`], [`tcp_listening`]: whether a relay has bound its UDP
//!   input, or listens on its TCP one, yet;
//! - [`octet_frames`]: the frames of an RFC 6587 octet-counted stream.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::haproxy::{Transport, IO_TIMEOUT};
use super::{find_program, http_get, tail_file, tcp_sockets, wait_until, ChildGuard};

/// Where `.ci/fetch-syslog-ng` unpacks syslog-ng when this variable is not
/// set: `target/syslog-ng` of this repository.
pub const SYSLOG_NG_ROOT_VAR: &str = "E2E_SYSLOG_NG_ROOT";

/// How to run syslog-ng.
#[derive(Debug, Clone)]
pub struct SyslogNg {
    pub bin: PathBuf,
    /// `--module-path` and `LD_LIBRARY_PATH` of an unpacked package (none for
    /// an installed one).
    pub module_path: Option<PathBuf>,
    pub library_path: Option<String>,
    /// The version for the config's `@version:` line (`3.38`).
    pub version: String,
}

impl SyslogNg {
    /// syslog-ng unpacked under [`SYSLOG_NG_ROOT_VAR`] (default
    /// `target/syslog-ng`), or else installed; `Err` says what is missing.
    pub fn find() -> Result<Self, String> {
        let root = std::env::var_os(SYSLOG_NG_ROOT_VAR)
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/syslog-ng"));
        let unpacked = root.join("root/usr/sbin/syslog-ng");
        let found = if unpacked.is_file() {
            Self::unpacked(&root.join("root"), unpacked)?
        } else if let Some(bin) = find_program("syslog-ng") {
            Self {
                bin,
                module_path: None,
                library_path: None,
                version: String::new(),
            }
        } else {
            return Err(format!(
                "syslog-ng not found: neither unpacked in {} (run .ci/fetch-syslog-ng) \
                 nor installed",
                root.display()
            ));
        };
        found.with_version()
    }

    fn unpacked(root: &Path, bin: PathBuf) -> Result<Self, String> {
        let modules_parent = root.join("usr/lib/syslog-ng");
        let module_path = std::fs::read_dir(&modules_parent)
            .map_err(|e| format!("{}: {e}", modules_parent.display()))?
            .flatten()
            .map(|e| e.path())
            .find(|p| p.join("libafsocket.so").is_file())
            .ok_or_else(|| format!("no module directory in {}", modules_parent.display()))?;
        // The package's own libraries and those of its dependencies (libpcre3
        // unpacks into /lib, the others into /usr/lib).
        let mut dirs = vec![modules_parent.clone()];
        for parent in [root.join("usr/lib"), root.join("lib")] {
            if let Ok(entries) = std::fs::read_dir(&parent) {
                let mut multiarch: Vec<PathBuf> = entries
                    .flatten()
                    .map(|e| e.path())
                    .filter(|p| p.to_string_lossy().ends_with("-linux-gnu"))
                    .collect();
                multiarch.sort();
                dirs.extend(multiarch);
            }
        }
        let library_path = std::env::join_paths(&dirs)
            .map_err(|e| e.to_string())?
            .to_string_lossy()
            .into_owned();
        Ok(Self {
            bin,
            module_path: Some(module_path),
            library_path: Some(library_path),
            version: String::new(),
        })
    }

    /// Reads `Installer-Version: 3.38.1` from `syslog-ng --version`.
    fn with_version(mut self) -> Result<Self, String> {
        let out = self
            .command()
            .arg("--version")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("{}: {e}", self.bin.display()))?;
        let text = String::from_utf8_lossy(&out.stdout);
        let version = text
            .lines()
            .find_map(|l| l.strip_prefix("Installer-Version:"))
            .map(str::trim)
            .and_then(|v| {
                let mut parts = v.split('.');
                Some(format!("{}.{}", parts.next()?, parts.next()?))
            })
            .ok_or_else(|| {
                format!(
                    "{} --version: no Installer-Version in {text:?} (stderr {:?})",
                    self.bin.display(),
                    String::from_utf8_lossy(&out.stderr)
                )
            })?;
        self.version = version;
        Ok(self)
    }

    /// The command with the library and module paths set.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(&self.bin);
        if let Some(lib) = &self.library_path {
            cmd.env("LD_LIBRARY_PATH", lib);
        }
        if let Some(modules) = &self.module_path {
            cmd.arg(format!("--module-path={}", modules.display()));
        }
        cmd
    }
}

/// One exporter of [`start_exporters`]: it listens on `syslog_port` over
/// `transport` only, and serves its metrics on `web`.
#[derive(Debug, Clone)]
pub struct ExporterSpec {
    pub transport: Transport,
    pub syslog_port: u16,
    pub web: String,
    pub log: PathBuf,
}

impl ExporterSpec {
    /// `127.0.0.1:port`
    pub fn syslog_addr(&self) -> String {
        format!("127.0.0.1:{}", self.syslog_port)
    }
}

/// Starts one exporter per spec (no `HLE_` variable of this environment,
/// `HLE_REQUESTS_TOTAL_LABELS=frontend_name,status_class`), then waits for
/// every `/-/ready`.
pub fn start_exporters(specs: &[ExporterSpec]) -> Vec<ChildGuard> {
    start_exporters_with(specs, &[])
}

/// [`start_exporters`], exporter `i` with `env[i]` (if any) on top.
pub fn start_exporters_with(specs: &[ExporterSpec], env: &[&[(&str, &str)]]) -> Vec<ChildGuard> {
    let mut children = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        let log = std::fs::File::create(&spec.log).expect("exporter log");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_haproxy-log-exporter"));
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("HLE_") {
                cmd.env_remove(k);
            }
        }
        let (udp, tcp) = match spec.transport {
            Transport::Udp => (spec.syslog_addr(), String::new()),
            Transport::Tcp => (String::new(), spec.syslog_addr()),
            Transport::Unix => panic!("harness: no unix socket exporters here"),
        };
        cmd.env("HLE_SYSLOG_UDP_ADDR", udp)
            .env("HLE_SYSLOG_TCP_ADDR", tcp)
            .env("HLE_WEB_LISTEN_ADDR", &spec.web)
            .env("HLE_LOG_LEVEL", "info")
            .env("HLE_REQUESTS_TOTAL_LABELS", "frontend_name,status_class")
            .env("RUST_BACKTRACE", "1")
            .envs(env.get(i).copied().unwrap_or_default().iter().copied())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log file"))
            .stderr(log);
        children.push(ChildGuard::spawn("exporter", &mut cmd).expect("spawn the exporter"));
    }
    for (spec, child) in specs.iter().zip(children.iter_mut()) {
        let ready = wait_until(Duration::from_secs(20), || {
            if let Some(st) = child.try_wait() {
                return Some(Err(format!("exited early: {st}")));
            }
            match http_get(&spec.web, "/-/ready", IO_TIMEOUT) {
                Ok(r) if r.status == 200 => Some(Ok(())),
                _ => None,
            }
        });
        match ready {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!(
                "the exporter on {} {e}\nits log:\n{}",
                spec.web,
                tail_file(&spec.log, 40)
            ),
            Err(t) => panic!(
                "the exporter on {} was not ready: {t}\nits log:\n{}",
                spec.web,
                tail_file(&spec.log, 40)
            ),
        }
    }
    children
}

/// True once something in this network namespace has bound UDP
/// `127.0.0.1:port` (from `/proc/net/udp`).
pub fn udp_bound(port: u16) -> bool {
    let want = format!("0100007F:{port:04X}");
    std::fs::read_to_string("/proc/net/udp")
        .map(|t| {
            t.lines()
                .skip(1)
                .any(|l| l.split_whitespace().nth(1) == Some(want.as_str()))
        })
        .unwrap_or(false)
}

/// True once something in this network namespace listens on TCP
/// `127.0.0.1:port` (from `/proc/net/tcp`).
pub fn tcp_listening(port: u16) -> bool {
    let want = format!("0100007F:{port:04X}");
    tcp_sockets()
        .iter()
        // State 0A: listening.
        .any(|s| s.local == want && s.state == "0A")
}

/// The frames of an octet-counted stream (`LEN SP FRAME`, RFC 6587), or
/// where it stops being one.
pub fn octet_frames(mut stream: &[u8]) -> Result<Vec<&[u8]>, String> {
    let mut frames = Vec::new();
    while !stream.is_empty() {
        let space = stream
            .iter()
            .position(|&b| b == b' ')
            .ok_or_else(|| format!("no length after frame {}", frames.len()))?;
        let len: usize = std::str::from_utf8(&stream[..space])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("bad length before frame {}", frames.len() + 1))?;
        let rest = &stream[space + 1..];
        let frame = rest
            .get(..len)
            .ok_or_else(|| format!("frame {} cut short", frames.len() + 1))?;
        frames.push(frame);
        stream = &rest[len..];
    }
    Ok(frames)
}
