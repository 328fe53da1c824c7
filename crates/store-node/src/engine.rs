//! The storage engine of one store node: a [`TenantDb`] per tenant under
//! `<data_dir>/tenants/<tenant>/`, opened (WAL replayed) at start-up and
//! created on a tenant's first write. It implements [`StoreApi`], so the
//! frontend can call it in-process and the gRPC service can expose it.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use async_trait::async_trait;
use parking_lot::RwLock;
use strata_common::raw_write::RawWrite;
use strata_common::{
    ErrorClass, Matcher, RawWriteResponse, SeriesValidator, ServiceError, StoreApi, TenantId,
};
use strata_proto::prometheus::{LabelMatcher, Labels};
use strata_proto::store::{
    FlushRequest, FlushResponse, LabelNamesRequest, LabelNamesResponse, LabelValuesRequest,
    LabelValuesResponse, MatcherSet, MetadataRequest, MetadataResponse, MetricFamilyMetadata,
    SelectRequest, SelectedSeries, SeriesRequest, SeriesResponse, WriteRequest, WriteResponse,
};

use crate::block::BlockCache;
use crate::maintenance::MaintenanceReport;
use crate::metrics::StoreMetrics;
use crate::tenant_db::{Retention, TenantDb, TenantDbError, TenantOptions};

/// A tenant's retention settings that differ from the configured ones.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionOverride {
    pub ms: Option<i64>,
    pub bytes: Option<u64>,
}

/// Where and how the engine stores data.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    pub data_dir: PathBuf,
    pub tenant: TenantOptions,
    /// Bytes of postings lookups and series entries kept in the block cache.
    pub block_cache_bytes: u64,
    /// Write each tenant's head to a snapshot at shutdown (see
    /// [`Engine::shutdown`]).
    pub snapshot_on_shutdown: bool,
}

impl EngineOptions {
    /// Defaults for everything but the directory.
    pub fn new(data_dir: PathBuf) -> Self {
        EngineOptions {
            data_dir,
            tenant: TenantOptions::default(),
            block_cache_bytes: 64 << 20,
            snapshot_on_shutdown: true,
        }
    }
}

/// The engine could not start.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("data directory {dir} is not usable")]
    DataDir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("data directory {dir} is in use by another strata process")]
    Locked { dir: PathBuf },
    #[error("failed to open tenant {tenant}")]
    Tenant {
        tenant: String,
        #[source]
        source: crate::tenant_db::TenantDbError,
    },
}

/// A store node's engine.
#[derive(Debug)]
pub struct Engine {
    options: EngineOptions,
    tenants: RwLock<HashMap<String, Arc<TenantDb>>>,
    /// Held while a tenant's directory is opened, so no two threads ever
    /// open the same WAL.
    opening: parking_lot::Mutex<()>,
    ready: AtomicBool,
    metrics: StoreMetrics,
    block_cache: Arc<BlockCache>,
    /// Tenants' retention overrides (from meta in a cluster).
    retention_overrides: RwLock<HashMap<String, RetentionOverride>>,
    /// Held for the engine's lifetime: one process per data directory.
    _lock: File,
}

impl Engine {
    /// Prepares the data directory (created if missing, checked writable,
    /// locked). Call [`Engine::replay`] before serving writes.
    pub fn new(options: EngineOptions, metrics: StoreMetrics) -> Result<Engine, EngineError> {
        let dir = options.data_dir.clone();
        let io_error = |source| EngineError::DataDir {
            dir: dir.clone(),
            source,
        };
        std::fs::create_dir_all(dir.join("tenants")).map_err(io_error)?;
        let lock = File::create(dir.join("LOCK")).map_err(io_error)?;
        if lock.try_lock().is_err() {
            return Err(EngineError::Locked { dir });
        }
        let block_cache = Arc::new(BlockCache::new(
            options.block_cache_bytes,
            metrics.block_cache_hits.clone(),
            metrics.block_cache_misses.clone(),
        ));
        Ok(Engine {
            options,
            block_cache,
            tenants: RwLock::new(HashMap::new()),
            opening: parking_lot::Mutex::new(()),
            ready: AtomicBool::new(false),
            metrics,
            retention_overrides: RwLock::default(),
            _lock: lock,
        })
    }

