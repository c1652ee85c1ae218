//! Prometheus/OpenMetrics exporter: `--metrics-addr HOST:PORT` serves
//! `http://HOST:PORT/metrics` from the latest snapshot (see `collector` for
//! the families), beside the TUI, `--json`, or on its own (`--no-tui`);
//! over TLS and with basic auth when `--web.config.file` says so.
use std::{io, net::SocketAddr, sync::Arc};

use axum::{
    Router,
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use prometheus_client::{encoding::text, registry::Registry};

use super::web_config::{self, WebConfig};
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
/// latest snapshot in a background task; abort the handle to stop. `web`:
/// TLS and basic auth (`--web.config.file`), or plain HTTP to anyone.
pub async fn serve(
    addr: SocketAddr,
    feed: FleetFeed,
    top_sites: usize,
    web: WebConfig,
) -> io::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr().unwrap_or(addr);
    let mut app = router(Arc::new(registry(feed, top_sites)));
    if !web.users.is_empty() {
        app = app.layer(axum::middleware::from_fn_with_state(web.users.clone(), web_config::require_basic_auth));
    }
    let Some(tls) = web.tls else {
        log::info!("serving metrics on http://{local}/metrics");
        return Ok(tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                log::warn!("metrics server on {local} stopped: {e}");
            }
        }));
    };
    log::info!("serving metrics on https://{local}/metrics");
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    Ok(tokio::spawn(async move {
        loop {
            let (tcp, peer) = match listener.accept().await {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors and the like: wait, go on.
                    log::warn!("metrics server on {local}: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            let (acceptor, app) = (acceptor.clone(), app.clone());
            // Each connection on its own task: a slow handshake holds up
            // no one else.
            tokio::spawn(async move {
                let tls = match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(e)) => return log::debug!("metrics: TLS handshake with {peer} failed: {e}"),
                    Err(_) => return log::debug!("metrics: TLS handshake with {peer} timed out"),
                };
                let service = hyper_util::service::TowerToHyperService::new(app);
                let io = hyper_util::rt::TokioIo::new(tls);
                // A client that never finishes its request headers does
                // not hold the connection's task forever.
                let mut http = hyper::server::conn::http1::Builder::new();
                http.timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(TLS_HANDSHAKE_TIMEOUT);
                if let Err(e) = http.serve_connection(io, service).await {
                    log::debug!("metrics: connection from {peer}: {e}");
                }
            });
        }
    }))
}

/// How long a client may take to finish the TLS handshake, and then each
/// request's headers.
const TLS_HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
