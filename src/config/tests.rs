use super::*;
use crate::metrics::{Kind, Label, METRICS};

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn defaults() {
    let config = Config::from_env(&HashMap::new()).unwrap();
    assert_eq!(
        config.syslog_udp_addr,
        Some("127.0.0.1:5140".parse().unwrap())
    );
    assert_eq!(
        config.syslog_tcp_addr,
        Some("127.0.0.1:5140".parse().unwrap())
    );
    assert_eq!(config.web_listen_addr, "0.0.0.0:9129".parse().unwrap());
    assert_eq!(config.web_telemetry_path, "/metrics");
    assert_eq!(config.max_line_bytes, 65536);
    assert_eq!(config.tcp_idle_timeout, Some(Duration::from_secs(600)));
    assert_eq!(config.syslog_tcp_framing, Framing::Auto);
    assert_eq!(config.metrics.len(), METRICS.len());
    let requests = &config.metrics[0];
    assert_eq!(requests.def.name, "requests_total");
    assert_eq!(
        requests.labels,
        vec![
            Label::StatusCode,
            Label::StatusClass,
            Label::BackendName,
            Label::ServerName
        ]
    );
    let histogram = config
        .metrics
        .iter()
        .find(|m| m.def.kind == Kind::Histogram)
        .unwrap();
    assert_eq!(histogram.def.name, "request_wait_seconds");
    assert!(histogram.labels.is_empty());
}

/// `--help`, `check-config` and the parsing read one table, so what can still go wrong is a
/// documented variable the parsing does not read, or reads with another default.
#[test]
fn documented_defaults_match_the_parsed_ones() {
    let defaults = Config::from_env(&HashMap::new()).unwrap();
    let documented: HashMap<String, String> = variables()
        .into_iter()
        .map(|var| (var.name, var.default))
        .collect();
    assert_eq!(
        documented.len(),
        variables().len(),
        "a name is listed twice"
    );
    let mut explicit = Config::from_env(&documented).unwrap();
    assert!(explicit.udp_recv_buffer_explicit);
    explicit.udp_recv_buffer_explicit = false;
    assert_eq!(explicit, defaults);

    for var in variables() {
        match Config::from_env(&env(&[(&var.name, "\u{1}nonsense")])) {
            Ok(config) => assert_ne!(config, defaults, "{} is not read", var.name),
            Err(err) => assert!(
                err.problems.iter().any(|p| p.contains(&var.name)),
                "{}: {err}",
                var.name
            ),
        }
    }
}

#[test]
fn kubernetes_service_links_are_not_unknown_variables() {
    let links = [
        ("HLE_SERVICE_HOST", "10.0.0.1"),
        ("HLE_SERVICE_PORT", "9129"),
        ("HLE_SERVICE_PORT_METRICS", "9129"),
        ("HLE_PORT", "tcp://10.0.0.1:9129"),
        ("HLE_PORT_9129_TCP", "tcp://10.0.0.1:9129"),
        ("HLE_METRICS_PORT_5140_UDP_PROTO", "udp"),
        ("HLE_PORT_5140_UDP_ADDR", "10.0.0.1"),
    ];
    assert!(Config::from_env(&env(&links)).is_ok());
    for typo in ["HLE_PORT_9129", "HLE_WEB_PORT_X_TCP", "HLE_LISTEN_PORTS"] {
        let err = Config::from_env(&env(&[(typo, "1")])).unwrap_err();
        assert!(err.to_string().contains(typo), "{err}");
    }
}

