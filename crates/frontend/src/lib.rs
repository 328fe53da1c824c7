//! The frontend: Strata's HTTP edge. It serves the Prometheus HTTP API,
//! remote write (the distributor's ingest path) and remote read, resolves
//! the tenant of every request and enforces limits. It reaches storage only
//! through [`StoreApi`].
//!
//! The crate's surface: [`FrontendConfig`], [`Frontend::new`] and
//! [`Frontend::router`].

mod admin;
mod api_error;
mod metrics;
mod params;
mod query_api;
mod query_frontend;
mod read_api;
mod read_cache;
mod remote_read;
mod remote_write;
mod selector;
mod tenant;
pub mod validation;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{FromRequest, Path, Request, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use strata_common::{QueryApi, StoreApi, TenantId};

pub use api_error::ApiError;
pub use metrics::FrontendMetrics;
pub use params::parse_time;
pub use query_frontend::{CACHE_HEADER, QueryFrontendConfig, TENANT_OVERRIDABLE_KEYS};
pub use tenant::{ORG_ID_HEADER, TenancyConfig};
pub use validation::LimitsConfig;

/// Remote read tuning, with Prometheus' defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RemoteReadConfig {
    /// Largest frame of a streamed response, in bytes.
    pub max_bytes_in_frame: usize,
    /// Most samples one `SAMPLES` response may carry (0 = no limit).
    pub sample_limit: u64,
}

impl Default for RemoteReadConfig {
    fn default() -> Self {
        RemoteReadConfig {
            max_bytes_in_frame: remote_read::DEFAULT_MAX_BYTES_IN_FRAME,
            sample_limit: remote_read::DEFAULT_SAMPLE_LIMIT,
        }
    }
}

/// Everything the frontend is configured with.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FrontendConfig {
    pub tenancy: TenancyConfig,
    pub limits: LimitsConfig,
    pub remote_read: RemoteReadConfig,
    pub query_frontend: QueryFrontendConfig,
}

impl FrontendConfig {
    /// Rejects nonsense at start-up with a message naming the key.
    pub fn validate(&self) -> Result<(), String> {
        self.tenancy.validate()?;
        self.limits.validate()?;
        if self.remote_read.max_bytes_in_frame == 0 {
            return Err("remote_read.max_bytes_in_frame must be greater than 0".to_owned());
        }
        self.query_frontend.validate()?;
        Ok(())
    }
}

/// Shared state of the HTTP handlers; cheap to clone.
#[derive(Clone)]
pub struct Frontend {
    inner: Arc<Inner>,
}

struct Inner {
    config: FrontendConfig,
    store: Arc<dyn StoreApi>,
    querier: Option<query_frontend::QueryFrontend>,
    ready: Arc<dyn Fn() -> bool + Send + Sync>,
    metrics: FrontendMetrics,
    /// Decompressed remote-write bytes being written now.
    inflight_write_bytes: Arc<std::sync::atomic::AtomicUsize>,
    /// Series and label answers of ranges older than the freshness window.
    read_cache: read_cache::ReadCache,
    /// A tenant's limit overrides (from meta in a cluster), set once;
    /// shared with the query frontend.
    limit_overrides: Arc<std::sync::OnceLock<LimitOverrides>>,
}

/// Looks up a tenant's limit overrides: configuration key → value.
pub type LimitOverrides =
    Arc<dyn Fn(&str) -> Option<std::collections::BTreeMap<String, String>> + Send + Sync>;

