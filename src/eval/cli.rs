//! `coconut-lens eval`.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use clap::Args;

use super::{EvalMode, evaluate};
use crate::cli::{ModelArgs, default_thoughts};
use crate::model::load_model;

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// A ProsQA-schema JSON file.
    #[arg(long, value_name = "FILE")]
    pub data: PathBuf,
    #[command(flatten)]
    pub model: ModelArgs,
    /// coconut, cot or no-cot.
    #[arg(long, default_value = "coconut")]
    pub mode: String,
    /// Continuous thoughts (coconut mode). Default: the model's own setting, else 6.
    #[arg(long)]
    pub thoughts: Option<usize>,
    /// Evaluate only the first N problems.
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
}

pub fn run(args: &EvalArgs) -> Result<()> {
    let mode = EvalMode::parse(&args.mode)?;
    let mut problems = crate::data::prosqa::read_problems(&args.data)?;
    if let Some(n) = args.limit {
        problems.truncate(n);
    }
    let source = args.model.source()?;
    let (device, dtype) = args.model.device_and_dtype()?;
    let loaded = load_model(&source, &device, dtype)?;
    let thoughts = args.thoughts.unwrap_or_else(|| default_thoughts(&source));
    let started = Instant::now();
    let mut last = Instant::now();
    let report = evaluate(
        &loaded.model,
        &loaded.tokenizer,
        &problems,
        mode,
        thoughts,
        &mut |done, total| {
            if last.elapsed().as_secs_f64() >= 5.0 {
                last = Instant::now();
                eprintln!("{done}/{total} ({:.0} s)", started.elapsed().as_secs_f64());
            }
        },
    )?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}