#[test]
fn an_unknown_variable_names_the_nearest_known_one() {
    let problem = |name: &str| {
        let err = Config::from_env(&env(&[(name, "1")])).unwrap_err();
        assert_eq!(err.problems.len(), 1, "{err}");
        err.problems[0].clone()
    };
    assert_eq!(
        problem("HLE_REQUEST_TOTAL_LABELS"),
        "HLE_REQUEST_TOTAL_LABELS: unknown variable; did you mean `HLE_REQUESTS_TOTAL_LABELS`? (see --help for the list)"
    );
    for (typo, meant) in [
        ("HLE_LOG_LEVL", "HLE_LOG_LEVEL"),
        ("HLE_LGO_LEVEL", "HLE_LOG_LEVEL"),
        ("HLE_log_level", "HLE_LOG_LEVEL"),
        ("HLE_SYSLOG_UPD_ADDR", "HLE_SYSLOG_UDP_ADDR"),
        ("HLE_WEB_LISTEN_ADDRESS", "HLE_WEB_LISTEN_ADDR"),
        ("HLE_SERIES_TTLS", "HLE_SERIES_TTL"),
        (
            "HLE_RESPONSE_PROCESSING_SECOND_BUCKETS",
            "HLE_RESPONSE_PROCESSING_SECONDS_BUCKETS",
        ),
        (
            "HLE_REQUEST_WAIT_SECONDS_LABEL",
            "HLE_REQUEST_WAIT_SECONDS_LABELS",
        ),
    ] {
        let problem = problem(typo);
        assert!(
            problem.contains(&format!("did you mean `{meant}`?")),
            "{typo}: {problem}"
        );
    }
    // Too far from every name to be a typo of one.
    for far in [
        "HLE_FOO",
        "HLE_LISTEN",
        "HLE_X",
        "HLE_",
        "HLE_COMPLETELY_DIFFERENT_THING",
    ] {
        let problem = problem(far);
        assert_eq!(
            problem,
            format!("{far}: unknown variable (see --help for the list)")
        );
    }
    // A counter has no buckets: never suggested, the name gets its own message.
    let problem = problem("HLE_REQUESTS_TOTAL_BUCKET");
    assert!(!problem.contains("HLE_REQUESTS_TOTAL_BUCKETS"), "{problem}");
}

#[test]
fn empty_address_disables_a_listener() {
    let config = Config::from_env(&env(&[("HLE_SYSLOG_TCP_ADDR", "")])).unwrap();
    assert_eq!(config.syslog_tcp_addr, None);
    assert!(config.syslog_udp_addr.is_some());
}

#[test]
fn labels_buckets_and_enabled_metrics() {
    let config = Config::from_env(&env(&[
        ("HLE_REQUESTS_TOTAL_LABELS", "status_code, frontend_name"),
        ("HLE_RESPONSE_PROCESSING_SECONDS_BUCKETS", "0.1,1,10"),
        ("HLE_RESPONSE_PROCESSING_SECONDS_LABELS", ""),
        (
            "HLE_ENABLED_METRICS",
            "haproxy_log_requests_total,response_processing_seconds",
        ),
    ]))
    .unwrap();
    assert_eq!(config.metrics.len(), 2);
    assert_eq!(
        config.metrics[0].labels,
        vec![Label::StatusCode, Label::FrontendName]
    );
    assert_eq!(config.metrics[1].buckets, vec![0.1, 1.0, 10.0]);
    assert!(config.metrics[1].labels.is_empty());
}

#[test]
fn the_old_meanings_of_renamed_variables_point_to_the_new_names() {
    let err = Config::from_env(&env(&[
        ("HLE_LOG_FORMAT", "json"),
        ("HLE_HAPROXY_LOG_FORMAT", "clf"),
    ]))
    .unwrap_err();
    assert_eq!(
        err.problems,
        vec![
            "HLE_LOG_FORMAT=\"json\": HLE_LOG_FORMAT is HAProxy's log format; the exporter's own log output is HLE_LOG_OUTPUT=json",
            "HLE_HAPROXY_LOG_FORMAT: renamed, use HLE_LOG_FORMAT",
        ]
    );
    let config = Config::from_env(&env(&[("HLE_LOG_OUTPUT", "json")])).unwrap();
    assert_eq!(config.log_output, LogOutput::Json);
}

