//! `HLE_WEB_CONFIG_FILE` end to end: the daemon on port 0 with TLS (certificates made by
//! the `openssl` CLI for each test), client certificates and basic auth, scraped by `curl`;
//! the file changed while running.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use haproxy_log_exporter::{Config, Server};

mod support;

const WAIT: Duration = Duration::from_secs(10);

/// A directory of its own for a test, removed when dropped.
struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let dir = std::env::temp_dir().join(format!("hle-web-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Dir(dir)
    }

    fn path(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }

    fn write(&self, file: &str, text: &str) {
        // Written beside and renamed, as a Secret volume or an editor would, so that no
        // reader sees half a file.
        let tmp = self.path(&format!(".{file}.tmp"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, self.path(file)).unwrap();
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn ca(dir: &Dir, name: &str) {
    support::pki::ca(&dir.0, name);
}

fn leaf(dir: &Dir, name: &str, ca: &str, usage: &str) {
    support::pki::leaf(&dir.0, name, ca, usage);
}

/// The CAs `ca` and `other-ca`, the server's certificate and a client certificate from
/// each CA.
fn pki(dir: &Dir) {
    ca(dir, "ca");
    ca(dir, "other-ca");
    leaf(dir, "server", "ca", "serverAuth");
    leaf(dir, "client", "ca", "clientAuth");
    leaf(dir, "stranger", "other-ca", "clientAuth");
}

/// The daemon on its own runtime; dropped, it stops.
struct Daemon {
    port: u16,
    registry: prometheus::Registry,
    _runtime: tokio::runtime::Runtime,
}

fn start(config_file: &Path) -> Daemon {
    let env: HashMap<String, String> = [
        ("HLE_SYSLOG_UDP_ADDR", "127.0.0.1:0"),
        ("HLE_SYSLOG_TCP_ADDR", ""),
        ("HLE_WEB_LISTEN_ADDR", "127.0.0.1:0"),
        ("HLE_WEB_CONFIG_FILE", config_file.to_str().unwrap()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let config = Config::from_env(&env).expect("valid test configuration");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let server = runtime.block_on(Server::bind(config)).expect("bind");
    let port = server.web_addr().unwrap().port();
    let registry = server.registry();
    runtime.spawn(server.run(std::future::pending()));
    Daemon {
        port,
        registry,
        _runtime: runtime,
    }
}

impl Daemon {
    /// `curl` against `path` with `args`: the status (0 when the request failed) and the
    /// response headers.
    fn curl(&self, scheme: &str, path: &str, args: &[&str]) -> (u16, String) {
        let port = self.port.to_string();
        let out = Command::new("curl")
            .args(["-sS", "-o", "/dev/null", "-D", "-", "-w", "%{http_code}"])
            .args(["--max-time", "10"])
            .args(["--resolve", &format!("localhost:{port}:127.0.0.1")])
            .args(args)
            .arg(format!("{scheme}://localhost:{port}{path}"))
            .output()
            .expect("run curl");
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let code = stdout
            .lines()
            .last()
            .and_then(|l| l.trim().parse().ok())
            .unwrap_or(0);
        let code = if out.status.success() { code } else { 0 };
        (code, stdout)
    }

    fn counter(&self, name: &str, label: Option<&str>) -> f64 {
        self.registry
            .gather()
            .iter()
            .filter(|f| f.name() == name)
            .flat_map(|f| f.get_metric())
            .filter(|m| label.is_none_or(|l| m.get_label().iter().any(|p| p.value() == l)))
            .map(|m| m.get_counter().get_value())
            .sum()
    }
}

/// Polls `check` until it holds or `WAIT` passes.
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !check() {
        assert!(Instant::now() < deadline, "not in time: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn tls_with_client_certificates_from_our_ca_only() {
    let dir = Dir::new("mtls");
    pki(&dir);
    dir.write(
        "web.yml",
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  \
         client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n\
         http_server_config:\n  headers:\n    X-Content-Type-Options: nosniff\n",
    );
    let d = start(&dir.path("web.yml"));
    let ca = dir.path("ca.crt");
    let ca = ca.to_str().unwrap();
    let cert = |name: &str| dir.path(name).to_str().unwrap().to_string();
    let (client_crt, client_key) = (cert("client.crt"), cert("client.key"));
    let (stranger_crt, stranger_key) = (cert("stranger.crt"), cert("stranger.key"));

    let mine = ["--cacert", ca, "--cert", &client_crt, "--key", &client_key];
    let (code, headers) = d.curl("https", "/metrics", &mine);
    assert_eq!(code, 200, "{headers}");
    assert!(
        headers
            .to_ascii_lowercase()
            .contains("x-content-type-options: nosniff"),
        "{headers}"
    );
    let (code, _) = d.curl("https", "/-/healthy", &mine);
    assert_eq!(code, 200);

    assert_eq!(
        d.curl("https", "/metrics", &["--cacert", ca]).0,
        0,
        "no client certificate"
    );
    let strangers = [
        "--cacert",
        ca,
        "--cert",
        &stranger_crt,
        "--key",
        &stranger_key,
    ];
    assert_eq!(
        d.curl("https", "/metrics", &strangers).0,
        0,
        "another CA's client"
    );
    assert_eq!(d.curl("http", "/metrics", &[]).0, 0, "plain HTTP");
    // The server's certificate is checked by the client too: without our CA, refused.
    assert_eq!(
        d.curl(
            "https",
            "/metrics",
            &["--cert", &client_crt, "--key", &client_key]
        )
        .0,
        0
    );
    eventually("handshake failures counted", || {
        d.counter(
            "haproxy_log_exporter_web_tls_handshake_failures_total",
            None,
        ) >= 3.0
    });
}

#[test]
fn tls_versions_and_suites_as_configured() {
    let dir = Dir::new("versions");
    pki(&dir);
    dir.write(
        "web.yml",
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  \
         min_version: TLS13\n  curve_preferences: [X25519, CurveP256]\n",
    );
    let d = start(&dir.path("web.yml"));
    let ca = dir.path("ca.crt");
    let ca = ca.to_str().unwrap();
    assert_eq!(d.curl("https", "/metrics", &["--cacert", ca]).0, 200);
    assert_eq!(
        d.curl("https", "/metrics", &["--cacert", ca, "--tls-max", "1.2"])
            .0,
        0,
        "TLS 1.2 refused"
    );

    let dir12 = Dir::new("suites");
    pki(&dir12);
    dir12.write(
        "web.yml",
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  \
         max_version: TLS12\n  cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384]\n",
    );
    let d = start(&dir12.path("web.yml"));
    let ca = dir12.path("ca.crt");
    let ca = ca.to_str().unwrap();
    assert_eq!(d.curl("https", "/metrics", &["--cacert", ca]).0, 200);
    let other = ["--cacert", ca, "--ciphers", "ECDHE-ECDSA-AES128-GCM-SHA256"];
    assert_eq!(
        d.curl("https", "/metrics", &other).0,
        0,
        "a suite not listed"
    );
    let listed = ["--cacert", ca, "--ciphers", "ECDHE-ECDSA-AES256-GCM-SHA384"];
    assert_eq!(d.curl("https", "/metrics", &listed).0, 200);
}

fn users(user: &str, password: &str) -> String {
    let hash = bcrypt::hash(password, 4).unwrap();
    format!(
        "basic_auth_users:\n  {user}: {hash}\nhttp_server_config:\n  headers:\n    X-Frame-Options: deny\n"
    )
}

#[test]
fn basic_auth_right_wrong_missing_and_reloaded() {
    let dir = Dir::new("auth");
    dir.write("web.yml", &users("prometheus", "first"));
    let d = start(&dir.path("web.yml"));

    let (code, headers) = d.curl("http", "/metrics", &["-u", "prometheus:first"]);
    assert_eq!(code, 200, "{headers}");
    assert!(headers
        .to_ascii_lowercase()
        .contains("x-frame-options: deny"));
    for args in [
        &["-u", "prometheus:wrong"][..],
        &["-u", "nobody:first"],
        &[],
    ] {
        let (code, headers) = d.curl("http", "/metrics", args);
        assert_eq!(code, 401, "{args:?}");
        let lower = headers.to_ascii_lowercase();
        assert!(lower.contains("www-authenticate: basic"), "{headers}");
        assert!(lower.contains("x-frame-options: deny"), "{headers}");
    }
    // Everything is behind the login, the probes too, as with exporter-toolkit.
    assert_eq!(d.curl("http", "/-/healthy", &[]).0, 401);
    assert_eq!(
        d.curl("http", "/-/ready", &["-u", "prometheus:first"]).0,
        200
    );
    assert_eq!(
        d.counter("haproxy_log_exporter_web_auth_failures_total", None),
        4.0
    );

    // A new password takes effect without a restart.
    dir.write("web.yml", &users("prometheus", "second"));
    eventually("the new password works", || {
        d.curl("http", "/metrics", &["-u", "prometheus:second"]).0 == 200
    });
    assert_eq!(
        d.curl("http", "/metrics", &["-u", "prometheus:first"]).0,
        401
    );
    assert_eq!(
        d.counter(
            "haproxy_log_exporter_web_config_reloads_total",
            Some("success")
        ),
        1.0
    );

    // A broken edit keeps the last good configuration.
    dir.write("web.yml", "basic_auth_users:\n  prometheus: not-a-hash\n");
    eventually("the broken edit seen", || {
        d.curl("http", "/metrics", &["-u", "prometheus:second"]);
        d.counter(
            "haproxy_log_exporter_web_config_reloads_total",
            Some("failure"),
        ) == 1.0
    });
    assert_eq!(
        d.curl("http", "/metrics", &["-u", "prometheus:second"]).0,
        200
    );
    assert_eq!(d.curl("http", "/metrics", &[]).0, 401);
    // Tried once per version of the file, not once a second.
    std::thread::sleep(Duration::from_millis(1100));
    d.curl("http", "/metrics", &["-u", "prometheus:second"]);
    assert_eq!(
        d.counter(
            "haproxy_log_exporter_web_config_reloads_total",
            Some("failure")
        ),
        1.0
    );
}

#[test]
fn tls_cannot_be_turned_off_by_an_edit() {
    let dir = Dir::new("tls-off");
    pki(&dir);
    dir.write(
        "web.yml",
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n",
    );
    let d = start(&dir.path("web.yml"));
    let ca = dir.path("ca.crt");
    let ca = ca.to_str().unwrap();
    assert_eq!(d.curl("https", "/metrics", &["--cacert", ca]).0, 200);
    dir.write("web.yml", "{}\n");
    eventually("the edit refused", || {
        d.curl("https", "/metrics", &["--cacert", ca]);
        d.counter(
            "haproxy_log_exporter_web_config_reloads_total",
            Some("failure"),
        ) == 1.0
    });
    assert_eq!(d.curl("https", "/metrics", &["--cacert", ca]).0, 200);
    assert_eq!(d.curl("http", "/metrics", &[]).0, 0);
}

#[test]
fn every_problem_of_the_file_is_listed() {
    let dir = Dir::new("problems");
    dir.write(
        "web.yml",
        "tls_server_config:\n  cert_file: missing.crt\n  min_version: TLS10\n  \
         client_auth_type: Sometimes\n  cipher_suites: [TLS_RSA_WITH_AES_128_CBC_SHA]\n  \
         curve_preferences: [CurveP521]\n",
    );
    let env: HashMap<String, String> = [
        ("HLE_SYSLOG_UDP_ADDR", "127.0.0.1:0"),
        ("HLE_WEB_CONFIG_FILE", dir.path("web.yml").to_str().unwrap()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let problems = Config::from_env(&env).unwrap_err().problems;
    let all = problems.join("\n");
    for want in [
        "min_version: TLS10 is not supported",
        "invalid ClientAuth \"Sometimes\"",
        "TLS_RSA_WITH_AES_128_CBC_SHA is not supported here",
        "CurveP521 is not supported here",
        "cert_file: cannot read",
        "missing one of key or key_file",
    ] {
        assert!(all.contains(want), "{want:?} in\n{all}");
    }
    assert_eq!(problems.len(), 6, "{all}");
    assert!(problems
        .iter()
        .all(|p| p.starts_with("HLE_WEB_CONFIG_FILE=")));
}

/// The example of `deploy/` loads, with certificates where it expects them.
#[test]
fn the_deploy_example_loads() {
    let dir = Dir::new("example");
    pki(&dir);
    std::fs::copy(dir.path("server.crt"), dir.path("tls.crt")).unwrap();
    std::fs::copy(dir.path("server.key"), dir.path("tls.key")).unwrap();
    let example = include_str!("../deploy/web-config.yml");
    dir.write("web-config.yml", example);
    let d = start(&dir.path("web-config.yml"));
    let ca = dir.path("ca.crt");
    let ca = ca.to_str().unwrap();
    assert_eq!(d.curl("https", "/metrics", &["--cacert", ca]).0, 401);
}

/// `cert` and `key` inline, and `RequireAnyClientCert`: a certificate is required, any
/// one (its chain is not verified, as in Go).
#[test]
fn inline_pem_and_any_client_certificate() {
    let dir = Dir::new("inline");
    pki(&dir);
    let indented = |file: &str| {
        std::fs::read_to_string(dir.path(file))
            .unwrap()
            .lines()
            .map(|l| format!("    {l}\n"))
            .collect::<String>()
    };
    dir.write(
        "web.yml",
        &format!(
            "tls_server_config:\n  cert: |\n{}  key: |\n{}  client_auth_type: RequireAnyClientCert\n",
            indented("server.crt"),
            indented("server.key")
        ),
    );
    let d = start(&dir.path("web.yml"));
    let path = |name: &str| dir.path(name).to_str().unwrap().to_string();
    let (ca, crt, key) = (path("ca.crt"), path("stranger.crt"), path("stranger.key"));
    assert_eq!(
        d.curl("https", "/metrics", &["--cacert", &ca]).0,
        0,
        "no certificate"
    );
    let any = ["--cacert", ca.as_str(), "--cert", &crt, "--key", &key];
    assert_eq!(d.curl("https", "/metrics", &any).0, 200, "another CA's");
}

/// New certificates on disk are served without a restart (cert-manager renewing a Secret).
#[test]
fn certificates_replaced_while_running() {
    let dir = Dir::new("rotate");
    pki(&dir);
    leaf(&dir, "renewed", "other-ca", "serverAuth");
    dir.write(
        "web.yml",
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n",
    );
    let d = start(&dir.path("web.yml"));
    let path = |name: &str| dir.path(name).to_str().unwrap().to_string();
    let (old_ca, new_ca) = (path("ca.crt"), path("other-ca.crt"));
    assert_eq!(d.curl("https", "/metrics", &["--cacert", &old_ca]).0, 200);
    for (from, to) in [("renewed.crt", "server.crt"), ("renewed.key", "server.key")] {
        let text = std::fs::read_to_string(dir.path(from)).unwrap();
        dir.write(to, &text);
    }
    eventually("the renewed certificate served", || {
        d.curl("https", "/metrics", &["--cacert", &new_ca]).0 == 200
    });
    assert_eq!(d.curl("https", "/metrics", &["--cacert", &old_ca]).0, 0);
}

/// A client that connects and never says hello is dropped after the handshake timeout
/// (10 s), counted as a failed handshake, so that silent connections cannot keep their
/// slots.
#[test]
fn a_silent_client_is_dropped_after_the_handshake_timeout() {
    use std::io::Read;
    let dir = Dir::new("silent");
    pki(&dir);
    dir.write(
        "web.yml",
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n",
    );
    let d = start(&dir.path("web.yml"));
    let mut silent = std::net::TcpStream::connect(("127.0.0.1", d.port)).expect("connect");
    silent
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let connected = Instant::now();
    let mut rest = Vec::new();
    let end = silent.read_to_end(&mut rest);
    let took = connected.elapsed();
    assert!(
        end.is_ok()
            || end
                .as_ref()
                .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
        "not closed by the exporter: {end:?} after {took:?}"
    );
    assert!(rest.is_empty(), "the exporter wrote {} bytes", rest.len());
    assert!(
        took >= Duration::from_secs(9) && took < Duration::from_secs(15),
        "closed after {took:?}"
    );
    eventually("the timed-out handshake counted", || {
        d.counter(
            "haproxy_log_exporter_web_tls_handshake_failures_total",
            None,
        ) >= 1.0
    });
}
