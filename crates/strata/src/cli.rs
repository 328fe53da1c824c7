//! Command-line flags. Every configuration key has a flag; a flag given on
//! the command line overrides the file.

use std::path::PathBuf;

use clap::Parser;

use crate::config::{Config, FsyncMode, LogFormat, Target};

/// Strata: a Prometheus-compatible, multi-tenant time-series database.
///
/// With no arguments it runs a complete single-node server: HTTP on :9090
/// (Prometheus API, remote write at /api/v1/push and /api/v1/write, remote
/// read at /api/v1/read), gRPC on :9095, data in ./data.
#[derive(Debug, Parser)]
#[command(name = "strata", version, about, long_about)]
pub struct Cli {
    /// Offline tools instead of a server.
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Role(s) this process runs; `all` is a whole single-node server.
    #[arg(long, value_enum)]
    pub target: Option<Target>,

    /// YAML configuration file; flags override its values.
    #[arg(long = "config.file", value_name = "PATH")]
    pub config_file: Option<PathBuf>,

    /// HTTP listen address (Prometheus API, remote write/read, /metrics) [default: 0.0.0.0:9090].
    #[arg(long = "http-addr", value_name = "ADDR")]
    pub http_addr: Option<String>,

    /// gRPC listen address (internal store service) [default: 0.0.0.0:9095].
    #[arg(long = "grpc-addr", value_name = "ADDR")]
    pub grpc_addr: Option<String>,

    /// Directory for the WAL and all stored data [default: ./data].
    #[arg(long = "data-dir", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Log level or tracing filter, e.g. `debug` or `info,strata_store_node=debug` [default: info].
    #[arg(long = "log.level", value_name = "LEVEL")]
    pub log_level: Option<String>,

    /// Log line format [default: logfmt].
    #[arg(long = "log.format", value_enum)]
    pub log_format: Option<LogFormat>,

    /// OTLP/gRPC collector for spans, e.g. http://localhost:4317; empty disables [default: empty].
    #[arg(long = "tracing.otlp-endpoint", value_name = "URL")]
    pub otlp_endpoint: Option<String>,

    /// service.name of exported spans [default: strata].
    #[arg(long = "tracing.service-name", value_name = "NAME")]
    pub service_name: Option<String>,

    /// When the WAL is fsynced: before each acknowledgement (`always`) or every --wal.fsync-interval [default: always].
    #[arg(long = "wal.fsync", value_enum)]
    pub wal_fsync: Option<FsyncMode>,

    /// fsync period with --wal.fsync=interval, a duration such as 100ms or 1s [default: 1s].
    #[arg(long = "wal.fsync-interval", value_name = "DURATION")]
    pub wal_fsync_interval: Option<String>,

    /// Bytes after which a new WAL segment file starts [default: 134217728].
    #[arg(long = "wal.segment-size-bytes", value_name = "BYTES")]
    pub wal_segment_size_bytes: Option<u64>,

    /// Write each tenant's head to a snapshot at a clean shutdown, loaded at the next start instead of replaying the WAL [default: true].
    #[arg(long = "wal.snapshot-on-shutdown", value_name = "BOOL")]
    pub wal_snapshot_on_shutdown: Option<bool>,

    /// Time range of a block cut from the head [default: 2h].
    #[arg(long = "blocks.range", value_name = "DURATION")]
    pub blocks_range: Option<String>,

    /// Delete blocks older than this before the newest sample; 0s keeps everything [default: 0s].
    #[arg(long = "blocks.retention-time", value_name = "DURATION")]
    pub blocks_retention_time: Option<String>,

    /// Delete the oldest blocks while a tenant's blocks take more bytes; 0 means no limit [default: 0].
    #[arg(long = "blocks.retention-size-bytes", value_name = "BYTES")]
    pub blocks_retention_size_bytes: Option<u64>,

    /// Accept samples older than the head's lower bound (backfill) instead of refusing them as out of bounds [default: false].
    #[arg(long = "blocks.backfill", value_name = "BOOL")]
    pub blocks_backfill: Option<bool>,