#[test]
fn every_problem_is_reported_at_once() {
    let err = Config::from_env(&env(&[
        ("HLE_SYSLOG_UDP_ADDR", "nonsense"),
        ("HLE_WEB_LISTEN_ADDR", "127.0.0.1"),
        ("HLE_MAX_LINE_BYTES", "10"),
        ("HLE_TCP_IDLE_TIMEOUT", "5 weeks"),
        ("HLE_SYSLOG_TCP_FRAMING", "octet"),
        ("HLE_WEB_TELEMETRY_PATH", "metrics"),
        ("HLE_LOG_OUTPUT", "xml"),
        (
            "HLE_REQUESTS_TOTAL_LABELS",
            "status,backend_name,backend_name",
        ),
        ("HLE_SESSION_DURATION_SECONDS_BUCKETS", "1,0.5"),
        ("HLE_REQUESTS_TOTAL_BUCKETS", "1"),
        ("HLE_ENABLED_METRICS", "requests_total,latency"),
        ("HLE_REQUEST_TOTAL_LABELS", "status_code"),
    ]))
    .unwrap_err();
    let text = err.to_string();
    let expected = [
        "HLE_SYSLOG_UDP_ADDR=\"nonsense\"",
        "HLE_WEB_LISTEN_ADDR=\"127.0.0.1\"",
        "HLE_MAX_LINE_BYTES=\"10\"",
        "HLE_TCP_IDLE_TIMEOUT",
        "HLE_SYSLOG_TCP_FRAMING=\"octet\": must be auto, octet-count or lf",
        "HLE_WEB_TELEMETRY_PATH",
        "HLE_LOG_OUTPUT=\"xml\"",
        "unknown label \"status\"; valid: status_code,status_class,frontend_name",
        "label \"backend_name\" is listed twice",
        "HLE_SESSION_DURATION_SECONDS_BUCKETS: buckets must be strictly ascending",
        "HLE_REQUESTS_TOTAL_BUCKETS: haproxy_log_requests_total is a counter",
        "unknown metric \"latency\"; valid: all or requests_total,bytes_read_total",
        "HLE_REQUEST_TOTAL_LABELS: unknown variable; did you mean `HLE_REQUESTS_TOTAL_LABELS`?",
    ];
    for want in expected {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
    assert_eq!(err.problems.len(), expected.len(), "{text}");
    assert!(
        text.starts_with("invalid configuration (13 problems):\n"),
        "{text}"
    );
}

#[test]
fn one_problem_is_one_problem() {
    let err = Config::from_env(&env(&[("HLE_LOG_OUTPUT", "xml")])).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("invalid configuration (1 problem):\n  - HLE_LOG_OUTPUT"),
        "{err}"
    );
}

#[test]
fn no_listener_at_all_is_a_problem() {
    let err = Config::from_env(&env(&[
        ("HLE_SYSLOG_UDP_ADDR", ""),
        ("HLE_SYSLOG_TCP_ADDR", " "),
    ]))
    .unwrap_err();
    assert_eq!(err.problems.len(), 1, "{err}");
    let unix_only = Config::from_env(&env(&[
        ("HLE_SYSLOG_UDP_ADDR", ""),
        ("HLE_SYSLOG_TCP_ADDR", ""),
        ("HLE_SYSLOG_UNIX_PATH", "/run/haproxy-log/log.sock"),
        ("HLE_SYSLOG_UNIX_MODE", "0666"),
    ]))
    .unwrap();
    assert_eq!(unix_only.syslog_unix_mode, 0o666);
    let err = Config::from_env(&env(&[("HLE_SYSLOG_UNIX_MODE", "rw-rw----")])).unwrap_err();
    assert!(err.problems[0].starts_with("HLE_SYSLOG_UNIX_MODE"), "{err}");
}

#[test]
fn log_formats_by_name_string_or_list() {
    let parse = |value: &str| Config::from_env(&env(&[("HLE_LOG_FORMAT", value)]));
    assert_eq!(parse("httplog").unwrap().parser, Parser::default());
    assert_eq!(parse("httplog,tcplog").unwrap().parser, Parser::default());
    let clf = Format::named_or_compiled("clf").unwrap();
    assert_eq!(
        parse("clf, httplog").unwrap().parser,
        Parser::new(vec![LineFormat::Compiled(clf), LineFormat::BuiltIn])
    );
    let custom = "%ci:%cp %ST %[var(txn.route),lower]";
    let parsed = parse(&format!("{custom}\nhttplog")).unwrap().parser;
    assert_eq!(
        parsed,
        Parser::new(vec![
            LineFormat::Compiled(Format::named_or_compiled(custom).unwrap()),
            LineFormat::BuiltIn
        ])
    );
    let err = parse("%ci %Xq").unwrap_err().to_string();
    assert!(
        err.contains("unknown log-format alias %Xq (column 6)"),
        "{err}"
    );
    assert!(err.contains("\n    %ci %Xq\n         ^"), "{err}");
    assert!(parse(" ").is_err());
}

