//! Helpers shared by the integration tests (`mod support;`).
//!
//! - [`http_get`] / [`http_get_async`]: a minimal HTTP/1.1 GET over a plain
//!   TCP stream (std or tokio), returning status, headers and body.
//! - [`parse_exposition`] and [`Samples`]: a small parser for the Prometheus
//!   text exposition format, with helpers to look up and sum samples.
//! - [`wait_until`] / [`wait_until_async`]: poll with a deadline instead of
//!   sleeping for a fixed time.
//! - [`promtool_check_metrics`]: runs `promtool check metrics` on a scrape.
//! - [`ChildGuard`]: kills a child process when dropped, also on panic.
//! - [`run_with_timeout`]: runs a short-lived tool with its input, bounded in
//!   time.
//! - [`run_in_private_netns`]: the outer half of the end-to-end tests, which
//!   re-executes the test binary in a private network namespace; [`Checks`]
//!   and [`scrape_metrics`] for their inner half.
//! - [`haproxy`]: the rest of the inner half that the end-to-end tests with a
//!   real HAProxy share.
//! - [`json`]: a small JSON reader (dashboards, Prometheus' API answers).
//! - [`pki`]: a CA and certificates from the `openssl` CLI.
//!
//! Every test binary that declares `mod support;` compiles all of it but uses
//! only some, hence `allow(dead_code)` for this module and its submodules.
#![allow(dead_code)]

pub mod haproxy;
pub mod json;
pub mod pki;
pub mod relays;

use std::collections::BTreeMap;
use std::fmt;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------
// Environment
// ---------------------------------------------------------------------------

/// True when running under CI (`CI=true`, as set by `.ci/run`'s caller).
/// In CI, a missing external tool is a failure rather than a skip.
pub fn is_ci() -> bool {
    std::env::var("CI")
        .map(|v| {
            let v = v.trim().to_ascii_lowercase();
            v == "true" || v == "1" || v == "yes"
        })
        .unwrap_or(false)
}

/// The value of `"name":value` or `"name":"value"` in a JSON log line.
pub fn json_field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let key = format!("\"{name}\":");
    let rest = &line[line.find(&key)? + key.len()..];
    match rest.strip_prefix('"') {
        Some(quoted) => quoted.split('"').next(),
        None => rest.split([',', '}']).next(),
    }
}

/// One IPv4 TCP socket of `/proc/net/tcp`: addresses as the kernel writes them
/// (`0100007F:1F90`), its state (`01`: established), and its queues: `tx`, the bytes
/// its peer has not acknowledged (what `SIOCOUTQ` gives), `rx`, those acknowledged and
/// not yet read.
pub struct TcpSocketRow {
    pub local: String,
    pub remote: String,
    pub state: String,
    pub tx: u64,
    pub rx: u64,
}

/// The IPv4 TCP sockets of this network namespace.
pub fn tcp_sockets() -> Vec<TcpSocketRow> {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    table
        .lines()
        .skip(1)
        .filter_map(|row| {
            let cols: Vec<&str> = row.split_whitespace().collect();
            let (tx, rx) = cols.get(4)?.split_once(':')?;
            Some(TcpSocketRow {
                local: cols.get(1)?.to_string(),
                remote: cols.get(2)?.to_string(),
                state: cols.get(3)?.to_string(),
                tx: u64::from_str_radix(tx, 16).ok()?,
                rx: u64::from_str_radix(rx, 16).ok()?,
            })
        })
        .collect()
}

/// An IPv4 address as `/proc/net/tcp` writes it.
pub fn proc_net_addr(addr: SocketAddr) -> Option<String> {
    match addr {
        SocketAddr::V4(a) => Some(format!(
            "{:08X}:{:04X}",
            u32::from_le_bytes(a.ip().octets()),
            a.port()
        )),
        SocketAddr::V6(_) => None,
    }
}

