//! The regression gate's bookkeeping: reads instruction counts measured by callgrind
//! (`path count` lines), compares them with the committed baseline
//! (`benches/baseline.json`), renders the table that `gate.sh` prints, and writes a new
//! baseline on `--update`. A path fails when it costs more than `threshold_pct` percent
//! over its baseline; paths new to the baseline are reported, never failed.

use std::collections::BTreeMap;
use std::fmt::Write;

/// One row of the report.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// The hot path's name.
    pub path: String,
    /// Instructions in the baseline, if the path is there.
    pub baseline: Option<u64>,
    /// Instructions now.
    pub now: u64,
    /// Change from the baseline, percent.
    pub delta_pct: Option<f64>,
    /// Over the threshold.
    pub regressed: bool,
}

/// Parses `path count` lines (blank lines ignored).
///
/// # Errors
/// A line that is not a name and an integer.
pub fn parse_counts(text: &str) -> Result<Vec<(String, u64)>, String> {
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let mut parts = line.split_whitespace();
            match (parts.next(), parts.next().map(str::parse::<u64>), parts.next()) {
                (Some(path), Some(Ok(count)), None) => Ok((path.to_string(), count)),
                _ => Err(format!("bad count line `{line}`: want `path instructions`")),
            }
        })
        .collect()
}

/// Reads the `paths` object of a baseline file.
///
/// # Errors
/// Not JSON, or `paths` missing or holding something other than integers.
pub fn read_baseline(json: &str) -> Result<BTreeMap<String, u64>, String> {
    let value: serde_json::Value = serde_json::from_str(json).map_err(|e| format!("baseline is not JSON: {e}"))?;
    let paths = value
        .get("paths")
        .and_then(|p| p.as_object())
        .ok_or("baseline has no `paths` object")?;
    paths
        .iter()
        .map(|(path, count)| {
            count
                .as_u64()
                .map(|c| (path.clone(), c))
                .ok_or_else(|| format!("baseline `{path}` is not an integer"))
        })
        .collect()
}

/// The baseline file for `counts`.
pub fn write_baseline(counts: &[(String, u64)]) -> String {
    let paths: serde_json::Map<String, serde_json::Value> =
        counts.iter().map(|(p, c)| (p.clone(), (*c).into())).collect();
    let doc = serde_json::json!({
        "unit": "instructions (callgrind Ir) of one run of each gate workload; refresh with `bash benches/gate.sh --update`",
        "paths": paths,
    });
    let mut text = serde_json::to_string_pretty(&doc).unwrap_or_default();
    text.push('\n');
    text
}

/// Compares `now` with `baseline`; a row regresses when it grew by more than
/// `threshold_pct` percent.
pub fn compare(baseline: &BTreeMap<String, u64>, now: &[(String, u64)], threshold_pct: f64) -> Vec<Row> {
    now.iter()
        .map(|(path, count)| {
            let base = baseline.get(path).copied();
            let delta_pct = base
                .filter(|&b| b > 0)
                .map(|b| (*count as f64 - b as f64) * 100.0 / b as f64);
            Row {
                path: path.clone(),
                baseline: base,
                now: *count,
                delta_pct,
                regressed: delta_pct.is_some_and(|d| d > threshold_pct),
            }
        })
        .collect()
}

/// The report table, one line per row, then a verdict line.
pub fn render(rows: &[Row], threshold_pct: f64) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<16} {:>14} {:>14} {:>9}  verdict",
        "path", "baseline", "now", "delta"
    );
    for row in rows {
        let base = row.baseline.map_or("-".to_string(), |b| b.to_string());
        let delta = row.delta_pct.map_or("new".to_string(), |d| format!("{d:+.2}%"));
        let verdict = match row.delta_pct {
            None => "new (not gated)",
            Some(_) if row.regressed => "REGRESSION",
            Some(d) if d < -threshold_pct => "faster (consider --update)",
            Some(_) => "ok",
        };
        let _ = writeln!(
            out,
            "{:<16} {:>14} {:>14} {:>9}  {verdict}",
            row.path, base, row.now, delta
        );
    }
    let failed = rows.iter().filter(|r| r.regressed).count();
    if failed == 0 {
        let _ = writeln!(out, "gate: ok ({} paths within +{threshold_pct}%)", rows.len());
    } else {
        let _ = writeln!(
            out,
            "gate: FAILED: {failed} path(s) over +{threshold_pct}% instructions"
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_growth_over_the_threshold_only() {
        let baseline = read_baseline(r#"{"paths":{"a":1000,"b":1000,"c":1000}}"#).expect("baseline");
        let now = parse_counts("a 1049\nb 1100\nc 800\nd 5\n").expect("counts");
        let rows = compare(&baseline, &now, 5.0);
        let regressed: Vec<_> = rows.iter().filter(|r| r.regressed).map(|r| r.path.as_str()).collect();
        assert_eq!(regressed, ["b"]);
        assert_eq!(rows[3].baseline, None);
        let table = render(&rows, 5.0);
        assert!(
            table.contains("+10.00%") && table.contains("REGRESSION") && table.contains("FAILED: 1"),
            "{table}"
        );
        assert!(table.contains("new (not gated)"), "{table}");
    }

    #[test]
    fn baselines_round_trip() {
        let counts = vec![("ws_decode".to_string(), 123), ("chat_prepare".to_string(), 456)];
        let back = read_baseline(&write_baseline(&counts)).expect("round trip");
        assert_eq!(back.get("ws_decode"), Some(&123));
        assert_eq!(back.len(), 2);
    }

    #[test]
    fn rejects_bad_input() {
        assert!(parse_counts("a b").is_err());
        assert!(read_baseline("{}").is_err());
        assert!(read_baseline(r#"{"paths":{"a":"x"}}"#).is_err());
    }
}