    /// Opens every tenant found on disk, replaying their WALs. Blocking.
    pub fn replay(&self) -> Result<(), EngineError> {
        let started = Instant::now();
        let tenants_dir = self.options.data_dir.join("tenants");
        let entries = std::fs::read_dir(&tenants_dir).map_err(|source| EngineError::DataDir {
            dir: tenants_dir.clone(),
            source,
        })?;
        let mut names: Vec<String> = entries
            .filter_map(Result::ok)
            .filter(|e| e.path().is_dir())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        names.sort();
        for name in names {
            if TenantId::new(&name).is_err() {
                tracing::warn!(dir = %name, "ignoring a directory that is not a tenant");
                continue;
            }
            self.open_tenant(&name)?;
        }
        self.ready.store(true, Ordering::SeqCst);
        tracing::info!(
            tenants = self.tenants.read().len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "wal replay finished"
        );
        Ok(())
    }

    /// Whether WAL replay has finished.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    /// Makes every tenant's WAL durable (shutdown).
    pub fn sync_all(&self) {
        for db in self.tenants.read().values() {
            if let Err(error) = db.sync() {
                tracing::error!(tenant = db.tenant(), error = %error, "wal sync failed");
            }
        }
    }

    /// At shutdown, once nothing writes any more: makes every tenant's WAL
    /// durable and, with `options.snapshot_on_shutdown`, writes each head
    /// to a snapshot the next start loads instead of replaying the WAL.
    /// A tenant whose snapshot fails is logged; its WAL replays as always.
    pub fn shutdown(&self) {
        self.sync_all();
        if !self.options.snapshot_on_shutdown || !self.is_ready() {
            return;
        }
        let started = Instant::now();
        let mut bytes = 0;
        let tenants: Vec<Arc<TenantDb>> = self.tenants.read().values().cloned().collect();
        for db in &tenants {
            match db.write_snapshot() {
                Ok(written) => bytes += written,
                Err(error) => {
                    tracing::error!(tenant = db.tenant(), error = %error, "head snapshot failed")
                }
            }
        }
        tracing::info!(
            tenants = tenants.len(),
            bytes,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "head snapshots written"
        );
    }

    /// Runs due interval fsyncs (called by a timer under the interval policy).
    pub fn sync_due(&self) {
        for db in self.tenants.read().values() {
            if let Err(error) = db.sync_if_due() {
                tracing::error!(tenant = db.tenant(), error = %error, "wal sync failed");
            }
        }
    }

    /// Replaces the tenants' retention overrides; the next maintenance pass
    /// applies them.
    pub fn set_retention_overrides(&self, overrides: HashMap<String, RetentionOverride>) {
        *self.retention_overrides.write() = overrides;
    }

    /// A tenant's retention: its overrides over the configured one.
    pub fn retention_for(&self, tenant: &str) -> Retention {
        let configured = Retention::of(&self.options.tenant);
        match self.retention_overrides.read().get(tenant) {
            Some(o) => Retention {
                ms: o.ms.unwrap_or(configured.ms),
                bytes: o.bytes.unwrap_or(configured.bytes),
            },
            None => configured,
        }
    }

    /// Runs one maintenance pass (cut due blocks, compact, retention) over
    /// every tenant; a failing tenant is logged and the others go on.
    pub fn maintain(&self) -> MaintenanceReport {
        let tenants: Vec<Arc<TenantDb>> = self.tenants.read().values().cloned().collect();
        let mut total = MaintenanceReport::default();
        for db in tenants {
            match db.maintain_with(self.retention_for(db.tenant())) {
                Ok(report) => {
                    total.blocks_cut += report.blocks_cut;
                    total.blocks_compacted += report.blocks_compacted;
                    total.blocks_deleted += report.blocks_deleted;
                }
                Err(error) => tracing::error!(
                    tenant = db.tenant(),
                    error = %error_chain(&error),
                    "block maintenance failed; the head keeps the data and it is retried"
                ),
            }
        }
        self.metrics.blocks_cut.inc_by(total.blocks_cut as u64);
        self.metrics
            .blocks_compacted
            .inc_by(total.blocks_compacted as u64);
        self.metrics
            .blocks_deleted
            .inc_by(total.blocks_deleted as u64);
        self.refresh_gauges();
        total
    }