#[test]
fn custom_labels_from_format_fields() {
    let config = Config::from_env(&env(&[
        (
            "HLE_LOG_FORMAT",
            "%ci:%cp %ft %ST %[var(txn.route),lower] %hr",
        ),
        (
            "HLE_CUSTOM_LABELS",
            "route=%[var(txn.route),lower], host=%hr#0",
        ),
        ("HLE_REQUESTS_TOTAL_LABELS", "route,host,status_code"),
    ]))
    .unwrap();
    let names: Vec<&str> = config.metrics[0].labels.iter().map(|l| l.name()).collect();
    assert_eq!(names, ["route", "host", "status_code"]);
    let record = match config
        .parser
        .parse(b"1.2.3.4:5 fe 200 /api {h.example|curl}")
    {
        Ok(crate::haproxy::Entry::Traffic(r)) => r,
        other => panic!("{other:?}"),
    };
    let values: Vec<&str> = config.metrics[0]
        .labels
        .iter()
        .map(|l| l.value(&record))
        .collect();
    assert_eq!(values, ["/api", "h.example", "200"]);

    let err = Config::from_env(&env(&[
        (
            "HLE_CUSTOM_LABELS",
            "route=%[var(txn.route)] 9x=%ci status_code=%ST",
        ),
        ("HLE_REQUESTS_TOTAL_LABELS", "rout"),
    ]))
    .unwrap_err()
    .to_string();
    assert!(err.contains("\"9x\" is not a valid label name"), "{err}");
    assert!(
        err.contains("label \"status_code\" is defined twice"),
        "{err}"
    );
    assert!(
        err.contains("\"%[var(txn.route)]\" is not a field of any format"),
        "{err}"
    );
    assert!(
        err.contains("unknown label \"rout\"; valid: status_code,"),
        "{err}"
    );
    assert!(err.contains(",termination_state,route"), "{err}");
}

#[test]
fn durations() {
    assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
    assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
    assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
    assert_eq!(parse_duration(" 00 "), Ok(Duration::ZERO));
    assert_eq!(parse_duration("0ms"), Ok(Duration::ZERO));
    assert_eq!(
        parse_duration("30"),
        Err("a duration needs a unit: ms, s, m or h, e.g. 30s or 30ms; only 0 goes without".into())
    );
    assert!(parse_duration("99999999999999999999").is_err());
    assert!(parse_duration("99999999999999999h").is_err());
    assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
    assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
    assert!(parse_duration("").is_err());
    assert!(parse_duration("5d").is_err());
    assert!(parse_duration("-1s").is_err());
}

#[test]
fn help_lists_per_metric_variables() {
    let names: Vec<String> = variables().into_iter().map(|v| v.name).collect();
    assert!(names.contains(&"HLE_REQUESTS_TOTAL_LABELS".to_string()));
    assert!(names.contains(&"HLE_RESPONSE_PROCESSING_SECONDS_BUCKETS".to_string()));
    assert!(!names.contains(&"HLE_REQUESTS_TOTAL_BUCKETS".to_string()));
}

#[test]
fn the_spoe_agent_is_a_listener_of_its_own() {
    let spoe_only = Config::from_env(&env(&[
        ("HLE_SYSLOG_UDP_ADDR", ""),
        ("HLE_SYSLOG_TCP_ADDR", ""),
        ("HLE_SPOE_ADDR", "127.0.0.1:12345"),
        // A label that only SPOE gives: no log format has the field.
        ("HLE_CUSTOM_LABELS", "tenant=%[req.hdr(x-tenant)]"),
    ]))
    .unwrap();
    let spoe = spoe_only.spoe.unwrap();
    assert_eq!(spoe.addr, "127.0.0.1:12345".parse().unwrap());
    assert_eq!(
        (spoe.max_frame_size, spoe.max_connections, spoe.metrics),
        (16380, 256, true)
    );
    assert_eq!(spoe_only.custom_labels, vec!["tenant"]);
    assert_eq!(Config::from_env(&HashMap::new()).unwrap().spoe, None);

    let err = Config::from_env(&env(&[
        ("HLE_SPOE_ADDR", "0.0.0.0:9129"),
        ("HLE_SPOE_MAX_FRAME_SIZE", "255"),
        ("HLE_SPOE_MAX_CONNECTIONS", "0"),
        ("HLE_SPOE_METRICS", "yes"),
    ]))
    .unwrap_err();
    let problems = err.problems.join("\n");
    for want in [
        "HLE_SPOE_MAX_FRAME_SIZE=\"255\"",
        "HLE_SPOE_MAX_CONNECTIONS=\"0\"",
        "HLE_SPOE_METRICS=\"yes\"",
        "HLE_WEB_LISTEN_ADDR and HLE_SPOE_ADDR are both 0.0.0.0:9129",
    ] {
        assert!(problems.contains(want), "{want}: {problems}");
    }
    assert_eq!(err.problems.len(), 4, "{problems}");
    // Without the agent, a label's field must be in a format.
    assert!(Config::from_env(&env(&[(
        "HLE_CUSTOM_LABELS",
        "tenant=%[req.hdr(x-tenant)]"
    )]))
    .is_err());
}

