//! End to end through real syslog relays: HAProxy 2.6 logs to rsyslog or
//! syslog-ng, which pass every line on in each of their stock templates and
//! destinations, to exporters and to files that go through `replay`.
//!
//! `rsyslog_relays` and `syslog_ng_relays` each re-execute this test binary
//! under `unshare -n` (a private network namespace, so the fixed loopback
//! ports below cannot clash with anything else on the machine) to run their
//! inner test, which:
//!
//! 1. brings `lo` up and starts one exporter for each of the relay's outputs
//!    that goes over the network, on its own UDP or TCP port and web port;
//! 2. starts one relay with all its outputs in one configuration:
//!    - rsyslog (`rsyslogd -n`, Debian's package): an `imudp` input whose
//!      ruleset forwards with `omfwd` in `RSYSLOG_SyslogProtocol23Format`,
//!      `RSYSLOG_ForwardFormat` and `RSYSLOG_TraditionalForwardFormat`, each
//!      over TCP with `TCP_Framing="octet-counted"`, over TCP with newline
//!      framing and over UDP, and writes files with `omfile` in
//!      `RSYSLOG_FileFormat` and `RSYSLOG_TraditionalFileFormat`;
//!    - syslog-ng (`syslog-ng -F`, unpacked from Debian's package by
//!      `.ci/fetch-syslog-ng`, or installed): a `network()` UDP source with
//!      the default (BSD) parsing and one with `flags(syslog-protocol)` (the
//!      `syslog()` source's), each sending to `network()` over TCP and UDP,
//!      `syslog()` over TCP (octet counting) and UDP, and to a `file()`;
//! 3. starts HAProxy from `tests/e2e/haproxy_relays.cfg.in`: for each header
//!    style HAProxy sends (the default "local", `format rfc5424`,
//!    `format rfc3164`) an `option httplog` frontend and an `option tcplog`
//!    one, logging over UDP to each of the relay's inputs;
//! 4. sends a fixed mix to each frontend, a different one per frontend: 200
//!    (several methods), 404, 500, 503, a garbage request (400 `<BADREQ>`
//!    PR--) and an empty connection (400 `<BADREQ>` CR--); to the tcplog
//!    frontends sessions that reach a server and sessions whose server
//!    refuses them (SC);
//! 5. waits until every exporter has received, and every file holds, as many
//!    lines as HAProxy logged, and replays each file with
//!    `haproxy-log-exporter replay`;
//! 6. for every exporter and every replay: `haproxy_log_requests_total` per
//!    frontend and status class equals the delta of HAProxy's own
//!    `haproxy_frontend_http_responses_total` (for the tcplog frontends, the
//!    series with an empty `status_class` equals the delta of
//!    `haproxy_frontend_sessions_total`), and every line received is counted:
//!    none rejected or ignored.
//!
//! `relay_captures_are_counted` replays the captures of
//! `tests/fixtures/relay` (made the same way, see the README there) without
//! any relay.
//!
//! Without `unshare`, `ip`, `haproxy`, `rsyslogd` or syslog-ng the end-to-end
//! tests print a skip message, or fail when `CI=true`.

mod support;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use haproxy_log_exporter::ingest::replay;
use haproxy_log_exporter::Config;
use support::haproxy::{
    check_answer, check_plan_against_haproxy, exchange, get, haproxy_class_delta, inner_may_run,
    one_word, raw_exchange, render_haproxy_cfg, scrape, send_shots, Frontend, Inner, Plan,
    Transport, INNER_RUN_LIMIT, M_COUNTED, M_IGNORED, M_RECEIVED, M_REJECTED, M_REQUESTS,
    STATUS_CLASSES,
};
use support::relays::{octet_frames, start_exporters, udp_bound, ExporterSpec, SyslogNg};
use support::{
    find_program, parse_exposition, run_in_private_netns, run_with_timeout, skip_or_fail,
    tail_file, wait_until, Checks, ChildGuard, NetnsRun, Samples, TempDir,
};

const RSYSLOG_OUTER: &str = "rsyslog_relays";
const RSYSLOG_INNER: &str = "rsyslog_relays_inner";
const SYSLOG_NG_OUTER: &str = "syslog_ng_relays";
const SYSLOG_NG_INNER: &str = "syslog_ng_relays_inner";

