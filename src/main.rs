//! The `haproxy-log-exporter` binary: environment → `Config` → run. A bad configuration
//! lists every problem and exits 64 (EX_USAGE) before any socket is bound.
//!
//! Subcommands: `replay [FILE...]` counts log files through the same pipeline and prints
//! the exposition; `check-config [--lines N] [LOGFILE]` validates the environment, prints
//! what is in force, and shows how a sample of a log file's lines is read.

use std::process::ExitCode;

use haproxy_log_exporter::haproxy::LineFormat;
use haproxy_log_exporter::{check, config, ingest, shutdown, telemetry, Config, Server};

/// EX_USAGE from sysexits.h: the configuration (or command line) is wrong.
const EX_USAGE: u8 = 64;
/// EX_DATAERR: `check-config LOGFILE` found lines the configuration rejects.
const EX_DATAERR: u8 = 65;
/// EX_NOINPUT: an input file could not be opened.
const EX_NOINPUT: u8 = 66;
/// EX_IOERR: reading or writing failed.
const EX_IOERR: u8 = 74;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        None => serve(),
        Some("replay") => replay(&args[1..]),
        Some("check-config") => match check_args(&args[1..]) {
            Ok((lines, file)) => check_config(lines, file),
            Err(problem) => {
                eprintln!("haproxy-log-exporter check-config: {problem}; usage: check-config [--lines N] [LOGFILE]");
                ExitCode::from(EX_USAGE)
            }
        },
        Some("-h" | "--help" | "help") => {
            print!("{}", help());
            ExitCode::SUCCESS
        }
        Some("-V" | "--version" | "version") => {
            println!("haproxy-log-exporter {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Some(other) => {
            eprintln!(
                "unknown argument {other:?}; configuration is by environment variables, see --help"
            );
            ExitCode::from(EX_USAGE)
        }
    }
}

/// The configuration, or the exit code after printing every problem.
fn load_config() -> Result<Config, ExitCode> {
    Config::from_process_env().map_err(|err| {
        eprint!("haproxy-log-exporter: {err}");
        ExitCode::from(EX_USAGE)
    })
}

fn serve() -> ExitCode {
    let config = match load_config() {
        Ok(config) => config,
        Err(code) => return code,
    };
    telemetry::init(&config.log_level, config.log_output);
    log_warnings(&config);

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            tracing::error!(error = %err, "cannot start the runtime");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let shutdown = shutdown::signal_received();
        let server = Server::bind(config).await?;
        server.run(shutdown).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = %err, "exiting");
            ExitCode::FAILURE
        }
    }
}

fn replay(inputs: &[String]) -> ExitCode {
    let config = match load_config() {
        Ok(config) => config,
        Err(code) => return code,
    };
    telemetry::init(&config.log_level, config.log_output);
    log_warnings(&config);
    // Not locked: the standard output forwarder writes to it first.
    match ingest::replay::run(&config, inputs, &mut std::io::stdout()) {
        Ok(summary) => {
            eprint!("{summary}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("haproxy-log-exporter replay: {err}");
            ExitCode::from(match err {
                ingest::replay::ReplayError::Open { .. } => EX_NOINPUT,
                _ => EX_IOERR,
            })
        }
    }
}

/// What the configuration allows but most likely does not mean, once the log is set up.
fn log_warnings(config: &Config) {
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
}

/// `[--lines N] [LOGFILE]`: how many lines to show from the start, and the file.
fn check_args(args: &[String]) -> Result<(usize, Option<&str>), String> {
    let mut lines = check::DEFAULT_SAMPLE_LINES;
    let mut file = None;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let value = match arg.strip_prefix("--lines") {
            Some("") => Some(args.next().ok_or("--lines needs a number")?.as_str()),
            Some(rest) => rest.strip_prefix('='),
            None => None,
        };
        if let Some(value) = value {
            lines = value
                .parse()
                .map_err(|_| format!("--lines {value:?} is not a number of lines"))?;
        } else if arg.starts_with("--") || (arg.starts_with('-') && arg != "-") {
            return Err(format!("unknown option {arg:?}"));
        } else if file.replace(arg.as_str()).is_some() {
            return Err("one log file at most".to_string());
        }
    }
    Ok((lines, file))
}