    /// Sets the gauges of head series, blocks and cache size from the tenants.
    fn refresh_gauges(&self) {
        let tenants: Vec<Arc<TenantDb>> = self.tenants.read().values().cloned().collect();
        let (mut series, mut blocks, mut bytes) = (0i64, 0i64, 0i64);
        for db in tenants {
            series += db.head().num_series() as i64;
            for block in db.blocks() {
                blocks += 1;
                bytes += block.sizes().total() as i64;
            }
        }
        self.metrics.head_series.set(series);
        self.metrics.blocks.set(blocks);
        self.metrics.block_bytes.set(bytes);
        self.metrics
            .block_cache_bytes
            .set(self.block_cache.weighted_size() as i64);
    }

    /// Cuts the head of one tenant (or of all when `tenant` is empty) into
    /// blocks now. Returns the number of blocks written.
    pub fn flush(&self, tenant: &str) -> Result<u64, ServiceError> {
        self.check_ready()?;
        let tenants: Vec<Arc<TenantDb>> = self
            .tenants
            .read()
            .iter()
            .filter(|(name, _)| tenant.is_empty() || name.as_str() == tenant)
            .map(|(_, db)| db.clone())
            .collect();
        let mut blocks = 0;
        for db in tenants {
            blocks += db.flush().map_err(|e| storage_error(&e))? as u64;
        }
        Ok(blocks)
    }

    fn tenant_dir(&self, tenant: &str) -> PathBuf {
        self.options.data_dir.join("tenants").join(tenant)
    }

    fn open_tenant(&self, tenant: &str) -> Result<Arc<TenantDb>, EngineError> {
        let dir = self.tenant_dir(tenant);
        let (db, stats) = TenantDb::open(
            tenant,
            &dir,
            self.options.tenant.clone(),
            self.block_cache.clone(),
        )
        .map_err(|source| EngineError::Tenant {
            tenant: tenant.to_owned(),
            source,
        })?;
        let head = db.head();
        tracing::info!(
            tenant,
            segments = stats.segments,
            records = stats.records,
            truncated_bytes = stats.truncated_bytes,
            series = head.num_series(),
            samples = head.num_samples(),
            "tenant opened"
        );
        self.metrics.head_series.inc_by(head.num_series() as i64);
        drop(head);
        let db = Arc::new(db);
        self.tenants.write().insert(tenant.to_owned(), db.clone());
        Ok(db)
    }

    /// The tenant's database, created on first use.
    fn tenant_for_write(&self, tenant: &str) -> Result<Arc<TenantDb>, ServiceError> {
        if let Some(db) = self.tenants.read().get(tenant) {
            return Ok(db.clone());
        }
        TenantId::new(tenant).map_err(|e| ServiceError::bad_data(e.to_string()))?;
        let _opening = self.opening.lock();
        if let Some(db) = self.tenants.read().get(tenant) {
            return Ok(db.clone());
        }
        self.open_tenant(tenant)
            .map_err(|e| ServiceError::new(ErrorClass::Unavailable, error_chain(&e)))
    }

    /// The tenant's database if it has any data; reads wait for replay.
    fn tenant_for_read(&self, tenant: &str) -> Result<Option<Arc<TenantDb>>, ServiceError> {
        self.check_ready()?;
        Ok(self.tenants.read().get(tenant).cloned())
    }

    fn check_ready(&self) -> Result<(), ServiceError> {
        if self.is_ready() {
            Ok(())
        } else {
            Err(ServiceError::new(
                ErrorClass::Unavailable,
                "store is replaying its write-ahead log",
            ))
        }
    }

