//! The routes: the exposition, the probes and the index page. Only GET and HEAD without
//! a body are answered.

use std::sync::atomic::Ordering;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::{Body, Incoming};
use hyper::header::{HeaderValue, ALLOW, CONNECTION, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use prometheus::{Encoder, TextEncoder};

use super::State;

pub(super) async fn respond(state: &State, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed\n");
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    if !req.body().is_end_stream() {
        // Not read: the connection closes after the answer instead.
        let mut response = text(StatusCode::PAYLOAD_TOO_LARGE, "No request body accepted\n");
        response
            .headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
        return response;
    }
    let path = req.uri().path();
    if path == state.telemetry_path {
        return match state.exposition.get().await {
            Ok(body) => {
                state.counters.scraped();
                with_type(StatusCode::OK, body, TextEncoder::new().format_type())
            }
            Err(err) => {
                tracing::error!(error = %err, "cannot encode metrics");
                text(StatusCode::INTERNAL_SERVER_ERROR, "cannot encode metrics\n")
            }
        };
    }
    match path {
        "/-/healthy" => text(StatusCode::OK, "Healthy\n"),
        "/-/ready" if state.ready.load(Ordering::Relaxed) => text(StatusCode::OK, "Ready\n"),
        "/-/ready" => text(StatusCode::SERVICE_UNAVAILABLE, "Not ready\n"),
        "/" => index(&state.telemetry_path),
        _ => text(StatusCode::NOT_FOUND, "Not found\n"),
    }
}

fn index(telemetry_path: &str) -> Response<Full<Bytes>> {
    let page = format!(
        "<!DOCTYPE html>\n<html><head><title>HAProxy log exporter</title></head><body>\n\
         <h1>HAProxy log exporter</h1>\n<p>Version {}</p>\n<ul>\n\
         <li><a href=\"{telemetry_path}\">Metrics</a></li>\n\
         <li><a href=\"/-/healthy\">Health</a></li>\n\
         <li><a href=\"/-/ready\">Readiness</a></li>\n</ul>\n</body></html>\n",
        env!("CARGO_PKG_VERSION"),
    );
    with_type(
        StatusCode::OK,
        Bytes::from(page),
        "text/html; charset=utf-8",
    )
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    with_type(
        status,
        Bytes::from_static(body.as_bytes()),
        "text/plain; charset=utf-8",
    )
}

fn with_type(status: StatusCode, body: Bytes, content_type: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    if let Ok(value) = HeaderValue::from_str(content_type) {
        response.headers_mut().insert(CONTENT_TYPE, value);
    }
    response
}
