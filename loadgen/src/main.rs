//! The `loadgen` binary: parses the command line and hands over to the library's
//! subcommands; prints reports on stdout and progress on stderr.

use std::process::ExitCode;

use loadgen::cli::{self, Command, ScenarioArgs};
use loadgen::report::table;
use loadgen::scenario::Scenario;
use loadgen::{merge, output, plan, run, sweep};

fn main() -> ExitCode {
    let cli = match cli::parse(std::env::args()) {
        Ok(cli) => cli,
        Err(cli::Error::Cli(e)) => e.exit(),
        Err(e) => return fail(&e),
    };
    match cli.command {
        Command::Run(args) => play(&args, "run"),
        Command::Hold(mut args) => {
            // Idle connections: nobody publishes, and there is nothing to warm up.
            args.publishers = 0;
            args.warmup = 0.0;
            play(&args, "hold")
        }
        Command::Sweep(args) => match sweep::sweep(&args) {
            Ok(report) => {
                print!("{}", sweep::render(&report));
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e),
        },
        Command::Plan(args) => match plan::plan(&args) {
            Ok(plan) => {
                println!("plan: {} written", args.out.join("plan.md").display());
                for s in &plan.sizing {
                    println!(
                        "{}: {} node(s), limited first by {}; {}",
                        s.mix, s.nodes, s.limited_by, s.basis
                    );
                }
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e),
        },
        Command::Merge(args) => match merge::merge(&args) {
            Ok(report) => {
                print!("{}", table::render(&report));
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e),
        },
    }
}

/// `run` and `hold`: one run, its table, its files.
fn play(args: &ScenarioArgs, kind: &str) -> ExitCode {
    let scenario = match Scenario::from_args(args) {
        Ok(s) => s,
        Err(e) => return fail(&e),
    };
    let out = scenario.out.clone();
    let outcome = match run::run(scenario, kind) {
        Ok(o) => o,
        Err(e) => return fail(&e),
    };
    print!("{}", table::render(&outcome.report));
    if let Some(dir) = out {
        if let Err(e) = output::write(&dir, &outcome.report, &outcome.log) {
            return fail(&e);
        }
    }
    if outcome.report.connections.ready == 0 {
        eprintln!("loadgen: no connection was ready; see errors above");
        return ExitCode::from(3);
    }
    let m = &outcome.report.messages;
    // With --confirm, what the server never confirmed is the publisher's to send again.
    let lost = m.lost.saturating_sub(m.lost_unconfirmed);
    if (args.fail_on_loss && lost + m.duplicates > 0) || (args.fail_on_reorder && m.reorders > 0) {
        eprintln!(
            "loadgen: {lost} lost, {} duplicates, {} out of order (--fail-on-loss, --fail-on-reorder)",
            m.duplicates, m.reorders
        );
        return ExitCode::from(4);
    }
    ExitCode::SUCCESS
}

fn fail(e: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("loadgen: {e}");
    ExitCode::from(2)
}