    fn write_blocking(&self, request: WriteRequest) -> Result<WriteResponse, ServiceError> {
        self.check_ready()?;
        let db = self.tenant_for_write(&request.tenant)?;
        let started = Instant::now();
        let outcome = db
            .write(&request.timeseries, &request.metadata)
            .map_err(|e| storage_error(&e))?;
        self.metrics.observe_write(&outcome, started.elapsed());
        Ok(outcome.response)
    }

    fn write_raw_blocking(
        &self,
        tenant: &str,
        request: &RawWrite,
        validator: &dyn SeriesValidator,
    ) -> Result<RawWriteResponse, ServiceError> {
        self.check_ready()?;
        let db = self.tenant_for_write(tenant)?;
        let started = Instant::now();
        let (outcome, invalid) = db
            .write_raw(request, validator)
            .map_err(|e| storage_error(&e))?;
        self.metrics.observe_write(&outcome, started.elapsed());
        Ok(RawWriteResponse {
            written: outcome.response,
            invalid,
        })
    }
}

use crate::error_chain;

/// The class of a tenant database failure: a block that fails to read is
/// an internal error; the WAL failing or a cut in progress is retryable.
fn storage_error(error: &TenantDbError) -> ServiceError {
    let class = match error {
        TenantDbError::Block { .. }
        | TenantDbError::Checkpoint { .. }
        | TenantDbError::Replay { .. }
        | TenantDbError::Snapshot { .. } => ErrorClass::Internal,
        TenantDbError::Wal { .. } | TenantDbError::Busy { .. } => ErrorClass::Unavailable,
    };
    ServiceError::new(class, error_chain(error))
}

fn matchers(wire: &[LabelMatcher]) -> Result<Vec<Matcher>, ServiceError> {
    wire.iter()
        .map(|m| Matcher::from_proto(m).map_err(|e| ServiceError::bad_data(e.to_string())))
        .collect()
}

fn matcher_sets(sets: &[MatcherSet]) -> Result<Vec<Vec<Matcher>>, ServiceError> {
    sets.iter().map(|s| matchers(&s.matchers)).collect()
}

/// Keeps at most `limit` items (0 = all); tells whether it cut.
fn truncate<T>(items: &mut Vec<T>, limit: u64) -> bool {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    if limit > 0 && items.len() > limit {
        items.truncate(limit);
        return true;
    }
    false
}

/// Runs blocking engine work off the async runtime.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ServiceError> + Send + 'static,
) -> Result<T, ServiceError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ServiceError::internal(format!("store task failed: {e}")))?
}

/// The engine as a [`StoreApi`], for in-process callers and the gRPC service.
#[derive(Debug, Clone)]
pub struct LocalStore {
    engine: Arc<Engine>,
}

impl LocalStore {
    pub fn new(engine: Arc<Engine>) -> Self {
        LocalStore { engine }
    }
}

impl std::ops::Deref for LocalStore {
    type Target = Engine;

    fn deref(&self) -> &Engine {
        &self.engine
    }
}

#[async_trait]
impl StoreApi for LocalStore {
    async fn write(&self, request: WriteRequest) -> Result<WriteResponse, ServiceError> {
        let engine = self.engine.clone();
        blocking(move || engine.write_blocking(request)).await
    }

    async fn write_raw(
        &self,
        tenant: &str,
        request: RawWrite,
        validator: Arc<dyn SeriesValidator>,
    ) -> Result<RawWriteResponse, ServiceError> {
        let engine = self.engine.clone();
        let tenant = tenant.to_owned();
        blocking(move || engine.write_raw_blocking(&tenant, &request, validator.as_ref())).await
    }

    async fn select(&self, request: SelectRequest) -> Result<Vec<SelectedSeries>, ServiceError> {
        let matchers = matchers(&request.matchers)?;
        let Some(db) = self.tenant_for_read(&request.tenant)? else {
            return Ok(Vec::new());
        };
        blocking(move || {
            db.select(&matchers, request.start_ms, request.end_ms)
                .map_err(|e| storage_error(&e))
        })
        .await
    }

