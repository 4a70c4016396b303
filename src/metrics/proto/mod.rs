//! The messages of the Prometheus protobuf exposition (`io.prometheus.client`, client_model's
//! `metrics.proto`, vendored in `proto/`), as prost types: what a scrape that asks for
//! `application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily;
//! encoding=delimited` receives, one length-delimited `MetricFamily` after another.
//!
//! `io.prometheus.client.rs` is generated and checked in, so that the build needs no
//! protobuf compiler. After a change to the `.proto`, regenerate it with
//! `cargo run --manifest-path tools/protogen/Cargo.toml` (prost-build with protox, a
//! protobuf compiler in Rust) and commit both.

// Generated code: its doc comments are the .proto's, and not every message is used.
#![allow(dead_code, clippy::all, clippy::pedantic, rustdoc::all)]

include!("io.prometheus.client.rs");
