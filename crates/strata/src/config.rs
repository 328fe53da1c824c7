//! The configuration of every role: one YAML file, every key also a flag.
//! Precedence: built-in defaults < `--config.file` < flags.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use strata_common::TenantId;
use strata_frontend::{
    FrontendConfig, LimitsConfig, QueryFrontendConfig, RemoteReadConfig, TenancyConfig,
};
use strata_store_node::tenant_db::TenantOptions;
use strata_store_node::{EngineOptions, FsyncPolicy, WalOptions};

/// Which role(s) this process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// Every role in one process: a complete single-node server.
    #[default]
    All,
    /// The HTTP edge (Prometheus API, remote write/read): the distributor
    /// over the cluster's store nodes, queries through the queriers.
    Frontend,
    /// A store node: WAL, head, blocks and the gRPC store service.
    Store,
    /// A PromQL querier: the gRPC query service over the store nodes.
    Querier,
    /// A cluster metadata node (Raft).
    Meta,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Logfmt,
    Json,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Listen address of the HTTP API.
    pub http_addr: String,
    /// Listen address of the gRPC services.
    pub grpc_addr: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            http_addr: "0.0.0.0:9090".to_owned(),
            grpc_addr: "0.0.0.0:9095".to_owned(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `error`, `warn`, `info`, `debug`, `trace`, or a tracing filter such as `info,strata_store_node=debug`.
    pub level: String,
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".to_owned(),
            format: LogFormat::Logfmt,
        }
    }
}

/// Span export over OpenTelemetry (OTLP/gRPC).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TracingConfig {
    /// Collector address such as `http://localhost:4317`; empty disables export.
    pub otlp_endpoint: String,
    /// `service.name` of the exported spans.
    pub service_name: String,
}

impl Default for TracingConfig {
    fn default() -> Self {
        TracingConfig {
            otlp_endpoint: String::new(),
            service_name: "strata".to_owned(),
        }
    }
}

/// When the WAL is fsynced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum FsyncMode {
    /// Before every write is acknowledged (safe against power loss).
    #[default]
    Always,
    /// Every `wal.fsync_interval`; survives process crashes, may lose the last interval on power loss.
    Interval,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WalConfig {
    pub fsync: FsyncMode,
    /// A Prometheus duration (`100ms`, `1s`), used when `fsync` is `interval`.
    pub fsync_interval: String,
    /// Bytes after which a new WAL segment file is started.
    pub segment_size_bytes: u64,
    /// Write each tenant's head to a snapshot file at a clean shutdown; the
    /// next start loads it instead of replaying the WAL (a crash still
    /// replays the WAL).
    pub snapshot_on_shutdown: bool,
}

impl Default for WalConfig {
    fn default() -> Self {
        WalConfig {
            fsync: FsyncMode::Always,
            fsync_interval: "1s".to_owned(),
            segment_size_bytes: 128 << 20,
            snapshot_on_shutdown: true,
        }
    }
}

/// Blocks on disk: cutting, compaction, retention.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BlocksConfig {
    /// Time range of a block cut from the head; compaction merges blocks into 6× and 24× ranges.
    pub range: String,
    /// Delete blocks entirely older than this before the newest sample; `0s` keeps everything.
    pub retention_time: String,
    /// Delete the oldest blocks while a tenant's blocks take more bytes; 0 means no limit.
    pub retention_size_bytes: u64,
    /// Accept samples older than the head's lower bound into blocks of their own instead of refusing them as "out of bounds".
    pub backfill: bool,
    /// Accept float samples older than their series' newest when within this of the tenant's newest sample; `0s` refuses them as "out of order".
    pub out_of_order_window: String,
    /// How often the head is checked for a due cut, compaction and retention.
    pub maintenance_interval: String,
    /// Bytes of block postings lookups and series entries kept in memory.
    pub cache_bytes: u64,
}

impl Default for BlocksConfig {
    fn default() -> Self {
        BlocksConfig {
            range: "2h".to_owned(),
            retention_time: "0s".to_owned(),
            retention_size_bytes: 0,
            backfill: false,
            out_of_order_window: "0s".to_owned(),
            maintenance_interval: "1m".to_owned(),
            cache_bytes: 64 << 20,
        }
    }
}

