//! Wires the roles into a running process: listeners, the store engine, the
//! frontend's HTTP routes, the gRPC services (store, querier, meta),
//! cluster membership and placement, `/metrics` on every role, and a
//! graceful shutdown on SIGTERM/SIGINT (stop accepting, finish in-flight
//! requests, sync the WAL, exit 0).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow};
use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::registry::Registry;
use strata_cluster::membership::{StoreIdentity, run_membership};
use strata_cluster::{
    ClusterMetrics, ClusterStore, ClusterStoreOptions, MetaClient, PlacementWatcher, QuerierPool,
};
use strata_common::{GrpcStoreClient, QueryApi, StoreApi};
use strata_frontend::Frontend;
use strata_meta::{MetaNode, MetaOptions};
use strata_store_node::grpc::StoreService;
use strata_store_node::{Engine, FsyncPolicy, LocalStore, RetentionOverride, StoreMetrics};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::{Config, Target};
use crate::local_querier::LocalQuerier;
use crate::querier_service::QuerierService;

/// Runs the configured target until a shutdown signal.
pub async fn run(config: Config) -> anyhow::Result<()> {
    match config.target {
        Target::All | Target::Store => run_with_store(config).await,
        Target::Frontend => run_frontend(config).await,
        Target::Querier => run_querier(config).await,
        Target::Meta => run_meta(config).await,
    }
}

type ReadyFn = Arc<dyn Fn() -> bool + Send + Sync>;

/// How often a frontend resolves its querier addresses again.
const QUERIER_RESOLVE_PERIOD: Duration = Duration::from_secs(10);

/// What a frontend or querier reads and writes through.
struct StoreView {
    store: Arc<dyn StoreApi>,
    /// The cluster has a placement (always true without meta).
    ready: ReadyFn,
    /// The placement from meta, in a cluster.
    watcher: Option<Arc<PlacementWatcher>>,
}

/// The whole cluster when meta addresses are configured, else one store node.
fn store_view(
    config: &Config,
    registry: &mut Registry,
    stopped: &watch::Receiver<bool>,
) -> anyhow::Result<StoreView> {
    if config.meta.addresses.is_empty() {
        let client = GrpcStoreClient::connect_lazy(&config.frontend.store_address)
            .map_err(|e| anyhow!("frontend.store_address: {e}"))?;
        return Ok(StoreView {
            store: Arc::new(client),
            ready: Arc::new(|| true),
            watcher: None,
        });
    }
    let meta = Arc::new(
        MetaClient::new(&config.meta.addresses).map_err(|e| anyhow!("meta.addresses: {e}"))?,
    );
    let watcher = PlacementWatcher::new(meta);
    tokio::spawn(
        watcher
            .clone()
            .run(config.meta_refresh_interval(), stopped.clone()),
    );
    let metrics = ClusterMetrics::new(registry);
    watcher.set_metrics(metrics.clone());
    let ready_watcher = watcher.clone();
    let ready: ReadyFn = Arc::new(move || {
        ready_watcher
            .current()
            .is_some_and(|placement| !placement.epochs.is_empty())
    });
    let store = ClusterStore::new(watcher.clone(), ClusterStoreOptions::default(), metrics);
    Ok(StoreView {
        store: Arc::new(store),
        ready,
        watcher: Some(watcher),
    })
}

async fn bind(addr: &str, key: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} ({key})"))
}