    /// Accept float samples older than their series' newest when within this of the tenant's newest sample; 0s refuses them [default: 0s].
    #[arg(long = "blocks.out-of-order-window", value_name = "DURATION")]
    pub blocks_out_of_order_window: Option<String>,

    /// How often heads are checked for a due cut, compaction and retention [default: 1m].
    #[arg(long = "blocks.maintenance-interval", value_name = "DURATION")]
    pub blocks_maintenance_interval: Option<String>,

    /// Bytes of block postings lookups and series entries kept in memory [default: 67108864].
    #[arg(long = "blocks.cache-bytes", value_name = "BYTES")]
    pub blocks_cache_bytes: Option<u64>,

    /// Refuse requests without an X-Scope-OrgID header (401 "no org id") [default: false].
    #[arg(long = "tenancy.require-tenant", value_name = "BOOL")]
    pub require_tenant: Option<bool>,

    /// Tenant of requests without X-Scope-OrgID when it is not required [default: anonymous].
    #[arg(long = "tenancy.no-auth-tenant", value_name = "TENANT")]
    pub no_auth_tenant: Option<String>,

    /// Most labels per series, __name__ included [default: 30].
    #[arg(long = "limits.max-label-names-per-series", value_name = "N")]
    pub max_label_names_per_series: Option<usize>,

    /// Longest label name in bytes [default: 1024].
    #[arg(long = "limits.max-label-name-length", value_name = "BYTES")]
    pub max_label_name_length: Option<usize>,

    /// Longest label value in bytes [default: 2048].
    #[arg(long = "limits.max-label-value-length", value_name = "BYTES")]
    pub max_label_value_length: Option<usize>,

    /// Largest compressed remote write/read body; larger gets 413 [default: 10485760].
    #[arg(long = "limits.max-request-body-bytes", value_name = "BYTES")]
    pub max_request_body_bytes: Option<usize>,

    /// Largest decompressed body, checked before decompressing; larger gets 413 [default: 104857600].
    #[arg(long = "limits.max-decompressed-body-bytes", value_name = "BYTES")]
    pub max_decompressed_body_bytes: Option<usize>,

    /// Longest PromQL expression accepted in bytes, 0 for no limit [default: 262144].
    #[arg(long = "limits.max-query-bytes", value_name = "BYTES")]
    pub max_query_bytes: Option<usize>,

    /// Decompressed remote-write bytes being written at once; beyond it 429, 0 for no limit [default: 536870912].
    #[arg(long = "limits.max-inflight-write-bytes", value_name = "BYTES")]
    pub max_inflight_write_bytes: Option<usize>,

    /// Largest frame of a streamed remote-read response [default: 1048576].
    #[arg(long = "remote-read.max-bytes-in-frame", value_name = "BYTES")]
    pub max_bytes_in_frame: Option<usize>,

    /// Most samples in one SAMPLES remote-read response, 0 for no limit [default: 50000000].
    #[arg(long = "remote-read.sample-limit", value_name = "N")]
    pub sample_limit: Option<u64>,

    /// Lookback of instant selectors, a duration [default: 5m].
    #[arg(long = "querier.lookback-delta", value_name = "DURATION")]
    pub lookback_delta: Option<String>,

    /// Longest a query may run, a duration [default: 2m].
    #[arg(long = "querier.timeout", value_name = "DURATION")]
    pub query_timeout: Option<String>,

    /// Most samples one query may load [default: 50000000].
    #[arg(long = "querier.max-samples", value_name = "N")]
    pub max_samples: Option<usize>,

    /// Most series one query may load, all selectors together; 0 for no limit [default: 0].
    #[arg(long = "querier.max-series", value_name = "N")]
    pub max_series: Option<u64>,

    /// Store node a `--target frontend` or `querier` process uses without meta [default: http://127.0.0.1:9095].
    #[arg(long = "frontend.store-address", value_name = "URL")]
    pub store_address: Option<String>,

