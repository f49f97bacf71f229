use std::process::ExitCode;

use clap::Parser;
use coconut_lens::cli::analyze::analyze;
use coconut_lens::cli::{Cli, Command};

fn main() -> ExitCode {
    // The trainer runs the parts of a batch on threads of its own (`--threads`) and every
    // model op on one thread: faster on small models, and a run's bits then do not depend on
    // the machine's core count.
    if std::env::args().nth(1).as_deref() == Some("train") {
        // SAFETY: first statement of main, before any thread exists.
        unsafe { std::env::set_var("RAYON_NUM_THREADS", "1") };
    }
    // SAFETY: before any thread exists.
    unsafe { coconut_lens::model::pin_cpu_threads() };
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                let _ = e.print();
                return ExitCode::SUCCESS;
            }
            // One line: clap's first line names the problem.
            let text = e.render().to_string();
            eprintln!(
                "{}",
                text.lines().next().unwrap_or("error: invalid arguments")
            );
            return ExitCode::from(2);
        }
    };
    let result = match &cli.command {
        Some(Command::Analyze(args)) => analyze(args),
        Some(Command::Data(args)) => coconut_lens::data::cli::run(args),
        Some(Command::Train(args)) => coconut_lens::train::cli::run(args),
        Some(Command::Eval(args)) => coconut_lens::eval::cli::run(args),
        Some(Command::Report(args)) => coconut_lens::report::cli::run(args),
        Some(Command::Export(args)) => coconut_lens::session::cli::run(args),
        None => coconut_lens::tui::main(&cli.tui),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let msg = format!("{e:#}").replace('\n', " ");
            eprintln!("error: {msg}");
            ExitCode::FAILURE
        }
    }
}