    async fn series(&self, request: SeriesRequest) -> Result<SeriesResponse, ServiceError> {
        let sets = matcher_sets(&request.matcher_sets)?;
        let Some(db) = self.tenant_for_read(&request.tenant)? else {
            return Ok(SeriesResponse::default());
        };
        blocking(move || {
            let sets = db
                .label_sets(&sets, request.start_ms, request.end_ms)
                .map_err(|e| storage_error(&e))?;
            let mut series: Vec<Labels> =
                sets.into_iter().map(|labels| Labels { labels }).collect();
            let truncated = truncate(&mut series, request.limit);
            Ok(SeriesResponse { series, truncated })
        })
        .await
    }

    async fn label_names(
        &self,
        request: LabelNamesRequest,
    ) -> Result<LabelNamesResponse, ServiceError> {
        let sets = matcher_sets(&request.matcher_sets)?;
        let Some(db) = self.tenant_for_read(&request.tenant)? else {
            return Ok(LabelNamesResponse::default());
        };
        blocking(move || {
            let mut names = db
                .label_names(&sets, request.start_ms, request.end_ms)
                .map_err(|e| storage_error(&e))?;
            let truncated = truncate(&mut names, request.limit);
            Ok(LabelNamesResponse { names, truncated })
        })
        .await
    }

    async fn label_values(
        &self,
        request: LabelValuesRequest,
    ) -> Result<LabelValuesResponse, ServiceError> {
        let sets = matcher_sets(&request.matcher_sets)?;
        let Some(db) = self.tenant_for_read(&request.tenant)? else {
            return Ok(LabelValuesResponse::default());
        };
        blocking(move || {
            let mut values = db
                .label_values(&request.name, &sets, request.start_ms, request.end_ms)
                .map_err(|e| storage_error(&e))?;
            let truncated = truncate(&mut values, request.limit);
            Ok(LabelValuesResponse { values, truncated })
        })
        .await
    }

    async fn flush(&self, request: FlushRequest) -> Result<FlushResponse, ServiceError> {
        let engine = self.engine.clone();
        blocking(move || {
            let blocks = engine.flush(&request.tenant)?;
            Ok(FlushResponse { blocks })
        })
        .await
    }

    async fn metadata(&self, request: MetadataRequest) -> Result<MetadataResponse, ServiceError> {
        let Some(db) = self.tenant_for_read(&request.tenant)? else {
            return Ok(MetadataResponse::default());
        };
        let head = db.head();
        let metric = (!request.metric.is_empty()).then_some(request.metric.as_str());
        let mut families: Vec<MetricFamilyMetadata> = head
            .metadata(metric)
            .into_iter()
            .map(|(name, entries)| {
                let mut entries = entries.to_vec();
                truncate(&mut entries, request.limit_per_metric);
                MetricFamilyMetadata {
                    metric: name.to_owned(),
                    entries,
                }
            })
            .collect();
        truncate(&mut families, request.limit);
        Ok(MetadataResponse { families })
    }
}

