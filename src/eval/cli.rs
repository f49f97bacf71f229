//! `coconut-lens eval`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Result, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use super::{EvalMode, EvalReport, EvalSettings, evaluate_with, intervention_sweep};
use crate::cli::args::{ModelArgs, SamplingArgs, default_thoughts};
use crate::model::meta::{AccuracyRecord, ModelMeta};
use crate::model::{ModelSource, load_model};
use crate::thought::{ThoughtEdits, ThoughtMeans};

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// A ProsQA-schema JSON file.
    #[arg(long, value_name = "FILE")]
    pub data: PathBuf,
    #[command(flatten)]
    pub model: ModelArgs,
    /// coconut, pause (the `<|latent|>` embedding in every thought slot), soft (Soft Thinking,
    /// top-k 5, top-p 0.95), token (the greedy token in every slot), cot or no-cot.
    #[arg(long, default_value = "coconut")]
    pub mode: String,
    /// Thought slots (coconut, pause, soft, token). Default: the model's own setting, else 6.
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
    /// Replace what thoughts feed back on every problem, `Tk=OP,...` (zero, mean, noise:S,
    /// random:S, scale:F; see `analyze --help`).
    #[arg(long, value_name = "Tk=OP,...", default_value = "")]
    pub intervene: String,
    /// For each thought and each of zero, mean and noise:1, accuracy and the share of answers
    /// that change against the un-intervened run (coconut mode).
    #[arg(long)]
    pub intervention_sweep: bool,
    /// The mean thoughts `mean` uses (a file of --save-means). Default: the sweep's own
    /// un-intervened run, or the mean input embedding.
    #[arg(long, value_name = "FILE")]
    pub means: Option<PathBuf>,
    /// Write the mean of what each thought slot received over the problems (safetensors), for
    /// `mean`. An existing file is not replaced.
    #[arg(long, value_name = "FILE")]
    pub save_means: Option<PathBuf>,
    /// Seeds noise:S, random:S and sampling (each problem draws its own from it).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[command(flatten)]
    pub sampling: SamplingArgs,
}

pub fn run(args: &EvalArgs) -> Result<()> {
    let mode = EvalMode::parse(&args.mode)?;
    let mut problems = crate::data::prosqa::read_problems(&args.data)?;
    if let Some(n) = args.limit {
        problems.truncate(n);
    }
    let ops = ThoughtEdits::parse_ops(&args.intervene)?;
    let intervened = !ops.is_empty() || args.intervention_sweep;
    if intervened && mode != EvalMode::Coconut {
        bail!("--intervene and --intervention-sweep apply to coconut mode");
    }
    if !ops.is_empty() && args.intervention_sweep {
        bail!("--intervene and --intervention-sweep are exclusive (the sweep sets its own)");
    }
    if intervened && args.record {
        bail!("--record keeps the model's own figures: not with interventions");
    }
    let sampling = args.sampling.rule(args.seed)?;
    if !sampling.is_greedy() && args.record {
        bail!("--record keeps the model's greedy figures: not with --temperature");
    }
    if !sampling.is_greedy() && args.intervention_sweep {
        bail!("--intervention-sweep compares greedy answers: not with --temperature");
    }
    if let Some(p) = &args.save_means
        && p.exists()
    {
        bail!("{} already exists (not overwritten)", p.display());
    }
    let file_means = args
        .means
        .as_ref()
        .map(|p| ThoughtMeans::read(p).map(|m| (m, p.display().to_string())))
        .transpose()?;
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
    let mut tick = |done: usize, total: usize| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
        if bar.is_hidden() && last.elapsed().as_secs_f64() >= 5.0 {
            last = Instant::now();
            eprintln!("{done}/{total} ({:.0} s)", started.elapsed().as_secs_f64());
        }
    };
    let (model, tok) = (&loaded.model, &loaded.tokenizer);
    let (report, means) = if args.intervention_sweep {
        let (sweep, means) = intervention_sweep(
            model, tok, &problems, thoughts, file_means, args.seed, &mut tick,
        )?;
        bar.finish_and_clear();
        println!("{}", serde_json::to_string_pretty(&sweep)?);
        (None, means)
    } else {
        let edit = EvalSettings {
            ops,
            means: file_means.map(|(m, _)| m),
            seed: args.seed,
            sampling,
        };
        let r = evaluate_with(model, tok, &problems, mode, thoughts, &edit, &mut tick)?;
        bar.finish_and_clear();
        println!("{}", serde_json::to_string_pretty(&r.report)?);
        (Some(r.report), r.means)
    };
    if let Some(path) = &args.save_means {
        crate::files::write_atomic(path, &means.to_bytes()?, false)?;
        eprintln!("mean thoughts saved to {}", path.display());
    }
    let Some(report) = report else {
        return Ok(());
    };
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
/// than the model's own (the modes with thought slots).
pub fn record_key(report: &EvalReport, own_thoughts: usize) -> Result<String> {
    let mode = serde_json::to_value(report.mode)?;
    let mode = mode.as_str().unwrap_or("coconut");
    let thinks = !matches!(report.mode, EvalMode::Cot | EvalMode::NoCot);
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
