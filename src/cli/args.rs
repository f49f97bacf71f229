//! Argument groups shared by the commands and the explorer: where the model comes from, the
//! prompt, and what to run.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::model::meta::ModelMeta;
use crate::model::{DeviceSpec, Interventions, ModelSource, parse_dtype};
use crate::thought::{Sampling, ThoughtCount, ThoughtEdits, ThoughtMode};

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

/// Where the model comes from and where it runs.
#[derive(Args, Debug, Clone)]
pub struct ModelArgs {
    /// Model: a local Hugging Face folder, a hub id `owner/name[@revision]`, a Coconut
    /// checkpoint file, or a CODI checkpoint file, folder or hub id (both with --base).
    /// Default: the bundled model.
    #[arg(long, value_name = "SRC")]
    pub model: Option<String>,
    /// For a Coconut or CODI checkpoint: the folder or hub id providing config.json and
    /// tokenizer.json.
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
    /// Replace what thoughts feed back, `Tk=OP,...` (thoughts from 1); OP is zero, mean,
    /// noise:S (plus noise of S times the thought's RMS), random:S (the noise alone), scale:F
    /// or patch (thought k of --patch-prompt's run).
    #[arg(long, value_name = "Tk=OP,...", default_value = "")]
    pub intervene: String,
    /// Copy the residual stream after block L at thought k's position from --patch-prompt's
    /// run (activation patching), `L@Tk,...` (L = 0: the embeddings).
    #[arg(long, value_name = "L@Tk,...", default_value = "")]
    pub patch_resid: String,
    /// The second prompt that `patch` and --patch-resid copy from (same settings).
    #[arg(long, value_name = "TEXT")]
    pub patch_prompt: Option<String>,
    /// The mean thoughts `mean` uses (`eval --save-means`); default: the mean input embedding.
    #[arg(long, value_name = "FILE")]
    pub means: Option<PathBuf>,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// Seeds noise:S, random:S and sampling.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// How answer tokens are decoded (`analyze`, the explorer, `eval`).
#[derive(Args, Debug, Clone)]
pub struct SamplingArgs {
    /// Answer decoding: sample at this temperature (candle-transformers' LogitsProcessor);
    /// 0 is greedy.
    #[arg(
        long,
        value_name = "T",
        default_value_t = 0.0,
        allow_negative_numbers = true
    )]
    pub temperature: f64,
    /// With --temperature: sample from the most likely tokens whose probability reaches P
    /// (nucleus sampling; 1 keeps all tokens).
    #[arg(long, value_name = "P", default_value_t = 1.0)]
    pub top_p: f64,
}

impl SamplingArgs {
    /// The decoding rule, drawing from `seed` when sampled.
    pub fn rule(&self, seed: u64) -> Result<Sampling> {
        Sampling::new(self.temperature, self.top_p, seed)
    }
}

impl ModelArgs {
    pub fn source(&self) -> Result<ModelSource> {
        match &self.model {
            Some(m) => ModelSource::parse(m, self.base.as_deref()),
            None => {
                if self.base.is_some() {
                    bail!("--base needs --model naming a Coconut or CODI checkpoint");
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
        ThoughtMode::parse(&self.mode, (self.soft_top_k, self.soft_top_p))
    }

    pub fn thought_count(&self, default: usize) -> Result<ThoughtCount> {
        match self.thoughts.as_deref() {
            Some(text) => ThoughtCount::parse(text, self.entropy_stop, self.max_thoughts),
            None => ThoughtCount::parse(&default.to_string(), self.entropy_stop, 0),
        }
    }

    /// The thought interventions; `thoughts` is the run's count when fixed.
    pub fn thought_edits(&self, thoughts: ThoughtCount) -> Result<ThoughtEdits> {
        let edits = ThoughtEdits {
            ops: ThoughtEdits::parse_ops(&self.intervene)?,
            resid: ThoughtEdits::parse_resid(&self.patch_resid)?,
            patch_prompt: self.patch_prompt.clone(),
            means_file: self.means.as_ref().map(|p| p.display().to_string()),
            seed: self.seed,
        };
        edits.check(match thoughts {
            ThoughtCount::Fixed { n } => Some(n),
            ThoughtCount::Auto { .. } => None,
        })?;
        if let Some(p) = &self.means
            && !p.is_file()
        {
            bail!("--means {}: no such file", p.display());
        }
        Ok(edits)
    }

    /// The answer's decoding rule (greedy unless --temperature is above 0).
    pub fn sampling(&self) -> Result<Sampling> {
        self.sampling.rule(self.seed)
    }

    pub fn interventions(&self) -> Result<Interventions> {
        Ok(Interventions {
            ablated_heads: Interventions::parse_heads(&self.ablate_heads)?,
            skipped_layers: Interventions::parse_layers(&self.ablate_layers)?,
        })
    }
}

/// The default number of thoughts of a model folder (`coconut-lens.json`), else 6.
/// What `analyze` and the explorer check before loading weights: the model source, the prompt
/// (the model's demo prompt when none is given) and the run's settings.
pub struct CheckedRun {
    pub source: ModelSource,
    pub prompt: String,
    pub mode: ThoughtMode,
    pub thoughts: ThoughtCount,
    pub interventions: Interventions,
    pub thought_edits: ThoughtEdits,
    pub sampling: Sampling,
}

/// Checks the arguments every single-run command shares, cheap ones first.
pub fn check_run(
    model: &ModelArgs,
    prompt: &PromptArgs,
    run: &RunArgs,
    top_k: usize,
) -> Result<CheckedRun> {
    let source = model.source()?;
    let prompt = prompt.read_or_demo(&source)?;
    if prompt.trim().is_empty() {
        bail!("the prompt is empty");
    }
    let mode = run.mode()?;
    let thoughts = run.thought_count(default_thoughts(&source))?;
    let interventions = run.interventions()?;
    let thought_edits = run.thought_edits(thoughts)?;
    let sampling = run.sampling()?;
    if top_k == 0 {
        bail!("--top-k must be at least 1");
    }
    Ok(CheckedRun {
        source,
        prompt,
        mode,
        thoughts,
        interventions,
        thought_edits,
        sampling,
    })
}

pub fn default_thoughts(source: &ModelSource) -> usize {
    ModelMeta::of_source(source)
        .and_then(|m| m.thoughts)
        .unwrap_or(6)
}

/// The demo prompt of a model folder (`coconut-lens.json`, field `demo_prompt`).
pub fn demo_prompt(source: &ModelSource) -> Option<String> {
    ModelMeta::of_source(source).and_then(|m| m.demo().map(str::to_string))
}
