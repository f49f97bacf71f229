//! Command-line interface: argument definitions and the headless commands.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};

use crate::analysis::document::{HeadImportance, analyze_prompt};
use crate::analysis::importance::{
    ImportanceMethod, SweepControl, ablation_importance, gradient_importance, scored_spec,
};
use crate::model::{DeviceSpec, Interventions, ModelSource, load_model, parse_dtype};
use crate::thought::{RunSpec, ThoughtCount, ThoughtMode};

/// Where the bundled model lives, relative to the crate root.
pub const BUNDLED_MODEL: &str = "assets/coconut-prosqa";

/// The bundled model: next to the binary's crate when run from a checkout, else in the current folder.
pub fn bundled_model_path() -> PathBuf {
    let in_crate = Path::new(env!("CARGO_MANIFEST_DIR")).join(BUNDLED_MODEL);
    if in_crate.is_dir() {
        in_crate
    } else {
        PathBuf::from(BUNDLED_MODEL)
    }
}

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
    Analyze(AnalyzeArgs),
    /// Generate and inspect data: ProsQA-style problems, statistics, the word-level tokenizer.
    Data(crate::data::cli::DataArgs),
    /// Train a GPT-2 from scratch on generated ProsQA problems (Coconut curriculum or baselines).
    Train(crate::train::cli::TrainArgs),
    /// Accuracy on a ProsQA-schema file, with the thoughts' breadth-first frontier analysis.
    Eval(crate::eval::cli::EvalArgs),
    /// Export the plots of a saved session (PNG and/or SVG).
    Export(crate::session::cli::ExportArgs),
}

/// Where the model comes from and where it runs.
#[derive(Args, Debug, Clone)]
pub struct ModelArgs {
    /// Model: a local Hugging Face folder, a hub id `owner/name[@revision]`, or a Coconut
    /// checkpoint file (with --base). Default: the bundled model.
    #[arg(long, value_name = "SRC")]
    pub model: Option<String>,
    /// For a Coconut checkpoint: the folder or hub id providing config.json and tokenizer.json.
    #[arg(long, value_name = "SRC")]
    pub base: Option<String>,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// f32, f16 or bf16 (default: f32 on CPU, bf16 on CUDA).
    #[arg(long)]
    pub dtype: Option<String>,
}

/// The question, given inline or in a file.
#[derive(Args, Debug, Clone)]
pub struct PromptArgs {
    /// The question (the explorer defaults to the model folder's demo prompt, from
    /// coconut-lens.json).
    #[arg(long)]
    pub prompt: Option<String>,
    /// Read the prompt from a file.
    #[arg(long, value_name = "FILE", conflicts_with = "prompt")]
    pub prompt_file: Option<PathBuf>,
}

impl PromptArgs {
    pub fn given(&self) -> bool {
        self.prompt.is_some() || self.prompt_file.is_some()
    }

    /// The prompt given, else the model's demo prompt; an error when there is neither.
    pub fn read_or_demo(&self, source: &ModelSource) -> Result<String> {
        if self.given() {
            return self.read();
        }
        demo_prompt(source).ok_or_else(|| {
            anyhow::anyhow!(
                "no prompt: {source} has no demo prompt (coconut-lens.json); pass --prompt TEXT or --prompt-file FILE"
            )
        })
    }

    /// The prompt text; an error when neither option was given or the file cannot be read.
    pub fn read(&self) -> Result<String> {
        match (&self.prompt, &self.prompt_file) {
            (Some(p), _) => Ok(p.clone()),
            (None, Some(f)) => std::fs::read_to_string(f)
                .with_context(|| format!("cannot read prompt file {}", f.display())),
            (None, None) => bail!("no prompt: pass --prompt TEXT or --prompt-file FILE"),
        }
    }
}

