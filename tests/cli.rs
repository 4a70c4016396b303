//! The binary's command line and exit codes.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

fn exporter(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_haproxy-log-exporter"));
    command.args(args).env_clear();
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("run the exporter")
}

#[test]
fn bad_configuration_lists_every_problem_and_exits_64_before_binding() {
    // A port we hold: if the exporter bound sockets before checking its configuration,
    // it would fail on this one with a bind error (exit 1) instead.
    let held = TcpListener::bind("127.0.0.1:0").unwrap();
    let held = held.local_addr().unwrap().to_string();
    let out = exporter(
        &[],
        &[
            ("HLE_WEB_LISTEN_ADDR", &held),
            ("HLE_SYSLOG_UDP_ADDR", "localhost"),
            ("HLE_REQUESTS_TOTAL_LABELS", "status_code,path"),
            ("HLE_ENABLED_METRICS", "requests_total,p95"),
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(stderr.contains("3 problems"), "{stderr}");
    assert!(
        stderr.contains("HLE_SYSLOG_UDP_ADDR=\"localhost\""),
        "{stderr}"
    );
    assert!(stderr.contains("unknown label \"path\"; valid: status_code,status_class,frontend_name,backend_name,server_name,http_request_path,http_request_method,client_ip,client_port,termination_state"), "{stderr}");
    assert!(
        stderr.contains("unknown metric \"p95\"; valid: all or requests_total,"),
        "{stderr}"
    );
}

#[test]
fn a_mistyped_name_or_log_level_is_a_configuration_error_with_a_suggestion() {
    let held = TcpListener::bind("127.0.0.1:0").unwrap();
    let held = held.local_addr().unwrap().to_string();
    let out = exporter(
        &[],
        &[
            ("HLE_WEB_LISTEN_ADDR", &held),
            ("HLE_SYSLOG_UDP_ADDR", "127.0.0.1:0"),
            ("HLE_SYSLOG_TCP_ADDR", ""),
            ("HLE_LOG_LEVEL", "infoo"),
            ("HLE_REQUEST_TOTAL_LABELS", "status_code"),
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(stderr.contains("2 problems"), "{stderr}");
    assert!(
        stderr.contains("HLE_LOG_LEVEL=\"infoo\": \"infoo\" is not a level"),
        "{stderr}"
    );
    assert!(stderr.contains("did you mean `info`?"), "{stderr}");
    assert!(
        stderr.contains(
            "HLE_REQUEST_TOTAL_LABELS: unknown variable; did you mean `HLE_REQUESTS_TOTAL_LABELS`?"
        ),
        "{stderr}"
    );
    let out = exporter(&["check-config"], &[("HLE_LOG_LEVEL", "verbose")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(stderr.contains("did you mean `debug`?"), "{stderr}");
}

#[test]
fn a_bad_web_config_file_lists_every_problem_and_exits_64_before_binding() {
    let held = TcpListener::bind("127.0.0.1:0").unwrap();
    let held = held.local_addr().unwrap().to_string();
    let dir = std::env::temp_dir().join(format!("hle-cli-web-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("web.yml");
    std::fs::write(
        &file,
        "tls_server_config:\n  cert_file: nowhere.crt\n  key_file: nowhere.key\n  max_version: TLS11\n\
         basic_auth_users:\n  prometheus: secret\nhttp_server_config:\n  headers:\n    Server: x\n",
    )
    .unwrap();
    let out = exporter(
        &[],
        &[
            ("HLE_WEB_LISTEN_ADDR", &held),
            ("HLE_SYSLOG_UDP_ADDR", "127.0.0.1:0"),
            ("HLE_WEB_CONFIG_FILE", file.to_str().unwrap()),
        ],
    );
    let _ = std::fs::remove_dir_all(&dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(stderr.contains("5 problems"), "{stderr}");
    for want in [
        "max_version: TLS11 is not supported",
        "cert_file: cannot read",
        "key_file: cannot read",
        "basic_auth_users.prometheus: not a bcrypt hash",
        "HTTP header \"Server\" can not be configured",
    ] {
        assert!(stderr.contains(want), "{want} in {stderr}");
    }
}

#[test]
fn a_port_in_use_is_a_runtime_error_not_a_configuration_error() {
    let held = TcpListener::bind("127.0.0.1:0").unwrap();
    let held = held.local_addr().unwrap().to_string();
    let out = exporter(
        &[],
        &[
            ("HLE_WEB_LISTEN_ADDR", &held),
            ("HLE_SYSLOG_UDP_ADDR", "127.0.0.1:0"),
            ("HLE_SYSLOG_TCP_ADDR", "127.0.0.1:0"),
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "cannot bind HLE_WEB_LISTEN_ADDR={held}: address in use; set HLE_WEB_LISTEN_ADDR to a free address"
        )),
        "{stderr}"
    );
}

/// Whichever listener cannot be bound, the message names the variable to change.
#[test]
fn a_port_in_use_names_the_variable_of_its_listener() {
    let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
    let tcp = tcp.local_addr().unwrap().to_string();
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let udp = udp.local_addr().unwrap().to_string();
    for (var, held) in [
        ("HLE_SYSLOG_UDP_ADDR", &udp),
        ("HLE_SYSLOG_TCP_ADDR", &tcp),
        ("HLE_SPOE_ADDR", &tcp),
        ("HLE_WEB_LISTEN_ADDR", &tcp),
    ] {
        let mut env = vec![
            ("HLE_SYSLOG_UDP_ADDR", "127.0.0.1:0"),
            ("HLE_SYSLOG_TCP_ADDR", "127.0.0.1:0"),
            ("HLE_WEB_LISTEN_ADDR", "127.0.0.1:0"),
        ];
        env.retain(|(name, _)| *name != var);
        env.push((var, held));
        let out = exporter(&[], &env);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{var}: {stderr}");
        assert!(
            stderr.contains(&format!(
                "cannot bind {var}={held}: address in use; set {var} to a free address"
            )),
            "{var}: {stderr}"
        );
    }
}

/// A custom label no metric has is not an error: the exporter starts, and says so in a
/// warning once its log is set up (check-config prints it too).
#[test]
fn a_custom_label_no_metric_has_is_a_warning_at_start_up() {
    let vars = [
        ("HLE_SYSLOG_UDP_ADDR", "127.0.0.1:0"),
        ("HLE_SYSLOG_TCP_ADDR", "127.0.0.1:0"),
        ("HLE_WEB_LISTEN_ADDR", "127.0.0.1:0"),
        ("HLE_LOG_FORMAT", "%ci:%cp %ST %[var(txn.route)] %{+Q}r"),
        ("HLE_CUSTOM_LABELS", "route=%[var(txn.route)]"),
    ];
    let warning = "HLE_CUSTOM_LABELS: label \"route\" is on no enabled metric";
    let out = exporter(&["check-config"], &vars);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains(&format!("haproxy-log-exporter: warning: {warning}")),
        "{stderr}"
    );

    let mut command = Command::new(env!("CARGO_BIN_EXE_haproxy-log-exporter"));
    command.env_clear().stderr(Stdio::piped());
    for (key, value) in vars {
        command.env(key, value);
    }
    let mut child = command.spawn().unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    let before: Vec<String> = stderr
        .by_ref()
        .map_while(Result::ok)
        .take_while(|l| !l.contains("listening"))
        .collect();
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    assert!(kill.unwrap().success());
    let _rest: Vec<String> = stderr.map_while(Result::ok).collect();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{before:?}");
    assert!(
        before
            .iter()
            .any(|l| l.contains(" WARN ") && l.contains(warning)),
        "{before:?}"
    );
}

#[test]
fn help_lists_every_variable_with_its_default() {
    let out = exporter(&["--help"], &[]);
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for var in haproxy_log_exporter::config::variables() {
        let line = help
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{} ", var.name)))
            .unwrap_or_else(|| panic!("{} missing from --help", var.name));
        assert!(line.ends_with(&format!("[{}]", var.default)), "{line}");
    }
    assert!(help.contains("HLE_SYSLOG_UDP_ADDR"));
    assert!(help.contains("[127.0.0.1:5140]"));
}

#[test]
fn version_and_unknown_arguments() {
    let out = exporter(&["--version"], &[]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!("haproxy-log-exporter {}\n", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(exporter(&["--listen"], &[]).status.code(), Some(64));
}

#[test]
fn sigterm_stops_the_exporter_with_exit_code_0() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_haproxy-log-exporter"))
        .env_clear()
        .env("HLE_SYSLOG_UDP_ADDR", "127.0.0.1:0")
        .env("HLE_SYSLOG_TCP_ADDR", "127.0.0.1:0")
        .env("HLE_WEB_LISTEN_ADDR", "127.0.0.1:0")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    // The "listening" line comes once every socket is bound.
    let listening = stderr
        .by_ref()
        .map_while(Result::ok)
        .any(|l| l.contains("listening"));
    assert!(listening, "no 'listening' line");
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    assert!(kill.unwrap().success());
    let rest: Vec<String> = stderr.map_while(Result::ok).collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still running after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0), "{rest:?}");
    assert!(rest.iter().any(|l| l.contains("SIGTERM")), "{rest:?}");
}

#[test]
fn replay_reads_files_gzip_and_standard_input() {
    use std::io::Write;
    let dir = std::env::temp_dir().join(format!("hle-cli-replay-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let edge = include_bytes!("fixtures/haproxy/h_edge.log");
    let clf = include_bytes!("fixtures/haproxy/c_clf.log");
    // gzip, written by the system's gzip so the test does not trust our own encoder.
    let plain = dir.join("h_edge.log");
    std::fs::write(&plain, edge).unwrap();
    let gzip = Command::new("gzip").arg("-kf").arg(&plain).status();
    assert!(gzip.unwrap().success());
    let gz = dir.join("h_edge.log.gz");

    let mut child = Command::new(env!("CARGO_BIN_EXE_haproxy-log-exporter"))
        .env_clear()
        .env("HLE_REQUESTS_TOTAL_LABELS", "status_class")
        .args(["replay", gz.to_str().unwrap(), "-", plain.to_str().unwrap()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(clf).unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(out.status.success(), "{stderr}");
    // h_edge twice (23 lines each) and the 15 CLF lines, rejected for now.
    assert!(
        stderr.contains("replayed 61 lines: 46 counted, 15 rejected, 0 ignored"),
        "{stderr}"
    );
    assert!(stderr.contains("15  unrecognized_format"), "{stderr}");
    assert!(
        stdout.contains("haproxy_log_requests_total{status_class=\"2xx\"} 28\n"),
        "{stdout}"
    );
    assert!(stdout.contains("haproxy_log_exporter_lines_received_total{transport=\"replay\"} 61\n"));

    let missing = exporter(&["replay", dir.join("nope.log").to_str().unwrap()], &[]);
    assert_eq!(missing.status.code(), Some(66));
    assert!(missing.stdout.is_empty());
    let bad = exporter(&["replay"], &[("HLE_ENABLED_METRICS", "nope")]);
    assert_eq!(bad.status.code(), Some(64));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn check_config_prints_what_is_in_force() {
    let out = exporter(
        &["check-config"],
        &[("HLE_REQUESTS_TOTAL_LABELS", "client_ip")],
    );
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.contains("\nHLE_REQUESTS_TOTAL_LABELS=client_ip\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("\nHLE_WEB_LISTEN_ADDR=0.0.0.0:9129\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("\nhaproxy_log_requests_total labels=[client_ip]\n"),
        "{stdout}"
    );
    let out = exporter(&["check-config"], &[("HLE_LOG_FORMAT", "clf,httplog")]);
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.contains(
            "# log formats, tried in this order:\nclf\n  fields: %{-Q}ci %trg(+Q) %r(+Q) %ST(+Q) "
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("\nhttplog/tcplog (built-in parser)\n"),
        "{stdout}"
    );
    let bad = exporter(&["check-config"], &[("HLE_MAX_LINE_BYTES", "x")]);
    assert_eq!(bad.status.code(), Some(64));
    assert!(bad.stdout.is_empty());
}
