//! `coconut-lens report`.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;

use super::plots::{self, Figure};
use super::{ReportOptions, markdown, report, total_runs};
use crate::cli::args::{ModelArgs, default_thoughts};
use crate::model::load_model;
use crate::plot::Format;

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// A ProsQA-schema JSON file.
    #[arg(long, value_name = "FILE")]
    pub data: PathBuf,
    #[command(flatten)]
    pub model: ModelArgs,
    /// The folder to write (report.json, report.md); it must not exist yet.
    #[arg(long, value_name = "DIR", default_value = "report")]
    pub out: PathBuf,
    /// Only the first N problems.
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Thought counts 0..=N in the accuracy table (at least the model's own).
    #[arg(long, value_name = "N", default_value_t = 8)]
    pub max_thoughts: usize,
    /// Seeds the noise of the intervention sweep.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

pub fn run(args: &ReportArgs) -> Result<()> {
    crate::interrupt::install()?;
    if args.out.exists() {
        bail!("{} already exists (not overwritten)", args.out.display());
    }
    let mut problems = crate::data::prosqa::read_problems(&args.data)?;
    if let Some(n) = args.limit {
        problems.truncate(n);
    }
    let source = args.model.source()?;
    let (device, dtype) = args.model.device_and_dtype()?;
    let loaded = load_model(&source, &device, dtype)?;
    let own = default_thoughts(&source);
    let opts = ReportOptions {
        max_thoughts: args.max_thoughts,
        seed: args.seed,
    };
    let bar = crate::cli::progress_bar("report");
    bar.set_length(total_runs(problems.len(), own, &opts) as u64);
    let data_name = args.data.file_name().map_or_else(
        || args.data.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let r = report(
        &loaded.model,
        &loaded.tokenizer,
        // The bundled model by its name in the repository, not this machine's path.
        &args
            .model
            .model
            .clone()
            .unwrap_or_else(|| crate::cli::args::BUNDLED_MODEL.to_string()),
        &data_name,
        &problems,
        own,
        &opts,
        &mut |done, _| bar.set_position(done as u64),
    )?;
    bar.finish_and_clear();
    // Everything goes into a hidden folder beside the output, renamed at the end: an
    // interrupted run leaves no report folder.
    let name = args
        .out
        .file_name()
        .map_or_else(|| "report".into(), |n| n.to_string_lossy().into_owned());
    let parent = args
        .out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), PathBuf::from);
    let partial = parent.join(format!(".{name}.partial-{}", std::process::id()));
    std::fs::create_dir_all(&partial)
        .with_context(|| format!("cannot create {}", partial.display()))?;
    let write = || -> Result<()> {
        std::fs::write(
            partial.join("report.json"),
            serde_json::to_string_pretty(&r)? + "\n",
        )?;
        std::fs::write(partial.join("report.md"), markdown::render(&r))?;
        for figure in Figure::ALL.into_iter().filter(|f| f.applies(&r)) {
            for format in [Format::Png, Format::Svg] {
                let file = partial.join(format!("{}.{}", figure.name(), format.ext()));
                plots::write(&r, figure, format, &file)?;
            }
        }
        crate::interrupt::check()?;
        std::fs::rename(&partial, &args.out)
            .with_context(|| format!("cannot create {}", args.out.display()))?;
        Ok(())
    };
    if let Err(e) = write() {
        let _ = std::fs::remove_dir_all(&partial);
        return Err(e);
    }
    eprintln!(
        "report of {} problems in {:.0} s: {}/report.md",
        r.n,
        r.compute_s,
        args.out.display()
    );
    Ok(())
}
