//! `strata tool ...`: offline inspection of blocks.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use strata_store_node::block::Block;

use crate::cli::ToolCommand;

pub fn run(command: &ToolCommand) -> ExitCode {
    let mut out = std::io::stdout().lock();
    let result = match command {
        ToolCommand::InspectBlock { dir } => inspect_block(dir, &mut out),
        ToolCommand::Verify { dir } => verify(dir, &mut out),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("strata: {error}");
            ExitCode::from(2)
        }
    }
}

fn inspect_block(dir: &Path, out: &mut impl Write) -> Result<bool, String> {
    let block = Block::open(dir).map_err(|e| strata_store_node::error_chain(&e))?;
    let meta = block.meta();
    let sizes = block.sizes();
    let samples = meta.stats.num_samples + meta.stats.num_histograms;
    let per_sample = |bytes: u64| {
        if samples == 0 {
            0.0
        } else {
            bytes as f64 / samples as f64
        }
    };
    let lines = [
        format!("block             {}", meta.ulid),
        format!("directory         {}", dir.display()),
        format!(
            "time range        {} .. {} ({} .. {} ms, max exclusive)",
            rfc3339(meta.min_time),
            rfc3339(meta.max_time),
            meta.min_time,
            meta.max_time
        ),
        format!(
            "compaction level  {} ({} source blocks)",
            meta.compaction.level,
            meta.compaction.sources.len()
        ),
        format!("series            {}", meta.stats.num_series),
        format!("chunks            {}", meta.stats.num_chunks),
        format!("float samples     {}", meta.stats.num_samples),
        format!("histogram samples {}", meta.stats.num_histograms),
        format!("bytes chunks      {}", sizes.chunks),
        format!("bytes index       {}", sizes.index),
        format!("bytes meta.json   {}", sizes.meta),
        format!("bytes total       {}", sizes.total()),
        format!(
            "bytes per sample  {:.3} (chunks {:.3}, index {:.3})",
            per_sample(sizes.chunks + sizes.index),
            per_sample(sizes.chunks),
            per_sample(sizes.index)
        ),
    ];
    for line in lines {
        writeln!(out, "{line}").map_err(|e| e.to_string())?;
    }
    Ok(true)
}

/// Every block directory at or under `dir` (a block, a tenant or a data dir).
fn block_dirs(dir: &Path) -> Result<Vec<PathBuf>, String> {
    if dir.join("meta.json").exists() {
        return Ok(vec![dir.to_owned()]);
    }
    let mut found = Vec::new();
    for candidate in [dir.join("blocks"), dir.join("tenants")] {
        let Ok(entries) = std::fs::read_dir(&candidate) else {
            continue;
        };
        let mut children: Vec<PathBuf> = entries.filter_map(|e| Some(e.ok()?.path())).collect();
        children.sort();
        for child in children {
            if candidate.ends_with("blocks") {
                if child.join("meta.json").exists() {
                    found.push(child);
                }
            } else {
                found.extend(block_dirs(&child)?);
            }
        }
    }
    Ok(found)
}

fn verify(dir: &Path, out: &mut impl Write) -> Result<bool, String> {
    let dirs = block_dirs(dir)?;
    if dirs.is_empty() {
        return Err(format!("no block found at or under {}", dir.display()));
    }
    let mut healthy = true;
    for block_dir in dirs {
        let checked = Block::open(&block_dir).and_then(|block| block.verify());
        let line = match checked {
            Ok(chunks) => format!("ok       {} ({chunks} chunks)", block_dir.display()),
            Err(error) => {
                healthy = false;
                format!(
                    "DAMAGED  {}: {}",
                    block_dir.display(),
                    strata_store_node::error_chain(&error)
                )
            }
        };
        writeln!(out, "{line}").map_err(|e| e.to_string())?;
    }
    Ok(healthy)
}

/// Milliseconds since the epoch as RFC 3339 UTC (civil-from-days).
fn rfc3339(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (h, m, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{d:02}T{h:02}:{m:02}:{s:02}.{millis:03}Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_civil_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }
}
