//! `coconut-lens data ...`: generate ProsQA-style problems, print statistics of a data file,
//! write the word-level tokenizer.

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::{Args, Subcommand};

use super::prosqa::{GenConfig, generate, read_problems, write_problems};
use super::{stats, tokenizer};

#[derive(Args, Debug)]
pub struct DataArgs {
    #[command(subcommand)]
    pub command: DataCommand,
}

#[derive(Subcommand, Debug)]
pub enum DataCommand {
    /// Generate ProsQA-style problems (a JSON array in the ProsQA schema).
    Prosqa(ProsqaArgs),
    /// Print statistics of a ProsQA-schema file as JSON.
    Stats(StatsArgs),
    /// Write the word-level tokenizer.json covering the ProsQA vocabulary.
    Tokenizer(TokenizerArgs),
}

#[derive(Args, Debug)]
pub struct ProsqaArgs {
    /// Number of problems.
    #[arg(long)]
    pub n: usize,
    /// Random seed: the same seed and split give a byte-identical file.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Split name, mixed into the seed: `--split train` and `--split valid` with one seed are
    /// independent streams.
    #[arg(long, default_value = "train")]
    pub split: String,
    /// Output file.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

#[derive(Args, Debug)]
pub struct StatsArgs {
    /// A ProsQA-schema JSON file.
    pub file: PathBuf,
}

#[derive(Args, Debug)]
pub struct TokenizerArgs {
    /// Output file (tokenizer.json).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// The compact form (template words of facts dropped by the normalizer), as the bundled
    /// model's.
    #[arg(long)]
    pub compact: bool,
}

pub fn run(args: &DataArgs) -> Result<()> {
    match &args.command {
        DataCommand::Prosqa(a) => {
            if a.n == 0 {
                bail!("--n must be at least 1");
            }
            let problems = generate(&GenConfig::default(), a.n, a.seed, &a.split)?;
            write_problems(&a.out, &problems)?;
            eprintln!(
                "wrote {} problems to {} (seed {}, split {})",
                problems.len(),
                a.out.display(),
                a.seed,
                a.split
            );
        }
        DataCommand::Stats(a) => {
            let problems = read_problems(&a.file)?;
            let s = stats::compute(&problems)?;
            println!("{}", serde_json::to_string_pretty(&s)?);
        }
        DataCommand::Tokenizer(a) => {
            tokenizer::write(
                &a.out,
                if a.compact {
                    tokenizer::TextForm::Compact
                } else {
                    tokenizer::TextForm::Words
                },
            )?;
            eprintln!(
                "wrote {} ({} tokens)",
                a.out.display(),
                tokenizer::vocabulary().len()
            );
        }
    }
    Ok(())
}