/// The relay's UDP inputs that HAProxy logs to.
const PORT_RSYSLOG_IN: u16 = 1514;
const PORT_SYSLOG_NG_BSD_IN: u16 = 1515;
const PORT_SYSLOG_NG_PROTOCOL_IN: u16 = 1516;

/// Exporter `i` receives on `PORT_EXPORTER_SYSLOG + i` and serves its
/// metrics on `PORT_EXPORTER_WEB + i`.
const PORT_EXPORTER_SYSLOG: u16 = 5200;
const PORT_EXPORTER_WEB: u16 = 9200;

/// Every line HAProxy logs must reach every output within this time.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on one `replay` run.
const REPLAY_TIMEOUT: Duration = Duration::from_secs(60);

const HAPROXY_CFG_TEMPLATE: &str = include_str!("e2e/haproxy_relays.cfg.in");

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/relay");

// ---------------------------------------------------------------------------
// HAProxy's side: the header styles, their frontends and traffic
// ---------------------------------------------------------------------------

/// One header style HAProxy sends, with its two frontends and their traffic
/// (a different mix per frontend, so that a line counted for the wrong one
/// cannot go unnoticed).
struct Style {
    /// What goes between the address and the facility of its `log` lines.
    log_format: &'static str,
    /// The `option httplog` frontend.
    http: &'static str,
    http_port: u16,
    http_plan: Plan,
    /// The `option tcplog` frontend: `tcp_port` leads to a server,
    /// `tcp_down_port` to one that refuses the connection.
    tcp: &'static str,
    tcp_port: u16,
    tcp_down_port: u16,
    tcp_ok: u32,
    tcp_down: u32,
}

fn styles() -> Vec<Style> {
    let plan = |ok, missing, err, down, badreq| Plan {
        ok,
        missing,
        err,
        down,
        badreq,
        empty: 1,
        ok_v6: 0,
        missing_v6: 0,
    };
    vec![
        Style {
            log_format: "",
            http: "fe_http_local",
            http_port: 8100,
            http_plan: plan(3, 2, 1, 1, 1),
            tcp: "fe_tcp_local",
            tcp_port: 8110,
            tcp_down_port: 8120,
            tcp_ok: 2,
            tcp_down: 1,
        },
        Style {
            log_format: "format rfc5424 ",
            http: "fe_http_rfc5424",
            http_port: 8101,
            http_plan: plan(2, 1, 2, 2, 1),
            tcp: "fe_tcp_rfc5424",
            tcp_port: 8111,
            tcp_down_port: 8121,
            tcp_ok: 1,
            tcp_down: 2,
        },
        Style {
            log_format: "format rfc3164 ",
            http: "fe_http_rfc3164",
            http_port: 8102,
            http_plan: plan(4, 1, 1, 1, 2),
            tcp: "fe_tcp_rfc3164",
            tcp_port: 8112,
            tcp_down_port: 8122,
            tcp_ok: 3,
            tcp_down: 1,
        },
    ]
}

/// The httplog frontends, as the shared harness knows them (they log over
/// UDP, to the relay).
fn http_frontends(styles: &[Style]) -> Vec<Frontend> {
    styles
        .iter()
        .map(|s| Frontend {
            name: s.http,
            format: Some("option httplog"),
            port: s.http_port,
            tls: false,
            transport: Transport::Udp,
            shots: s.http_plan.shots(),
        })
        .collect()
}

/// The logging frontends of `tests/e2e/haproxy_relays.cfg.in`, each logging
/// to every port of `relay_inputs`.
fn render_cfg(styles: &[Style], relay_inputs: &[u16]) -> String {
    let mut fes = String::new();
    for s in styles {
        let logs: String = relay_inputs
            .iter()
            .map(|port| format!("    log 127.0.0.1:{port} {}local0\n", s.log_format))
            .collect();
        fes.push_str(&format!(
            "frontend {http}\n    mode http\n    bind 127.0.0.1:{http_port}\n{logs}    \
             option httplog\n    use_backend be_down if {{ path_beg /down }}\n    \
             default_backend be_app\n\n\
             frontend {tcp}\n    mode tcp\n    bind 127.0.0.1:{tcp_port}\n    \
             bind 127.0.0.1:{tcp_down_port}\n{logs}    option tcplog\n    \
             use_backend be_down_tcp if {{ dst_port {tcp_down_port} }}\n    \
             default_backend be_app_tcp\n\n",
            http = s.http,
            http_port = s.http_port,
            tcp = s.tcp,
            tcp_port = s.tcp_port,
            tcp_down_port = s.tcp_down_port,
        ));
    }
    render_haproxy_cfg(HAPROXY_CFG_TEMPLATE, &[("@LOGGING_FRONTENDS@", &fes)])
}