/// The path of a tenant's data, for tools and tests.
pub fn tenant_path(data_dir: &Path, tenant: &TenantId) -> PathBuf {
    data_dir.join("tenants").join(tenant.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_common::MatchOp;
    use strata_common::labels::label;
    use strata_proto::prometheus::{Sample, TimeSeries};

    fn engine(dir: &Path) -> LocalStore {
        let engine = Engine::new(
            EngineOptions::new(dir.to_owned()),
            StoreMetrics::unregistered(),
        )
        .expect("engine");
        engine.replay().expect("replay");
        LocalStore::new(Arc::new(engine))
    }

    fn write(tenant: &str, name: &str, t: i64) -> WriteRequest {
        WriteRequest {
            tenant: tenant.to_owned(),
            timeseries: vec![TimeSeries {
                labels: vec![label("__name__", name)],
                samples: vec![Sample {
                    value: 1.0,
                    timestamp: t,
                }],
                ..Default::default()
            }],
            metadata: Vec::new(),
        }
    }

    async fn names(store: &LocalStore, tenant: &str) -> Vec<String> {
        let request = LabelValuesRequest {
            tenant: tenant.to_owned(),
            name: "__name__".to_owned(),
            start_ms: i64::MIN,
            end_ms: i64::MAX,
            ..Default::default()
        };
        store.label_values(request).await.expect("values").values
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tenants_are_isolated_and_survive_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let store = engine(dir.path());
            store.write(write("a", "only_a", 1)).await.expect("write a");
            store.write(write("b", "only_b", 1)).await.expect("write b");
        }
        let store = engine(dir.path());
        let m = Matcher::new(MatchOp::RegexMatch, "__name__", ".+").expect("matcher");
        let selected = store
            .select(SelectRequest {
                tenant: "a".to_owned(),
                matchers: vec![m.to_proto()],
                start_ms: i64::MIN,
                end_ms: i64::MAX,
            })
            .await
            .expect("select");
        assert_eq!(selected.len(), 1);
        assert_eq!(selected[0].labels, vec![label("__name__", "only_a")]);
        assert_eq!(names(&store, "b").await, vec!["only_b".to_owned()]);
        assert!(names(&store, "nobody").await.is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_first_writes_open_a_tenant_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = engine(dir.path());
        let tasks: Vec<_> = (0..8)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move { store.write(write("new", &format!("m{i}"), 1)).await })
            })
            .collect();
        for task in tasks {
            task.await.expect("join").expect("write");
        }
        let segments = std::fs::read_dir(dir.path().join("tenants/new/wal"))
            .expect("wal dir")
            .count();
        assert_eq!(segments, 1, "the tenant's WAL was opened more than once");
        drop(store);
        let store = engine(dir.path());
        assert_eq!(names(&store, "new").await.len(), 8);
    }

    #[test]
    fn tenant_retention_overrides_replace_only_what_they_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut options = EngineOptions::new(dir.path().to_owned());
        options.tenant.retention_ms = 1_000;
        options.tenant.retention_bytes = 2_000;
        let engine = Engine::new(options, StoreMetrics::unregistered()).expect("engine");
        let configured = Retention {
            ms: 1_000,
            bytes: 2_000,
        };
        assert_eq!(engine.retention_for("a"), configured);
        engine.set_retention_overrides(HashMap::from([(
            "a".to_owned(),
            RetentionOverride {
                ms: Some(5),
                bytes: None,
            },
        )]));
        assert_eq!(
            engine.retention_for("a"),
            Retention {
                ms: 5,
                bytes: 2_000
            }
        );
        assert_eq!(engine.retention_for("b"), configured);
        engine.set_retention_overrides(HashMap::new());
        assert_eq!(engine.retention_for("a"), configured);
    }

    #[test]
    fn a_second_engine_on_the_same_directory_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let options = EngineOptions::new(dir.path().to_owned());
        let _first = Engine::new(options.clone(), StoreMetrics::unregistered()).expect("first");
        let second = Engine::new(options, StoreMetrics::unregistered());
        assert!(matches!(second, Err(EngineError::Locked { .. })));
    }

    #[tokio::test]
    async fn writes_and_reads_wait_for_replay() {
        let dir = tempfile::tempdir().expect("tempdir");
        let engine = Engine::new(
            EngineOptions::new(dir.path().to_owned()),
            StoreMetrics::unregistered(),
        )
        .expect("engine");
        let store = LocalStore::new(Arc::new(engine));
        let error = store
            .write(write("a", "x", 1))
            .await
            .expect_err("not ready");
        assert_eq!(error.class, ErrorClass::Unavailable);
        let error = store
            .series(SeriesRequest {
                tenant: "a".to_owned(),
                ..Default::default()
            })
            .await
            .expect_err("not ready");
        assert_eq!(error.class, ErrorClass::Unavailable);
        store.replay().expect("replay");
        store.write(write("a", "x", 1)).await.expect("ready now");
    }
}