fn check_config(lines: usize, file: Option<&str>) -> ExitCode {
    let config = match load_config() {
        Ok(config) => config,
        Err(code) => return code,
    };
    for warning in &config.warnings {
        eprintln!("haproxy-log-exporter: warning: {warning}");
    }
    println!("# configuration is valid; in force:");
    for (name, value) in config::effective(&config::process_env().0) {
        println!("{name}={value}");
    }
    println!("# log formats, tried in this order:");
    for format in config.parser.formats() {
        match format {
            LineFormat::BuiltIn => println!("httplog/tcplog (built-in parser)"),
            LineFormat::Compiled(format) => {
                println!("{}", format.source);
                let fields: Vec<String> = format
                    .fields()
                    .map(|f| {
                        let flags: Vec<&str> = [(f.quoted, "+Q"), (f.escaped, "+E"), (f.hex, "+X")]
                            .into_iter()
                            .filter_map(|(on, flag)| on.then_some(flag))
                            .collect();
                        match flags.is_empty() {
                            true => f.text.clone(),
                            false => format!("{}({})", f.text, flags.join(",")),
                        }
                    })
                    .collect();
                println!("  fields: {}", fields.join(" "));
            }
        }
    }
    println!("# enabled metrics:");
    for metric in &config.metrics {
        let labels: Vec<&str> = metric.labels.iter().map(|l| l.name()).collect();
        print!("{} labels=[{}]", metric.def.full_name(), labels.join(","));
        if !metric.buckets.is_empty() {
            let buckets: Vec<String> = metric.buckets.iter().map(f64::to_string).collect();
            print!(" buckets=[{}]", buckets.join(","));
        }
        println!();
    }
    let Some(file) = file else {
        return ExitCode::SUCCESS;
    };
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    match check::run(&config, file, lines, &mut out) {
        Ok(summary) if summary.rejected_total() > 0 => ExitCode::from(EX_DATAERR),
        Ok(_) => ExitCode::SUCCESS,
        Err(err) => {
            drop(out);
            eprintln!("haproxy-log-exporter check-config: {err}");
            ExitCode::from(match err {
                check::CheckError::Open { .. } => EX_NOINPUT,
                _ => EX_IOERR,
            })
        }
    }
}

fn help() -> String {
    let vars = config::variables();
    let width = vars.iter().map(|v| v.name.len()).max().unwrap_or(0);
    let mut out = format!(
        "haproxy-log-exporter {}\n\
         Receives HAProxy logs over syslog (UDP, TCP, unix socket) and exposes Prometheus metrics.\n\n\
         Usage:\n  \
           haproxy-log-exporter                  run the exporter\n  \
           haproxy-log-exporter replay [FILE...] count log files (plain or .gz; none or -: standard input),\n  \
         \x20                                       print the exposition, and a summary to standard error\n  \
           haproxy-log-exporter check-config [--lines N] [LOGFILE]\n  \
         \x20                                       validate the environment and print the configuration in force;\n  \
         \x20                                       with a log file (-: standard input), show how its first N lines\n  \
         \x20                                       (5) and the first line of each other outcome are read, and a summary\n  \
           haproxy-log-exporter --help | --version\n\n\
         Configuration is by environment variables (default in brackets):\n",
        env!("CARGO_PKG_VERSION")
    );
    for var in vars {
        out.push_str(&format!(
            "  {:width$}  {} [{}]\n",
            var.name, var.help, var.default
        ));
    }
    out.push_str(&format!(
        "\nLabels: {}\nExit codes: 0 after SIGTERM/SIGINT, 64 for a bad configuration, \
         65 when check-config's log file has lines the configuration rejects, \
         66 for a missing input file, 74 for a read error, 1 otherwise.\n",
        haproxy_log_exporter::metrics::Label::all_names()
    ));
    out
}