/// What to run: thoughts, mode, interventions.
#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// Number of continuous thoughts, or `auto` (stop on low entropy). Default: the model's own
    /// setting, else 6.
    #[arg(long, value_name = "N|auto", allow_hyphen_values = true)]
    pub thoughts: Option<String>,
    /// Thought mode: coconut, soft, token or pause.
    #[arg(long, default_value = "coconut")]
    pub mode: String,
    /// Soft Thinking: number of top tokens mixed.
    #[arg(long, default_value_t = 5)]
    pub soft_top_k: usize,
    /// Soft Thinking: keep top tokens until this much probability mass.
    #[arg(long, default_value_t = 0.95)]
    pub soft_top_p: f32,
    /// With --thoughts auto: stop once a thought's entropy (nats) falls below this.
    #[arg(long, value_name = "T")]
    pub entropy_stop: Option<f32>,
    /// With --thoughts auto: the most thoughts to run.
    #[arg(long, default_value_t = 16)]
    pub max_thoughts: usize,
    /// Heads to zero-ablate, `L.H,L.H` (0-based).
    #[arg(long, value_name = "L.H,...", default_value = "")]
    pub ablate_heads: String,
    /// Layers to skip (block becomes the identity), `L,L` (0-based).
    #[arg(long, value_name = "L,...", default_value = "")]
    pub ablate_layers: String,
    /// Most answer tokens to generate.
    #[arg(long, default_value_t = 16)]
    pub max_new_tokens: usize,
}

#[derive(Args, Debug)]
pub struct AnalyzeArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub prompt: PromptArgs,
    #[command(flatten)]
    pub run: RunArgs,
    /// Tokens per layer in the logit lens.
    #[arg(long, default_value_t = 5)]
    pub top_k: usize,
    /// Compute attention-head importance: ablation or gradient.
    #[arg(long, value_name = "METHOD")]
    pub head_importance: Option<String>,
    /// Gradient target token (vocabulary string or single-token text). Default: the greedy
    /// answer token at --importance-step.
    #[arg(long, value_name = "TOKEN")]
    pub target: Option<String>,
    /// Which answer token head importance scores (0 = the first). The earlier answer tokens
    /// are forced to the run's own, so every ablation is compared at the same position.
    #[arg(long, value_name = "K", default_value_t = 0)]
    pub importance_step: usize,
    /// Also save a session (the run and its no-ablation baseline) that the TUI reopens and
    /// `export` plots. An existing file is not replaced.
    #[arg(long, value_name = "FILE")]
    pub save_session: Option<PathBuf>,
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

impl ModelArgs {
    pub fn source(&self) -> Result<ModelSource> {
        match &self.model {
            Some(m) => ModelSource::parse(m, self.base.as_deref()),
            None => {
                if self.base.is_some() {
                    bail!("--base needs --model naming a Coconut checkpoint file");
                }
                let bundled = bundled_model_path();
                if !bundled.is_dir() {
                    bail!(
                        "the bundled model is missing ({}); pass --model SRC",
                        bundled.display()
                    );
                }
                Ok(ModelSource::Local(bundled))
            }
        }
    }

    pub fn device_and_dtype(&self) -> Result<(candle_core::Device, candle_core::DType)> {
        let device = self.device.parse::<DeviceSpec>()?.open()?;
        let dtype = match &self.dtype {
            Some(d) => parse_dtype(d)?,
            None => crate::model::load::default_dtype(&device),
        };
        Ok((device, dtype))
    }
}

impl RunArgs {
    pub fn mode(&self) -> Result<ThoughtMode> {
        Ok(match self.mode.as_str() {
            "coconut" => ThoughtMode::Coconut,
            "soft" => {
                if self.soft_top_k == 0 || !(self.soft_top_p > 0.0 && self.soft_top_p <= 1.0) {
                    bail!("--soft-top-k must be at least 1 and --soft-top-p in (0, 1]");
                }
                ThoughtMode::Soft {
                    top_k: self.soft_top_k,
                    top_p: self.soft_top_p,
                }
            }
            "token" => ThoughtMode::Token,
            "pause" => ThoughtMode::Pause,
            other => bail!("unknown mode \"{other}\" (expected coconut, soft, token or pause)"),
        })
    }

