//! Generates the Rust types of the Prometheus protobuf exposition (`io.prometheus.client`)
//! from the vendored `metrics.proto`, with protox (a protobuf compiler in Rust) in place of
//! protoc, and writes them where the exporter includes them.

use std::path::Path;
use std::process::ExitCode;

fn main() -> ExitCode {
    match generate() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("protogen: {e}");
            ExitCode::FAILURE
        }
    }
}

fn generate() -> Result<(), Box<dyn std::error::Error>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let includes = root.join("proto");
    let out_dir = root.join("src/metrics/proto");
    // protox knows google/protobuf/timestamp.proto itself; prost-build maps it to
    // prost_types::Timestamp.
    let descriptors = protox::compile(["io/prometheus/client/metrics.proto"], [&includes])?;
    prost_build::Config::new()
        .out_dir(&out_dir)
        .compile_fds(descriptors)?;
    println!("wrote src/metrics/proto/io.prometheus.client.rs");
    Ok(())
}
