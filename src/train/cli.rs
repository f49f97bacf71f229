//! `coconut-lens train`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use super::{EvalLog, FrontierSets, Progress, Recipe, TrainConfig, TrainOptions, train};
use crate::data::prosqa::{read_problems, validate};
use crate::model::Arch;

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
    /// llama or gpt2.
    #[arg(long)]
    pub arch: Option<String>,
    #[arg(long)]
    pub layers: Option<usize>,
    #[arg(long)]
    pub d_model: Option<usize>,
    #[arg(long)]
    pub heads: Option<usize>,
    /// Sequences per optimizer step.
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Threads, each running its share of a batch (part of the run's settings: a run resumes
    /// with the same).
    #[arg(long)]
    pub threads: Option<usize>,
    #[arg(long)]
    pub lr: Option<f64>,
    /// Optimizer steps at stage 0 (full chain of thought).
    #[arg(long)]
    pub steps_first: Option<u64>,
    /// Optimizer steps of each stage 1..max-stage.
    #[arg(long)]
    pub steps_per_stage: Option<u64>,
    /// Optimizer steps at the last stage.
    #[arg(long)]
    pub steps_last: Option<u64>,
    /// Last curriculum stage (its thought count is the model's).
    #[arg(long)]
    pub max_stage: Option<usize>,
    /// Weight of the frontier loss (0: plain Coconut, the language loss only).
    #[arg(long)]
    pub frontier: Option<f64>,
    /// Frontier targets: within (every node within k hops) or layer (exactly k hops).
    #[arg(long)]
    pub frontier_sets: Option<String>,
    /// Standard deviation of the token embedding at initialisation.
    #[arg(long)]
    pub embedding_std: Option<f64>,
    /// The final norm's gain at initialisation.
    #[arg(long)]
    pub final_norm_gain: Option<f64>,
    /// Probability that a training row asks about one of its concepts (frontier loss only).
    #[arg(long)]
    pub reroot: Option<f64>,
    /// Share of each problem's facts told at the start (grows to 1 over --grow-steps).
    #[arg(long)]
    pub facts_from: Option<f64>,
    #[arg(long)]
    pub grow_steps: Option<u64>,
    /// Generated validation problems (scored at every evaluation).
    #[arg(long)]
    pub val_size: Option<usize>,
    /// Optimizer steps between evaluations.
    #[arg(long)]
    pub eval_every: Option<u64>,
    /// A ProsQA-schema file whose accuracy is printed at every evaluation (never trained on).
    #[arg(long, value_name = "FILE")]
    pub watch: Option<PathBuf>,
    /// Small graphs (8 nodes, depth 3) instead of ProsQA-shaped ones: for quick checks.
    #[arg(long)]
    pub tiny: bool,
    /// Stop after this many steps (a checkpoint is written first); run again to resume.
    #[arg(long, value_name = "N")]
    pub max_steps: Option<u64>,
    /// Minutes between checkpoints.
    #[arg(long, default_value_t = 5.0)]
    pub checkpoint_minutes: f64,
}

