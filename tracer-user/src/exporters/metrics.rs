//! Prometheus/OpenMetrics exporter: `--metrics-addr HOST:PORT` serves
//! `http://HOST:PORT/metrics` from the latest snapshot (see `collector` for
//! the families), beside the TUI, `--json`, or on its own (`--no-tui`).
use std::{io, net::SocketAddr, sync::Arc};

use axum::{
    Router,
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use prometheus_client::{encoding::text, registry::Registry};

use crate::feed::FleetFeed;

pub mod collector;

pub use collector::SnapshotCollector;

/// The OpenMetrics text format, as Prometheus asks for it.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

const INDEX: &str = "deferscope: Go defer-chain and goroutine-leak tracer.\nMetrics: /metrics (OpenMetrics text).\n";

/// The registry served on `/metrics`: one collector that encodes the latest
/// snapshot of `feed` on each scrape.
pub fn registry(feed: FleetFeed, top_sites: usize) -> Registry {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(SnapshotCollector::new(feed, top_sites)));
    registry
}

/// The `/metrics` body: the registry in the OpenMetrics text format, `# EOF`
/// included.
pub fn render(registry: &Registry) -> Result<String, std::fmt::Error> {
    let mut body = String::with_capacity(8 * 1024);
    text::encode(&mut body, registry)?;
    Ok(body)
}

/// The HTTP routes: `/metrics`, and `/` pointing to it.
pub fn router(registry: Arc<Registry>) -> Router {
    Router::new().route("/", get(index)).route("/metrics", get(metrics)).with_state(registry)
}

async fn index() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], INDEX)
}

async fn metrics(State(registry): State<Arc<Registry>>) -> Response {
    match render(&registry) {
        Ok(body) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], body).into_response(),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "encoding the metrics failed\n").into_response(),
    }
}

/// Binds `addr` (failing early if it cannot) and serves `/metrics` from the
/// latest snapshot in a background task; abort the handle to stop.
pub async fn serve(addr: SocketAddr, feed: FleetFeed, top_sites: usize) -> io::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr().unwrap_or(addr);
    let app = router(Arc::new(registry(feed, top_sites)));
    log::info!("serving metrics on http://{local}/metrics");
    Ok(tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            log::warn!("metrics server on {local} stopped: {e}");
        }
    }))
}