    pub fn thought_count(&self, default: usize) -> Result<ThoughtCount> {
        let count = match self.thoughts.as_deref() {
            None => ThoughtCount::Fixed { n: default },
            Some("auto") => {
                let Some(t) = self.entropy_stop else {
                    bail!("--thoughts auto needs --entropy-stop T (nats)");
                };
                if !(t.is_finite() && t >= 0.0) {
                    bail!("--entropy-stop must be a non-negative number of nats");
                }
                ThoughtCount::Auto {
                    entropy_stop: t,
                    max: self.max_thoughts,
                }
            }
            Some(n) => match n.parse::<usize>() {
                Ok(n) => ThoughtCount::Fixed { n },
                Err(_) => bail!("--thoughts must be a non-negative integer or auto, got \"{n}\""),
            },
        };
        if self.entropy_stop.is_some() && !matches!(count, ThoughtCount::Auto { .. }) {
            bail!("--entropy-stop only applies with --thoughts auto");
        }
        Ok(count)
    }

    pub fn interventions(&self) -> Result<Interventions> {
        Ok(Interventions {
            ablated_heads: Interventions::parse_heads(&self.ablate_heads)?,
            skipped_layers: Interventions::parse_layers(&self.ablate_layers)?,
        })
    }
}

/// The default number of thoughts of a model folder (`coconut-lens.json`), else 6.
pub fn default_thoughts(source: &ModelSource) -> usize {
    let dir = match source {
        ModelSource::Local(d) => Some(d.clone()),
        _ => None,
    };
    dir.and_then(|d| std::fs::read_to_string(d.join("coconut-lens.json")).ok())
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v.get("thoughts").and_then(|n| n.as_u64()))
        .map_or(6, |n| n as usize)
}