    /// Queriers a `--target frontend` process sends PromQL to, comma-separated gRPC URLs; none evaluates in-process [default: none].
    #[arg(
        long = "frontend.querier-addresses",
        value_name = "URLS",
        value_delimiter = ','
    )]
    pub querier_addresses: Option<Vec<String>>,

    /// Queries one querier is sent at once; more wait for a free slot [default: 8].
    #[arg(long = "frontend.max-concurrent-per-querier", value_name = "N")]
    pub max_concurrent_per_querier: Option<usize>,

    /// This meta node's Raft id, 1 or more (`--target meta`) [default: 0].
    #[arg(long = "meta.node-id", value_name = "ID")]
    pub meta_node_id: Option<u64>,

    /// Initial meta voters as comma-separated id=grpc-url, this node included [default: this node alone].
    #[arg(long = "meta.peers", value_name = "ID=URL,...", value_delimiter = ',')]
    pub meta_peers: Option<Vec<String>>,

    /// Meta nodes the store, querier and frontend roles use, comma-separated gRPC URLs; none means no cluster [default: none].
    #[arg(long = "meta.addresses", value_name = "URLS", value_delimiter = ',')]
    pub meta_addresses: Option<Vec<String>>,

    /// Replicas of each shard [default: 3].
    #[arg(long = "meta.replication-factor", value_name = "N")]
    pub meta_replication_factor: Option<u32>,

    /// Shards of a tenant unless overridden [default: 8].
    #[arg(long = "meta.default-shards", value_name = "N")]
    pub meta_default_shards: Option<u32>,

    /// Store nodes that must register before writes are placed [default: 1].
    #[arg(long = "meta.min-stores", value_name = "N")]
    pub meta_min_stores: Option<u32>,

    /// How far ahead a placement change takes effect [default: 10s].
    #[arg(long = "meta.epoch-delay", value_name = "DURATION")]
    pub meta_epoch_delay: Option<String>,

    /// A store node silent this long is unhealthy [default: 10s].
    #[arg(long = "meta.heartbeat-timeout", value_name = "DURATION")]
    pub meta_heartbeat_timeout: Option<String>,

    /// How often the other roles fetch the placement from meta [default: 1s].
    #[arg(long = "meta.refresh-interval", value_name = "DURATION")]
    pub meta_refresh_interval: Option<String>,

    /// Stable name of this store node [default: store-1].
    #[arg(long = "store.id", value_name = "ID")]
    pub store_id: Option<String>,

    /// gRPC URL other roles reach this store at [default: from --grpc-addr].
    #[arg(long = "store.advertise-address", value_name = "URL")]
    pub store_advertise_address: Option<String>,

    /// Failure domain of this store node [default: none].
    #[arg(long = "store.zone", value_name = "ZONE")]
    pub store_zone: Option<String>,

    /// How often this store node heartbeats to meta [default: 2s].
    #[arg(long = "store.heartbeat-interval", value_name = "DURATION")]
    pub store_heartbeat_interval: Option<String>,
    /// Range queries are split into intervals of this length evaluated in parallel; 0s disables splitting and the results cache [default: 24h].
    #[arg(
        long = "query-frontend.split-queries-by-interval",
        value_name = "DURATION"
    )]
    pub qf_split_queries_by_interval: Option<String>,

    /// Whether answers of split intervals are cached [default: true].
    #[arg(long = "query-frontend.cache-results", value_name = "BOOL")]
    pub qf_cache_results: Option<bool>,

    /// Memory the results cache may use (estimated) [default: 268435456].
    #[arg(long = "query-frontend.results-cache-max-bytes", value_name = "BYTES")]
    pub qf_results_cache_max_bytes: Option<u64>,

    /// Memory for rendered answers of whole requests answered from the
    /// results cache, served again as they are; 0: off [default: 67108864].
    #[arg(long = "query-frontend.rendered-cache-max-bytes", value_name = "BYTES")]
    pub qf_rendered_cache_max_bytes: Option<u64>,

    /// How long a cached answer is kept [default: 24h].
    #[arg(long = "query-frontend.results-cache-ttl", value_name = "DURATION")]
    pub qf_results_cache_ttl: Option<String>,

    /// Answers for times more recent than this before now are never cached [default: 10m].
    #[arg(long = "query-frontend.max-cache-freshness", value_name = "DURATION")]
    pub qf_max_cache_freshness: Option<String>,

    /// Querier calls in flight at once, all tenants together [default: 16].
    #[arg(long = "query-frontend.max-concurrent", value_name = "N")]
    pub qf_max_concurrent: Option<usize>,

    /// Split intervals of one query evaluated at once [default: 14].
    #[arg(long = "query-frontend.max-query-parallelism", value_name = "N")]
    pub qf_max_query_parallelism: Option<usize>,

    /// Querier calls one tenant may have queued; more get 429, 0 for no limit [default: 2048].
    #[arg(long = "query-frontend.max-outstanding-per-tenant", value_name = "N")]
    pub qf_max_outstanding_per_tenant: Option<usize>,

    /// Queries one tenant may run at once; more get 429, 0 for no limit [default: 64].
    #[arg(
        long = "query-frontend.max-concurrent-queries-per-tenant",
        value_name = "N"
    )]
    pub qf_max_concurrent_queries_per_tenant: Option<usize>,

    /// Retries of a querier call that failed as unavailable or internal [default: 3].
    #[arg(long = "query-frontend.max-retries", value_name = "N")]
    pub qf_max_retries: Option<u32>,

    /// Longest a query may take in the query frontend [default: 2m].
    #[arg(long = "query-frontend.timeout", value_name = "DURATION")]
    pub qf_timeout: Option<String>,

    /// Longest range (end - start) a query may ask for; 0s for no limit [default: 0s].
    #[arg(long = "query-frontend.max-query-length", value_name = "DURATION")]
    pub qf_max_query_length: Option<String>,

    /// How far before now a query may start; 0s for no limit [default: 0s].
    #[arg(long = "query-frontend.max-query-lookback", value_name = "DURATION")]
    pub qf_max_query_lookback: Option<String>,

    /// Queries slower than this are logged at warn, others at info [default: 10s].
    #[arg(
        long = "query-frontend.log-queries-longer-than",
        value_name = "DURATION"
    )]
    pub qf_log_queries_longer_than: Option<String>,

    /// Shards a shardable aggregation (sum, count, min, max, group, avg over
    /// per-series work) of a range query is split into; 0 or 1: off [default: 0].
    #[arg(long = "query-frontend.shard-count", value_name = "N")]
    pub qf_shard_count: Option<usize>,

    /// Queriers one tenant's queries may go to, a stable subset chosen by
    /// hashing the tenant (shuffle sharding); 0: all [default: 0].
    #[arg(long = "query-frontend.max-queriers-per-tenant", value_name = "N")]
    pub qf_max_queriers_per_tenant: Option<usize>,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Offline tools over a data directory.
    #[command(subcommand)]
    Tool(ToolCommand),
}

