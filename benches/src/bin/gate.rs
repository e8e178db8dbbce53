//! The regression gate's binary, driven by `benches/gate.sh`: `gate list` names the hot
//! paths, `gate run PATH` runs one fixed workload (under callgrind), and
//! `gate compare --baseline FILE --counts FILE [--threshold PCT] [--update]` prints the
//! table against the baseline and exits 1 on a regression (or rewrites the baseline).

use std::process::ExitCode;

use benches::{gate, workload};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("list") => {
            for path in workload::PATHS {
                println!("{path}");
            }
            ExitCode::SUCCESS
        }
        Some("run") => match args.get(1).and_then(|p| workload::run(p)) {
            Some(result) => {
                println!("{result}");
                ExitCode::SUCCESS
            }
            None => {
                eprintln!("gate run: want one of {}", workload::PATHS.join(", "));
                ExitCode::from(2)
            }
        },
        Some("compare") => match compare(&args[1..]) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("gate compare: {e}");
                ExitCode::from(2)
            }
        },
        _ => {
            eprintln!("usage: gate list | gate run PATH | gate compare --baseline FILE --counts FILE [--threshold PCT] [--update]");
            ExitCode::from(2)
        }
    }
}

fn compare(args: &[String]) -> Result<ExitCode, String> {
    let (mut baseline, mut counts, mut threshold, mut update) = (None, None, 5.0, false);
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--baseline" => baseline = it.next().cloned(),
            "--counts" => counts = it.next().cloned(),
            "--threshold" => {
                threshold = it
                    .next()
                    .and_then(|t| t.parse().ok())
                    .ok_or("--threshold wants a number (percent)")?
            }
            "--update" => update = true,
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    let baseline_path = baseline.ok_or("--baseline is required")?;
    let counts_path = counts.ok_or("--counts is required")?;
    let counts_text = std::fs::read_to_string(&counts_path).map_err(|e| format!("{counts_path}: {e}"))?;
    let now = gate::parse_counts(&counts_text)?;
    let base = match std::fs::read_to_string(&baseline_path) {
        Ok(text) => gate::read_baseline(&text)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Default::default(),
        Err(e) => return Err(format!("{baseline_path}: {e}")),
    };
    let rows = gate::compare(&base, &now, threshold);
    print!("{}", gate::render(&rows, threshold));
    if update {
        std::fs::write(&baseline_path, gate::write_baseline(&now)).map_err(|e| format!("{baseline_path}: {e}"))?;
        println!("gate: baseline {baseline_path} updated");
        return Ok(ExitCode::SUCCESS);
    }
    Ok(if rows.iter().any(|r| r.regressed) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
