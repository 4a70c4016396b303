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
    // Standard error is not a terminal: no progress line.
    assert!(
        !stderr.contains('\r') && !stderr.contains("lines/s"),
        "{stderr}"
    );
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

/// On a terminal (a pseudo-terminal made by util-linux's `script`), replay draws its
/// progress on standard error and leaves the last line above the summary.
#[test]
fn replay_shows_progress_on_a_terminal() {
    let dir = std::env::temp_dir().join(format!("hle-cli-progress-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let plain = dir.join("h_edge.log");
    let edge = include_bytes!("fixtures/haproxy/h_edge.log");
    std::fs::write(&plain, edge).unwrap();
    let command = format!(
        "{} replay {} >/dev/null",
        env!("CARGO_BIN_EXE_haproxy-log-exporter"),
        plain.display()
    );
    let out = Command::new("script")
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("SHELL", "/bin/sh")
        .args(["-qec", &command, "/dev/null"])
        .output()
        .expect("run script (util-linux)");
    let terminal = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{terminal}");
    let lines = edge.iter().filter(|&&b| b == b'\n').count();
    let last = terminal
        .split('\r')
        .find(|part| part.contains("lines/s  in "))
        .unwrap_or_else(|| panic!("no progress line: {terminal:?}"));
    assert!(last.starts_with(&format!("{lines} lines  ")), "{last:?}");
    assert!(
        terminal.contains(&format!("replayed {lines} lines")),
        "{terminal:?}"
    );
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

/// `check-config LOGFILE`: the configuration, then each sampled line as it is read.
fn check_file(args: &[&str], env: &[(&str, &str)], stdin: &[u8]) -> (Option<i32>, String) {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_haproxy-log-exporter"))
        .env_clear()
        .envs(env.iter().copied())
        .arg("check-config")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stdout.starts_with("# configuration is valid; in force:\n"),
        "{stdout}{stderr}"
    );
    (out.status.code(), stdout)
}

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/haproxy");

#[test]
fn check_config_with_a_matching_httplog_file_shows_its_first_lines_and_a_summary() {
    let file = format!("{FIXTURES}/h_edge.log");
    let (code, stdout) = check_file(&[&file], &[], b"");
    assert_eq!(code, Some(0), "{stdout}");
    let sample = stdout.split("# reading ").nth(1).unwrap();
    assert!(sample.starts_with(&format!(
        "{file}: the first 5 lines, then the first line of each other outcome (at most 20)\n\
         line 1: <134>Nov 25 02:14:12 localhost haproxy[7666]: 127.0.0.1:35066 [25/Nov/2026:02:14:11.725] fe_http be_app/app1 0/0/0/-1/502 504 198 - - sH-- 2/1/0/0/0 0/0 \"GET /slow?ms=1500 HTTP/1.1\"\n  \
         syslog header: priority 134 (local0.info), timestamp Nov 25 02:14:12, host localhost, tag haproxy[7666]\n  \
         counted, read by format 1, httplog/tcplog (built-in parser)\n  \
         labels: status_code=\"504\" status_class=\"5xx\" frontend_name=\"fe_http\" backend_name=\"be_app\" server_name=\"app1\" http_request_path=\"/slow\" http_request_method=\"GET\" client_ip=\"127.0.0.1\" client_port=\"35066\" termination_state=\"sH\"\n  \
         timers (ms, - when not logged or -1): TR=0 Tw=0 Tc=0 Tr=- Ta=502  bytes_read=198  queues: server=0 backend=0\n\
         line 2: "
    )), "{sample}");
    // Every line is counted the same way: the first five only.
    assert_eq!(sample.matches("\nline ").count(), 5, "{sample}");
    assert!(sample.ends_with(&format!(
        "line 5: {}\n# {file}: 23 lines read: 23 counted, 0 rejected, 0 ignored\n",
        "<134>Nov 25 02:14:16 localhost haproxy[7666]: 127.0.0.1:46648 [25/Nov/2026:02:14:15.675] fe_http fe_http/<NOSRV> -1/-1/-1/-1/1000 408 0 - - cR-- 1/1/0/0/0 0/0 \"<BADREQ>\"\n  \
         syslog header: priority 134 (local0.info), timestamp Nov 25 02:14:16, host localhost, tag haproxy[7666]\n  \
         counted, read by format 1, httplog/tcplog (built-in parser)\n  \
         labels: status_code=\"408\" status_class=\"4xx\" frontend_name=\"fe_http\" backend_name=\"fe_http\" server_name=\"<NOSRV>\" http_request_path=\"\" http_request_method=\"\" client_ip=\"127.0.0.1\" client_port=\"46648\" termination_state=\"cR\"\n  \
         timers (ms, - when not logged or -1): TR=- Tw=- Tc=- Tr=- Ta=1000  bytes_read=0  queues: server=0 backend=0"
    )), "{sample}");

    let (code, stdout) = check_file(&["--lines", "2", &file], &[], b"");
    assert_eq!(code, Some(0));
    assert_eq!(stdout.matches("\nline ").count(), 2, "{stdout}");
    assert!(stdout.contains(": the first 2 lines, then"), "{stdout}");
}

#[test]
fn check_config_with_a_log_format_that_does_not_fit_shows_the_field_and_column() {
    // The fixture's own log-format without `%CC %CS`: `%tsc` meets the cookie's `-`.
    let format = "%ci:%cp [%tr] %ft %b/%s %TR/%Tw/%Tc/%Tr/%Ta %ST %B %tsc %ac/%fc/%bc/%sc/%rc %sq/%bq %hr %hs %{+Q}r";
    let file = format!("{FIXTURES}/w_httplog.log");
    let (code, stdout) = check_file(&["--lines=1", &file], &[("HLE_LOG_FORMAT", format)], b"");
    assert_eq!(code, Some(65), "{stdout}");
    let sample = stdout.split("# reading ").nth(1).unwrap();
    let line = "127.0.0.1:40786 [01/Dec/2026:20:52:24.079] fe_main be_app/app1 0/0/0/0/0 200 112 - SESS=abc123 ---- 2/1/0/0/0 0/0 {127.0.0.1:8080|curl/7.88.1} {text/plain} \"GET / HTTP/1.1\"";
    let column = line.find("- SESS").unwrap() + 1;
    assert_eq!(column, 82);
    let want = format!(
        "line 1: {line}\n  \
         syslog header: none (the line is the message)\n  \
         rejected: format_mismatch_at_%tsc_col_52\n  \
         format 1, %ci:%cp [%tr] %ft %b/%s %TR/%Tw/%Tc/%Tr/%Ta %ST %B %tsc %ac/...: \
         format_mismatch_at_%tsc_col_52: expected %tsc (a termination state) at column 82, found \"-\"\n"
    );
    assert!(sample.contains(&want), "{sample}");
    // The line around that column, a caret under it.
    let mut rest = sample.split(&want).nth(1).unwrap().lines();
    let (around, caret) = (rest.next().unwrap(), rest.next().unwrap());
    let under = caret.find('^').unwrap();
    assert!(
        around[under..].starts_with("- SESS=abc123 ----"),
        "{around}\n{caret}"
    );
    assert!(
        sample.ends_with(&format!(
            "# {file}: 17 lines read: 1 counted, 16 rejected, 0 ignored\n\
         #   rejected         16  format_mismatch_at_%tsc_col_52\n"
        )),
        "{sample}"
    );
    // The one line counted (as cut short) is shown too: the first of its outcome.
    assert!(
        sample.contains("(cut short by HAProxy inside the request line)\n"),
        "{sample}"
    );
}

#[test]
fn check_config_shows_control_bytes_escaped_and_notices() {
    let lines = "<134>Nov 25 02:14:12 localhost haproxy[7666]: 127.0.0.1:35066 [25/Nov/2026:02:14:11.725] fe_http be_app/app1 0/0/0/0/502 5x4 198 - - sH-- 2/1/0/0/0 0/0 \"GET /a\rb\x0bc\u{2028}d\x1b[31m HTTP/1.1\"\r\n\
                 \n\
                 <133>Nov 25 02:09:39 haproxy[1]: Proxy fe started.\n\
                 <134>Nov 25 02:09:39 haproxy[1]: Connect from 127.0.0.1:34140 to 127.0.0.1:31080 (fe_main/HTTP)\n";
    let (code, stdout) = check_file(&["-"], &[], lines.as_bytes());
    assert_eq!(code, Some(65), "{stdout}");
    assert!(
        !stdout.contains(['\r', '\x0b', '\x1b', '\u{2028}']),
        "{stdout:?}"
    );
    assert!(
        stdout.contains("# reading standard input: the first 5 lines"),
        "{stdout}"
    );
    assert!(
        stdout.contains(" 0/0 \"GET /a\\rb\\x0bc\\u{2028}d\\x1b[31m HTTP/1.1\"\n  syslog header: "),
        "{stdout}"
    );
    let column = lines.find(" 5x4 ").unwrap() + 2;
    assert!(
        stdout.contains(&format!(
            "  rejected: bad_status_code\n  \
             format 1, httplog/tcplog (built-in parser): bad_status_code; read as httplog, \
             expected %ST (a status code) at column {column}, found \"5x4\"\n"
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "line 3: <133>Nov 25 02:09:39 haproxy[1]: Proxy fe started.\n  \
         syslog header: priority 133 (local0.notice), timestamp Nov 25 02:09:39, tag haproxy[1]\n  \
         ignored: proxy_event (an HAProxy notice, not traffic)\n"
        ),
        "{stdout}"
    );
    assert!(stdout.contains(
        "  rejected: no_log_format; frontend fe_main has no log format: add `option httplog` to it\n"
    ), "{stdout}");
    assert!(
        stdout.ends_with(
            "# standard input: 3 lines read: 0 counted, 2 rejected, 1 ignored\n\
         #   rejected          1  bad_status_code\n\
         #   rejected          1  no_log_format\n\
         #   ignored           1  proxy_event\n"
        ),
        "{stdout}"
    );
}

#[test]
fn check_config_arguments_and_a_missing_file() {
    for args in [
        &["--lines", "x"][..],
        &["--lines"],
        &["a.log", "b.log"],
        &["--verbose"],
    ] {
        let mut all = vec!["check-config"];
        all.extend_from_slice(args);
        let out = exporter(&all, &[]);
        assert_eq!(out.status.code(), Some(64), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("usage: check-config [--lines N] [LOGFILE]"),
            "{stderr}"
        );
    }
    let out = exporter(&["check-config", "/nonexistent/haproxy.log"], &[]);
    assert_eq!(out.status.code(), Some(66));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot open /nonexistent/haproxy.log"));
    let bad = exporter(&["check-config", "-"], &[("HLE_MAX_LINE_BYTES", "x")]);
    assert_eq!(bad.status.code(), Some(64));
}

#[test]
fn check_config_with_several_formats_tells_each_and_reads_gzip() {
    let dir = std::env::temp_dir().join(format!("hle-cli-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let clf = std::fs::read_to_string(format!("{FIXTURES}/c_clf.log")).unwrap();
    let bad = clf.lines().nth(1).unwrap().replace(" 200 73 ", " 2O0 73 ");
    let mut log = std::fs::read_to_string(format!("{FIXTURES}/h_edge.log")).unwrap();
    log.push_str(&clf);
    log.push_str(&format!("{bad}\n{}\n", "a".repeat(3000)));
    let plain = dir.join("mixed.log");
    std::fs::write(&plain, &log).unwrap();
    assert!(Command::new("gzip")
        .arg("-kf")
        .arg(&plain)
        .status()
        .unwrap()
        .success());
    let gz = dir.join("mixed.log.gz");
    let (code, stdout) = check_file(
        &["--lines", "0", gz.to_str().unwrap()],
        &[
            ("HLE_LOG_FORMAT", "httplog,clf"),
            ("HLE_MAX_LINE_BYTES", "2048"),
        ],
        b"",
    );
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(code, Some(65), "{stdout}");
    assert!(
        stdout.contains(": the first line of each outcome (at most 20)\nline 1: "),
        "{stdout}"
    );
    assert!(
        stdout.contains("\n  counted, read by format 2, clf\n"),
        "{stdout}"
    );
    let column = bad.find(" 2O0 ").unwrap() + 2;
    assert!(stdout.contains(
        "  rejected: format_mismatch_at_%ST_col_31\n  \
         format 1, httplog/tcplog (built-in parser): unrecognized_format; read as httplog, expected \"[\""
    ), "{stdout}");
    assert!(stdout.contains(&format!(
        "  format 2, clf: format_mismatch_at_%ST_col_31: expected %ST (a status code) at column {column}, found \"2O0\"\n"
    )), "{stdout}");
    assert!(
        stdout.contains(
            "\n  rejected: oversize_frame: 3000 bytes, longer than HLE_MAX_LINE_BYTES=2048\n"
        ),
        "{stdout}"
    );
    assert!(
        stdout.ends_with(
            "lines read: 38 counted, 2 rejected, 0 ignored\n\
         #   counted          23  by format 1, httplog/tcplog (built-in parser)\n\
         #   counted          15  by format 2, clf\n\
         #   rejected          1  format_mismatch_at_%ST_col_31\n\
         #   rejected          1  oversize_frame\n"
        ),
        "{stdout}"
    );
}