/// Sends every frontend its traffic.
fn send_traffic(checks: &mut Checks, styles: &[Style], http_fes: &[Frontend]) {
    for fe in http_fes {
        send_shots(checks, fe, |_| false);
    }
    for s in styles {
        let addr = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
        for i in 0..s.tcp_ok {
            let req = get(&format!("/tcp/{i}"));
            let got = exchange(addr(s.tcp_port), &req);
            check_answer(checks, s.tcp, addr(s.tcp_port), &req, got, 200);
        }
        for i in 0..s.tcp_down {
            // The server refuses: HAProxy closes the client's connection
            // without a byte.
            let got = raw_exchange(addr(s.tcp_down_port), &get(&format!("/tcp-down/{i}")));
            checks.check(matches!(&got, Ok(b) if b.is_empty()), || {
                format!(
                    "harness: {} {}: want the connection closed without an answer, got {got:?}",
                    s.tcp, s.tcp_down_port
                )
            });
        }
    }
}

/// What every output must show, from HAProxy's deltas: lines per
/// (frontend, status class), the tcplog frontends' under the empty class.
type Want = BTreeMap<(String, String), f64>;

fn expected(before: &Samples, after: &Samples, styles: &[Style]) -> Want {
    let mut want = Want::new();
    for s in styles {
        for class in STATUS_CLASSES {
            let n = haproxy_class_delta(before, after, s.http, class);
            want.insert((s.http.to_string(), class.to_string()), n);
        }
        let f = [("proxy", s.tcp)];
        let sessions = after.sum("haproxy_frontend_sessions_total", &f)
            - before.sum("haproxy_frontend_sessions_total", &f);
        want.insert((s.tcp.to_string(), String::new()), sessions);
    }
    want
}

/// HAProxy counted the tcplog frontends' sessions as planned (the httplog
/// ones are [`check_plan_against_haproxy`]'s).
fn check_tcp_plan(checks: &mut Checks, want: &Want, styles: &[Style]) {
    for s in styles {
        let got = want[&(s.tcp.to_string(), String::new())];
        let plan = f64::from(s.tcp_ok + s.tcp_down);
        checks.check(got == plan, || {
            format!(
                "harness: HAProxy counted {got} sessions on {} but the plan sent {plan}",
                s.tcp
            )
        });
    }
}

// ---------------------------------------------------------------------------
// The relay's side: its outputs and where they lead
// ---------------------------------------------------------------------------

/// Where one of the relay's outputs leads.
enum Sink {
    /// An exporter of its own.
    Exporter(ExporterSpec),
    /// A file, replayed at the end.
    File(PathBuf),
}

/// One output of the relay.
struct Output {
    /// What the relay does, for messages: `omfwd RSYSLOG_ForwardFormat, TCP
    /// octet-counted`.
    what: String,
    sink: Sink,
}

/// An output to a new exporter, the `index`th, and the port it receives on.
fn to_exporter(dir: &Path, index: usize, what: String, transport: Transport) -> (Output, u16) {
    let i = u16::try_from(index).expect("a few outputs");
    let port = PORT_EXPORTER_SYSLOG + i;
    let output = Output {
        what,
        sink: Sink::Exporter(ExporterSpec {
            transport,
            syslog_port: port,
            web: format!("127.0.0.1:{}", PORT_EXPORTER_WEB + i),
            log: dir.join(format!("exporter-{index}.log")),
        }),
    };
    (output, port)
}

fn exporter_specs(outputs: &[Output]) -> Vec<ExporterSpec> {
    outputs
        .iter()
        .filter_map(|o| match &o.sink {
            Sink::Exporter(spec) => Some(spec.clone()),
            Sink::File(_) => None,
        })
        .collect()
}

/// rsyslog's stock templates for forwarding and for files.
const RSYSLOG_FORWARD_TEMPLATES: [&str; 3] = [
    "RSYSLOG_SyslogProtocol23Format",
    "RSYSLOG_ForwardFormat",
    "RSYSLOG_TraditionalForwardFormat",
];
const RSYSLOG_FILE_TEMPLATES: [&str; 2] = ["RSYSLOG_FileFormat", "RSYSLOG_TraditionalFileFormat"];