/// Finds an executable by name on `PATH`, then in the sbin directories that a
/// non-root `PATH` often lacks (HAProxy lives in `/usr/sbin` on Debian).
pub fn find_program(name: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    for extra in [
        "/usr/local/sbin",
        "/usr/local/bin",
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
        "/bin",
    ] {
        dirs.push(PathBuf::from(extra));
    }
    dirs.into_iter()
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// What to do when an external prerequisite is missing: panic under CI,
/// otherwise print a clear skip message. Returns `true` when the caller
/// should return early (skip).
pub fn skip_or_fail(test: &str, reason: &str) -> bool {
    if is_ci() {
        panic!("{test}: {reason} (CI=true, so this is a failure, not a skip)");
    }
    eprintln!("SKIPPED {test}: {reason} (set CI=true to make this a failure)");
    true
}

// ---------------------------------------------------------------------------
// Child processes
// ---------------------------------------------------------------------------

/// Owns a child process and kills it (SIGKILL) when dropped, so that a failed
/// assertion or a panic never leaves a server running.
pub struct ChildGuard {
    name: String,
    child: Option<Child>,
}

impl ChildGuard {
    pub fn spawn(name: &str, cmd: &mut Command) -> std::io::Result<Self> {
        let child = cmd.spawn()?;
        Ok(Self {
            name: name.to_string(),
            child: Some(child),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn id(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// `Some(status)` if the child has already exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Sends a signal by name (e.g. "USR1", "TERM") through kill(1).
    pub fn signal(&self, signal: &str) -> std::io::Result<()> {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.id().to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()?;
        if status.success() {
            Ok(())
        } else {
            Err(std::io::Error::other(format!(
                "kill -{signal} {} failed: {status}",
                self.id()
            )))
        }
    }

    /// The child's standard error, if it was piped and not taken yet.
    pub fn take_stderr(&mut self) -> Option<std::process::ChildStderr> {
        self.child.as_mut().and_then(|c| c.stderr.take())
    }

    /// The child's standard output, if it was piped and not taken yet.
    pub fn take_stdout(&mut self) -> Option<std::process::ChildStdout> {
        self.child.as_mut().and_then(|c| c.stdout.take())
    }

    /// Waits for the child to exit on its own, up to `timeout`.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        wait_until(timeout, || self.try_wait()).ok()
    }

    /// Kills the child now and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Ok(None) = child.try_wait() {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Removes a directory tree when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// Creates a fresh directory under the system temp dir.
    pub fn new(prefix: &str) -> std::io::Result<Self> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!("{prefix}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        Ok(Self(dir))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The last `max_lines` lines of a (log) file, for failure messages.
pub fn tail_file(path: &Path, max_lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let lines: Vec<&str> = text.lines().collect();
            let start = lines.len().saturating_sub(max_lines);
            lines[start..].join("\n")
        }
        Err(e) => format!("<cannot read {}: {e}>", path.display()),
    }
}

/// What [`run_with_timeout`] collected from a finished process.
#[derive(Debug, Clone)]
pub struct RunOutput {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl RunOutput {
    /// Standard output and error, for failure messages.
    pub fn describe(&self) -> String {
        format!(
            "{}; stdout {:?}; stderr {:?}",
            self.status,
            String::from_utf8_lossy(&self.stdout),
            String::from_utf8_lossy(&self.stderr)
        )
    }
}

/// Runs `cmd` with `input` on its standard input (closed after it, or at once
/// when `None`), collects its output, and kills it if it has not exited
/// within `timeout`.
pub fn run_with_timeout(
    cmd: &mut Command,
    input: Option<&[u8]>,
    timeout: Duration,
) -> Result<RunOutput, String> {
    let mut child = cmd
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawn {:?}: {e}", cmd.get_program()))?;
    // Threads for every pipe, so that neither side can block the other.
    let writer = child.stdin.take().map(|mut stdin| {
        let input = input.unwrap_or_default().to_vec();
        std::thread::spawn(move || {
            let _ = stdin.write_all(&input);
        })
    });
    let read_all = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut buf);
            }
            buf
        })
    };
    let stdout = read_all(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = read_all(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let status = wait_until(timeout, || child.try_wait().ok().flatten());
    if status.is_err() {
        let _ = child.kill();
        let _ = child.wait();
    }
    if let Some(w) = writer {
        let _ = w.join();
    }
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    match status {
        Ok(status) => Ok(RunOutput {
            status,
            stdout,
            stderr,
        }),
        Err(t) => Err(format!(
            "{:?} did not exit: {t}; killed it (stdout {:?}, stderr {:?})",
            cmd.get_program(),
            String::from_utf8_lossy(&stdout),
            String::from_utf8_lossy(&stderr)
        )),
    }
}

// ---------------------------------------------------------------------------
// Polling
// ---------------------------------------------------------------------------

/// Returned by [`wait_until`] when the deadline passes first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimedOut {
    pub after: Duration,
}

impl fmt::Display for TimedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "timed out after {:?}", self.after)
    }
}

