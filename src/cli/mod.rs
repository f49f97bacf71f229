//! Command-line interface: the clap root ([`Cli`]), the argument groups the commands share
//! ([`args`]) and the `analyze` command ([`analyze`]). The other commands' arguments live with
//! their modules (`data`, `train`, `eval`, `session`).

pub mod analyze;
pub mod args;

use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::PathBuf;

/// A progress bar on stderr named `label` (hidden without a terminal); set its length later.
pub fn progress_bar(label: &str) -> ProgressBar {
    ProgressBar::new(0)
        .with_style(
            ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} (left ~{eta})")
                .expect("a valid template")
                .progress_chars("=> "),
        )
        .with_message(label.to_string())
}

use args::{ModelArgs, PromptArgs, RunArgs};

#[derive(Parser, Debug)]
#[command(
    name = "coconut-lens",
    version,
    about = "Look inside language models that reason in continuous thought (Coconut)",
    long_about = "Look inside language models that reason in continuous thought (Coconut).\n\nWith no subcommand, opens the interactive explorer (TUI) on the bundled model and its demo prompt, or on --model and --prompt.",
    allow_negative_numbers = true,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// The interactive explorer's options (no subcommand).
    #[command(flatten)]
    pub tui: TuiArgs,
}

// Parsed once per run: boxing the larger variants would only add noise.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a prompt and print the analysis as JSON (schema coconut-lens.analysis.v1).
    Analyze(analyze::AnalyzeArgs),
    /// Generate and inspect data: ProsQA-style problems, statistics, the word-level tokenizer.
    Data(crate::data::cli::DataArgs),
    /// Train a model (a Llama by default) from scratch on generated ProsQA problems (Coconut
    /// curriculum or baselines).
    Train(crate::train::cli::TrainArgs),
    /// Accuracy on a ProsQA-schema file, with the thoughts' breadth-first frontier analysis.
    Eval(crate::eval::cli::EvalArgs),
    /// The paper's analyses over a ProsQA-schema file: accuracy against thoughts with the pause
    /// control, the frontier, norms, interventions, errors (report.json and report.md).
    Report(crate::report::cli::ReportArgs),
    /// Export the plots of a saved session (PNG and/or SVG).
    Export(crate::session::cli::ExportArgs),
}

/// Options of the interactive explorer, `coconut-lens [OPTIONS]`.
#[derive(Args, Debug)]
pub struct TuiArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub prompt: PromptArgs,
    #[command(flatten)]
    pub run: RunArgs,
    /// Tokens per cell in the logit lens.
    #[arg(long, default_value_t = 5)]
    pub top_k: usize,
    /// Prompt tokens shown as steps before the thoughts.
    #[arg(long, default_value_t = 3)]
    pub context_tokens: usize,
    /// Reopen a saved session: recompute it with its model (device and dtype from the session
    /// unless --device/--dtype are given) and restore its view, or show its saved results
    /// read-only when the model is not available.
    #[arg(long, value_name = "FILE")]
    pub session: Option<PathBuf>,
}
