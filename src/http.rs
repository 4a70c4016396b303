//! HTTP, the end of the pipeline: the Prometheus exposition, `/-/healthy`, `/-/ready` and a
//! small index page, on hyper 1 (HTTP/1.1), with graceful shutdown.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use prometheus::{Encoder, TextEncoder};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::pipeline::Pipeline;

/// What the handlers need.
pub struct State {
    pub pipeline: Arc<Pipeline>,
    pub telemetry_path: String,
    /// TLS and basic auth (`HLE_WEB_CONFIG_FILE`), if configured.
    pub web: Option<Arc<crate::web::Security>>,
    /// True once every listener is bound and served, false again when shutting down.
    pub ready: AtomicBool,
}

/// A scrape that takes longer than this is cut off; Prometheus would time out anyway.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(60);

/// Serves until `shutdown`, then lets open connections finish their current request.
pub async fn serve(
    listener: TcpListener,
    state: Arc<State>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    loop {
        let (stream, peer) = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    tracing::warn!(error = %err, "http accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let state = state.clone();
        let shutdown = shutdown.clone();
        tracker.spawn(async move {
            let Some(stream) = crate::web::accept(state.web.as_deref(), stream).await else {
                return;
            };
            let service = hyper::service::service_fn(move |req| {
                let state = state.clone();
                async move {
                    let response = respond(&state, &req);
                    Ok::<_, Infallible>(
                        crate::web::guarded(state.web.as_deref(), &req, response).await,
                    )
                }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            let result = tokio::select! {
                result = conn.as_mut() => result,
                _ = shutdown.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    tokio::time::timeout(CONNECTION_TIMEOUT, conn).await.unwrap_or(Ok(()))
                }
                _ = tokio::time::sleep(CONNECTION_TIMEOUT) => Ok(()),
            };
            if let Err(err) = result {
                tracing::debug!(%peer, error = %err, "http connection failed");
            }
        });
    }
}

async fn respond(state: &Arc<State>, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed\n");
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    let path = req.uri().path();
    if path == state.telemetry_path {
        // Formatting many series takes milliseconds: off the workers that run the sources.
        let pipeline = state.pipeline.clone();
        let body = tokio::task::spawn_blocking(move || pipeline.exposition())
            .await
            .map_err(|e| e.to_string())
            .and_then(|body| body.map_err(|e| e.to_string()));
        return match body {
            Ok(body) => with_type(
                StatusCode::OK,
                body.into_bytes(),
                TextEncoder::new().format_type(),
            ),
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
        page.into_bytes(),
        "text/html; charset=utf-8",
    )
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    with_type(
        status,
        body.as_bytes().to_vec(),
        "text/plain; charset=utf-8",
    )
}

fn with_type(status: StatusCode, body: Vec<u8>, content_type: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(value) = HeaderValue::from_str(content_type) {
        response.headers_mut().insert(CONTENT_TYPE, value);
    }
    response
}