#[derive(Debug, clap::Subcommand)]
pub enum ToolCommand {
    /// Prints a block's time range, series, chunks, samples and bytes by
    /// section, and bytes per sample.
    InspectBlock {
        /// A block directory (`<data>/tenants/<tenant>/blocks/<ULID>`).
        dir: PathBuf,
    },
    /// Checks every checksum of a block, or of every block under a tenant or
    /// data directory; exits 1 when any is damaged.
    Verify {
        /// A block, tenant or data directory.
        dir: PathBuf,
    },
    /// The cluster's meta service: status, Raft voters, stores, tenants.
    Meta {
        /// Meta nodes (gRPC URLs, comma-separated); any of them answers.
        #[arg(
            long = "meta.addresses",
            value_name = "URLS",
            value_delimiter = ',',
            required = true
        )]
        addresses: Vec<String>,
        #[command(subcommand)]
        command: MetaCommand,
    },
    /// Exits 0 when an HTTP URL answers 200 within 5 s, 1 otherwise: the
    /// container health check (the image has no curl).
    Healthcheck {
        /// An `http://` URL.
        #[arg(long, default_value = "http://127.0.0.1:9090/-/ready")]
        url: String,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum MetaCommand {
    /// Raft status of every meta node, then members, epochs and tenants.
    Status,
    /// Adds a Raft voter (it must already run with its own --meta.node-id).
    AddVoter {
        #[arg(long)]
        id: u64,
        /// The new node's gRPC URL.
        #[arg(long)]
        address: String,
    },
    /// Removes a Raft voter.
    RemoveVoter {
        #[arg(long)]
        id: u64,
    },
    /// Decommissions a store node: a new placement epoch without it starts
    /// after the epoch delay; it keeps serving the epochs it was part of.
    RemoveStore {
        #[arg(long)]
        id: String,
    },
    /// Creates or changes a tenant: its shard count (a change starts a new
    /// epoch) and limit overrides.
    SetTenant {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        shards: Option<u32>,
        /// A limit override as key=value, repeatable.
        #[arg(long)]
        limit: Vec<String>,
        /// Replace the tenant's overrides instead of merging into them.
        #[arg(long)]
        replace_limits: bool,
    },
}

impl Cli {
    /// The configuration: defaults, then the file, then these flags.
    pub fn config(&self) -> Result<Config, String> {
        let mut config = match &self.config_file {
            Some(path) => Config::load(path)?,
            None => Config::new(),
        };
        self.apply(&mut config);
        Ok(config)
    }

    fn apply(&self, c: &mut Config) {
        fn set<T: Clone>(slot: &mut T, flag: &Option<T>) {
            if let Some(value) = flag {
                *slot = value.clone();
            }
        }
        set(&mut c.target, &self.target);
        set(&mut c.server.http_addr, &self.http_addr);
        set(&mut c.server.grpc_addr, &self.grpc_addr);
        set(&mut c.data_dir, &self.data_dir);
        set(&mut c.log.level, &self.log_level);
        set(&mut c.log.format, &self.log_format);
        set(&mut c.tracing.otlp_endpoint, &self.otlp_endpoint);
        set(&mut c.tracing.service_name, &self.service_name);
        set(&mut c.wal.fsync, &self.wal_fsync);
        set(&mut c.wal.fsync_interval, &self.wal_fsync_interval);
        set(&mut c.wal.segment_size_bytes, &self.wal_segment_size_bytes);
        set(
            &mut c.wal.snapshot_on_shutdown,
            &self.wal_snapshot_on_shutdown,
        );
        set(&mut c.blocks.range, &self.blocks_range);
        set(&mut c.blocks.retention_time, &self.blocks_retention_time);
        set(
            &mut c.blocks.retention_size_bytes,
            &self.blocks_retention_size_bytes,
        );
        set(&mut c.blocks.backfill, &self.blocks_backfill);
        set(
            &mut c.blocks.out_of_order_window,
            &self.blocks_out_of_order_window,
        );
        set(
            &mut c.blocks.maintenance_interval,
            &self.blocks_maintenance_interval,
        );
        set(&mut c.blocks.cache_bytes, &self.blocks_cache_bytes);
        set(&mut c.tenancy.require_tenant, &self.require_tenant);
        set(&mut c.tenancy.no_auth_tenant, &self.no_auth_tenant);
        set(
            &mut c.limits.max_label_names_per_series,
            &self.max_label_names_per_series,
        );
        set(
            &mut c.limits.max_label_name_length,
            &self.max_label_name_length,
        );
        set(
            &mut c.limits.max_label_value_length,
            &self.max_label_value_length,
        );
        set(
            &mut c.limits.max_request_body_bytes,
            &self.max_request_body_bytes,
        );
        set(
            &mut c.limits.max_decompressed_body_bytes,
            &self.max_decompressed_body_bytes,
        );
        set(&mut c.limits.max_query_bytes, &self.max_query_bytes);
        set(
            &mut c.limits.max_inflight_write_bytes,
            &self.max_inflight_write_bytes,
        );
        set(
            &mut c.remote_read.max_bytes_in_frame,
            &self.max_bytes_in_frame,
        );
        set(&mut c.remote_read.sample_limit, &self.sample_limit);
        set(&mut c.querier.lookback_delta, &self.lookback_delta);
        set(&mut c.querier.timeout, &self.query_timeout);
        set(&mut c.querier.max_samples, &self.max_samples);
        set(&mut c.querier.max_series, &self.max_series);
        set(&mut c.frontend.store_address, &self.store_address);
        set(&mut c.frontend.querier_addresses, &self.querier_addresses);
        set(
            &mut c.frontend.max_concurrent_per_querier,
            &self.max_concurrent_per_querier,
        );
        set(&mut c.meta.node_id, &self.meta_node_id);
        set(&mut c.meta.peers, &self.meta_peers);
        set(&mut c.meta.addresses, &self.meta_addresses);
        set(
            &mut c.meta.replication_factor,
            &self.meta_replication_factor,
        );
        set(&mut c.meta.default_shards, &self.meta_default_shards);
        set(&mut c.meta.min_stores, &self.meta_min_stores);
        set(&mut c.meta.epoch_delay, &self.meta_epoch_delay);
        set(&mut c.meta.heartbeat_timeout, &self.meta_heartbeat_timeout);
        set(&mut c.meta.refresh_interval, &self.meta_refresh_interval);
        set(&mut c.store.id, &self.store_id);
        set(
            &mut c.store.advertise_address,
            &self.store_advertise_address,
        );
        set(&mut c.store.zone, &self.store_zone);
        set(
            &mut c.store.heartbeat_interval,
            &self.store_heartbeat_interval,
        );
        set(
            &mut c.query_frontend.split_queries_by_interval,
            &self.qf_split_queries_by_interval,
        );
        set(&mut c.query_frontend.cache_results, &self.qf_cache_results);
        set(
            &mut c.query_frontend.results_cache_max_bytes,
            &self.qf_results_cache_max_bytes,
        );
        set(
            &mut c.query_frontend.results_cache_ttl,
            &self.qf_results_cache_ttl,
        );
        set(
            &mut c.query_frontend.max_cache_freshness,
            &self.qf_max_cache_freshness,
        );
        set(
            &mut c.query_frontend.max_concurrent,
            &self.qf_max_concurrent,
        );
        set(
            &mut c.query_frontend.max_query_parallelism,
            &self.qf_max_query_parallelism,
        );
        set(
            &mut c.query_frontend.max_outstanding_per_tenant,
            &self.qf_max_outstanding_per_tenant,
        );
        set(
            &mut c.query_frontend.max_concurrent_queries_per_tenant,
            &self.qf_max_concurrent_queries_per_tenant,
        );
        set(&mut c.query_frontend.max_retries, &self.qf_max_retries);
        set(&mut c.query_frontend.timeout, &self.qf_timeout);
        set(
            &mut c.query_frontend.max_query_length,
            &self.qf_max_query_length,
        );
        set(
            &mut c.query_frontend.max_query_lookback,
            &self.qf_max_query_lookback,
        );
        set(
            &mut c.query_frontend.log_queries_longer_than,
            &self.qf_log_queries_longer_than,
        );
        set(&mut c.query_frontend.shard_count, &self.qf_shard_count);
        set(
            &mut c.query_frontend.rendered_cache_max_bytes,
            &self.qf_rendered_cache_max_bytes,
        );
        set(
            &mut c.query_frontend.max_queriers_per_tenant,
            &self.qf_max_queriers_per_tenant,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_defaults() {
        let cli = Cli::parse_from([
            "strata",
            "--http-addr",
            "127.0.0.1:1",
            "--limits.max-label-names-per-series",
            "7",
            "--tenancy.require-tenant",
            "true",
            "--wal.fsync",
            "interval",
        ]);
        let config = cli.config().expect("config");
        assert_eq!(config.server.http_addr, "127.0.0.1:1");
        assert_eq!(config.limits.max_label_names_per_series, 7);
        assert!(config.tenancy.require_tenant);
        assert_eq!(config.wal.fsync, FsyncMode::Interval);
        assert_eq!(config.target, Target::All);
    }

    #[test]
    fn no_flags_means_defaults() {
        let config = Cli::parse_from(["strata"]).config().expect("config");
        assert_eq!(config, Config::new());
    }
}