#[test]
fn the_receivers_guards_are_read_and_checked() {
    let config = Config::from_env(&HashMap::new()).unwrap();
    assert_eq!(config.tcp_buffer_budget_bytes, 256 << 20);
    assert!(!config.syslog_allowed_sources.is_restricted());
    let config = Config::from_env(&env(&[
        ("HLE_TCP_BUFFER_BUDGET_BYTES", "64MiB"),
        ("HLE_SYSLOG_ALLOWED_SOURCES", "10.0.0.0/8, 2001:db8::1"),
        ("HLE_SPOE_ADDR", "127.0.0.1:12345"),
        ("HLE_SPOE_ALLOWED_SOURCES", "127.0.0.1"),
    ]))
    .unwrap();
    assert_eq!(config.tcp_buffer_budget_bytes, 64 << 20);
    let allowed = &config.syslog_allowed_sources;
    assert!(allowed.allows("10.1.2.3".parse().unwrap()));
    assert!(!allowed.allows("127.0.0.1".parse().unwrap()));
    let spoe = config.spoe.unwrap().allowed_sources;
    assert!(spoe.allows("127.0.0.1".parse().unwrap()));
    assert!(!spoe.allows("10.1.2.3".parse().unwrap()));

    let err = Config::from_env(&env(&[
        ("HLE_MAX_LINE_BYTES", "1048576"),
        ("HLE_TCP_BUFFER_BUDGET_BYTES", "512KiB"),
        ("HLE_SYSLOG_ALLOWED_SOURCES", "10.0.0.0/40,localhost, ::1"),
        ("HLE_SPOE_ALLOWED_SOURCES", "fd00::/200"),
    ]))
    .unwrap_err();
    let problems = err.problems.join("\n");
    for want in [
        "HLE_TCP_BUFFER_BUDGET_BYTES=\"512KiB\" is less than HLE_MAX_LINE_BYTES=1048576",
        "HLE_SYSLOG_ALLOWED_SOURCES: \"10.0.0.0/40\" is not an address or a network",
        "HLE_SYSLOG_ALLOWED_SOURCES: \"localhost\" is not an address or a network",
        "HLE_SPOE_ALLOWED_SOURCES: \"fd00::/200\" is not an address or a network",
    ] {
        assert!(problems.contains(want), "{want}: {problems}");
    }
    assert_eq!(err.problems.len(), 4, "{problems}");
}