impl std::fmt::Debug for Frontend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Frontend")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl Frontend {
    /// A frontend over `store` and, for PromQL, `querier`; `ready` tells
    /// `/-/ready` whether storage finished starting (WAL replay).
    pub fn new(
        config: FrontendConfig,
        store: Arc<dyn StoreApi>,
        querier: Option<Arc<dyn QueryApi>>,
        ready: Arc<dyn Fn() -> bool + Send + Sync>,
        registry: &mut Registry,
    ) -> Self {
        let limit_overrides: Arc<std::sync::OnceLock<LimitOverrides>> = Arc::default();
        let querier = querier.map(|querier| {
            query_frontend::QueryFrontend::with_overrides(
                &config.query_frontend,
                querier,
                registry,
                Arc::clone(&limit_overrides),
            )
        });
        let read_cache = read_cache::ReadCache::new(&config.query_frontend, registry);
        Frontend {
            inner: Arc::new(Inner {
                config,
                store,
                querier,
                ready,
                metrics: FrontendMetrics::new(registry),
                inflight_write_bytes: Arc::default(),
                read_cache,
                limit_overrides,
            }),
        }
    }

    pub(crate) fn config(&self) -> &FrontendConfig {
        &self.inner.config
    }

    pub(crate) fn store(&self) -> &dyn StoreApi {
        self.inner.store.as_ref()
    }

    /// The query frontend over the querier, if there is one.
    pub(crate) fn querier(&self) -> Option<&query_frontend::QueryFrontend> {
        self.inner.querier.as_ref()
    }

    /// Applies each tenant's limit overrides from `overrides` from now on
    /// (config defaults for the keys it does not name). Only the first
    /// call has an effect.
    pub fn set_limit_overrides(&self, overrides: LimitOverrides) {
        let _ = self.inner.limit_overrides.set(overrides);
    }

    /// How many queriers `tenant`'s queries may go to
    /// (`query_frontend.max_queriers_per_tenant` or the tenant's override;
    /// 0 = all), for the querier pool's shuffle sharding. Overrides set
    /// later with [`Frontend::set_limit_overrides`] apply too.
    pub fn queriers_per_tenant(&self) -> Arc<dyn Fn(&str) -> usize + Send + Sync> {
        let config = self.inner.config.query_frontend.clone();
        let overrides = Arc::clone(&self.inner.limit_overrides);
        Arc::new(move |tenant| {
            let found = overrides.get().and_then(|lookup| lookup(tenant));
            query_frontend::max_queriers_for(&config, found.as_ref())
        })
    }

    /// The limits of `tenant`: the configured ones with its overrides.
    pub(crate) fn limits_for(&self, tenant: &TenantId) -> std::borrow::Cow<'_, LimitsConfig> {
        let base = &self.inner.config.limits;
        let overrides = self
            .inner
            .limit_overrides
            .get()
            .and_then(|lookup| lookup(tenant.as_str()));
        match overrides {
            Some(overrides) if !overrides.is_empty() => {
                std::borrow::Cow::Owned(base.with_overrides(&overrides))
            }
            _ => std::borrow::Cow::Borrowed(base),
        }
    }

    pub(crate) fn read_cache(&self) -> &read_cache::ReadCache {
        &self.inner.read_cache
    }

    pub(crate) fn inflight_write_bytes(&self) -> &Arc<std::sync::atomic::AtomicUsize> {
        &self.inner.inflight_write_bytes
    }

    pub(crate) fn metrics(&self) -> &FrontendMetrics {
        &self.inner.metrics
    }

    pub(crate) fn tenant(&self, headers: &HeaderMap) -> Result<TenantId, ApiError> {
        self.inner.config.tenancy.resolve(headers)
    }

    /// The HTTP routes of the Prometheus API, remote write/read and health.
    pub fn router(&self) -> Router {
        let api = Router::new()
            .route("/api/v1/push", post(remote_write))
            .route("/api/v1/write", post(remote_write))
            .route("/api/v1/read", post(remote_read))
            .route("/api/v1/query", get(instant_query).post(instant_query))
            .route("/api/v1/query_range", get(range_query).post(range_query))
            .route("/api/v1/series", get(series).post(series))
            .route("/api/v1/labels", get(labels).post(labels))
            .route("/api/v1/label/{name}/values", get(label_values))
            .route("/api/v1/metadata", get(metadata))
            .route("/api/v1/status/buildinfo", get(read_api::build_info))
            .route(
                "/api/v1/query_exemplars",
                get(read_api::query_exemplars).post(read_api::query_exemplars),
            )
            .route("/api/v1/rules", get(read_api::rules))
            .route("/api/v1/admin/flush", post(flush))
            .route("/-/healthy", get(read_api::healthy).head(read_api::healthy))
            .route("/-/ready", get(ready).head(ready))
            .with_state(self.clone());
        // The same API under Mimir's prefix, so Mimir-style datasource URLs work too.
        Router::new()
            .nest("/prometheus", api.clone())
            .merge(api)
            .layer(axum::middleware::from_fn_with_state(
                self.clone(),
                metrics::track,
            ))
    }
}

/// A Prometheus API request: its headers and its parameters, read from the
/// URL and, for form posts, the body.
struct ApiRequest {
    headers: HeaderMap,
    params: params::Params,
}

impl<S: Send + Sync> FromRequest<S> for ApiRequest {
    type Rejection = Response;

    async fn from_request(request: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let (parts, body) = request.into_parts();
        let body = remote_write::read_body(body, 8 << 20)
            .await
            .map_err(IntoResponse::into_response)?;
        let params = params::Params::new(parts.uri.query(), &parts.headers, &body);
        Ok(ApiRequest {
            headers: parts.headers,
            params,
        })
    }
}

fn respond(result: Result<Response, ApiError>) -> Response {
    result.unwrap_or_else(IntoResponse::into_response)
}

async fn remote_write(State(fe): State<Frontend>, headers: HeaderMap, body: Body) -> Response {
    fe.remote_write(&headers, body).await
}

async fn remote_read(State(fe): State<Frontend>, headers: HeaderMap, body: Body) -> Response {
    fe.remote_read(&headers, body).await
}

async fn series(State(fe): State<Frontend>, r: ApiRequest) -> Response {
    respond(fe.series(&r.headers, &r.params).await)
}

async fn instant_query(State(fe): State<Frontend>, r: ApiRequest) -> Response {
    respond(fe.instant_query(&r.headers, &r.params).await)
}

async fn range_query(State(fe): State<Frontend>, r: ApiRequest) -> Response {
    respond(fe.range_query(&r.headers, &r.params).await)
}

async fn labels(State(fe): State<Frontend>, r: ApiRequest) -> Response {
    respond(fe.label_names(&r.headers, &r.params).await)
}

async fn label_values(
    State(fe): State<Frontend>,
    Path(name): Path<String>,
    r: ApiRequest,
) -> Response {
    respond(fe.label_values(&r.headers, &r.params, &name).await)
}

async fn metadata(State(fe): State<Frontend>, r: ApiRequest) -> Response {
    respond(fe.metadata(&r.headers, &r.params).await)
}

async fn flush(State(fe): State<Frontend>, headers: HeaderMap) -> Response {
    respond(fe.flush(&headers).await)
}

async fn ready(State(fe): State<Frontend>) -> Response {
    read_api::ready((fe.inner.ready)())
}