/// The demo prompt of a model folder (`coconut-lens.json`, field `demo_prompt`).
pub fn demo_prompt(source: &ModelSource) -> Option<String> {
    let ModelSource::Local(dir) = source else {
        return None;
    };
    let text = std::fs::read_to_string(dir.join("coconut-lens.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v.get("demo_prompt")?
        .as_str()
        .filter(|s| !s.trim().is_empty())
        .map(str::to_string)
}

/// A `--target` token: a vocabulary string (`Ġcat`) or a text that encodes to one token.
fn resolve_target(tokenizer: &crate::model::Tokenizer, token: &str) -> Result<u32> {
    if let Some(id) = tokenizer.token_id(token) {
        return Ok(id);
    }
    match tokenizer.encode_plain(token)?.as_slice() {
        [id] => Ok(*id),
        _ => bail!("target token \"{token}\" does not exist in the vocabulary"),
    }
}

pub fn analyze(args: &AnalyzeArgs) -> Result<()> {
    // Validate everything cheap before loading weights.
    let source = args.model.source()?;
    let prompt = args.prompt.read_or_demo(&source)?;
    if prompt.trim().is_empty() {
        bail!("the prompt is empty");
    }
    let mode = args.run.mode()?;
    let thoughts = args.run.thought_count(default_thoughts(&source))?;
    let interventions = args.run.interventions()?;
    if args.top_k == 0 {
        bail!("--top-k must be at least 1");
    }
    let method = args
        .head_importance
        .as_deref()
        .map(str::parse::<ImportanceMethod>)
        .transpose()?;
    if args.target.is_some() && method != Some(ImportanceMethod::Gradient) {
        bail!("--target only applies with --head-importance gradient");
    }
    if args.importance_step > 0 && method.is_none() {
        bail!("--importance-step only applies with --head-importance");
    }
    if let Some(path) = &args.save_session
        && path.exists()
    {
        bail!("{} already exists (not overwritten)", path.display());
    }
    let (device, dtype) = args.model.device_and_dtype()?;

    let t0 = Instant::now();
    let loaded = load_model(&source, &device, dtype)?;
    let load_ms = t0.elapsed().as_secs_f64() * 1e3;

    let t1 = Instant::now();
    let hooks = loaded.model.hooks(&interventions)?;
    let spec = RunSpec {
        thoughts,
        mode,
        max_new_tokens: args.run.max_new_tokens,
        context_rows: 1,
        attention: false,
        forced_answer: Vec::new(),
    };
    let (model, tokenizer) = (&loaded.model, &loaded.tokenizer);
    let target = args
        .target
        .as_deref()
        .map(|t| resolve_target(tokenizer, t))
        .transpose()?;
    let (_, mut doc) = analyze_prompt(model, tokenizer, &prompt, &spec, &hooks, args.top_k)?;
    if let Some(method) = method {
        let ids = tokenizer.encode_prompt(&prompt)?;
        let mut progress = |done: usize, total: usize| {
            eprint!("\rhead importance: {done}/{total}");
            if done == total {
                eprintln!();
            }
        };
        let mut ctl = SweepControl {
            progress: &mut progress,
            cancel: None,
        };
        let (scored, greedy) = scored_spec(
            model,
            tokenizer,
            &ids,
            &spec,
            &interventions,
            args.importance_step,
        )?;
        let sweep = ablation_importance(
            model,
            tokenizer,
            &ids,
            &scored,
            &interventions,
            method == ImportanceMethod::Ablation,
            &mut ctl,
        )?;
        let (target, values) = match method {
            ImportanceMethod::Ablation => (greedy, sweep.heads),
            ImportanceMethod::Gradient => {
                let target = target.unwrap_or(greedy);
                let g =
                    gradient_importance(model, tokenizer, &ids, &scored, &interventions, target)?;
                (target, g)
            }
        };
        doc.head_importance = Some(HeadImportance {
            method: method.name().to_string(),
            answer_step: args.importance_step,
            target,
            values,
        });
        doc.layer_importance = Some(sweep.layers);
    }
    doc.timings.load_ms = load_ms;
    doc.timings.compute_ms = t1.elapsed().as_secs_f64() * 1e3;
    doc.timings.peak_rss_mib = crate::analysis::document::peak_rss_mib();
    if let Some(path) = &args.save_session {
        let baseline = if interventions.is_empty() {
            doc.clone()
        } else {
            let hooks = model.hooks(&Interventions::default())?;
            analyze_prompt(model, tokenizer, &prompt, &spec, &hooks, args.top_k)?.1
        };
        let inputs = crate::session::SessionInputs {
            model: args
                .model
                .model
                .clone()
                .unwrap_or_else(|| BUNDLED_MODEL.to_string()),
            base: args.model.base.clone(),
            revision: None,
            device: crate::model::load::device_label(&device),
            dtype: crate::model::load::dtype_label(dtype).to_string(),
            prompt: prompt.clone(),
            mode: mode.name().to_string(),
            thoughts: args
                .run
                .thoughts
                .clone()
                .unwrap_or_else(|| default_thoughts(&source).to_string()),
            entropy_stop: args.run.entropy_stop,
            ablations: interventions.clone(),
            importance_method: method.map(|m| m.name().to_string()),
            settings: Some(crate::session::RunSettings {
                max_new_tokens: Some(args.run.max_new_tokens),
                top_k: Some(args.top_k),
                context_tokens: None,
                soft_top_k: matches!(mode, ThoughtMode::Soft { .. }).then_some(args.run.soft_top_k),
                soft_top_p: matches!(mode, ThoughtMode::Soft { .. }).then_some(args.run.soft_top_p),
            }),
        };
        let view = crate::session::ViewState {
            tab: "lens".to_string(),
            ..Default::default()
        };
        crate::session::Session::new(inputs, view, baseline, doc.clone()).save(path, false)?;
        eprintln!("session saved to {}", path.display());
    }
    println!("{}", serde_json::to_string_pretty(&doc)?);
    Ok(())
}