/// Each forwarding template over each transport, then the files; with the
/// `action(...)` of each.
fn rsyslog_outputs(dir: &Path) -> Vec<(Output, String)> {
    let mut out = Vec::new();
    for template in RSYSLOG_FORWARD_TEMPLATES {
        for (framing, transport) in [
            (Some("octet-counted"), Transport::Tcp),
            (Some("traditional"), Transport::Tcp),
            (None, Transport::Udp),
        ] {
            let what = match framing {
                Some(f) => format!("omfwd {template}, TCP {f}"),
                None => format!("omfwd {template}, UDP"),
            };
            let (output, port) = to_exporter(dir, out.len(), what, transport);
            let protocol = match framing {
                Some(f) => format!("protocol=\"tcp\" TCP_Framing=\"{f}\""),
                None => "protocol=\"udp\"".to_string(),
            };
            let action = format!(
                "action(type=\"omfwd\" target=\"127.0.0.1\" port=\"{port}\" {protocol} \
                 template=\"{template}\")"
            );
            out.push((output, action));
        }
    }
    for template in RSYSLOG_FILE_TEMPLATES {
        let path = dir.join(format!("rsyslog-{template}.log"));
        let action = format!(
            "action(type=\"omfile\" file=\"{}\" template=\"{template}\")",
            one_word(&path)
        );
        let output = Output {
            what: format!("omfile {template}"),
            sink: Sink::File(path),
        };
        out.push((output, action));
    }
    out
}

fn rsyslog_conf(dir: &Path, actions: &[String]) -> String {
    let work = dir.join("rsyslog-work");
    std::fs::create_dir_all(&work).expect("rsyslog's work directory");
    let mut conf = format!(
        "global(workDirectory=\"{}\")\nmodule(load=\"imudp\")\n\
         input(type=\"imudp\" address=\"127.0.0.1\" port=\"{PORT_RSYSLOG_IN}\" \
         ruleset=\"haproxy\")\nruleset(name=\"haproxy\") {{\n",
        one_word(&work)
    );
    for action in actions {
        conf.push_str(&format!("  {action}\n"));
    }
    conf.push_str("}\n");
    conf
}

/// syslog-ng's sources (name, what, port, flags).
const SYSLOG_NG_SOURCES: [(&str, &str, u16, &str); 2] = [
    ("s_bsd", "default source", PORT_SYSLOG_NG_BSD_IN, ""),
    (
        "s_protocol",
        "flags(syslog-protocol) source",
        PORT_SYSLOG_NG_PROTOCOL_IN,
        " flags(syslog-protocol)",
    ),
];

/// Each source to each destination; with the `destination` statement of
/// each and its source's name.
fn syslog_ng_outputs(dir: &Path) -> Vec<(Output, String, &'static str)> {
    let mut out = Vec::new();
    for (source, source_what, _, _) in SYSLOG_NG_SOURCES {
        for (driver, transport, framing) in [
            ("network", Transport::Tcp, "newline framing"),
            ("network", Transport::Udp, ""),
            ("syslog", Transport::Tcp, "octet counting"),
            ("syslog", Transport::Udp, ""),
        ] {
            let index = out.len();
            let label = transport.label();
            let what = if framing.is_empty() {
                format!("{source_what} to {driver}() over {label}")
            } else {
                format!("{source_what} to {driver}() over {label} ({framing})")
            };
            let (output, port) = to_exporter(dir, index, what, transport);
            let destination = format!(
                "destination d_{index} {{ {driver}(\"127.0.0.1\" port({port}) transport({label})); }};"
            );
            out.push((output, destination, source));
        }
        let index = out.len();
        let path = dir.join(format!("syslog-ng-{source}.log"));
        let destination = format!(
            "destination d_{index} {{ file(\"{}\"); }};",
            one_word(&path)
        );
        let output = Output {
            what: format!("{source_what} to file()"),
            sink: Sink::File(path),
        };
        out.push((output, destination, source));
    }
    out
}

