//! `strata tool ...`: offline inspection of blocks, and the health check
//! command of the container image.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use strata_store_node::block::Block;

use crate::cli::ToolCommand;
use crate::logging::format_rfc3339_ms;

pub fn run(command: &ToolCommand) -> ExitCode {
    let mut out = std::io::stdout().lock();
    let result = match command {
        ToolCommand::InspectBlock { dir } => inspect_block(dir, &mut out),
        ToolCommand::Verify { dir } => verify(dir, &mut out),
        ToolCommand::Healthcheck { url } => healthcheck(url, &mut out),
        ToolCommand::Meta { addresses, command } => {
            crate::meta_tool::run(addresses, command, &mut out)
        }
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
            format_rfc3339_ms(meta.min_time),
            format_rfc3339_ms(meta.max_time),
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

/// A plain HTTP/1.0 GET: enough for `/-/ready` on loopback, and it keeps
/// an HTTP client library out of the binary.
fn healthcheck(url: &str, out: &mut impl Write) -> Result<bool, String> {
    use std::io::Read;
    use std::net::{TcpStream, ToSocketAddrs};
    use std::time::Duration;

    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("only http:// URLs are supported, got {url:?}"))?;
    let (authority, path) = match rest.find('/') {
        Some(slash) => (&rest[..slash], &rest[slash..]),
        None => (rest, "/"),
    };
    let timeout = Duration::from_secs(5);
    let addr = authority
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {authority}: {e}"))?
        .next()
        .ok_or_else(|| format!("{authority} resolves to no address"))?;
    let answer = (|| -> std::io::Result<String> {
        let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        write!(stream, "GET {path} HTTP/1.0\r\nHost: {authority}\r\n\r\n")?;
        let mut response = Vec::new();
        stream.take(64 * 1024).read_to_end(&mut response)?;
        Ok(String::from_utf8_lossy(&response).into_owned())
    })();
    let response = match answer {
        Ok(response) => response,
        Err(error) => {
            writeln!(out, "{url}: {error}").map_err(|e| e.to_string())?;
            return Ok(false);
        }
    };
    let status_line = response.lines().next().unwrap_or_default();
    let healthy = status_line.split_whitespace().nth(1) == Some("200");
    writeln!(out, "{url}: {status_line}").map_err(|e| e.to_string())?;
    Ok(healthy)
}