/// `all` (frontend + store in one process) or `store` alone.
async fn run_with_store(config: Config) -> anyhow::Result<()> {
    let mut registry = Registry::default();
    let http_listener = bind(&config.server.http_addr, "server.http_addr").await?;
    let grpc_listener = bind(&config.server.grpc_addr, "server.grpc_addr").await?;
    let engine = Engine::new(
        config.engine_options_for_store(),
        StoreMetrics::new(&mut registry),
    )?;
    let engine = Arc::new(engine);
    let store = LocalStore::new(engine.clone());

    let ready_engine = engine.clone();
    let ready: Arc<dyn Fn() -> bool + Send + Sync> = Arc::new(move || ready_engine.is_ready());
    let mut router = if config.target == Target::All {
        let store: Arc<dyn StoreApi> = Arc::new(store.clone());
        let querier = LocalQuerier::new(
            config.engine_options(),
            store.clone(),
            config.querier.max_series,
        );
        Frontend::new(
            config.frontend_config(),
            store,
            Some(Arc::new(querier)),
            ready.clone(),
            &mut registry,
        )
        .router()
    } else {
        health_router(ready.clone())
    };
    router = with_metrics(router, registry);

    let (stop, stopped) = watch::channel(false);
    let http = tokio::spawn(serve_http(http_listener, router, stopped.clone()));
    let grpc = tokio::spawn(serve_grpc(
        grpc_listener,
        tonic::transport::Server::builder().add_service(StoreService::server(store)),
        stopped.clone(),
    ));
    if config.target == Target::Store && !config.meta.addresses.is_empty() {
        let meta =
            MetaClient::new(&config.meta.addresses).map_err(|e| anyhow!("meta.addresses: {e}"))?;
        let identity = StoreIdentity {
            id: config.store.id.clone(),
            address: config.store_advertise_address(),
            zone: config.store.zone.clone(),
        };
        let overrides_engine = engine.clone();
        tokio::spawn(run_membership(
            Arc::new(meta),
            identity,
            config.store_heartbeat_interval(),
            move |state| overrides_engine.set_retention_overrides(retention_overrides(state)),
            stopped.clone(),
        ));
    }
    tracing::info!(
        target_role = ?config.target,
        http = %config.server.http_addr,
        grpc = %config.server.grpc_addr,
        data_dir = %config.data_dir.display(),
        "strata started, replaying the write-ahead log"
    );
    if let FsyncPolicy::Interval(period) = config.wal_options().fsync {
        tokio::spawn(sync_periodically(engine.clone(), period, stopped.clone()));
    }
    tokio::spawn(maintain_periodically(
        engine.clone(),
        config.maintenance_interval(),
        stopped.clone(),
    ));

    let replay_engine = engine.clone();
    let replay = tokio::task::spawn_blocking(move || replay_engine.replay());
    let failure = tokio::select! {
        () = shutdown_signal() => None,
        result = replay => match result {
            Ok(Ok(())) => {
                tracing::info!("ready");
                shutdown_signal().await;
                None
            }
            Ok(Err(error)) => Some(anyhow::Error::new(error)),
            Err(error) => Some(anyhow!("wal replay task failed: {error}")),
        },
    };
    tracing::info!("shutting down");
    let _ = stop.send(true);
    let _ = http.await;
    let _ = grpc.await;
    let sync_engine = engine.clone();
    let _ = tokio::task::spawn_blocking(move || sync_engine.shutdown()).await;
    tracing::info!("stopped");
    failure.map_or(Ok(()), Err)
}