fn syslog_ng_conf(version: &str, destinations: &[(String, &str)]) -> String {
    let mut conf = format!("@version: {version}\noptions {{ flush-lines(0); stats-freq(0); }};\n");
    for (name, _, port, flags) in SYSLOG_NG_SOURCES {
        conf.push_str(&format!(
            "source {name} {{ network(ip(127.0.0.1) port({port}) transport(udp){flags}); }};\n"
        ));
    }
    for (destination, _) in destinations {
        conf.push_str(destination);
        conf.push('\n');
    }
    for (name, _, _, _) in SYSLOG_NG_SOURCES {
        let routes: String = destinations
            .iter()
            .enumerate()
            .filter(|(_, (_, source))| *source == name)
            .map(|(i, _)| format!(" destination(d_{i});"))
            .collect();
        conf.push_str(&format!("log {{ source({name});{routes} }};\n"));
    }
    conf
}

// ---------------------------------------------------------------------------
// Outer tests: re-execute this binary in a private network namespace
// ---------------------------------------------------------------------------

#[test]
fn rsyslog_relays() {
    run_in_private_netns(&NetnsRun {
        outer: RSYSLOG_OUTER,
        inner: RSYSLOG_INNER,
        tools: &[
            ("ip", "iproute2"),
            ("haproxy", "haproxy"),
            ("rsyslogd", "rsyslog"),
        ],
        work_dir_prefix: "hle-relays-rsyslog",
        limit: INNER_RUN_LIMIT,
    });
}

#[test]
fn syslog_ng_relays() {
    if let Err(why) = SyslogNg::find() {
        skip_or_fail(SYSLOG_NG_OUTER, &why);
        return;
    }
    run_in_private_netns(&NetnsRun {
        outer: SYSLOG_NG_OUTER,
        inner: SYSLOG_NG_INNER,
        tools: &[("ip", "iproute2"), ("haproxy", "haproxy")],
        work_dir_prefix: "hle-relays-syslog-ng",
        limit: INNER_RUN_LIMIT,
    });
}

// ---------------------------------------------------------------------------
// Inner tests: everything on loopback inside the namespace
// ---------------------------------------------------------------------------

