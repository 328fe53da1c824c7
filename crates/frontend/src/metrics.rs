//! The frontend's own metrics: HTTP requests by route and status, and the
//! ingest counters.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use strata_proto::store::WriteResponse;

use crate::Frontend;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
    pub status_code: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteOnly {
    pub route: String,
}

/// Request and ingest metrics, registered under `strata_frontend_*`.
#[derive(Debug, Clone)]
pub struct FrontendMetrics {
    requests: Family<RouteLabels, Counter>,
    request_duration: Family<RouteOnly, Histogram>,
    samples_received: Counter,
    samples_refused: Counter,
}

impl FrontendMetrics {
    pub fn new(registry: &mut Registry) -> Self {
        let metrics = FrontendMetrics {
            requests: Family::default(),
            request_duration: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.0005, 2.0, 16))
            }),
            samples_received: Counter::default(),
            samples_refused: Counter::default(),
        };
        let frontend = registry.sub_registry_with_prefix("strata_frontend");
        frontend.register(
            "http_requests",
            "HTTP requests by route and status code",
            metrics.requests.clone(),
        );
        frontend.register(
            "http_request_duration_seconds",
            "HTTP request latency by route",
            metrics.request_duration.clone(),
        );
        frontend.register(
            "samples_received",
            "Samples and histograms accepted by remote write",
            metrics.samples_received.clone(),
        );
        frontend.register(
            "samples_refused",
            "Samples refused by validation or the store (invalid, out of order)",
            metrics.samples_refused.clone(),
        );
        metrics
    }

    pub(crate) fn observe_ingest(&self, written: &WriteResponse, refused: u64) {
        self.samples_received
            .inc_by(written.samples_written + written.histograms_written);
        self.samples_refused.inc_by(refused);
    }
}

/// Middleware recording every request by its route template.
pub(crate) async fn track(State(fe): State<Frontend>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "other".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().clone();
    let started = Instant::now();
    let span = tracing::info_span!("http_request", %method, route = %route);
    let response = tracing::Instrument::instrument(next.run(request), span).await;
    let elapsed = started.elapsed();
    tracing::debug!(
        %method,
        route = %route,
        status = response.status().as_u16(),
        duration_ms = elapsed.as_secs_f64() * 1000.0,
        "http request"
    );
    let metrics = fe.metrics();
    metrics
        .request_duration
        .get_or_create(&RouteOnly {
            route: route.clone(),
        })
        .observe(elapsed.as_secs_f64());
    metrics
        .requests
        .get_or_create(&RouteLabels {
            route,
            status_code: response.status().as_u16().to_string(),
        })
        .inc();
    response
}