#[test]
fn the_http_limits_and_their_problems() {
    let config = Config::from_env(&HashMap::new()).unwrap();
    assert_eq!(
        config.web,
        WebConfig {
            max_connections: 64,
            read_header_timeout: Duration::from_secs(10),
            max_header_bytes: 16384,
            max_connection_age: Some(Duration::from_secs(600)),
            scrape_cache_ttl: Duration::ZERO,
        }
    );
    let config = Config::from_env(&env(&[
        ("HLE_WEB_MAX_CONNECTION_AGE", "0"),
        ("HLE_WEB_SCRAPE_CACHE_TTL", "1s"),
        ("HLE_WEB_READ_HEADER_TIMEOUT", "500ms"),
    ]))
    .unwrap();
    assert_eq!(config.web.max_connection_age, None);
    assert_eq!(config.web.scrape_cache_ttl, Duration::from_secs(1));
    assert_eq!(config.web.read_header_timeout, Duration::from_millis(500));

    let err = Config::from_env(&env(&[
        ("HLE_WEB_MAX_CONNECTIONS", "0"),
        ("HLE_WEB_READ_HEADER_TIMEOUT", "0"),
        ("HLE_WEB_MAX_REQUEST_HEADER_BYTES", "8191"),
        ("HLE_WEB_MAX_CONNECTION_AGE", "soon"),
        ("HLE_WEB_SCRAPE_CACHE_TTL", "2m"),
    ]))
    .unwrap_err();
    let text = err.to_string();
    for want in [
        "HLE_WEB_MAX_CONNECTIONS=\"0\": expected a whole number from 1",
        "HLE_WEB_READ_HEADER_TIMEOUT=\"0\": expected from 1ms",
        "HLE_WEB_MAX_REQUEST_HEADER_BYTES=\"8191\": expected a whole number from 8192",
        "HLE_WEB_MAX_CONNECTION_AGE=\"soon\"",
        "HLE_WEB_SCRAPE_CACHE_TTL=\"2m\": expected from 0ns to 60s",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
    assert_eq!(err.problems.len(), 5, "{text}");
}

#[test]
fn the_syslog_tls_file_and_its_problems() {
    let dir = std::env::temp_dir().join(format!("hle-config-syslog-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let auth = dir.join("auth.yml");
    std::fs::write(
        &auth,
        "tls_server_config:\n  cert_file: none.crt\n  key_file: none.key\n\
         basic_auth_users:\n  a: $2y$10$X0h1gDsPszWURQaxFh.zoubFi6DXncSjhoQNJgRrnGs7EsimhC7zG\n\
         http_server_config:\n  http2: false\n",
    )
    .unwrap();
    let empty = dir.join("empty.yml");
    std::fs::write(&empty, "").unwrap();
    let (auth, empty) = (auth.display().to_string(), empty.display().to_string());

    let err = Config::from_env(&env(&[("HLE_SYSLOG_TLS_CONFIG_FILE", &auth)])).unwrap_err();
    let text = err.to_string();
    for want in [
        "basic_auth_users: not used for syslog",
        "http_server_config: not used for syslog",
        "tls_server_config.cert_file: cannot read",
        "tls_server_config.key_file: cannot read",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
    assert_eq!(err.problems.len(), 4, "{text}");
    assert!(err
        .problems
        .iter()
        .all(|p| p.starts_with(&format!("HLE_SYSLOG_TLS_CONFIG_FILE={auth:?}: "))));

    // A file without TLS would leave the listener plain: a problem, not a quiet default.
    let err = Config::from_env(&env(&[("HLE_SYSLOG_TLS_CONFIG_FILE", &empty)])).unwrap_err();
    assert_eq!(err.problems.len(), 1, "{err}");
    assert!(
        err.problems[0].contains("tls_server_config: missing"),
        "{err}"
    );

    // Nothing to secure without the TCP listener.
    let err = Config::from_env(&env(&[
        ("HLE_SYSLOG_TLS_CONFIG_FILE", &empty),
        ("HLE_SYSLOG_TCP_ADDR", ""),
    ]))
    .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("HLE_SYSLOG_TLS_CONFIG_FILE is set but HLE_SYSLOG_TCP_ADDR is empty"),
        "{text}"
    );
    assert_eq!(err.problems.len(), 2, "{text}");

    // The web file may keep its sections.
    assert!(Config::from_env(&env(&[("HLE_WEB_CONFIG_FILE", &auth)]))
        .unwrap_err()
        .problems
        .iter()
        .all(|p| !p.contains("not used for syslog")));
    assert_eq!(
        Config::from_env(&HashMap::new()).unwrap().syslog_tls_config,
        None
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn log_levels_and_filters() {
    for accepted in [
        "info",
        "INFO",
        " debug ",
        "off",
        "3",
        "warn,haproxy_log_exporter::spop=debug",
        "haproxy_log_exporter=trace",
        "haproxy_log_exporter::ingest",
        "haproxy_log",
        "hyper=debug,info",
        "info,[listening]",
    ] {
        let config = Config::from_env(&env(&[("HLE_LOG_LEVEL", accepted)]));
        assert_eq!(
            config.map(|c| c.log_level).map_err(|e| e.to_string()),
            Ok(accepted.to_string())
        );
    }
    for (refused, meant) in [
        ("verbose", Some("debug")),
        ("infoo", Some("info")),
        ("Infoo", Some("info")),
        ("inof", Some("info")),
        ("warning", Some("warn")),
        ("dbug", Some("debug")),
        ("tarce", Some("trace")),
        ("info,verbos", None),
        ("nonsense", None),
        ("foo", None),
        ("haproxy_log_exporter=infoo", Some("info")),
        ("haproxy_log_exporter::spop=verbose", Some("debug")),
        ("info,=,", None),
    ] {
        let err = Config::from_env(&env(&[("HLE_LOG_LEVEL", refused)])).unwrap_err();
        assert_eq!(err.problems.len(), 1, "{refused}: {err}");
        let problem = &err.problems[0];
        assert!(
            problem.starts_with(&format!("HLE_LOG_LEVEL={refused:?}: ")),
            "{problem}"
        );
        assert!(
            problem.contains("expected a level (error, warn, info, debug, trace, off)"),
            "{problem}"
        );
        match meant {
            Some(level) => assert!(
                problem.ends_with(&format!("; did you mean `{level}`?")),
                "{refused}: {problem}"
            ),
            None => assert!(!problem.contains("did you mean"), "{refused}: {problem}"),
        }
    }
    // Listed with the other problems.
    let err = Config::from_env(&env(&[
        ("HLE_LOG_LEVEL", "verbose"),
        ("HLE_LOG_OUTPUT", "xml"),
    ]))
    .unwrap_err();
    assert_eq!(err.problems.len(), 2, "{err}");
}

/// What a bare word of a filter does: it is a target, and one that is not this program's
/// turns off every line it writes. `log_level` refuses such a word for that reason.
#[test]
fn a_filter_of_a_foreign_target_would_silence_the_exporter() {
    use tracing_subscriber::layer::SubscriberExt;
    let silenced = |filter: &str| {
        let filter = tracing_subscriber::EnvFilter::try_new(filter).unwrap();
        let subscriber = tracing_subscriber::registry().with(filter);
        tracing::subscriber::with_default(subscriber, || !tracing::enabled!(tracing::Level::ERROR))
    };
    assert!(silenced("verbose"));
    assert!(silenced("infoo"));
    assert!(!silenced("info"));
    assert!(!silenced("haproxy_log_exporter"));
}

/// Every duration variable refuses a number without a unit (but `0`), naming the units.
#[test]
fn a_duration_without_a_unit_is_a_problem() {
    let durations = [
        "HLE_TCP_IDLE_TIMEOUT",
        "HLE_SERIES_TTL",
        "HLE_WEB_READ_HEADER_TIMEOUT",
        "HLE_WEB_MAX_CONNECTION_AGE",
        "HLE_WEB_SCRAPE_CACHE_TTL",
        "HLE_FORWARD_CONNECT_TIMEOUT",
        "HLE_FORWARD_RECONNECT_MAX_DELAY",
        "HLE_FORWARD_SAMPLE_SLOW",
        "HLE_FORWARD_SHUTDOWN_GRACE",
    ];
    // Every variable whose documented default is a duration is in the list.
    for var in variables() {
        let is_duration = var.default != "0" && parse_duration(&var.default).is_ok();
        assert!(
            !is_duration || durations.contains(&var.name.as_str()),
            "{} is missing from the list",
            var.name
        );
    }
    for var in durations {
        let err = Config::from_env(&env(&[(var, "30")])).unwrap_err();
        assert_eq!(
            err.problems,
            [format!(
                "{var}=\"30\": a duration needs a unit: ms, s, m or h, e.g. 30s or 30ms; only 0 goes without"
            )],
            "{var}"
        );
        let zero = Config::from_env(&env(&[(var, "0")]));
        let with_unit = Config::from_env(&env(&[(var, "1s")]));
        assert!(
            zero.is_ok() || with_unit.is_ok(),
            "{var}: {zero:?} {with_unit:?}"
        );
    }
    // `0` where it means never, off or none.
    let config = Config::from_env(&env(&[
        ("HLE_TCP_IDLE_TIMEOUT", "0"),
        ("HLE_SERIES_TTL", "0"),
        ("HLE_WEB_MAX_CONNECTION_AGE", "0"),
        ("HLE_WEB_SCRAPE_CACHE_TTL", "0"),
        ("HLE_FORWARD_SHUTDOWN_GRACE", "0"),
    ]))
    .unwrap();
    assert_eq!(config.tcp_idle_timeout, None);
    assert_eq!(config.cardinality.ttl, None);
    assert_eq!(config.web.max_connection_age, None);
    assert_eq!(config.forward.shutdown_grace, Duration::ZERO);
}

#[test]
fn a_custom_label_no_metric_has_is_a_warning() {
    let format = "%ci:%cp [%tr] %ft %b/%s %TR/%Tw/%Tc/%Tr/%Ta %ST %B %tsc %ac/%fc/%bc/%sc/%rc %sq/%bq %hr route=%[var(txn.route)] %{+Q}r";
    let base = [
        ("HLE_LOG_FORMAT", format),
        ("HLE_CUSTOM_LABELS", "route=%[var(txn.route)],host=%hr#0"),
    ];
    // Both unused.
    let config = Config::from_env(&env(&base)).unwrap();
    assert_eq!(
        config.warnings,
        [
            "HLE_CUSTOM_LABELS: label \"route\" is on no enabled metric, so it is read and dropped; add it to the HLE_<METRIC>_LABELS of a metric (e.g. HLE_REQUESTS_TOTAL_LABELS=route,status_code)",
            "HLE_CUSTOM_LABELS: label \"host\" is on no enabled metric, so it is read and dropped; add it to the HLE_<METRIC>_LABELS of a metric (e.g. HLE_REQUESTS_TOTAL_LABELS=host,status_code)",
        ]
    );
    // One used; the other only on a metric that is not enabled.
    let mut vars = base.to_vec();
    vars.extend([
        ("HLE_REQUESTS_TOTAL_LABELS", "route,status_class"),
        ("HLE_BYTES_READ_TOTAL_LABELS", "host"),
        ("HLE_ENABLED_METRICS", "requests_total"),
    ]);
    let config = Config::from_env(&env(&vars)).unwrap();
    assert_eq!(config.warnings.len(), 1, "{:?}", config.warnings);
    assert!(config.warnings[0].contains("label \"host\""));
    // Every one used.
    vars.retain(|(k, _)| *k != "HLE_ENABLED_METRICS");
    assert!(Config::from_env(&env(&vars)).unwrap().warnings.is_empty());
    // Forwarded as JSON, a custom label is in every object: not unused.
    let mut vars = base.to_vec();
    vars.push(("HLE_FORWARD_STDOUT", "json"));
    assert!(Config::from_env(&env(&vars)).unwrap().warnings.is_empty());
    // No custom label, no warning.
    assert!(Config::from_env(&HashMap::new())
        .unwrap()
        .warnings
        .is_empty());
}

#[test]
fn native_histograms_and_the_exemplar_label() {
    use crate::metrics::{NativeHistograms, NativeMode};
    let config = Config::from_env(&HashMap::new()).unwrap();
    assert_eq!(config.cardinality.native, NativeHistograms::default());
    assert_eq!(config.cardinality.native.mode, NativeMode::Off);
    assert_eq!(config.cardinality.exemplar, None);

    let format = "%ci:%cp [%tr] %ft %b/%s %TR/%Tw/%Tc/%Tr/%Ta %ST %B %tsc %ac/%fc/%bc/%sc/%rc %sq/%bq {%hr} %{+Q}r";
    let base = [
        ("HLE_LOG_FORMAT", format),
        ("HLE_CUSTOM_LABELS", "trace_id=%hr"),
        ("HLE_NATIVE_HISTOGRAMS", "only"),
        ("HLE_NATIVE_HISTOGRAM_BUCKET_FACTOR", "1.05"),
        ("HLE_NATIVE_HISTOGRAM_MAX_BUCKETS", "0"),
        ("HLE_EXEMPLAR_LABEL", "trace_id"),
    ];
    let config = Config::from_env(&env(&base)).unwrap();
    assert_eq!(
        config.cardinality.native,
        NativeHistograms {
            mode: NativeMode::Only,
            bucket_factor: 1.05,
            max_buckets: 0,
        }
    );
    assert_eq!(
        config.cardinality.exemplar.map(|l| l.name()),
        Some("trace_id")
    );
    // The exemplar label is used: no warning that it is on no metric.
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);

    let problems = |pairs: &[(&str, &str)]| {
        let mut vars = base.to_vec();
        vars.extend_from_slice(pairs);
        Config::from_env(&env(&vars)).unwrap_err().problems
    };
    assert_eq!(
        problems(&[
            ("HLE_NATIVE_HISTOGRAMS", "yes"),
            ("HLE_NATIVE_HISTOGRAM_BUCKET_FACTOR", "1"),
            ("HLE_NATIVE_HISTOGRAM_MAX_BUCKETS", "-1"),
        ])
        .len(),
        3
    );
    for factor in ["0.9", "NaN", "inf", "70000", "x"] {
        let p = problems(&[("HLE_NATIVE_HISTOGRAM_BUCKET_FACTOR", factor)]);
        assert!(p[0].contains("above 1"), "{factor}: {p:?}");
    }
    let p = problems(&[("HLE_EXEMPLAR_LABEL", "request_id")]);
    assert!(p[0].contains("defined: trace_id"), "{p:?}");
    let p = problems(&[
        ("HLE_EXEMPLAR_LABEL", "trace_id"),
        ("HLE_REQUESTS_TOTAL_LABELS", "trace_id,status_code"),
    ]);
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(p[0].contains("HLE_REQUESTS_TOTAL_LABELS"), "{p:?}");
    let p = Config::from_env(&env(&[("HLE_EXEMPLAR_LABEL", "trace_id")]))
        .unwrap_err()
        .problems;
    assert!(p[0].contains("HLE_CUSTOM_LABELS defines none"), "{p:?}");
}
