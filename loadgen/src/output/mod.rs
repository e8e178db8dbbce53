//! What a run leaves in `--out DIR`: `report.json` (for machines and `merge`),
//! `latency.hlog` (one histogram per second), `latency-percentiles.svg` and
//! `latency-over-time.svg`. Also reads a directory back for `merge`.

pub mod hlog;
pub mod plot;

use std::path::{Path, PathBuf};

use crate::report::Report;
use hlog::IntervalLog;

/// A file that could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// `report.json` is not a report.
    #[error("{path}: not a loadgen report: {reason}")]
    Json {
        /// The file.
        path: PathBuf,
        /// What serde said.
        reason: String,
    },
}

/// Writes the report, the interval log and the plots into `dir` (created if needed).
/// Plot failures are reported on stderr and do not fail the run.
///
/// # Errors
/// A directory or file that cannot be written.
pub fn write(dir: &Path, report: &Report, log: &IntervalLog) -> Result<(), Error> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let json = serde_json::to_string_pretty(report).map_err(|e| Error::Json {
        path: dir.join("report.json"),
        reason: e.to_string(),
    })?;
    let path = dir.join("report.json");
    std::fs::write(&path, json + "\n").map_err(io(&path))?;
    let path = dir.join("latency.hlog");
    let comment = format!(
        "loadgen {} run(s) {:?}: delivery latency per second",
        report.kind, report.run_ids
    );
    std::fs::write(&path, log.to_text(&comment)).map_err(io(&path))?;

    let l = &report.latency;
    let (delivery, broadcast, connect) = (l.delivery.hist(), l.broadcast.hist(), l.connect.hist());
    let plots = [
        (
            "latency-percentiles.svg",
            plot::percentiles(
                "latency by percentile",
                &[
                    ("delivery", &delivery),
                    ("broadcast completion", &broadcast),
                    ("connect", &connect),
                ],
            ),
        ),
        (
            "latency-over-time.svg",
            plot::over_time("delivery latency over time", &report.timeline),
        ),
    ];
    for (name, svg) in plots {
        let path = dir.join(name);
        match svg {
            Ok(svg) => std::fs::write(&path, svg).map_err(io(&path))?,
            Err(e) => eprintln!("loadgen: plot {name}: {e}"),
        }
    }
    Ok(())
}

/// Reads `dir/report.json` and, when present, `dir/latency.hlog`.
///
/// # Errors
/// A missing or unreadable report.
pub fn read(dir: &Path) -> Result<(Report, Option<IntervalLog>), Error> {
    let path = dir.join("report.json");
    let text = std::fs::read_to_string(&path).map_err(|source| Error::Io {
        path: path.clone(),
        source,
    })?;
    let report = serde_json::from_str(&text).map_err(|e| Error::Json {
        path,
        reason: e.to_string(),
    })?;
    let log = std::fs::read_to_string(dir.join("latency.hlog"))
        .ok()
        .map(|t| IntervalLog::parse(&t));
    Ok((report, log))
}
