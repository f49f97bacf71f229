//! `coconut-lens eval`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Result, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use super::{EvalMode, EvalReport, evaluate};
use crate::cli::args::{ModelArgs, default_thoughts};
use crate::model::meta::{AccuracyRecord, ModelMeta};
use crate::model::{ModelSource, load_model};

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// A ProsQA-schema JSON file.
    #[arg(long, value_name = "FILE")]
    pub data: PathBuf,
    #[command(flatten)]
    pub model: ModelArgs,
    /// coconut, pause (the `<|latent|>` embedding in every thought slot), cot or no-cot.
    #[arg(long, default_value = "coconut")]
    pub mode: String,
    /// Continuous thoughts (coconut mode). Default: the model's own setting, else 6.
    #[arg(long)]
    pub thoughts: Option<usize>,
    /// Evaluate only the first N problems.
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Also record the figures in the model folder's `coconut-lens.json`, under
    /// `accuracy.<data file name>.<mode>`, or `<mode>@<N>` for a thought count other than the
    /// model's own (a local model folder only).
    #[arg(long)]
    pub record: bool,
}

pub fn run(args: &EvalArgs) -> Result<()> {
    let mode = EvalMode::parse(&args.mode)?;
    let mut problems = crate::data::prosqa::read_problems(&args.data)?;
    if let Some(n) = args.limit {
        problems.truncate(n);
    }
    let source = args.model.source()?;
    let record_in = match (&source, args.record) {
        (ModelSource::Local(dir), true) => Some(dir.join(crate::model::meta::FILE_NAME)),
        (_, true) => bail!("--record needs a local model folder"),
        (_, false) => None,
    };
    let (device, dtype) = args.model.device_and_dtype()?;
    let loaded = load_model(&source, &device, dtype)?;
    let own_thoughts = default_thoughts(&source);
    let thoughts = args.thoughts.unwrap_or(own_thoughts);
    let bar = ProgressBar::new(problems.len() as u64).with_style(
        ProgressStyle::with_template(
            "{elapsed_precise} [{bar:30}] {pos}/{len} problems (left ~{eta})",
        )
        .expect("a valid template")
        .progress_chars("=> "),
    );
    // Without a terminal (a log file) the bar is hidden: a plain line every 5 seconds.
    let started = Instant::now();
    let mut last = Instant::now();
    let report = evaluate(
        &loaded.model,
        &loaded.tokenizer,
        &problems,
        mode,
        thoughts,
        &mut |done, total| {
            bar.set_position(done as u64);
            if bar.is_hidden() && last.elapsed().as_secs_f64() >= 5.0 {
                last = Instant::now();
                eprintln!("{done}/{total} ({:.0} s)", started.elapsed().as_secs_f64());
            }
        },
    )?;
    bar.finish_and_clear();
    println!("{}", serde_json::to_string_pretty(&report)?);
    if let Some(meta) = record_in {
        let data = args
            .data
            .file_stem()
            .map_or_else(|| "data".into(), |s| s.to_string_lossy().into_owned());
        record(&meta, &data, &report, own_thoughts)?;
        eprintln!("recorded in {}", meta.display());
    }
    Ok(())
}

/// The key a report is recorded under: its mode, with `@N` when it ran a thought count other
/// than the model's own (coconut and pause modes).
pub fn record_key(report: &EvalReport, own_thoughts: usize) -> Result<String> {
    let mode = serde_json::to_value(report.mode)?;
    let mode = mode.as_str().unwrap_or("coconut");
    let thinks = matches!(report.mode, EvalMode::Coconut | EvalMode::Pause);
    Ok(if thinks && report.thoughts != own_thoughts {
        format!("{mode}@{}", report.thoughts)
    } else {
        mode.to_string()
    })
}

/// Sets `accuracy.<data>.<key>` (see [`record_key`]) in the metadata file (created if
/// missing), keeping the rest.
fn record(meta: &Path, data: &str, report: &EvalReport, own_thoughts: usize) -> Result<()> {
    let mut doc = ModelMeta::read(meta)?.unwrap_or_default();
    let key = record_key(report, own_thoughts)?;
    let figures = AccuracyRecord {
        n: report.n,
        correct: report.correct,
        accuracy: report.accuracy,
        thoughts: report.thoughts,
        wrong_candidate: report.wrong_candidate,
        no_candidate: report.no_candidate,
    };
    doc.record_accuracy(data, &key, figures);
    doc.write(meta)
}