impl std::error::Error for TimedOut {}

fn next_backoff(current: Duration) -> Duration {
    (current * 2).min(Duration::from_millis(200))
}

/// Calls `poll` until it returns `Some`, or until `timeout` has passed.
/// `poll` is always called at least once, and once more at the deadline.
pub fn wait_until<T>(
    timeout: Duration,
    mut poll: impl FnMut() -> Option<T>,
) -> Result<T, TimedOut> {
    let start = Instant::now();
    let deadline = start + timeout;
    let mut pause = Duration::from_millis(10);
    loop {
        if let Some(v) = poll() {
            return Ok(v);
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(TimedOut { after: now - start });
        }
        std::thread::sleep(pause.min(deadline - now));
        pause = next_backoff(pause);
    }
}

/// Async version of [`wait_until`] for `#[tokio::test]`s.
pub async fn wait_until_async<T, F, Fut>(timeout: Duration, mut poll: F) -> Result<T, TimedOut>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    let deadline = start + timeout;
    let mut pause = Duration::from_millis(10);
    loop {
        if let Some(v) = poll().await {
            return Ok(v);
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(TimedOut { after: now - start });
        }
        tokio::time::sleep(pause.min(deadline - now)).await;
        pause = next_backoff(pause);
    }
}

// ---------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------

/// A parsed HTTP/1.x response.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    /// Header names lowercased, in the order received.
    pub headers: Vec<(String, String)>,
    /// The body, with chunked transfer encoding undone.
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