/// Tenants' retention overrides (`retention_time`, `retention_size_bytes`
/// among their limits in meta) for the store engine; values that do not
/// parse are logged and skipped.
fn retention_overrides(
    state: &strata_proto::meta::ClusterState,
) -> std::collections::HashMap<String, RetentionOverride> {
    let mut overrides = std::collections::HashMap::new();
    for tenant in &state.tenants {
        let mut entry = RetentionOverride::default();
        if let Some(text) = tenant.limits.get("retention_time") {
            match crate::config::parse_duration(text) {
                Some(d) => entry.ms = Some(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
                None => {
                    tracing::warn!(tenant = %tenant.id, value = %text, "retention_time override is not a duration, ignored")
                }
            }
        }
        if let Some(text) = tenant.limits.get("retention_size_bytes") {
            match text.parse::<u64>() {
                Ok(bytes) => entry.bytes = Some(bytes),
                Err(_) => {
                    tracing::warn!(tenant = %tenant.id, value = %text, "retention_size_bytes override is not a number, ignored")
                }
            }
        }
        if entry != RetentionOverride::default() {
            overrides.insert(tenant.id.clone(), entry);
        }
    }
    overrides
}

/// `frontend`: the HTTP edge over the cluster's store nodes (or one store
/// node without meta), with PromQL on the queriers (or in-process).
async fn run_frontend(config: Config) -> anyhow::Result<()> {
    let mut registry = Registry::default();
    let http_listener = bind(&config.server.http_addr, "server.http_addr").await?;
    let (stop, stopped) = watch::channel(false);
    let StoreView {
        store,
        ready,
        watcher,
    } = store_view(&config, &mut registry, &stopped)?;
    let mut querier_pool = None;
    let querier: Arc<dyn QueryApi> = if config.frontend.querier_addresses.is_empty() {
        Arc::new(LocalQuerier::new(
            config.engine_options(),
            store.clone(),
            config.querier.max_series,
        ))
    } else {
        let pool = Arc::new(
            QuerierPool::new(
                &config.frontend.querier_addresses,
                config.frontend.max_concurrent_per_querier,
            )
            .map_err(|e| anyhow!("frontend.querier_addresses: {e}"))?,
        );
        // Names of headless services stand for all their pods, re-resolved.
        pool.resolve().await;
        tokio::spawn(pool.clone().run(QUERIER_RESOLVE_PERIOD, stopped.clone()));
        querier_pool = Some(Arc::clone(&pool));
        pool
    };
    let frontend = Frontend::new(
        config.frontend_config(),
        store,
        Some(querier),
        ready,
        &mut registry,
    );
    if let Some(watcher) = watcher {
        // Tenants' limit overrides as meta has them, without a restart.
        frontend.set_limit_overrides(Arc::new(move |tenant| watcher.tenant_limits(tenant)));
    }
    if let Some(pool) = querier_pool {
        // Shuffle sharding: each tenant's queries go to its own subset.
        pool.set_queriers_per_tenant(frontend.queriers_per_tenant());
    }
    let router = with_metrics(frontend.router(), registry);
    let http = tokio::spawn(serve_http(http_listener, router, stopped));
    tracing::info!(
        http = %config.server.http_addr,
        meta = ?config.meta.addresses,
        queriers = ?config.frontend.querier_addresses,
        "frontend started"
    );
    shutdown_signal().await;
    let _ = stop.send(true);
    let _ = http.await;
    Ok(())
}

/// `querier`: PromQL over the cluster's store nodes, served over gRPC.
async fn run_querier(config: Config) -> anyhow::Result<()> {
    let mut registry = Registry::default();
    let http_listener = bind(&config.server.http_addr, "server.http_addr").await?;
    let grpc_listener = bind(&config.server.grpc_addr, "server.grpc_addr").await?;
    let (stop, stopped) = watch::channel(false);
    let StoreView { store, ready, .. } = store_view(&config, &mut registry, &stopped)?;
    let querier: Arc<dyn QueryApi> = Arc::new(LocalQuerier::new(
        config.engine_options(),
        store,
        config.querier.max_series,
    ));
    let router = with_metrics(health_router(ready), registry);
    let http = tokio::spawn(serve_http(http_listener, router, stopped.clone()));
    let grpc = tokio::spawn(serve_grpc(
        grpc_listener,
        tonic::transport::Server::builder().add_service(QuerierService::server(querier)),
        stopped,
    ));
    tracing::info!(http = %config.server.http_addr, grpc = %config.server.grpc_addr, meta = ?config.meta.addresses, "querier started");
    shutdown_signal().await;
    let _ = stop.send(true);
    let _ = http.await;
    let _ = grpc.await;
    Ok(())
}

/// `meta`: one Raft voter of the cluster metadata service.
async fn run_meta(config: Config) -> anyhow::Result<()> {
    let mut registry = Registry::default();
    let http_listener = bind(&config.server.http_addr, "server.http_addr").await?;
    let grpc_listener = bind(&config.server.grpc_addr, "server.grpc_addr").await?;
    let mut options = MetaOptions::new(config.meta.node_id, config.data_dir.clone());
    options.peers = config.meta_peers().map_err(|e| anyhow!(e))?;
    options.replication_factor = config.meta.replication_factor;
    options.default_shards = config.meta.default_shards;
    options.min_stores = config.meta.min_stores;
    options.epoch_delay = config.meta_epoch_delay();
    options.heartbeat_timeout = config.meta_heartbeat_timeout();
    let node = MetaNode::start(options, &mut registry)
        .await
        .context("cannot start the meta node")?;
    let ready_node = node.clone();
    let router = with_metrics(
        health_router(Arc::new(move || ready_node.is_ready())),
        registry,
    );
    let (stop, stopped) = watch::channel(false);
    let http = tokio::spawn(serve_http(http_listener, router, stopped.clone()));
    let grpc = tokio::spawn(serve_grpc(
        grpc_listener,
        tonic::transport::Server::builder().add_service(node.service()),
        stopped,
    ));
    tracing::info!(node_id = config.meta.node_id, http = %config.server.http_addr, grpc = %config.server.grpc_addr, "meta node started");
    shutdown_signal().await;
    let _ = stop.send(true);
    let _ = http.await;
    let _ = grpc.await;
    node.shutdown().await;
    Ok(())
}

fn health_router(ready: Arc<dyn Fn() -> bool + Send + Sync>) -> Router {
    Router::new()
        .route("/-/healthy", get(|| async { "Strata is Healthy.\n" }))
        .route(
            "/-/ready",
            get(move || {
                let is_ready = ready();
                async move {
                    if is_ready {
                        (axum::http::StatusCode::OK, "Strata is Ready.\n")
                    } else {
                        (
                            axum::http::StatusCode::SERVICE_UNAVAILABLE,
                            "Service Unavailable\n",
                        )
                    }
                }
            }),
        )
}

/// Adds `/metrics` in the OpenMetrics text format.
fn with_metrics(router: Router, registry: Registry) -> Router {
    let registry = Arc::new(registry);
    router.route(
        "/metrics",
        get(move || {
            let registry = registry.clone();
            async move {
                let mut text = String::new();
                match prometheus_client::encoding::text::encode(&mut text, &registry) {
                    Ok(()) => (
                        [(
                            header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        text,
                    )
                        .into_response(),
                    Err(error) => (
                        axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                        error.to_string(),
                    )
                        .into_response(),
                }
            }
        }),
    )
}

async fn wait_for_stop(mut stopped: watch::Receiver<bool>) {
    let _ = stopped.wait_for(|stop| *stop).await;
}

async fn serve_http(listener: TcpListener, router: Router, stopped: watch::Receiver<bool>) {
    let result = axum::serve(listener, router)
        .with_graceful_shutdown(wait_for_stop(stopped))
        .await;
    if let Err(error) = result {
        tracing::error!(%error, "http server failed");
    }
}

async fn serve_grpc(
    listener: TcpListener,
    router: tonic::transport::server::Router,
    stopped: watch::Receiver<bool>,
) {
    // Without TCP_NODELAY small gRPC answers wait for the peer's delayed
    // ACK (Nagle): a 40 ms floor under every call, measured.
    let incoming = tokio_stream::StreamExt::map(
        tokio_stream::wrappers::TcpListenerStream::new(listener),
        |accepted| {
            accepted.inspect(|stream| {
                if let Err(error) = stream.set_nodelay(true) {
                    tracing::warn!(%error, "cannot set TCP_NODELAY on a gRPC connection");
                }
            })
        },
    );
    let result = router
        .serve_with_incoming_shutdown(incoming, wait_for_stop(stopped))
        .await;
    if let Err(error) = result {
        tracing::error!(%error, "grpc server failed");
    }
}

async fn sync_periodically(engine: Arc<Engine>, period: Duration, stopped: watch::Receiver<bool>) {
    let mut ticker = tokio::time::interval(period / 2);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = wait_for_stop(stopped.clone()) => return,
        }
        let engine = engine.clone();
        let _ = tokio::task::spawn_blocking(move || engine.sync_due()).await;
    }
}

/// Cuts due heads into blocks, compacts and applies retention, one pass
/// per period (the first after one period, once replay is done).
async fn maintain_periodically(
    engine: Arc<Engine>,
    period: Duration,
    stopped: watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval(period);
    ticker.tick().await;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = wait_for_stop(stopped.clone()) => return,
        }
        if !engine.is_ready() {
            continue;
        }
        let engine = engine.clone();
        let _ = tokio::task::spawn_blocking(move || engine.maintain()).await;
    }
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_proto::meta::{ClusterState, Tenant};

    #[test]
    fn retention_overrides_come_from_tenant_limits() {
        let tenant = |id: &str, limits: &[(&str, &str)]| Tenant {
            id: id.to_owned(),
            limits: limits
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            ..Tenant::default()
        };
        let state = ClusterState {
            tenants: vec![
                tenant(
                    "a",
                    &[("retention_time", "2d"), ("retention_size_bytes", "1000")],
                ),
                tenant(
                    "b",
                    &[("retention_time", "soon"), ("max_query_bytes", "10")],
                ),
                tenant("c", &[("retention_size_bytes", "7")]),
            ],
            ..ClusterState::default()
        };
        let overrides = retention_overrides(&state);
        assert_eq!(
            overrides.get("a"),
            Some(&RetentionOverride {
                ms: Some(2 * 86_400_000),
                bytes: Some(1000)
            })
        );
        assert_eq!(overrides.get("b"), None, "nothing usable");
        assert_eq!(
            overrides.get("c"),
            Some(&RetentionOverride {
                ms: None,
                bytes: Some(7)
            })
        );
    }
}