/// PromQL evaluation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QuerierConfig {
    /// How far back an instant selector looks for a sample; a request's
    /// `lookback_delta` parameter overrides it.
    pub lookback_delta: String,
    /// Longest a query may run; a request's `timeout` can only shorten it.
    pub timeout: String,
    /// Most samples one query may load.
    pub max_samples: usize,
    /// Most series one query may load, all its selectors together; 0: no limit.
    pub max_series: u64,
}

impl Default for QuerierConfig {
    fn default() -> Self {
        QuerierConfig {
            lookback_delta: "5m".to_owned(),
            timeout: "2m".to_owned(),
            max_samples: 50_000_000,
            max_series: 0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FrontendRoleConfig {
    /// gRPC address of the one store node a `--target frontend` or
    /// `--target querier` process uses when `meta.addresses` is empty.
    pub store_address: String,
    /// gRPC addresses of the queriers a `--target frontend` process sends
    /// PromQL to; empty evaluates in the frontend process itself.
    pub querier_addresses: Vec<String>,
    /// Queries one querier is sent at once; more wait for a free slot.
    pub max_concurrent_per_querier: usize,
}

impl Default for FrontendRoleConfig {
    fn default() -> Self {
        FrontendRoleConfig {
            store_address: "http://127.0.0.1:9095".to_owned(),
            querier_addresses: Vec::new(),
            max_concurrent_per_querier: 8,
        }
    }
}

/// The meta service: a `--target meta` node's Raft settings, and where the
/// other roles find it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetaConfig {
    /// This meta node's Raft id (1, 2, ...); required with `--target meta`.
    pub node_id: u64,
    /// The initial voters as `id=grpc-url`, this node included.
    pub peers: Vec<String>,
    /// gRPC URLs of the meta nodes, for store, querier and frontend
    /// processes; empty runs them without a cluster (one static store).
    pub addresses: Vec<String>,
    /// Replicas of each shard (capped at the number of store nodes).
    pub replication_factor: u32,
    /// Shards of a tenant unless overridden for it.
    pub default_shards: u32,
    /// Store nodes that must register before the first placement epoch.
    pub min_stores: u32,
    /// How far in the future a placement change takes effect.
    pub epoch_delay: String,
    /// A store node silent this long is unhealthy.
    pub heartbeat_timeout: String,
    /// How often the other roles fetch the placement.
    pub refresh_interval: String,
}

impl Default for MetaConfig {
    fn default() -> Self {
        MetaConfig {
            node_id: 0,
            peers: Vec::new(),
            addresses: Vec::new(),
            replication_factor: 3,
            default_shards: 8,
            min_stores: 1,
            epoch_delay: "10s".to_owned(),
            heartbeat_timeout: "10s".to_owned(),
            refresh_interval: "1s".to_owned(),
        }
    }
}

/// A `--target store` node's identity in the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreRoleConfig {
    /// Stable name of this store node; it must survive restarts.
    pub id: String,
    /// gRPC URL the other roles reach this node at; empty derives it from
    /// `server.grpc_addr` (loopback for a wildcard address).
    pub advertise_address: String,
    /// Failure domain; a shard's replicas are spread across zones.
    pub zone: String,
    /// How often this node tells meta it is alive.
    pub heartbeat_interval: String,
}

impl Default for StoreRoleConfig {
    fn default() -> Self {
        StoreRoleConfig {
            id: "store-1".to_owned(),
            advertise_address: String::new(),
            zone: String::new(),
            heartbeat_interval: "2s".to_owned(),
        }
    }
}

/// The whole configuration file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub target: Target,
    pub data_dir: PathBuf,
    pub server: ServerConfig,
    pub log: LogConfig,
    pub tracing: TracingConfig,
    pub wal: WalConfig,
    pub blocks: BlocksConfig,
    pub tenancy: TenancyConfig,
    pub limits: LimitsConfig,
    pub remote_read: RemoteReadConfig,
    pub querier: QuerierConfig,
    pub frontend: FrontendRoleConfig,
    pub meta: MetaConfig,
    pub store: StoreRoleConfig,
    pub query_frontend: QueryFrontendConfig,
}

