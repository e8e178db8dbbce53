//! `merge DIR... --out DIR`: adds up the `report.json` of several loadgen processes that ran
//! side by side (exact: histograms travel encoded) and their `latency.hlog`, whose merged
//! intervals also give the merged timeline its exact percentiles.

use std::path::Path;

use crate::cli::MergeArgs;
use crate::output::{self, hlog::IntervalLog};
use crate::report::hist::Percentiles;
use crate::report::{self, Report};

/// Merging that could not be done.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A report could not be read or the result written.
    #[error(transparent)]
    Output(#[from] output::Error),
    /// No report to merge.
    #[error("no report to merge")]
    Empty,
}

/// Reads every directory of `args`, merges, writes the result into `args.out`.
///
/// # Errors
/// A directory without a readable report, or an output that cannot be written.
pub fn merge(args: &MergeArgs) -> Result<Report, Error> {
    let mut reports = Vec::new();
    let mut logs = Vec::new();
    for dir in &args.dirs {
        let (report, log) = output::read(dir)?;
        reports.push(report);
        logs.push(log);
    }
    let mut merged = report::merge(&reports).ok_or(Error::Empty)?;
    let log = if logs.iter().all(Option::is_some) {
        let logs: Vec<IntervalLog> = logs.into_iter().flatten().collect();
        let log = IntervalLog::merge(&logs);
        exact_timeline(&mut merged, &log);
        log
    } else {
        IntervalLog::new()
    };
    write(&args.out, &merged, &log)?;
    Ok(merged)
}

/// Replaces the timeline's percentiles with those of the merged intervals (same order).
fn exact_timeline(report: &mut Report, log: &IntervalLog) {
    for (point, (_, _, hist)) in report.timeline.iter_mut().zip(log.iter()) {
        point.latency = Percentiles::of(&hist);
    }
}

fn write(dir: &Path, report: &Report, log: &IntervalLog) -> Result<(), output::Error> {
    output::write(dir, report, log)
}