#[test]
#[ignore = "inner half of rsyslog_relays: runs only inside its private network namespace"]
fn rsyslog_relays_inner() {
    if !inner_may_run(RSYSLOG_INNER, RSYSLOG_OUTER) {
        return;
    }
    let inner = Inner::new("hle-relays-rsyslog");
    let (outputs, actions): (Vec<Output>, Vec<String>) =
        rsyslog_outputs(&inner.dir).into_iter().unzip();
    let exporters = start_exporters(&exporter_specs(&outputs));
    inner.step(&format!("{} exporters ready", exporters.len()));

    let conf_path = inner.dir.join("rsyslog.conf");
    std::fs::write(&conf_path, rsyslog_conf(&inner.dir, &actions)).expect("write rsyslog.conf");
    let log_path = inner.dir.join("rsyslog.log");
    let log = std::fs::File::create(&log_path).expect("rsyslog log");
    let rsyslogd = find_program("rsyslogd").expect("rsyslogd");
    let relay = ChildGuard::spawn(
        "rsyslogd",
        Command::new(rsyslogd)
            .arg("-n")
            .arg("-f")
            .arg(&conf_path)
            .arg("-i")
            .arg(inner.dir.join("rsyslog.pid"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log file"))
            .stderr(log),
    )
    .expect("spawn rsyslogd");
    let relay = Relay {
        name: "rsyslog",
        child: relay,
        log: log_path,
        inputs: vec![PORT_RSYSLOG_IN],
    };
    through_relay(&inner, relay, &outputs, exporters);
}

#[test]
#[ignore = "inner half of syslog_ng_relays: runs only inside its private network namespace"]
fn syslog_ng_relays_inner() {
    if !inner_may_run(SYSLOG_NG_INNER, SYSLOG_NG_OUTER) {
        return;
    }
    let inner = Inner::new("hle-relays-syslog-ng");
    let syslog_ng = SyslogNg::find().unwrap_or_else(|e| panic!("{e}"));
    let mut outputs = Vec::new();
    let mut destinations = Vec::new();
    for (output, destination, source) in syslog_ng_outputs(&inner.dir) {
        outputs.push(output);
        destinations.push((destination, source));
    }
    let exporters = start_exporters(&exporter_specs(&outputs));
    inner.step(&format!("{} exporters ready", exporters.len()));

    let conf_path = inner.dir.join("syslog-ng.conf");
    std::fs::write(
        &conf_path,
        syslog_ng_conf(&syslog_ng.version, &destinations),
    )
    .expect("write syslog-ng.conf");
    let log_path = inner.dir.join("syslog-ng.log");
    let log = std::fs::File::create(&log_path).expect("syslog-ng log");
    let relay = ChildGuard::spawn(
        "syslog-ng",
        syslog_ng
            .command()
            .arg("-F")
            .arg("-f")
            .arg(&conf_path)
            .arg("-R")
            .arg(inner.dir.join("syslog-ng.persist"))
            .arg("-p")
            .arg(inner.dir.join("syslog-ng.pid"))
            .arg("-c")
            .arg(inner.dir.join("syslog-ng.ctl"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log file"))
            .stderr(log),
    )
    .expect("spawn syslog-ng");
    let relay = Relay {
        name: "syslog-ng",
        child: relay,
        log: log_path,
        inputs: vec![PORT_SYSLOG_NG_BSD_IN, PORT_SYSLOG_NG_PROTOCOL_IN],
    };
    through_relay(&inner, relay, &outputs, exporters);
}

/// A running relay.
struct Relay {
    name: &'static str,
    child: ChildGuard,
    log: PathBuf,
    /// Its UDP inputs, each of which gets every line HAProxy logs.
    inputs: Vec<u16>,
}

/// Steps 3 to 6 of the module's description, once the exporters and the
/// relay run.
fn through_relay(inner: &Inner, mut relay: Relay, outputs: &[Output], exporters: Vec<ChildGuard>) {
    let bound = wait_until(Duration::from_secs(20), || {
        if let Some(st) = relay.child.try_wait() {
            return Some(Err(format!("{} exited early: {st}", relay.name)));
        }
        relay.inputs.iter().all(|p| udp_bound(*p)).then_some(Ok(()))
    });
    match bound {
        Ok(Ok(())) => {}
        Ok(Err(e)) => panic!("{e}\nits log:\n{}", tail_file(&relay.log, 40)),
        Err(t) => panic!(
            "{} did not bind its inputs {:?}: {t}\nits log:\n{}",
            relay.name,
            relay.inputs,
            tail_file(&relay.log, 40)
        ),
    }
    inner.step(&format!(
        "{} listens on UDP {:?}, with {} outputs",
        relay.name,
        relay.inputs,
        outputs.len()
    ));

    // --- HAProxy and the traffic ---------------------------------------------
    let styles = styles();
    let http_fes = http_frontends(&styles);
    let (haproxy, before) = inner.start_haproxy(&render_cfg(&styles, &relay.inputs));
    let mut checks = Checks::default();
    send_traffic(&mut checks, &styles, &http_fes);
    inner.step("sent the traffic");
    let after = inner.haproxy_after(&before, &http_fes);
    check_plan_against_haproxy(&mut checks, &before, &after, &http_fes);
    let want = expected(&before, &after, &styles);
    check_tcp_plan(&mut checks, &want, &styles);
    let total: f64 = want.values().sum();

    // --- every output gets every line ------------------------------------------
    let delivered = wait_until(DELIVERY_TIMEOUT, || {
        outputs
            .iter()
            .all(|o| lines_at(&o.sink) >= total)
            .then_some(())
    });
    if let Err(t) = delivered {
        let short: Vec<String> = outputs
            .iter()
            .map(|o| (o, lines_at(&o.sink)))
            .filter(|(_, n)| *n < total)
            .map(|(o, n)| format!("{}: {n}", o.what))
            .collect();
        println!("not every output got the {total} lines ({t}): {short:?}; comparing anyway");
    }
    inner.step(&format!("every output has its {total} lines"));

    // --- comparisons -----------------------------------------------------------
    let mut reports = Vec::new();
    for output in outputs {
        let (samples, transport, log) = match &output.sink {
            Sink::Exporter(spec) => {
                let samples = scrape(&spec.web)
                    .map(|(_, s)| s)
                    .unwrap_or_else(|e| panic!("{}: {e}", output.what));
                (samples, spec.transport.label(), tail_file(&spec.log, 20))
            }
            Sink::File(path) => {
                let (samples, stderr) = replay_file(path);
                (samples, "replay", stderr)
            }
        };
        let failed_before = checks.failures.len();
        check_output(&mut checks, &output.what, &samples, &want, total, transport);
        if checks.failures.len() > failed_before {
            reports.push(format!(
                "{}:\n  first lines:\n{}\n  exporter's log (tail):\n{log}",
                output.what,
                first_lines(&output.sink)
            ));
        }
    }
    inner.step("compared every output with HAProxy's counters");
    checks.check(relay.child.try_wait().is_none(), || {
        format!("{} exited during the test", relay.name)
    });
    drop(haproxy);
    drop(exporters);
    if !checks.failures.is_empty() {
        panic!(
            "{} of {} checks failed:\n  - {}\n\n{}\n\n{} log (tail):\n{}\n\nHAProxy log (tail):\n{}",
            checks.failures.len(),
            checks.failures.len() + checks.passed,
            checks.failures.join("\n  - "),
            reports.join("\n\n"),
            relay.name,
            tail_file(&relay.log, 40),
            tail_file(&inner.haproxy_log, 40),
        );
    }
    inner.step(&format!("all {} checks passed", checks.passed));
}

/// Lines an output has delivered so far: that its exporter has counted,
/// rejected or ignored, or in its file.
fn lines_at(sink: &Sink) -> f64 {
    match sink {
        Sink::Exporter(spec) => scrape(&spec.web)
            .map(|(_, s)| s.sum(M_COUNTED, &[]) + s.sum(M_REJECTED, &[]) + s.sum(M_IGNORED, &[]))
            .unwrap_or(0.0),
        Sink::File(path) => std::fs::read(path)
            .map(|b| b.iter().filter(|&&c| c == b'\n').count() as f64)
            .unwrap_or(0.0),
    }
}

/// `haproxy-log-exporter replay FILE`: the exposition's samples and the
/// summary it prints to standard error.
fn replay_file(path: &Path) -> (Samples, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_haproxy-log-exporter"));
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("HLE_") {
            cmd.env_remove(k);
        }
    }
    cmd.arg("replay")
        .arg(path)
        .env("HLE_REQUESTS_TOTAL_LABELS", "frontend_name,status_class");
    let out = run_with_timeout(&mut cmd, None, REPLAY_TIMEOUT)
        .unwrap_or_else(|e| panic!("replay {}: {e}", path.display()));
    assert!(
        out.status.success(),
        "replay {}: {}",
        path.display(),
        out.describe()
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let samples = parse_exposition(&text)
        .unwrap_or_else(|e| panic!("replay {}: its exposition: {e}", path.display()));
    (samples, String::from_utf8_lossy(&out.stderr).into_owned())
}

/// The first lines a failing output delivered, for the report: from its file,
/// or from nothing (an exporter keeps no lines; its log shows rejected ones).
fn first_lines(sink: &Sink) -> String {
    match sink {
        Sink::File(path) => String::from_utf8_lossy(&std::fs::read(path).unwrap_or_default())
            .lines()
            .take(3)
            .map(|l| format!("    {l:?}"))
            .collect::<Vec<_>>()
            .join("\n"),
        Sink::Exporter(_) => "    (see the rejected samples in the exporter's log)".to_string(),
    }
}

/// One output against HAProxy: `haproxy_log_requests_total` per frontend and
/// class, no other series, and every line received over `transport` counted.
fn check_output(
    checks: &mut Checks,
    what: &str,
    s: &Samples,
    want: &Want,
    total: f64,
    transport: &str,
) {
    for ((fe, class), n) in want {
        let got = s.sum(
            M_REQUESTS,
            &[("frontend_name", fe), ("status_class", class)],
        );
        checks.eq_f64(
            &format!("{what}: {M_REQUESTS}{{frontend_name={fe:?},status_class={class:?}}}"),
            got,
            *n,
        );
    }
    for series in s.find(M_REQUESTS, &[]) {
        let label = |l: &str| series.labels.get(l).cloned().unwrap_or_default();
        let key = (label("frontend_name"), label("status_class"));
        checks.check(series.labels.len() == 2 && want.contains_key(&key), || {
            format!("{what}: unexpected series {series}")
        });
    }
    let received = s.sum(M_RECEIVED, &[]);
    let counted = s.sum(M_COUNTED, &[]);
    let rejected = s.sum(M_REJECTED, &[]);
    let ignored = s.sum(M_IGNORED, &[]);
    println!(
        "  {what:<66} received {received:>3} counted {counted:>3} rejected {rejected:>3} \
         ignored {ignored:>3} (HAProxy logged {total})"
    );
    checks.eq_f64(
        &format!("{what}: {M_RECEIVED}{{transport={transport:?}}}"),
        s.sum(M_RECEIVED, &[("transport", transport)]),
        total,
    );
    checks.eq_f64(&format!("{what}: {M_RECEIVED}"), received, total);
    checks.eq_f64(&format!("{what}: {M_COUNTED}"), counted, total);
    checks.eq_f64(&format!("{what}: {M_REJECTED}"), rejected, 0.0);
    for r in s.find(M_REJECTED, &[]).filter(|r| r.value != 0.0) {
        checks.check(false, || format!("{what}: lines rejected: {r}"));
    }
    checks.eq_f64(&format!("{what}: {M_IGNORED}"), ignored, 0.0);
}

// ---------------------------------------------------------------------------
// The captures, without relays
// ---------------------------------------------------------------------------

/// Every capture of `tests/fixtures/relay` holds, per its README, 7 httplog
/// lines of `fe_http_STYLE` (2xx: 2, 4xx: 3, 5xx: 2) and 2 tcplog lines of
/// `fe_tcp_STYLE`; each is counted exactly, through the same pipeline as the
/// listeners. Octet-counted streams are cut into their frames first, and a
/// datagram's or frame's own final newline goes as a line's would.
#[test]
fn relay_captures_are_counted() {
    let scratch = TempDir::new("hle-relay-captures").expect("temp dir");
    let env: HashMap<String, String> = [(
        "HLE_REQUESTS_TOTAL_LABELS".to_string(),
        "frontend_name,status_class".to_string(),
    )]
    .into();
    let config = Config::from_env(&env).expect("config");
    let mut checks = Checks::default();
    let mut names: Vec<String> = std::fs::read_dir(FIXTURES)
        .expect("tests/fixtures/relay")
        .flatten()
        .filter(|e| e.path().is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "README.md")
        .collect();
    names.sort();
    for name in &names {
        let path = Path::new(FIXTURES).join(name);
        let input = if name.ends_with(".tcp-octet") {
            let stream = std::fs::read(&path).expect("read the capture");
            let frames = octet_frames(&stream).unwrap_or_else(|e| panic!("{name}: {e}"));
            let mut lines = Vec::new();
            for frame in frames {
                lines.extend_from_slice(frame.strip_suffix(b"\n").unwrap_or(frame));
                lines.push(b'\n');
            }
            let lines_path = scratch.path().join(name);
            std::fs::write(&lines_path, lines).expect("write the frames");
            lines_path
        } else {
            path
        };
        let style = ["local", "rfc5424", "rfc3164"]
            .into_iter()
            .find(|s| name.contains(&format!("_{s}.")))
            .unwrap_or_else(|| panic!("{name}: no header style in the name"));
        let mut exposition = Vec::new();
        let summary = replay::run(
            &config,
            &[input.to_string_lossy().into_owned()],
            &mut exposition,
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        let s = parse_exposition(&String::from_utf8_lossy(&exposition))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let http = format!("fe_http_{style}");
        let tcp = format!("fe_tcp_{style}");
        let want: Want = [
            ((http.clone(), "2xx".to_string()), 2.0),
            ((http.clone(), "4xx".to_string()), 3.0),
            ((http, "5xx".to_string()), 2.0),
            ((tcp, String::new()), 2.0),
        ]
        .into();
        let failed_before = checks.failures.len();
        check_output(&mut checks, name, &s, &want, 9.0, "replay");
        if checks.failures.len() > failed_before {
            println!("    {summary}");
        }
    }
    // Every relay, template and destination of the README, for each style.
    let expected_files = 3 * (RSYSLOG_FORWARD_TEMPLATES.len() * 3 + RSYSLOG_FILE_TEMPLATES.len())
        + 3 * SYSLOG_NG_SOURCES.len() * 5;
    checks.check(names.len() == expected_files, || {
        format!(
            "{} captures in {FIXTURES}, want {expected_files}",
            names.len()
        )
    });
    assert!(
        checks.failures.is_empty(),
        "{} of {} checks failed:\n  - {}",
        checks.failures.len(),
        checks.failures.len() + checks.passed,
        checks.failures.join("\n  - ")
    );
}