impl Config {
    /// Defaults that make `strata` with no arguments a working single node.
    pub fn new() -> Self {
        Config {
            data_dir: PathBuf::from("./data"),
            ..Config::default()
        }
    }

    /// Reads a YAML file over the defaults.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read config file {}: {e}", path.display()))?;
        let mut config: Config = serde_yaml::from_str(&text)
            .map_err(|e| format!("invalid config file {}: {e}", path.display()))?;
        if config.data_dir.as_os_str().is_empty() {
            config.data_dir = PathBuf::from("./data");
        }
        Ok(config)
    }

    /// Checks values the types cannot, naming the key at fault.
    pub fn validate(&self) -> Result<(), String> {
        for (key, addr) in [
            ("server.http_addr", &self.server.http_addr),
            ("server.grpc_addr", &self.server.grpc_addr),
        ] {
            addr.parse::<std::net::SocketAddr>()
                .map_err(|e| format!("{key}: invalid address {addr:?}: {e}"))?;
        }
        if self.data_dir.as_os_str().is_empty() {
            return Err("data_dir must not be empty".to_owned());
        }
        parse_duration(&self.wal.fsync_interval)
            .filter(|d| !d.is_zero())
            .ok_or_else(|| {
                format!(
                    "wal.fsync_interval: invalid duration {:?}",
                    self.wal.fsync_interval
                )
            })?;
        for (key, value) in [
            ("querier.lookback_delta", &self.querier.lookback_delta),
            ("querier.timeout", &self.querier.timeout),
        ] {
            parse_duration(value)
                .filter(|d| !d.is_zero())
                .ok_or_else(|| format!("{key}: invalid duration {value:?}"))?;
        }
        for (key, value) in [
            ("blocks.range", &self.blocks.range),
            (
                "blocks.maintenance_interval",
                &self.blocks.maintenance_interval,
            ),
        ] {
            parse_duration(value)
                .filter(|d| !d.is_zero())
                .ok_or_else(|| format!("{key}: invalid duration {value:?}"))?;
        }
        for (key, value) in [
            ("blocks.retention_time", &self.blocks.retention_time),
            (
                "blocks.out_of_order_window",
                &self.blocks.out_of_order_window,
            ),
        ] {
            parse_duration(value).ok_or_else(|| format!("{key}: invalid duration {value:?}"))?;
        }
        self.validate_cluster()?;
        if self.querier.max_samples == 0 {
            return Err("querier.max_samples must be greater than 0".to_owned());
        }
        if self.wal.segment_size_bytes < 4096 {
            return Err("wal.segment_size_bytes must be at least 4096".to_owned());
        }
        EnvFilterCheck::check(&self.log.level)?;
        let endpoint = &self.tracing.otlp_endpoint;
        let is_url = endpoint.starts_with("http://") || endpoint.starts_with("https://");
        if !endpoint.is_empty() && !is_url {
            return Err(format!(
                "tracing.otlp_endpoint: {endpoint:?} must start with http:// or https://"
            ));
        }
        self.frontend_config().validate()
    }

    /// The cluster keys: durations, URLs, and what each role needs.
    fn validate_cluster(&self) -> Result<(), String> {
        for (key, value) in [
            ("meta.epoch_delay", &self.meta.epoch_delay),
            ("meta.heartbeat_timeout", &self.meta.heartbeat_timeout),
            ("meta.refresh_interval", &self.meta.refresh_interval),
            ("store.heartbeat_interval", &self.store.heartbeat_interval),
        ] {
            parse_duration(value)
                .filter(|d| !d.is_zero())
                .ok_or_else(|| format!("{key}: invalid duration {value:?}"))?;
        }
        let urls = self
            .meta
            .addresses
            .iter()
            .map(|a| ("meta.addresses", a))
            .chain(
                self.frontend
                    .querier_addresses
                    .iter()
                    .map(|a| ("frontend.querier_addresses", a)),
            );
        for (key, url) in urls {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(format!(
                    "{key}: {url:?} must start with http:// or https://"
                ));
            }
        }
        if self.frontend.max_concurrent_per_querier == 0 {
            return Err("frontend.max_concurrent_per_querier must be at least 1".to_owned());
        }
        if self.meta_epoch_delay() < Duration::from_secs(2) {
            // Distributors route samples up to fetch time + delay − 1 s: a
            // shorter delay leaves no room for current samples.
            return Err(format!(
                "meta.epoch_delay: {:?} is too short, at least 2s",
                self.meta.epoch_delay
            ));
        }
        if self.meta.replication_factor == 0 {
            return Err("meta.replication_factor must be at least 1".to_owned());
        }
        if self.meta.default_shards == 0 {
            return Err("meta.default_shards must be at least 1".to_owned());
        }
        if self.target == Target::Meta {
            if self.meta.node_id == 0 {
                return Err("meta.node_id: --target meta needs a node id of 1 or more".to_owned());
            }
            self.meta_peers()?;
        }
        if self.target == Target::Store && !self.meta.addresses.is_empty() {
            TenantId::new(&self.store.id)
                .map_err(|e| format!("store.id: invalid id {:?}: {e}", self.store.id))?;
        }
        Ok(())
    }

    /// `meta.peers` parsed; just this node at its own gRPC address when empty.
    pub fn meta_peers(&self) -> Result<BTreeMap<u64, String>, String> {
        if self.meta.peers.is_empty() {
            return Ok(BTreeMap::from([(
                self.meta.node_id,
                advertised(&self.server.grpc_addr),
            )]));
        }
        let mut peers = BTreeMap::new();
        for peer in &self.meta.peers {
            let (id, url) = peer
                .split_once('=')
                .ok_or_else(|| format!("meta.peers: {peer:?} is not id=url"))?;
            let id: u64 = id
                .trim()
                .parse()
                .map_err(|_| format!("meta.peers: {id:?} is not a node id"))?;
            let url = url.trim();
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(format!(
                    "meta.peers: {url:?} must start with http:// or https://"
                ));
            }
            peers.insert(id, url.to_owned());
        }
        if !peers.contains_key(&self.meta.node_id) {
            return Err(format!(
                "meta.peers must include this node ({})",
                self.meta.node_id
            ));
        }
        Ok(peers)
    }

    /// The gRPC URL this store node registers under.
    pub fn store_advertise_address(&self) -> String {
        if self.store.advertise_address.is_empty() {
            advertised(&self.server.grpc_addr)
        } else {
            self.store.advertise_address.clone()
        }
    }

    /// The frontend's settings. The results cache's freshness window is
    /// at least `blocks.out_of_order_window`: samples may still arrive
    /// that far back, so nothing in it may be cached (a frontend learns the
    /// stores' window from this same key, in its own configuration).
    pub fn frontend_config(&self) -> FrontendConfig {
        let mut query_frontend = self.query_frontend.clone();
        let out_of_order = parse_duration(&self.blocks.out_of_order_window).unwrap_or_default();
        let freshness = parse_duration(&query_frontend.max_cache_freshness).unwrap_or_default();
        if out_of_order > freshness {
            query_frontend
                .max_cache_freshness
                .clone_from(&self.blocks.out_of_order_window);
        }
        FrontendConfig {
            tenancy: self.tenancy.clone(),
            limits: self.limits.clone(),
            remote_read: self.remote_read.clone(),
            query_frontend,
        }
    }

    /// The PromQL engine's settings (validated durations).
    pub fn engine_options(&self) -> strata_querier::EngineOptions {
        let ms =
            |text: &str, default: Duration| parse_duration(text).unwrap_or(default).as_millis();
        strata_querier::EngineOptions {
            lookback_delta_ms: i64::try_from(ms(
                &self.querier.lookback_delta,
                Duration::from_secs(300),
            ))
            .unwrap_or(300_000),
            timeout: parse_duration(&self.querier.timeout).unwrap_or(Duration::from_secs(120)),
            max_samples: self.querier.max_samples,
            ..strata_querier::EngineOptions::default()
        }
    }

    /// The store engine's settings (validated durations).
    pub fn engine_options_for_store(&self) -> EngineOptions {
        let ms = |text: &str| {
            parse_duration(text).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        };
        EngineOptions {
            data_dir: self.data_dir.clone(),
            tenant: TenantOptions {
                wal: self.wal_options(),
                block_range_ms: ms(&self.blocks.range).max(1),
                backfill: self.blocks.backfill,
                out_of_order_window_ms: ms(&self.blocks.out_of_order_window),
                retention_ms: ms(&self.blocks.retention_time),
                retention_bytes: self.blocks.retention_size_bytes,
            },
            block_cache_bytes: self.blocks.cache_bytes,
            snapshot_on_shutdown: self.wal.snapshot_on_shutdown,
        }
    }

    pub fn meta_epoch_delay(&self) -> Duration {
        parse_duration(&self.meta.epoch_delay).unwrap_or(Duration::from_secs(10))
    }

    pub fn meta_heartbeat_timeout(&self) -> Duration {
        parse_duration(&self.meta.heartbeat_timeout).unwrap_or(Duration::from_secs(10))
    }

    pub fn meta_refresh_interval(&self) -> Duration {
        parse_duration(&self.meta.refresh_interval).unwrap_or(Duration::from_secs(1))
    }

    pub fn store_heartbeat_interval(&self) -> Duration {
        parse_duration(&self.store.heartbeat_interval).unwrap_or(Duration::from_secs(2))
    }

    /// How often block maintenance runs.
    pub fn maintenance_interval(&self) -> Duration {
        parse_duration(&self.blocks.maintenance_interval).unwrap_or(Duration::from_secs(60))
    }

    pub fn wal_options(&self) -> WalOptions {
        let fsync = match self.wal.fsync {
            FsyncMode::Always => FsyncPolicy::Always,
            FsyncMode::Interval => FsyncPolicy::Interval(
                parse_duration(&self.wal.fsync_interval).unwrap_or(Duration::from_secs(1)),
            ),
        };
        WalOptions {
            fsync,
            segment_size: self.wal.segment_size_bytes,
        }
    }
}

