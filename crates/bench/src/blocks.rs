//! `strata-bench ingest --blocks`: bytes on disk per sample once the pushed
//! data is in blocks, Strata next to Prometheus, and WAL bytes per sample
//! before.
//!
//! Strata cuts its head with `POST /api/v1/admin/flush` (one block per
//! 2 h range). Prometheus writes its head as a block with a TSDB snapshot
//! (`POST /api/v1/admin/tsdb/snapshot`, one block for the whole head).
//! Counted: every block's chunk files and index (meta.json and tombstones
//! are a few hundred bytes and left out).

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::target::{Server, disk_usage};

/// What one target holds on disk.
#[derive(Debug, Clone, Copy)]
pub struct OnDisk {
    pub wal_bytes: u64,
    pub chunk_bytes: u64,
    pub index_bytes: u64,
    pub blocks: usize,
    pub cut_seconds: f64,
}

/// Measures the WAL, cuts the server's data into blocks and measures them.
pub fn cut_and_measure(server: &Server, base: &str) -> Result<OnDisk> {
    let agent = ureq::Agent::new_with_defaults();
    let started = Instant::now();
    let (wal_bytes, blocks_root) = if server.name == "strata" {
        let tenants = server.data_dir.join("tenants");
        let wal: u64 = subdirs(&tenants)?
            .iter()
            .map(|t| disk_usage(&t.join("wal")))
            .sum();
        let mut response = agent
            .post(&format!("{base}/api/v1/admin/flush"))
            .send(&[][..])
            .context("POST /api/v1/admin/flush")?;
        if response.status().as_u16() != 200 {
            bail!("flush: {}", response.body_mut().read_to_string()?);
        }
        (wal, tenants)
    } else {
        let wal = disk_usage(&server.data_dir.join("wal"));
        let mut response = agent
            .post(&format!("{base}/api/v1/admin/tsdb/snapshot"))
            .send(&[][..])
            .context("POST /api/v1/admin/tsdb/snapshot")?;
        let text = response.body_mut().read_to_string()?;
        let json: serde_json::Value = serde_json::from_str(&text).context("snapshot answer")?;
        let name = json["data"]["name"]
            .as_str()
            .with_context(|| format!("snapshot answer without a name: {text}"))?;
        (wal, server.data_dir.join("snapshots").join(name))
    };
    let cut_seconds = started.elapsed().as_secs_f64();
    let mut on_disk = OnDisk {
        wal_bytes,
        chunk_bytes: 0,
        index_bytes: 0,
        blocks: 0,
        cut_seconds,
    };
    for block in block_dirs(&blocks_root)? {
        on_disk.blocks += 1;
        on_disk.chunk_bytes += disk_usage(&block.join("chunks"));
        on_disk.index_bytes += std::fs::metadata(block.join("index")).map_or(0, |m| m.len());
    }
    if on_disk.blocks == 0 {
        bail!("{}: no block under {}", server.name, blocks_root.display());
    }
    Ok(on_disk)
}

fn subdirs(dir: &Path) -> Result<Vec<std::path::PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("read {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            out.push(path);
        }
    }
    Ok(out)
}

/// Directories holding a `meta.json` at or below `dir`.
fn block_dirs(dir: &Path) -> Result<Vec<std::path::PathBuf>> {
    if dir.join("meta.json").exists() {
        return Ok(vec![dir.to_owned()]);
    }
    let mut out = Vec::new();
    for sub in subdirs(dir)? {
        out.extend(block_dirs(&sub)?);
    }
    Ok(out)
}

/// Prints the table and the Strata / Prometheus ratios.
pub fn print(rows: impl Iterator<Item = (String, u64, Option<OnDisk>)>) {
    println!(
        "| target | blocks | chunk bytes | index bytes | bytes/sample (chunks + index) | chunks only | WAL bytes/sample | cut s |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    let mut per_sample: Vec<(String, f64, f64)> = Vec::new();
    for (name, samples, on_disk) in rows {
        let Some(d) = on_disk else {
            continue;
        };
        let samples = samples.max(1) as f64;
        let total = (d.chunk_bytes + d.index_bytes) as f64 / samples;
        let wal = d.wal_bytes as f64 / samples;
        println!(
            "| {name} | {} | {} | {} | {total:.3} | {:.3} | {wal:.2} | {:.2} |",
            d.blocks,
            d.chunk_bytes,
            d.index_bytes,
            d.chunk_bytes as f64 / samples,
            d.cut_seconds
        );
        per_sample.push((name, total, wal));
    }
    println!();
    let find = |prefix: &str| per_sample.iter().find(|(n, _, _)| n.starts_with(prefix));
    if let (Some(s), Some(p)) = (find("strata"), find("prometheus")) {
        println!(
            "Strata / Prometheus on disk: blocks {:.2}× bytes per sample, WAL {:.2}×\n",
            s.1 / p.1,
            s.2 / p.2
        );
    }
}