fn request_bytes(host: &str, path: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: haproxy-log-exporter-tests\r\n\
         Accept: */*\r\nConnection: close\r\n\r\n"
    )
    .into_bytes()
}

/// GET `path` from `addr` ("host:port") over a std `TcpStream`, reading the
/// response to EOF (`Connection: close`). `timeout` bounds the connect and
/// every read and write.
pub fn http_get(addr: &str, path: &str, timeout: Duration) -> std::io::Result<HttpResponse> {
    let sock = addr.to_socket_addrs()?.next().ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("no address for {addr}"),
        )
    })?;
    let mut stream = TcpStream::connect_timeout(&sock, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.write_all(&request_bytes(addr, path))?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    parse_http_response(&raw)
}

/// Async version of [`http_get`] over a tokio `TcpStream`.
pub async fn http_get_async(
    addr: &str,
    path: &str,
    timeout: Duration,
) -> std::io::Result<HttpResponse> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let fut = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        stream.write_all(&request_bytes(addr, path)).await?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await?;
        parse_http_response(&raw)
    };
    tokio::time::timeout(timeout, fut).await.map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("GET {addr}{path} timed out"),
        )
    })?
}

fn invalid(msg: impl Into<String>) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg.into())
}

/// Parses a complete HTTP/1.x response (read to EOF).
pub fn parse_http_response(raw: &[u8]) -> std::io::Result<HttpResponse> {
    let head_end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| invalid(format!("no end of headers in {} bytes", raw.len())))?;
    let head = std::str::from_utf8(&raw[..head_end]).map_err(|e| invalid(e.to_string()))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(invalid(format!("bad status line {status_line:?}")));
    }
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| invalid(format!("bad status line {status_line:?}")))?;
    let mut headers = Vec::new();
    for line in lines {
        let (k, v) = line
            .split_once(':')
            .ok_or_else(|| invalid(format!("bad header line {line:?}")))?;
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    let rest = &raw[head_end + 4..];
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked"));
    let body = if chunked {
        dechunk(rest)?
    } else if let Some((_, len)) = headers.iter().find(|(k, _)| k == "content-length") {
        let len: usize = len
            .parse()
            .map_err(|_| invalid(format!("bad content-length {len:?}")))?;
        if rest.len() < len {
            return Err(invalid(format!(
                "body truncated: {} of {len} bytes",
                rest.len()
            )));
        }
        rest[..len].to_vec()
    } else {
        rest.to_vec()
    };
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
}

fn dechunk(mut data: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| invalid("chunk size line not terminated"))?;
        let size_line =
            std::str::from_utf8(&data[..line_end]).map_err(|e| invalid(e.to_string()))?;
        let size_hex = size_line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_hex, 16)
            .map_err(|_| invalid(format!("bad chunk size {size_line:?}")))?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if data.len() < size + 2 {
            return Err(invalid("chunk truncated"));
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

// ---------------------------------------------------------------------------
// Prometheus text exposition
// ---------------------------------------------------------------------------

/// One sample line: `name{labels} value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

impl Sample {
    /// True if every `(name, value)` pair in `filter` is among the labels.
    pub fn matches(&self, filter: &[(&str, &str)]) -> bool {
        filter
            .iter()
            .all(|(k, v)| self.labels.get(*k).map(String::as_str) == Some(*v))
    }
}

impl fmt::Display for Sample {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.name)?;
        if !self.labels.is_empty() {
            let labels: Vec<String> = self
                .labels
                .iter()
                .map(|(k, v)| format!("{k}={v:?}"))
                .collect();
            write!(f, "{{{}}}", labels.join(","))?;
        }
        write!(f, " {}", self.value)
    }
}

/// All samples of one scrape.
#[derive(Debug, Clone, Default)]
pub struct Samples {
    pub samples: Vec<Sample>,
    /// `# TYPE` lines: metric family name -> type.
    pub types: BTreeMap<String, String>,
}

impl Samples {
    /// Samples named `name` whose labels include all of `filter`.
    pub fn find<'a>(
        &'a self,
        name: &'a str,
        filter: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples
            .iter()
            .filter(move |s| s.name == name && s.matches(filter))
    }

    /// Sum of the samples named `name` whose labels include all of `filter`
    /// (0 when there is none).
    pub fn sum(&self, name: &str, filter: &[(&str, &str)]) -> f64 {
        // fold from +0.0: `Sum for f64` starts from -0.0, which prints as "-0".
        self.find(name, filter).fold(0.0, |acc, s| acc + s.value)
    }

    /// The value of the single sample named `name` with exactly these labels.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.samples
            .iter()
            .find(|s| s.name == name && s.labels.len() == labels.len() && s.matches(labels))
            .map(|s| s.value)
    }

    /// True if at least one sample is named `name`.
    pub fn has(&self, name: &str) -> bool {
        self.samples.iter().any(|s| s.name == name)
    }

    /// Distinct values of `label` among the samples named `name`.
    pub fn label_values(&self, name: &str, label: &str) -> Vec<String> {
        let mut values: Vec<String> = self
            .find(name, &[])
            .filter_map(|s| s.labels.get(label).cloned())
            .collect();
        values.sort();
        values.dedup();
        values
    }
}

/// Parses the Prometheus text exposition format (version 0.0.4).
pub fn parse_exposition(text: &str) -> Result<Samples, String> {
    let mut out = Samples::default();
    for (idx, raw_line) in text.lines().enumerate() {
        let line = raw_line.trim();
        let lineno = idx + 1;
        if line.is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            let mut words = comment.split_whitespace();
            if words.next() == Some("TYPE") {
                if let (Some(name), Some(kind)) = (words.next(), words.next()) {
                    out.types.insert(name.to_string(), kind.to_string());
                }
            }
            continue;
        }
        let sample =
            parse_sample_line(line).map_err(|e| format!("line {lineno}: {e}: {raw_line:?}"))?;
        out.samples.push(sample);
    }
    Ok(out)
}

fn is_name_char(c: char, first: bool) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':' || (!first && c.is_ascii_digit())
}

fn parse_sample_line(line: &str) -> Result<Sample, String> {
    let name_end = line
        .char_indices()
        .find(|&(i, c)| !is_name_char(c, i == 0))
        .map(|(i, _)| i)
        .unwrap_or(line.len());
    if name_end == 0 {
        return Err("missing metric name".into());
    }
    let name = line[..name_end].to_string();
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(after_brace) = rest.strip_prefix('{') {
        let (parsed, remaining) = parse_labels(after_brace)?;
        labels = parsed;
        rest = remaining;
    }
    let mut fields = rest.split_whitespace();
    let value_str = fields.next().ok_or("missing value")?;
    let value = parse_value(value_str)?;
    if let Some(ts) = fields.next() {
        ts.parse::<i64>()
            .map_err(|_| format!("bad timestamp {ts:?}"))?;
    }
    if fields.next().is_some() {
        return Err("trailing garbage".into());
    }
    Ok(Sample {
        name,
        labels,
        value,
    })
}

/// Parses `k="v",...}` and returns the labels and the text after `}`.
fn parse_labels(mut s: &str) -> Result<(BTreeMap<String, String>, &str), String> {
    let mut labels = BTreeMap::new();
    loop {
        s = s.trim_start();
        if let Some(rest) = s.strip_prefix('}') {
            return Ok((labels, rest));
        }
        let eq = s.find('=').ok_or("label without '='")?;
        let key = s[..eq].trim();
        if key.is_empty()
            || !key
                .chars()
                .enumerate()
                .all(|(i, c)| is_name_char(c, i == 0) && c != ':')
        {
            return Err(format!("bad label name {key:?}"));
        }
        s = s[eq + 1..].trim_start();
        s = s.strip_prefix('"').ok_or("label value not quoted")?;
        let mut value = String::new();
        let mut chars = s.char_indices();
        let end = loop {
            match chars.next() {
                None => return Err("unterminated label value".into()),
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, c)) => {
                        value.push('\\');
                        value.push(c);
                    }
                    None => return Err("unterminated escape".into()),
                },
                Some((_, c)) => value.push(c),
            }
        };
        if labels.insert(key.to_string(), value).is_some() {
            return Err(format!("duplicate label {key:?}"));
        }
        s = s[end + 1..].trim_start();
        if let Some(rest) = s.strip_prefix(',') {
            s = rest;
        } else if !s.starts_with('}') {
            return Err("expected ',' or '}' after label value".into());
        }
    }
}

fn parse_value(s: &str) -> Result<f64, String> {
    match s {
        "+Inf" | "Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => s.parse::<f64>().map_err(|_| format!("bad value {s:?}")),
    }
}

// ---------------------------------------------------------------------------
// promtool
// ---------------------------------------------------------------------------

/// The verdict of `promtool check metrics`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PromtoolVerdict {
    /// Exit status 0: no parse error and no lint problem.
    Passed,
    /// Non-zero exit: 1 for a parse error, 3 for lint problems (promtool 2.x).
    Failed { code: Option<i32>, output: String },
    /// promtool is not installed and `CI` is not true.
    Skipped(String),
}

impl PromtoolVerdict {
    pub fn is_passed(&self) -> bool {
        matches!(self, PromtoolVerdict::Passed)
    }
}

/// Runs `promtool check metrics` with `text` on stdin. Without promtool this
/// panics when `CI=true` and returns [`PromtoolVerdict::Skipped`] otherwise.
pub fn promtool_check_metrics(text: &str) -> PromtoolVerdict {
    let Some(promtool) = find_program("promtool") else {
        let reason = "promtool not found (Debian package `prometheus`)".to_string();
        if is_ci() {
            panic!("{reason}; CI=true, so this is a failure");
        }
        eprintln!("SKIPPED promtool check: {reason}");
        return PromtoolVerdict::Skipped(reason);
    };
    let mut child = match Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            return PromtoolVerdict::Failed {
                code: None,
                output: format!("cannot run {}: {e}", promtool.display()),
            }
        }
    };
    // Write stdin from a thread so that a large scrape cannot dead-lock
    // against promtool's own output.
    let mut stdin = child.stdin.take().expect("piped stdin");
    let input = text.to_string();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(input.as_bytes());
    });
    let output = child.wait_with_output();
    let _ = writer.join();
    match output {
        Ok(out) if out.status.success() => PromtoolVerdict::Passed,
        Ok(out) => PromtoolVerdict::Failed {
            code: out.status.code(),
            output: format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        },
        Err(e) => PromtoolVerdict::Failed {
            code: None,
            output: format!("waiting for promtool: {e}"),
        },
    }
}

// ---------------------------------------------------------------------------
// End-to-end tests in a private network namespace
// ---------------------------------------------------------------------------

/// Set in the inner test's environment by the outer test.
pub const NETNS_MARKER: &str = "HLE_E2E_INSIDE_PRIVATE_NETNS";
/// A scratch directory owned (and removed) by the outer test, so that nothing
/// is left behind even when the inner run has to be killed.
pub const WORK_DIR_VAR: &str = "HLE_E2E_WORK_DIR";

/// True in the inner half of an end-to-end test (inside the namespace).
pub fn inside_private_netns() -> bool {
    std::env::var_os(NETNS_MARKER).is_some()
}

/// How [`run_in_private_netns`] runs the inner half of an end-to-end test.
pub struct NetnsRun<'a> {
    /// The outer test's name, for skip and failure messages.
    pub outer: &'a str,
    /// The inner test (`#[ignore]`d, so that it runs only when asked for).
    pub inner: &'a str,
    /// Programs the inner test needs besides `unshare`, in the order they are
    /// checked: (name, Debian package).
    pub tools: &'a [(&'a str, &'a str)],
    /// Prefix of the work directory's name (under the system temp dir).
    pub work_dir_prefix: &'a str,
    /// The whole inner run must finish within this time.
    pub limit: Duration,
}

/// The outer half of an end-to-end test: re-executes this test binary under
/// `unshare -n` (a private network namespace, so that fixed loopback ports
/// cannot clash with anything else on the machine) to run `run.inner` alone,
/// forwards its output, kills its whole process group when `run.limit`
/// passes, and fails unless it reports `1 passed`. A missing tool is a skip,
/// or a failure with `CI=true` ([`skip_or_fail`]). Does nothing when already
/// inside the namespace.
pub fn run_in_private_netns(run: &NetnsRun<'_>) {
    use std::os::unix::process::CommandExt;
    use std::sync::mpsc;

    if inside_private_netns() {
        // Already inside: only the inner test has work to do here.
        return;
    }
    let test = run.outer;
    let Some(unshare) = find_program("unshare") else {
        skip_or_fail(test, "`unshare` not found (Debian package util-linux)");
        return;
    };
    for (tool, package) in run.tools {
        if find_program(tool).is_none() {
            skip_or_fail(
                test,
                &format!("`{tool}` not found (Debian package {package})"),
            );
            return;
        }
    }

    // `unshare -n` needs CAP_SYS_ADMIN (root, as in CI); an unprivileged user
    // may still get a network namespace inside a user namespace (`-r`).
    let probe = |args: &[&str]| {
        Command::new(&unshare)
            .args(args)
            .args(["--", "true"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    let ns_args: &[&str] = if probe(&["-n"]) {
        &["-n"]
    } else if probe(&["-r", "-n"]) {
        &["-r", "-n"]
    } else {
        skip_or_fail(
            test,
            "`unshare -n` cannot create a network namespace here (not root?)",
        );
        return;
    };

    let inner = run.inner;
    let work_dir = TempDir::new(run.work_dir_prefix).expect("temp dir");
    let exe = std::env::current_exe().expect("current_exe");
    let mut cmd = Command::new(&unshare);
    cmd.args(ns_args)
        .arg("--")
        .arg(&exe)
        .args([
            "--exact",
            inner,
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(NETNS_MARKER, "1")
        .env(WORK_DIR_VAR, work_dir.path())
        // The inner panic message is the report; a backtrace adds only noise.
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Own process group, so that a timeout can kill the inner test and
        // everything it started (exporter, HAProxy) at once.
        .process_group(0);
    println!("running {inner} under `unshare {}`", ns_args.join(" "));
    let mut child = cmd.spawn().expect("spawn unshare");
    let group = ProcessGroupGuard(child.id());

    // Forward the inner output as it comes (println! is captured by the test
    // harness, and shown with --nocapture or on failure), and keep a copy.
    let (tx, rx) = mpsc::channel::<String>();
    let mut readers = Vec::new();
    for (stream, prefix) in [
        (
            Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
            "",
        ),
        (Box::new(child.stderr.take().unwrap()), "[stderr] "),
    ] {
        let tx = tx.clone();
        readers.push(std::thread::spawn(move || {
            let mut reader = std::io::BufReader::new(stream);
            let mut line = Vec::new();
            loop {
                line.clear();
                match std::io::BufRead::read_until(&mut reader, b'\n', &mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let text = String::from_utf8_lossy(&line);
                        let text = text.trim_end_matches('\n');
                        println!("  | {prefix}{text}");
                        let _ = tx.send(text.to_string());
                    }
                }
            }
        }));
    }
    drop(tx);

    let status = wait_until(run.limit, || child.try_wait().ok().flatten());
    let status = match status {
        Ok(s) => s,
        Err(t) => {
            drop(group); // kills the whole group
            let _ = child.wait();
            panic!("{inner} did not finish: {t}; killed it");
        }
    };
    for r in readers {
        let _ = r.join();
    }
    std::mem::forget(group); // the group has exited by itself
    let output: Vec<String> = rx.into_iter().collect();
    assert!(
        status.success(),
        "{inner} failed inside the network namespace ({status}); its output is above"
    );
    // The inner harness prints `test result: ok. 1 passed; ...` only if the
    // inner test really ran (a filter mismatch would give `0 passed`).
    let ran = output
        .iter()
        .any(|l| l.trim_start().starts_with("test result: ok. 1 passed;"));
    assert!(
        ran,
        "{inner} did not report `1 passed` (was it filtered out?); its output is above"
    );
}

/// Kills a whole process group (SIGKILL) when dropped.
pub struct ProcessGroupGuard(pub u32);

impl Drop for ProcessGroupGuard {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.0)])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Collects failed checks so that one run reports all of them.
#[derive(Default)]
pub struct Checks {
    pub failures: Vec<String>,
    pub passed: usize,
}

impl Checks {
    pub fn check(&mut self, ok: bool, what: impl FnOnce() -> String) {
        if ok {
            self.passed += 1;
        } else {
            let msg = what();
            println!("CHECK FAILED: {msg}");
            self.failures.push(msg);
        }
    }

    pub fn eq_f64(&mut self, what: &str, got: f64, want: f64) {
        self.check(got == want, || format!("{what}: got {got}, want {want}"));
    }
}

/// GET `/metrics` from `addr`: the text and its samples.
pub fn scrape_metrics(addr: &str, timeout: Duration) -> Result<(String, Samples), String> {
    let r = http_get(addr, "/metrics", timeout).map_err(|e| format!("GET {addr}/metrics: {e}"))?;
    if r.status != 200 {
        return Err(format!("GET {addr}/metrics: status {}", r.status));
    }
    let text = r.text();
    let samples = parse_exposition(&text).map_err(|e| format!("parsing {addr}/metrics: {e}"))?;
    Ok((text, samples))
}

/// True if `line` contains `@NAME@` (NAME of A-Z and _), a placeholder of the
/// HAProxy config templates in `tests/e2e/`.
pub fn has_placeholder(line: &str) -> bool {
    line.split('@')
        .skip(1)
        .zip(line.split('@').skip(2))
        .any(|(name, _)| {
            !name.is_empty() && name.chars().all(|c| c.is_ascii_uppercase() || c == '_')
        })
}

// ---------------------------------------------------------------------------
// Self-checks of the helpers (run in every test binary that has `mod support;`)
// ---------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_exposition_with_escapes_and_special_values() {
        let text = "# HELP a_total Help.\n# TYPE a_total counter\n\
                    a_total{x=\"1\",y=\"q\\\"uo\\\\te\\n\"} 3\n\
                    a_total{x=\"2\"} 4.5 1700000000000\n\
                    g NaN\nh{le=\"+Inf\"} +Inf\n";
        let s = parse_exposition(text).unwrap();
        assert_eq!(s.samples.len(), 4);
        assert_eq!(s.types.get("a_total").map(String::as_str), Some("counter"));
        assert_eq!(s.sum("a_total", &[]), 7.5);
        assert_eq!(s.sum("a_total", &[("x", "1")]), 3.0);
        assert_eq!(
            s.samples[0].labels.get("y").map(String::as_str),
            Some("q\"uo\\te\n")
        );
        assert!(s.get("g", &[]).unwrap().is_nan());
        assert_eq!(s.get("h", &[("le", "+Inf")]), Some(f64::INFINITY));
        assert_eq!(
            s.get("a_total", &[]),
            None,
            "get() needs the exact label set"
        );
        assert!(parse_exposition("x{a=\"1\" 3\n").is_err());
    }

    #[test]
    fn parses_chunked_http_response() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n";
        let r = parse_http_response(raw).unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.header("transfer-encoding"), Some("chunked"));
        assert_eq!(r.body, b"abcde");
    }

    #[test]
    fn wait_until_times_out_and_succeeds() {
        let mut n = 0;
        assert_eq!(
            wait_until(Duration::from_secs(5), || {
                n += 1;
                (n == 3).then_some(n)
            }),
            Ok(3)
        );
        assert!(wait_until(Duration::from_millis(30), || None::<()>).is_err());
    }
}
