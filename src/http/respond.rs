//! The routes: the exposition, the probes and the index page. Only GET and HEAD without
//! a body are answered. Bodies are whole `Bytes`; `connection` streams them.

use std::sync::atomic::Ordering;

use bytes::Bytes;
use hyper::body::{Body, Incoming};
use hyper::header::{
    HeaderMap, HeaderValue, ACCEPT, ACCEPT_ENCODING, ALLOW, CONNECTION, CONTENT_ENCODING,
    CONTENT_TYPE, VARY,
};
use hyper::{Method, Request, Response, StatusCode};

use super::negotiate::{content_type, negotiate, Offered};
use super::scrape::Encoding;
use super::State;

pub(super) async fn respond(state: &State, req: &Request<Incoming>) -> Response<Bytes> {
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
        let encoding = wanted_encoding(req.headers());
        let accept: Vec<&str> = req
            .headers()
            .get_all(ACCEPT)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .collect();
        let format = negotiate(&accept, state.offered);
        return match state.exposition.get(format, encoding).await {
            Ok(body) => {
                state.counters.scraped();
                let mut response = with_type(StatusCode::OK, body, content_type(format));
                let headers = response.headers_mut();
                // The answer depends on Accept only when there is a choice of format.
                let vary = if state.offered == Offered::default() {
                    "Accept-Encoding"
                } else {
                    "Accept, Accept-Encoding"
                };
                headers.insert(VARY, HeaderValue::from_static(vary));
                if encoding == Encoding::Gzip {
                    headers.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
                }
                response
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

/// Gzip when the client lists it without `q=0` (Prometheus sends `Accept-Encoding: gzip`).
fn wanted_encoding(headers: &HeaderMap) -> Encoding {
    let gzip = headers
        .get_all(ACCEPT_ENCODING)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|item| {
            let mut parts = item.split(';').map(str::trim);
            let coding = parts.next().unwrap_or_default();
            let refused = parts.any(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            coding.eq_ignore_ascii_case("gzip") && !refused
        });
    if gzip {
        Encoding::Gzip
    } else {
        Encoding::Identity
    }
}

fn index(telemetry_path: &str) -> Response<Bytes> {
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

fn text(status: StatusCode, body: &'static str) -> Response<Bytes> {
    with_type(
        status,
        Bytes::from_static(body.as_bytes()),
        "text/plain; charset=utf-8",
    )
}

fn with_type(status: StatusCode, body: Bytes, content_type: &str) -> Response<Bytes> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    if let Ok(value) = HeaderValue::from_str(content_type) {
        response.headers_mut().insert(CONTENT_TYPE, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_only_when_listed_and_not_refused() {
        let encoding = |values: &[&str]| {
            let mut headers = HeaderMap::new();
            for value in values {
                headers.append(ACCEPT_ENCODING, HeaderValue::from_str(value).unwrap());
            }
            wanted_encoding(&headers)
        };
        assert_eq!(encoding(&[]), Encoding::Identity);
        assert_eq!(encoding(&["gzip"]), Encoding::Gzip);
        assert_eq!(encoding(&["deflate, GZIP;q=0.5"]), Encoding::Gzip);
        assert_eq!(encoding(&["br", "gzip"]), Encoding::Gzip);
        assert_eq!(encoding(&["gzip;q=0"]), Encoding::Identity);
        assert_eq!(encoding(&["gzipped, identity"]), Encoding::Identity);
    }
}