impl TrainArgs {
    pub fn config(&self) -> Result<TrainConfig> {
        let mut c = TrainConfig::bundled(Recipe::parse(&self.recipe)?);
        c.seed = self.seed;
        if self.tiny {
            c.data = super::DataShape::Tiny;
        }
        if let Some(a) = &self.arch {
            c.arch = match a.as_str() {
                "llama" => Arch::Llama,
                "gpt2" => Arch::Gpt2,
                _ => anyhow::bail!("unknown --arch \"{a}\" (expected llama or gpt2)"),
            };
        }
        fn set<T: Copy>(slot: &mut T, v: Option<T>) {
            if let Some(v) = v {
                *slot = v;
            }
        }
        set(&mut c.layers, self.layers);
        set(&mut c.d_model, self.d_model);
        set(&mut c.heads, self.heads);
        set(&mut c.batch_size, self.batch_size);
        set(&mut c.shards, self.threads);
        set(&mut c.lr, self.lr);
        set(&mut c.steps_first, self.steps_first);
        set(&mut c.steps_per_stage, self.steps_per_stage);
        set(&mut c.steps_last, self.steps_last);
        set(&mut c.max_stage, self.max_stage);
        set(&mut c.frontier, self.frontier);
        set(&mut c.reroot, self.reroot);
        set(&mut c.init.embedding_std, self.embedding_std);
        set(&mut c.init.final_norm_gain, self.final_norm_gain);
        if let Some(f) = &self.frontier_sets {
            c.frontier_sets = match f.as_str() {
                "within" => FrontierSets::Within,
                "layer" => FrontierSets::Layer,
                _ => anyhow::bail!("unknown --frontier-sets \"{f}\" (expected within or layer)"),
            };
        }
        set(&mut c.facts_from, self.facts_from);
        set(&mut c.grow_steps, self.grow_steps);
        set(&mut c.val_size, self.val_size);
        set(&mut c.eval_every, self.eval_every);
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
    super::keep_freed_memory();
    let watch = match &args.watch {
        Some(path) => {
            let problems = read_problems(path)?;
            for (i, p) in problems.iter().enumerate() {
                validate(p).with_context(|| {
                    format!("{}: problem {i} is not a ProsQA problem", path.display())
                })?;
            }
            Some(problems)
        }
        None => None,
    };
    eprintln!(
        "training {} ({} {} layers, d={}, {} heads; batch {}, frontier weight {}) for {} steps into {}",
        cfg.recipe.name(),
        cfg.arch.label(),
        cfg.layers,
        cfg.d_model,
        cfg.heads,
        cfg.batch_size,
        cfg.frontier,
        cfg.total_steps(),
        args.out.display()
    );
    let bar = ProgressBar::new(cfg.total_steps()).with_style(
        ProgressStyle::with_template(
            "{elapsed_precise} [{bar:30}] {pos}/{len} steps, {msg} (left ~{eta})",
        )
        .expect("a valid template")
        .progress_chars("=> "),
    );
    // Without a terminal (a log file) the bar is hidden: a plain line every half minute.
    let mut last_line = std::time::Instant::now();
    let mut progress = |p: &Progress| {
        match p {
        Progress::Step {
            step,
            steps,
            draw,
            loss,
            eta_s,
        } => {
            let msg = format!("stage {} facts {} loss {loss:.3}", draw.stage, draw.facts);
            if bar.is_hidden() && last_line.elapsed().as_secs_f64() >= 30.0 {
                last_line = std::time::Instant::now();
                eprintln!("step {step}/{steps} {msg} left ~{}", hms(*eta_s));
            }
            bar.set_position(*step);
            bar.set_message(msg);
        }
        Progress::Eval(log) => bar.suspend(|| eprintln!("{}", describe(log))),
        Progress::Checkpoint(_) => {}
        Progress::Extended {
            step,
            steps_before,
            steps,
        } => bar.suspend(|| {
            eprintln!(
                "continuing the run at step {step}: its schedule grows from {steps_before} to {steps} steps (the same run so far)"
            )
        }),
    }
    };
    let st = train(
        &cfg,
        &args.out,
        TrainOptions {
            max_steps: args.max_steps,
            checkpoint_every_s: args.checkpoint_minutes * 60.0,
            watch: watch.as_deref(),
            progress: &mut progress,
        },
    )?;
    bar.finish_and_clear();
    if st.done() {
        eprintln!(
            "done in {}: model folder {}",
            hms(st.elapsed_s),
            args.out.display()
        );
    } else {
        eprintln!(
            "stopped at step {} of {}; run the same command again to resume",
            st.step,
            cfg.total_steps()
        );
    }
    Ok(())
}

/// One evaluation as a line of the log.
fn describe(log: &EvalLog) -> String {
    let mut line = format!(
        "step {} ({}) stage {} facts {:.0}%: loss {:.3}, language {:.3}/token",
        log.step,
        hms(log.seconds),
        log.stage,
        100.0 * log.facts_share,
        log.loss,
        log.language_loss
    );
    if let Some(f) = log.frontier_loss {
        line += &format!(", frontier {f:.3}");
    }
    line += &format!("; val accuracy {:.3}", log.val_accuracy);
    if !log.frontier_match.is_empty() {
        let m: Vec<String> = log
            .frontier_match
            .iter()
            .map(|m| format!("{:.2}", m))
            .collect();
        line += &format!(", frontier match {}", m.join(" "));
    }
    if let Some(c) = log.chain_lookup {
        line += &format!(", chain lookup {c:.2}");
    }
    if let Some(w) = log.watch_accuracy {
        line += &format!(", watched accuracy {w:.3}");
    }
    line
}
