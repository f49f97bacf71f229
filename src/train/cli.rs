//! `coconut-lens train`.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use super::{Progress, Recipe, TrainConfig, TrainOptions, train};

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// coconut (the curriculum), cot (full chain of thought) or no-cot (answer only).
    #[arg(long, default_value = "coconut")]
    pub recipe: String,
    /// The model folder to write; a checkpoint there of the same settings is resumed.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Generated training problems.
    #[arg(long)]
    pub train_size: Option<usize>,
    /// Generated validation problems (accuracy printed after each epoch).
    #[arg(long)]
    pub val_size: Option<usize>,
    #[arg(long)]
    pub layers: Option<usize>,
    #[arg(long)]
    pub d_model: Option<usize>,
    #[arg(long)]
    pub heads: Option<usize>,
    #[arg(long)]
    pub batch_size: Option<usize>,
    #[arg(long)]
    pub lr: Option<f64>,
    /// Epochs of stage 0 (full chain of thought).
    #[arg(long)]
    pub epochs_first: Option<usize>,
    /// Epochs of each stage 1..=max-stage.
    #[arg(long)]
    pub epochs_per_stage: Option<usize>,
    /// Extra epochs at the last stage.
    #[arg(long)]
    pub epochs_last: Option<usize>,
    /// Last curriculum stage.
    #[arg(long)]
    pub max_stage: Option<usize>,
    /// Small graphs (8 nodes, depth 3) instead of ProsQA-shaped ones: for quick checks.
    #[arg(long)]
    pub tiny: bool,
    /// Stop after this many batches (a checkpoint is written first); run again to resume.
    #[arg(long, value_name = "N")]
    pub max_batches: Option<usize>,
    /// Minutes between mid-epoch checkpoints.
    #[arg(long, default_value_t = 10.0)]
    pub checkpoint_minutes: f64,
}

impl TrainArgs {
    pub fn config(&self) -> Result<TrainConfig> {
        let mut c = TrainConfig::bundled(Recipe::parse(&self.recipe)?);
        c.seed = self.seed;
        if self.tiny {
            c.data = super::DataShape::Tiny;
        }
        let set = |slot: &mut usize, v: Option<usize>| {
            if let Some(v) = v {
                *slot = v;
            }
        };
        set(&mut c.train_size, self.train_size);
        set(&mut c.val_size, self.val_size);
        set(&mut c.layers, self.layers);
        set(&mut c.d_model, self.d_model);
        set(&mut c.heads, self.heads);
        set(&mut c.batch_size, self.batch_size);
        set(&mut c.epochs_first, self.epochs_first);
        set(&mut c.epochs_per_stage, self.epochs_per_stage);
        set(&mut c.epochs_last, self.epochs_last);
        set(&mut c.max_stage, self.max_stage);
        if let Some(lr) = self.lr {
            c.lr = lr;
        }
        Ok(c)
    }
}

fn hms(s: f64) -> String {
    let s = s.max(0.0) as u64;
    format!("{}h{:02}m{:02}s", s / 3600, s / 60 % 60, s % 60)
}

pub fn run(args: &TrainArgs) -> Result<()> {
    let cfg = args.config()?;
    cfg.check()?;
    let epochs = cfg.schedule().len();
    eprintln!(
        "training {} ({} layers, d={}, {} heads) on {} generated problems, {} epochs, into {}",
        cfg.recipe.name(),
        cfg.layers,
        cfg.d_model,
        cfg.heads,
        cfg.train_size,
        epochs,
        args.out.display()
    );
    let mut last_line = std::time::Instant::now();
    let mut progress = |p: &Progress| match p {
        Progress::Batch {
            epoch,
            epochs,
            stage,
            batch,
            batches,
            loss,
            eta_s,
        } => {
            if last_line.elapsed().as_secs_f64() >= 5.0 || batch == batches {
                last_line = std::time::Instant::now();
                eprintln!(
                    "epoch {}/{epochs} stage {stage} batch {batch}/{batches} loss {loss:.4} left ~{}",
                    epoch + 1,
                    hms(*eta_s)
                );
            }
        }
        Progress::Epoch(log) => eprintln!(
            "epoch {} done: stage {} mean loss {:.4} validation accuracy {:.3} ({} so far)",
            log.epoch + 1,
            log.stage,
            log.loss,
            log.val_accuracy,
            hms(log.seconds)
        ),
        Progress::Checkpoint(dir) => {
            eprintln!("checkpoint {}", dir.display());
            let _ = std::io::stderr().flush();
        }
    };
    let st = train(
        &cfg,
        &args.out,
        TrainOptions {
            max_batches: args.max_batches,
            checkpoint_every_s: args.checkpoint_minutes * 60.0,
            progress: &mut progress,
        },
    )?;
    if st.done() {
        eprintln!(
            "done in {}: model folder {}",
            hms(st.elapsed_s),
            args.out.display()
        );
    } else {
        eprintln!(
            "stopped at epoch {} batch {}; run the same command again to resume",
            st.epoch + 1,
            st.batch
        );
    }
    Ok(())
}
