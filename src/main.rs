//! The `haproxy-log-exporter` binary: environment → `Config` → run. A bad configuration
//! lists every problem and exits 64 (EX_USAGE) before any socket is bound.

use std::process::ExitCode;

use haproxy_log_exporter::{config, shutdown, telemetry, Config, Server};

/// EX_USAGE from sysexits.h: the configuration (or command line) is wrong.
const EX_USAGE: u8 = 64;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        None => {}
        Some("-h" | "--help" | "help") => {
            print!("{}", help());
            return ExitCode::SUCCESS;
        }
        Some("-V" | "--version" | "version") => {
            println!("haproxy-log-exporter {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Some(other) => {
            eprintln!(
                "unknown argument {other:?}; configuration is by environment variables, see --help"
            );
            return ExitCode::from(EX_USAGE);
        }
    }

    let config = match Config::from_process_env() {
        Ok(config) => config,
        Err(err) => {
            eprint!("haproxy-log-exporter: {err}");
            return ExitCode::from(EX_USAGE);
        }
    };
    telemetry::init(&config.log_level, config.log_format);

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

fn help() -> String {
    let vars = config::variables();
    let width = vars.iter().map(|v| v.name.len()).max().unwrap_or(0);
    let mut out = format!(
        "haproxy-log-exporter {}\n\
         Receives HAProxy logs over syslog (UDP, TCP) and exposes Prometheus metrics.\n\n\
         Usage: haproxy-log-exporter [--help | --version]\n\n\
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
        "\nLabels: {}\nExit codes: 0 after SIGTERM/SIGINT, 64 for a bad configuration, 1 otherwise.\n",
        haproxy_log_exporter::metrics::Label::all_names()
    ));
    out
}