/// A gRPC URL for a listen address: a wildcard address becomes loopback.
fn advertised(listen: &str) -> String {
    let addr = listen
        .replace("0.0.0.0:", "127.0.0.1:")
        .replace("[::]:", "[::1]:");
    format!("http://{addr}")
}

/// Validates a log filter without installing it.
struct EnvFilterCheck;

impl EnvFilterCheck {
    fn check(level: &str) -> Result<(), String> {
        tracing_subscriber::EnvFilter::builder()
            .parse(level)
            .map(|_| ())
            .map_err(|e| format!("log.level: invalid level {level:?}: {e}"))
    }
}

/// A Prometheus duration (`1h30m`, `100ms`).
pub fn parse_duration(text: &str) -> Option<Duration> {
    let ms = strata_common::duration::parse_duration_ms(text)?;
    u64::try_from(ms).ok().map(Duration::from_millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_inside_the_out_of_order_window_is_cached() {
        let mut config = Config::default();
        assert_eq!(
            config.frontend_config().query_frontend.max_cache_freshness,
            "10m"
        );
        config.blocks.out_of_order_window = "2h".to_owned();
        assert_eq!(
            config.frontend_config().query_frontend.max_cache_freshness,
            "2h"
        );
        // A longer freshness window of its own stays.
        config.query_frontend.max_cache_freshness = "3h".to_owned();
        assert_eq!(
            config.frontend_config().query_frontend.max_cache_freshness,
            "3h"
        );
        config.blocks.out_of_order_window = "5m".to_owned();
        config.query_frontend.max_cache_freshness = "10m".to_owned();
        assert_eq!(
            config.frontend_config().query_frontend.max_cache_freshness,
            "10m"
        );
    }

    #[test]
    fn the_example_config_parses_and_validates() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/strata.example.yaml");
        let config = Config::load(&path).expect("example config loads");
        config.validate().expect("example config is valid");
        assert_eq!(config.server.http_addr, "0.0.0.0:9090");
    }

    #[test]
    fn the_example_config_names_every_key() {
        // The example documents the defaults: loading it must equal the defaults.
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/strata.example.yaml");
        let config = Config::load(&path).expect("example config loads");
        assert_eq!(config, Config::new());
        let text = std::fs::read_to_string(&path).expect("read");
        let defaults = serde_yaml::to_value(Config::new()).expect("serialize");
        for (section, value) in defaults.as_mapping().expect("mapping") {
            let section = section.as_str().expect("string key");
            assert!(
                text.contains(&format!("{section}:")),
                "example lacks {section}"
            );
            if let Some(map) = value.as_mapping() {
                for key in map.keys() {
                    let key = key.as_str().expect("string key");
                    assert!(
                        text.contains(&format!("{key}:")),
                        "example lacks {section}.{key}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_reference_documents_every_key_and_flag() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/configuration.md");
        let text = std::fs::read_to_string(&path).expect("read docs/configuration.md");
        let defaults = serde_yaml::to_value(Config::new()).expect("serialize");
        for (section, value) in defaults.as_mapping().expect("mapping") {
            let section = section.as_str().expect("string key");
            match value.as_mapping() {
                Some(map) => {
                    for key in map.keys() {
                        let key = format!("`{section}.{}`", key.as_str().expect("string key"));
                        assert!(text.contains(&key), "docs/configuration.md lacks {key}");
                    }
                }
                None => assert!(
                    text.contains(&format!("`{section}`")),
                    "docs lack {section}"
                ),
            }
        }
        let help = <crate::cli::Cli as clap::CommandFactory>::command();
        for arg in help.get_arguments() {
            if let Some(long) = arg.get_long() {
                assert!(
                    text.contains(&format!("`--{long}`"))
                        || long == "config.file"
                        || long == "help"
                        || long == "version",
                    "docs/configuration.md lacks --{long}"
                );
            }
        }
    }

    #[test]
    fn the_reference_names_every_per_tenant_query_override() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/configuration.md");
        let text = std::fs::read_to_string(&path).expect("read docs/configuration.md");
        let section = text
            .split("## Per-tenant overrides")
            .nth(1)
            .and_then(|rest| rest.split("\n## ").next())
            .expect("a per-tenant overrides section");
        for key in strata_frontend::TENANT_OVERRIDABLE_KEYS {
            assert!(
                section.contains(&format!("`{key}`")),
                "the per-tenant overrides section lacks {key}"
            );
        }
    }

    #[test]
    fn unknown_keys_are_refused() {
        let error =
            serde_yaml::from_str::<Config>("limits:\n  max_series: 3\n").expect_err("unknown key");
        assert!(error.to_string().contains("max_series"), "{error}");
    }

    #[test]
    fn validation_names_the_key() {
        let mut config = Config::new();
        config.server.http_addr = "nonsense".into();
        assert!(
            config
                .validate()
                .expect_err("bad")
                .starts_with("server.http_addr")
        );
        let mut config = Config::new();
        config.wal.fsync_interval = "soon".into();
        assert!(
            config
                .validate()
                .expect_err("bad")
                .starts_with("wal.fsync_interval")
        );
        let mut config = Config::new();
        config.meta.epoch_delay = "1s".into();
        assert!(
            config
                .validate()
                .expect_err("too short")
                .starts_with("meta.epoch_delay")
        );
        let mut config = Config::new();
        config.target = Target::Meta;
        assert!(
            config
                .validate()
                .expect_err("no node id")
                .starts_with("meta.node_id")
        );
        config.meta.node_id = 2;
        config.meta.peers = vec!["1=http://a:9095".into()];
        assert!(
            config
                .validate()
                .expect_err("not among the peers")
                .contains("must include this node")
        );
        let mut config = Config::new();
        config.limits.max_label_name_length = 0;
        assert!(
            config
                .validate()
                .expect_err("bad")
                .contains("limits.max_label_name_length")
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("100ms"), Some(Duration::from_millis(100)));
        assert_eq!(parse_duration("1x"), None);
        assert_eq!(parse_duration(""), None);
    }
}
