//! Training a Llama or GPT-2 from scratch on ProsQA with the Coconut curriculum (Hao et al. 2024, §3),
//! and the two baselines of the paper trained with the same budget.
//!
//! - `coconut`: stage 0 trains on the full chain of thought; stage k replaces the first k
//!   reasoning steps by k·c continuous thoughts between `<|start-latent|>` and
//!   `<|end-latent|>` (stages beyond the number of steps drop them all). A thought's input
//!   embedding is the final hidden state (after the final norm) at the position before it, and
//!   gradients flow through every recycled thought. The optimizer is reset at each stage.
//! - `cot`: question, then every step, then the answer.
//! - `no-cot`: question, then the answer.
//!
//! The loss covers the remaining steps and `### answer` + end of text. Training is
//! deterministic given the seed: data, initialisation and batch order all come from the
//! project's own generator; a checkpoint holds the weights, the optimizer moments and the
//! position in the schedule, so a resumed run continues bit-exactly.

pub mod batch;
pub mod cli;
pub mod optim;
pub mod params;
mod state;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use candle_core::backprop::GradStore;
use candle_core::{D, DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use serde::{Deserialize, Serialize};

use crate::data::prosqa::{self, GenConfig, ProsQaProblem};
use crate::data::rng::Rng;
use crate::data::tokenizer::TextForm;
use crate::eval::{self, EvalMode};
use crate::model::config::ArchConfig;
use crate::model::meta::ModelMeta;
use crate::model::{Arch, Hooks, KvCache, Model, OpMode, Tokenizer};
pub use batch::{Batch, Draw, Sample, encode_sample};
use optim::{AdamW, AdamWParams};
use state::LossSums;
pub use state::{EvalLog, TrainState};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Recipe {
    Coconut,
    Cot,
    NoCot,
}

impl Recipe {
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "coconut" => Ok(Self::Coconut),
            "cot" => Ok(Self::Cot),
            "no-cot" => Ok(Self::NoCot),
            _ => bail!("unknown recipe \"{s}\" (expected coconut, cot or no-cot)"),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Coconut => "coconut",
            Self::Cot => "cot",
            Self::NoCot => "no-cot",
        }
    }

    fn eval_mode(self) -> EvalMode {
        match self {
            Self::Coconut => EvalMode::Coconut,
            Self::Cot => EvalMode::Cot,
            Self::NoCot => EvalMode::NoCot,
        }
    }
}

/// Which generated graphs to train on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DataShape {
    /// Graphs shaped like the real ProsQA set.
    Prosqa,
    /// Small graphs (8 nodes, depth 3): for smoke tests.
    Tiny,
}

impl DataShape {
    pub fn gen_config(self) -> GenConfig {
        match self {
            Self::Prosqa => GenConfig::default(),
            Self::Tiny => GenConfig {
                nodes: vec![(8, 1)],
                depths: vec![(3, 1)],
                max_edges: 14,
                ..GenConfig::default()
            },
        }
    }
}

/// The node sets of the frontier loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FrontierSets {
    /// Every node within k hops of the root (Coconut-BFS).
    Within,
    /// The nodes exactly k hops from the root (a breadth-first layer; empty past the deepest).
    Layer,
}

/// How the weights start.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct InitScales {
    /// Standard deviation of the (tied) token embedding.
    pub embedding_std: f64,
    /// The final norm's gain: a recycled thought enters at about √d times this, a token at
    /// about √d times `embedding_std`.
    pub final_norm_gain: f64,
}

impl Default for InitScales {
    fn default() -> Self {
        Self {
            embedding_std: 0.02,
            final_norm_gain: 1.0,
        }
    }
}

/// Everything that determines a training run. A checkpoint is only resumed with the same.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub recipe: Recipe,
    pub seed: u64,
    pub data: DataShape,
    /// How facts are tokenized (the tokenizer shipped with the model).
    pub text: TextForm,
    pub arch: Arch,
    pub init: InitScales,
    pub layers: usize,
    pub d_model: usize,
    pub heads: usize,
    pub context: usize,
    /// Sequences per optimizer step.
    pub batch_size: usize,
    /// Parts of a batch run on threads of their own (their gradients added).
    pub shards: usize,
    pub lr: f64,
    /// Linear warm-up after every optimizer reset, in optimizer steps.
    pub warmup_steps: u64,
    /// The learning rate falls linearly to a tenth over the last this many steps.
    pub decay_steps: u64,
    pub optim: AdamWParams,
    /// Continuous thoughts per replaced step (c in the paper).
    pub thoughts_per_step: usize,
    /// Last curriculum stage (6 for ProsQA in the paper).
    pub max_stage: usize,
    /// Optimizer steps at stage 0 (full chain of thought), at each stage 1..max_stage, and
    /// at the last stage.
    pub steps_first: u64,
    pub steps_per_stage: u64,
    pub steps_last: u64,
    /// Probability that a batch is drawn at an earlier stage than the schedule's (uniformly
    /// among them), as the paper's analysis model mixes stages.
    pub earlier_stage: f64,
    /// Forget the optimizer's moments when the stage changes (the paper's setting).
    pub reset_optimizer: bool,
    /// Share of each problem's facts told at step 0; it grows linearly to 1 at `grow_steps`.
    pub facts_from: f64,
    pub grow_steps: u64,
    /// Draw each batch's share uniformly between `facts_from` and the schedule's, so that
    /// small problems stay in the mix while later lookups form (full problems only during
    /// the final decay).
    pub spread_facts: bool,
    /// Histogram of the training problems' depths: `(depth, weight)`.
    pub depths: Vec<(usize, u32)>,
    /// Weight of the frontier loss (0: plain Coconut). The output at `<|start-latent|>` and
    /// after each thought k is trained toward the uniform distribution over the nodes within
    /// `k + frontier_from` hops of the root.
    pub frontier: f64,
    pub frontier_from: usize,
    /// Which nodes the frontier loss targets after thought k: all within k hops, or the
    /// breadth-first layer exactly k hops out.
    pub frontier_sets: FrontierSets,
    /// Probability that a training row asks about one of its concepts instead of its person
    /// (frontier loss only; see [`batch::reroot`]).
    pub reroot: f64,
    /// Generated validation problems, scored every `eval_every` steps.
    pub val_size: usize,
    pub eval_every: u64,
}

impl TrainConfig {
    /// The settings of the bundled model.
    pub fn bundled(recipe: Recipe) -> Self {
        Self {
            recipe,
            seed: 0,
            data: DataShape::Prosqa,
            text: TextForm::Compact,
            arch: Arch::Llama,
            init: InitScales::default(),
            layers: 3,
            d_model: 256,
            heads: 4,
            context: 512,
            batch_size: 32,
            shards: 2,
            lr: 1e-3,
            warmup_steps: 200,
            decay_steps: 2000,
            optim: AdamWParams::default(),
            thoughts_per_step: 1,
            max_stage: 6,
            steps_first: 3000,
            steps_per_stage: 0,
            steps_last: 15000,
            earlier_stage: 0.25,
            reset_optimizer: false,
            facts_from: 0.1,
            grow_steps: 3000,
            spread_facts: true,
            depths: vec![(3, 1), (4, 1), (5, 1), (6, 1)],
            frontier: 1.0,
            frontier_from: 0,
            frontier_sets: FrontierSets::Within,
            reroot: 0.0,
            val_size: 200,
            eval_every: 250,
        }
    }

    /// The step before which `self` and `other` train identically: every setting equal but
    /// the length of the last stage and of the final decay, so both give the same batches and
    /// learning rates until either starts to decay. `None` when other settings differ.
    pub fn same_run_until(&self, other: &TrainConfig) -> Option<u64> {
        let mut a = self.clone();
        a.steps_last = other.steps_last;
        a.decay_steps = other.decay_steps;
        if &a != other {
            return None;
        }
        let decay_from = |c: &TrainConfig| c.total_steps().saturating_sub(c.decay_steps);
        Some(decay_from(self).min(decay_from(other)))
    }

    /// Total optimizer steps. Baselines train as many.
    pub fn total_steps(&self) -> u64 {
        self.steps_first + self.max_stage as u64 * self.steps_per_stage + self.steps_last
    }

    /// The curriculum stage of optimizer step `step` by the schedule.
    pub fn stage_at(&self, step: u64) -> usize {
        if self.recipe != Recipe::Coconut {
            return 0;
        }
        if step < self.steps_first {
            return 0;
        }
        if self.steps_per_stage == 0 {
            return self.max_stage;
        }
        let k = 1 + (step - self.steps_first) / self.steps_per_stage;
        (k as usize).min(self.max_stage)
    }

    /// The stage a batch is drawn at: the schedule's, or with probability `earlier_stage` an
    /// earlier one.
    fn stage_of_batch(&self, step: u64, rng: &mut Rng) -> usize {
        let stage = self.stage_at(step);
        if stage > 0 && self.earlier_stage > 0.0 && rng.chance(self.earlier_stage) {
            rng.below(stage)
        } else {
            stage
        }
    }

    /// Share of each problem's facts told at `step` (the context curriculum).
    pub fn fact_share(&self, step: u64) -> f64 {
        if step >= self.grow_steps {
            return 1.0;
        }
        let t = step as f64 / self.grow_steps as f64;
        self.facts_from + (1.0 - self.facts_from) * t
    }

    /// The share a batch at `step` is told with: the schedule's, or with `spread_facts` a
    /// uniform draw below it (outside the final decay).
    fn fact_share_of_batch(&self, step: u64, rng: &mut Rng) -> f64 {
        let top = self.fact_share(step);
        let decaying = step >= self.total_steps().saturating_sub(self.decay_steps);
        if self.spread_facts && !decaying {
            self.facts_from + (top - self.facts_from) * rng.next_f64()
        } else {
            top
        }
    }

    /// Learning rate at `step`, `t` optimizer steps after the last reset.
    pub fn lr_at(&self, step: u64, t: u64) -> f64 {
        let warm = ((t + 1) as f64 / self.warmup_steps.max(1) as f64).min(1.0);
        let total = self.total_steps();
        let decay_from = total.saturating_sub(self.decay_steps);
        let decay = if step >= decay_from && self.decay_steps > 0 {
            1.0 - 0.9 * (step - decay_from) as f64 / self.decay_steps as f64
        } else {
            1.0
        };
        self.lr * warm * decay
    }

    /// The generator's settings: the data shape with this run's depth mix.
    pub fn gen_config(&self) -> GenConfig {
        let mut g = self.data.gen_config();
        if self.data == DataShape::Prosqa {
            g.depths = self.depths.clone();
        }
        g
    }

    /// Number of thoughts the model is run with at `stage`.
    pub fn thoughts_at(&self, stage: usize) -> usize {
        match self.recipe {
            Recipe::Coconut => stage * self.thoughts_per_step,
            Recipe::Cot | Recipe::NoCot => 0,
        }
    }

    /// Thoughts of the finished model.
    pub fn final_thoughts(&self) -> usize {
        self.thoughts_at(self.stage_at(self.total_steps().saturating_sub(1)))
    }

    /// SwiGLU width of a Llama block: 8/3 of the model width, a multiple of 32.
    pub fn intermediate_size(&self) -> usize {
        (8 * self.d_model / 3).div_ceil(32) * 32
    }

    /// Rejects settings that cannot train.
    pub fn check(&self) -> Result<()> {
        ensure!(self.batch_size > 0, "--batch-size must be positive");
        ensure!(self.shards > 0, "--threads must be positive");
        ensure!(
            self.layers > 0 && self.heads > 0 && self.d_model.is_multiple_of(self.heads),
            "--d-model must be a multiple of --heads (both positive, with at least one layer)"
        );
        ensure!(
            self.arch == Arch::Gpt2 || (self.d_model / self.heads).is_multiple_of(2),
            "a Llama head needs an even width (--d-model / --heads)"
        );
        ensure!(self.total_steps() > 0, "the schedule has no steps");
        ensure!(self.lr > 0.0, "--lr must be positive");
        ensure!(
            self.facts_from > 0.0 && self.facts_from <= 1.0,
            "--facts-from must be in (0, 1]"
        );
        ensure!(self.frontier >= 0.0, "--frontier must not be negative");
        ensure!(
            (0.0..=1.0).contains(&self.reroot),
            "--reroot must be a probability"
        );
        ensure!(
            self.depths
                .iter()
                .all(|&(d, _)| (prosqa::MIN_DEPTH..=prosqa::MAX_DEPTH).contains(&d))
                && self.depths.iter().any(|&(_, w)| w > 0),
            "depths must be between {} and {}",
            prosqa::MIN_DEPTH,
            prosqa::MAX_DEPTH
        );
        Ok(())
    }

    /// `config.json` of the model, in the Hugging Face format of its architecture.
    pub fn hf_config(&self, vocab: usize) -> serde_json::Value {
        let eos = crate::data::tokenizer::vocabulary()
            .iter()
            .position(|w| *w == crate::data::tokenizer::EOS)
            .unwrap_or(0);
        match self.arch {
            Arch::Gpt2 => serde_json::json!({
                "architectures": ["GPT2LMHeadModel"],
                "model_type": "gpt2",
                "vocab_size": vocab,
                "n_positions": self.context,
                "n_ctx": self.context,
                "n_embd": self.d_model,
                "n_layer": self.layers,
                "n_head": self.heads,
                "n_inner": null,
                "activation_function": "gelu_new",
                "layer_norm_epsilon": 1e-5,
                "resid_pdrop": 0.0,
                "embd_pdrop": 0.0,
                "attn_pdrop": 0.0,
                "initializer_range": 0.02,
                "bos_token_id": eos,
                "eos_token_id": eos,
                "tie_word_embeddings": true,
                "torch_dtype": "float32",
            }),
            Arch::Llama => serde_json::json!({
                "architectures": ["LlamaForCausalLM"],
                "model_type": "llama",
                "vocab_size": vocab,
                "hidden_size": self.d_model,
                "intermediate_size": self.intermediate_size(),
                "num_hidden_layers": self.layers,
                "num_attention_heads": self.heads,
                "num_key_value_heads": self.heads,
                "head_dim": self.d_model / self.heads,
                "hidden_act": "silu",
                "max_position_embeddings": self.context,
                "rms_norm_eps": 1e-5,
                "rope_theta": 10000.0,
                "attention_bias": false,
                "mlp_bias": false,
                "initializer_range": 0.02,
                "bos_token_id": eos,
                "eos_token_id": eos,
                "tie_word_embeddings": true,
                "torch_dtype": "float32",
            }),
        }
    }
}

/// What a forward pass over a batch gives the losses: the final hidden states at
/// `<|start-latent|>` and after each thought `[B, latents + 1, D]` (Coconut with thoughts
/// only), and those before every suffix token `[B, suffix_len, D]`.
struct BatchHidden {
    outputs: Option<Tensor>,
    before_suffix: Tensor,
}

/// Runs a batch: the prompts in one pass, each thought fed back as the next input embedding
/// with gradients through it, then the language suffix.
fn run_batch(model: &Model, hooks: &Hooks, b: &Batch) -> Result<BatchHidden> {
    let embed = |ids: &[u32], t: usize| -> Result<Tensor> {
        Ok(model
            .embed_ids(ids)?
            .reshape((b.rows, t, model.info.d_model))?)
    };
    let mut cache = KvCache::new(model.info.layers);
    let h = model.forward_batch(&embed(&b.prefix, b.prefix_len)?, &mut cache, hooks)?;
    let mut last = h.narrow(1, b.prefix_len - 1, 1)?;
    let mut outputs = vec![last.clone()];
    for _ in 0..b.latents {
        last = model.forward_batch(&last, &mut cache, hooks)?;
        outputs.push(last.clone());
    }
    let hs = model.forward_batch(&embed(&b.suffix, b.suffix_len)?, &mut cache, hooks)?;
    // The hidden state before each suffix token predicts it.
    let before_suffix = if b.suffix_len > 1 {
        Tensor::cat(&[&last, &hs.narrow(1, 0, b.suffix_len - 1)?], 1)?
    } else {
        last
    };
    let outputs = if b.latents > 0 || !b.frontier.is_empty() {
        Some(Tensor::cat(&outputs, 1)?)
    } else {
        None
    };
    Ok(BatchHidden {
        outputs,
        before_suffix,
    })
}

/// The losses of a batch, summed over its rows (nats).
pub struct BatchLoss {
    /// `language + frontier_weight * frontier`: what the optimizer minimises (divided by rows).
    pub total: Tensor,
    /// Cross-entropy of the scored suffix tokens.
    pub language: Tensor,
    /// Cross-entropy of the outputs against their frontier targets (when the batch has them).
    pub frontier: Option<Tensor>,
}

/// Summed losses of a batch. The language loss covers the masked suffix tokens; the frontier
/// loss, with weight `frontier_weight`, every output that has a target.
pub fn batch_loss(
    model: &Model,
    hooks: &Hooks,
    b: &Batch,
    frontier_weight: f64,
) -> Result<BatchLoss> {
    let dev = model.device();
    let hidden = run_batch(model, hooks, b)?;
    let d = model.info.d_model;
    let n = b.rows * b.suffix_len;
    let logits = model.unembed_with(&hidden.before_suffix.reshape((n, d))?, hooks.mode)?;
    let logp = crate::model::fused::log_softmax_last_dim(&logits)?;
    let targets = Tensor::from_slice(&b.suffix, (n, 1), dev)?;
    let picked = logp.gather(&targets, 1)?.squeeze(1)?;
    let mask = Tensor::from_slice(&b.loss_mask, n, dev)?;
    let language = (picked * mask)?.sum_all()?.neg()?;
    let frontier = match (&hidden.outputs, b.frontier.is_empty()) {
        (Some(out), false) => {
            let k = b.latents + 1;
            let vocab = model.info.vocab;
            let mut target = vec![0f32; b.rows * k * vocab];
            for (r, sets) in b.frontier.iter().enumerate() {
                ensure!(
                    sets.len() == k,
                    "frontier targets for {} of {k} outputs",
                    sets.len()
                );
                for (j, set) in sets.iter().enumerate() {
                    let w = 1.0 / set.len().max(1) as f32;
                    for &id in set {
                        target[(r * k + j) * vocab + id as usize] = w;
                    }
                }
            }
            let target = Tensor::from_vec(target, (b.rows * k, vocab), dev)?;
            let logits = model.unembed_with(&out.reshape((b.rows * k, d))?, hooks.mode)?;
            let logp = crate::model::fused::log_softmax_last_dim(&logits)?;
            Some((logp * target)?.sum_all()?.neg()?)
        }
        _ => None,
    };
    let total = match &frontier {
        Some(f) if frontier_weight > 0.0 => (&language + (f * frontier_weight)?)?,
        _ => language.clone(),
    };
    Ok(BatchLoss {
        total,
        language,
        frontier,
    })
}

/// The losses of a batch as numbers (summed over rows, nats).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LossValues {
    pub total: f64,
    pub language: f64,
    pub frontier: Option<f64>,
}

/// The gradient of a batch's optimised loss (its summed total over its rows, divided by the
/// rows) and its loss values. The rows are split into `shards` parts, each run with its own
/// model on a thread of its own, and their gradients are added: the trainer's two threads.
/// The model ops themselves run on one thread each (`train` sets `RAYON_NUM_THREADS=1`).
pub fn batch_gradients(
    arch: &ArchConfig,
    varmap: &VarMap,
    b: &Batch,
    shards: usize,
    frontier_weight: f64,
) -> Result<(GradStore, LossValues)> {
    let hooks = Hooks {
        mode: OpMode::TRAIN,
        ..Hooks::none(varmap_layers(arch))
    };
    let rows = b.rows as f64;
    let run = |part: &Batch| -> Result<(GradStore, LossValues)> {
        let model = Model::build(
            arch,
            VarBuilder::from_varmap(varmap, DType::F32, &Device::Cpu),
            false,
        )?;
        let l = batch_loss(&model, &hooks, part, frontier_weight)?;
        let grads = (&l.total / rows)?.backward()?;
        let value = |t: &Tensor| -> Result<f64> { Ok(f64::from(t.to_scalar::<f32>()?)) };
        Ok((
            grads,
            LossValues {
                total: value(&l.total)?,
                language: value(&l.language)?,
                frontier: l.frontier.as_ref().map(value).transpose()?,
            },
        ))
    };
    let parts = b.split(shards);
    let mut results = if parts.len() == 1 {
        vec![run(&parts[0])?]
    } else {
        std::thread::scope(|scope| {
            let handles: Vec<_> = parts.iter().map(|p| scope.spawn(|| run(p))).collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .map_err(|_| anyhow::anyhow!("a training thread panicked"))?
                })
                .collect::<Result<Vec<_>>>()
        })?
    };
    let (mut grads, mut values) = results.remove(0);
    for (g, v) in results {
        for (_, var) in named_vars(varmap) {
            let t = var.as_tensor();
            if let Some(add) = g.get(t) {
                let sum = match grads.get(t) {
                    Some(have) => (have + add)?,
                    None => add.clone(),
                };
                grads.insert(t, sum);
            }
        }
        values.total += v.total;
        values.language += v.language;
        values.frontier = match (values.frontier, v.frontier) {
            (Some(a), Some(b)) => Some(a + b),
            (a, b) => a.or(b),
        };
    }
    Ok((grads, values))
}

/// Makes glibc's allocator keep freed memory for reuse instead of returning it to the system:
/// a training step allocates and frees thousands of tensors of up to a few MiB, and with the
/// defaults each large one is a fresh `mmap` (page faults, zeroing, TLB shootdowns between
/// the two threads): about 1.9x slower steps, and uneven ones. No effect off glibc.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        unsafe extern "C" {
            fn mallopt(param: i32, value: i32) -> i32;
        }
        const M_TRIM_THRESHOLD: i32 = -1;
        const M_TOP_PAD: i32 = -2;
        const M_MMAP_THRESHOLD: i32 = -3;
        // SAFETY: mallopt only sets allocator parameters; these are in their documented ranges
        // (the mmap threshold at its 64-bit maximum, 32 MiB).
        unsafe {
            mallopt(M_MMAP_THRESHOLD, 32 << 20);
            mallopt(M_TRIM_THRESHOLD, i32::MAX);
            mallopt(M_TOP_PAD, 256 << 20);
        }
    }
}

fn varmap_layers(arch: &ArchConfig) -> usize {
    match arch {
        ArchConfig::Gpt2(c) => c.n_layer,
        ArchConfig::Llama(c) => c.num_hidden_layers,
    }
}

/// Share of problems whose output at `<|start-latent|>` and after each thought ranks its
/// frontier target set exactly on top (its |set| most likely tokens are the set): the early
/// check that the lookups are forming. An empty set (a breadth-first layer past the problem's
/// depth) counts as matched. Problems run one at a time (their prompts differ).
pub fn frontier_match(
    model: &Model,
    tok: &Tokenizer,
    cfg: &TrainConfig,
    problems: &[ProsQaProblem],
    thoughts: usize,
) -> Result<Vec<f64>> {
    let mut cfg = cfg.clone();
    cfg.frontier = cfg.frontier.max(1.0);
    let stage = (0..=cfg.max_stage)
        .find(|&s| cfg.thoughts_at(s) >= thoughts)
        .unwrap_or(cfg.max_stage);
    let hooks = Hooks::none(model.info.layers);
    let mut hits = vec![0usize; thoughts + 1];
    let pad = tok.token_id(crate::data::tokenizer::EOS).unwrap_or(0);
    for p in problems {
        let mut s = encode_sample(tok, p, &cfg, stage)?;
        s.latents = thoughts;
        s.frontier.truncate(thoughts + 1);
        let b = Batch::stack(std::slice::from_ref(&s), pad)?;
        let Some(out) = run_batch(model, &hooks, &b)?.outputs else {
            bail!("no thought outputs to score");
        };
        let d = model.info.d_model;
        let logits = model.unembed(&out.reshape((thoughts + 1, d))?)?;
        let rows: Vec<Vec<f32>> = logits.to_dtype(DType::F32)?.to_vec2()?;
        for (j, (row, set)) in rows.iter().zip(&s.frontier).enumerate() {
            let cut = set
                .iter()
                .map(|&i| row[i as usize])
                .fold(f32::INFINITY, f32::min);
            let above = row.iter().filter(|&&x| x >= cut).count();
            if above == set.len() {
                hits[j] += 1;
            }
        }
    }
    let n = problems.len().max(1) as f64;
    Ok(hits.into_iter().map(|h| h as f64 / n).collect())
}

/// The stage-0 early check: on validation problems told their whole chain of thought
/// (teacher-forced), the share of chain steps whose most likely next node is a child of the
/// step's source. A lookup in the context; the first step's source is the person, every later
/// one a concept, so a share well above the first steps' (about 1/depth) says the content
/// lookups that later thoughts need are forming. Problems run one at a time.
pub fn chain_lookup(
    model: &Model,
    tok: &Tokenizer,
    cfg: &TrainConfig,
    problems: &[ProsQaProblem],
) -> Result<f64> {
    let hooks = Hooks::none(model.info.layers);
    let pad = tok.token_id(crate::data::tokenizer::EOS).unwrap_or(0);
    let mut cfg = cfg.clone();
    cfg.frontier = 0.0;
    let (mut hits, mut steps) = (0usize, 0usize);
    for p in problems {
        let s = encode_sample(tok, p, &cfg, 0)?;
        let b = Batch::stack(std::slice::from_ref(&s), pad)?;
        let before = run_batch(model, &hooks, &b)?.before_suffix;
        let logits = model.unembed(&before.squeeze(0)?)?;
        let top: Vec<u32> = logits.argmax(D::Minus1)?.to_vec1()?;
        for step in chain_steps(tok, &cfg, p)? {
            hits += usize::from(step.children.contains(&top[step.at]));
            steps += 1;
        }
    }
    Ok(hits as f64 / steps.max(1) as f64)
}

/// A step of a problem's chain of thought in its stage-0 layout.
#[derive(Debug, Clone, PartialEq)]
pub struct ChainStep {
    /// Index in the sample's suffix of the step's node (the lookup's answer).
    pub at: usize,
    /// Token ids of the source's children in the problem's graph.
    pub children: Vec<u32>,
}

/// Where each chain step names its node in [`encode_sample`]'s stage-0 suffix, and the
/// children of its source.
pub fn chain_steps(
    tok: &Tokenizer,
    cfg: &TrainConfig,
    p: &ProsQaProblem,
) -> Result<Vec<ChainStep>> {
    let graph = prosqa::Graph::of(p)?;
    let id = |node: usize| {
        tok.token_id(&p.idx_to_symbol[node])
            .with_context(|| format!("\"{}\" is not one token", p.idx_to_symbol[node]))
    };
    // The chain starts after `<|end-latent|>` in the Coconut layout.
    let mut at = usize::from(cfg.recipe == Recipe::Coconut);
    let mut out = Vec::new();
    for (step, [source, target]) in p.steps.iter().zip(prosqa::gold_path(p)?) {
        let ids = tok.encode_plain(&format!("{step}\n"))?;
        let target_id = id(target)?;
        let pos = ids
            .iter()
            .rposition(|&t| t == target_id)
            .context("a chain step does not name its node")?;
        let children = graph.children[source]
            .iter()
            .map(|&c| id(c))
            .collect::<Result<_>>()?;
        out.push(ChainStep {
            at: at + pos,
            children,
        });
        at += ids.len();
    }
    Ok(out)
}

/// What a training loop reports.
#[derive(Debug, Clone)]
pub enum Progress {
    Step {
        step: u64,
        steps: u64,
        draw: Draw,
        /// The optimised loss of this step (nats per sequence).
        loss: f64,
        /// Estimated seconds left for the whole run.
        eta_s: f64,
    },
    Eval(EvalLog),
    Checkpoint(PathBuf),
    /// A checkpoint written with a shorter (or longer) last stage continues under the new
    /// length: it is the same run up to its step.
    Extended {
        step: u64,
        steps_before: u64,
        steps: u64,
    },
}

/// Options of one invocation (not part of the run's identity).
pub struct TrainOptions<'a> {
    /// Stop (after checkpointing) once this many steps ran in this invocation: simulates an
    /// interruption in tests.
    pub max_steps: Option<u64>,
    /// Seconds between checkpoints between evaluations.
    pub checkpoint_every_s: f64,
    /// Problems (a real validation file, say) whose accuracy is printed at every evaluation;
    /// they are never trained on.
    pub watch: Option<&'a [ProsQaProblem]>,
    pub progress: &'a mut dyn FnMut(&Progress),
}

/// Trains into `out` (the model folder; the resumable state lives in `out/checkpoint`).
/// Resumes when `out` holds a checkpoint of the same configuration.
pub fn train(cfg: &TrainConfig, out: &Path, opts: TrainOptions) -> Result<TrainState> {
    cfg.check()?;
    let dev = Device::Cpu;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let tok = write_tokenizer(out, cfg.text)?;
    let vocab = tok.vocab_size();
    let arch = ArchConfig::from_json(&cfg.hf_config(vocab).to_string())?;
    let val_set = prosqa::generate(&cfg.data.gen_config(), cfg.val_size, cfg.seed, "val")?;

    let (varmap, mut opt, mut st) = match state::load(out, cfg)? {
        Some((varmap, opt, st)) if st.config != *cfg => {
            (opts.progress)(&Progress::Extended {
                step: st.step,
                steps_before: st.config.total_steps(),
                steps: cfg.total_steps(),
            });
            let st = TrainState {
                config: cfg.clone(),
                ..st
            };
            (varmap, opt, st)
        }
        Some(resumed) => resumed,
        None => {
            let varmap = params::init(cfg, vocab, &dev)?;
            let opt = AdamW::new(named_vars(&varmap), cfg.optim)?;
            (varmap, opt, TrainState::new(cfg.clone()))
        }
    };
    let model_of = |varmap: &VarMap| {
        Model::build(
            &arch,
            VarBuilder::from_varmap(varmap, DType::F32, &dev),
            false,
        )
    };
    let total = cfg.total_steps();
    let started = Instant::now();
    let elapsed_before = st.elapsed_s;
    let step_before = st.step;
    let mut ran = 0u64;
    let mut last_ckpt = Instant::now();
    let elapsed = || elapsed_before + started.elapsed().as_secs_f64();

    while st.step < total {
        if opts.max_steps.is_some_and(|m| ran >= m) {
            st.elapsed_s = elapsed();
            let dir = state::save(out, &st, &varmap, &opt)?;
            (opts.progress)(&Progress::Checkpoint(dir));
            return Ok(st);
        }
        let step = st.step;
        if cfg.reset_optimizer && step > 0 && cfg.stage_at(step) != cfg.stage_at(step - 1) {
            opt.reset()?;
        }
        let (batch, draw) = batch::draw_batch(cfg, &tok, step)?;
        let (grads, losses) = batch_gradients(&arch, &varmap, &batch, cfg.shards, cfg.frontier)?;
        opt.step(&grads, cfg.lr_at(step, opt.t))?;
        let rows = batch.rows as f64;
        let loss_value = losses.total / rows;
        st.sums.add(
            loss_value,
            losses.language / batch.scored().max(1) as f64,
            losses.frontier.map(|f| f / rows),
        );
        st.step += 1;
        ran += 1;
        let rate = started.elapsed().as_secs_f64() / (st.step - step_before) as f64;
        (opts.progress)(&Progress::Step {
            step: st.step,
            steps: total,
            draw,
            loss: loss_value,
            eta_s: rate * (total - st.step) as f64,
        });
        let eval_due = st.step.is_multiple_of(cfg.eval_every.max(1)) || st.step == total;
        if eval_due {
            let model = model_of(&varmap)?;
            let log = evaluate_run(cfg, &model, &tok, &val_set, opts.watch, &st, elapsed())?;
            (opts.progress)(&Progress::Eval(log.clone()));
            st.history.push(log);
            st.sums = LossSums::default();
            st.elapsed_s = elapsed();
            export_model(out, cfg, &model, &tok, &varmap, &st)?;
        }
        if eval_due || last_ckpt.elapsed().as_secs_f64() >= opts.checkpoint_every_s {
            st.elapsed_s = elapsed();
            let dir = state::save(out, &st, &varmap, &opt)?;
            (opts.progress)(&Progress::Checkpoint(dir));
            last_ckpt = Instant::now();
        }
    }
    if ran == 0 && st.done() && !st.history.is_empty() {
        // A finished run: the same command writes the model folder again (metadata included).
        export_model(out, cfg, &model_of(&varmap)?, &tok, &varmap, &st)?;
    }
    Ok(st)
}

/// Writes the run's `tokenizer.json` and `tokenizer_config.json` into the model folder and
/// loads the former.
fn write_tokenizer(out: &Path, form: TextForm) -> Result<Tokenizer> {
    let path = out.join("tokenizer.json");
    crate::data::tokenizer::write(&path, form)?;
    crate::files::write_atomic(
        &out.join("tokenizer_config.json"),
        crate::data::tokenizer::config_json().as_bytes(),
        true,
    )?;
    Tokenizer::from_file(&path)
}

/// The figures of one evaluation: generated validation accuracy with the current stage's
/// thoughts, how often each output ranks its frontier on top, and the watched set's accuracy.
fn evaluate_run(
    cfg: &TrainConfig,
    model: &Model,
    tok: &Tokenizer,
    val_set: &[ProsQaProblem],
    watch: Option<&[ProsQaProblem]>,
    st: &TrainState,
    seconds: f64,
) -> Result<EvalLog> {
    let stage = cfg.stage_at(st.step.saturating_sub(1));
    let thoughts = cfg.thoughts_at(stage);
    let mode = cfg.recipe.eval_mode();
    let accuracy = |problems: &[ProsQaProblem]| -> Result<f64> {
        Ok(eval::evaluate(model, tok, problems, mode, thoughts, &mut |_, _| {})?.accuracy)
    };
    let n = val_set.len().min(FRONTIER_CHECK_PROBLEMS);
    // The generated checks on one thread, the watched set on the other (ops are
    // single-threaded in training); each problem is independent.
    let (generated, watch_accuracy) = std::thread::scope(|scope| {
        let watched = watch.map(|w| scope.spawn(move || accuracy(w)));
        let generated = (|| -> Result<_> {
            let val_accuracy = accuracy(val_set)?;
            let frontier_match = if cfg.recipe == Recipe::Coconut {
                frontier_match(model, tok, cfg, &val_set[..n], thoughts)?
            } else {
                Vec::new()
            };
            let chain_lookup = if stage == 0 && cfg.recipe != Recipe::NoCot {
                Some(chain_lookup(model, tok, cfg, &val_set[..n])?)
            } else {
                None
            };
            Ok((val_accuracy, frontier_match, chain_lookup))
        })();
        let watched = watched
            .map(|h| {
                h.join()
                    .map_err(|_| anyhow::anyhow!("the evaluation thread panicked"))?
            })
            .transpose();
        (generated, watched)
    });
    let (val_accuracy, frontier_match, chain_lookup) = generated?;
    let watch_accuracy = watch_accuracy?;
    Ok(EvalLog {
        step: st.step,
        stage,
        facts_share: cfg.fact_share(st.step.saturating_sub(1)),
        loss: st.sums.mean_total(),
        language_loss: st.sums.mean_language(),
        frontier_loss: st.sums.mean_frontier(),
        val_accuracy,
        frontier_match,
        chain_lookup,
        watch_accuracy,
        seconds,
    })
}

/// Validation problems the frontier check runs on.
pub const FRONTIER_CHECK_PROBLEMS: usize = 100;

fn named_vars(varmap: &VarMap) -> Vec<(String, Var)> {
    let data = varmap.data().lock().expect("varmap lock");
    data.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// Generated `demo` problems the demo prompt is chosen from.
pub const DEMO_CANDIDATES: usize = 64;

/// The demo prompt of the explorer: the first generated `demo` problem (of
/// [`DEMO_CANDIDATES`]) that the model answers correctly, else the first.
pub fn pick_demo(
    cfg: &TrainConfig,
    model: &Model,
    tok: &Tokenizer,
    thoughts: usize,
) -> Result<ProsQaProblem> {
    let candidates = prosqa::generate(&cfg.data.gen_config(), DEMO_CANDIDATES, cfg.seed, "demo")?;
    for p in &candidates {
        let one = std::slice::from_ref(p);
        let r = eval::evaluate(
            model,
            tok,
            one,
            cfg.recipe.eval_mode(),
            thoughts,
            &mut |_, _| {},
        )?;
        if r.correct == 1 {
            return Ok(p.clone());
        }
    }
    Ok(candidates[0].clone())
}

/// Writes the model folder: `config.json`, `model.safetensors` (Hugging Face names),
/// `tokenizer.json` (already there) and `coconut-lens.json`.
fn export_model(
    out: &Path,
    cfg: &TrainConfig,
    model: &Model,
    tok: &Tokenizer,
    varmap: &VarMap,
    st: &TrainState,
) -> Result<()> {
    let config = serde_json::to_string_pretty(&cfg.hf_config(tok.vocab_size()))?;
    crate::files::write_atomic(&out.join("config.json"), config.as_bytes(), true)?;
    crate::files::replace_with(&out.join("model.safetensors"), true, |tmp| {
        Ok(varmap.save(tmp)?)
    })?;
    let thoughts = cfg.thoughts_at(cfg.stage_at(st.step.saturating_sub(1)));
    // Choosing a demo the model answers runs up to DEMO_CANDIDATES problems: only for the
    // finished model (a folder written mid-run shows the first candidate).
    let demo = if st.done() {
        pick_demo(cfg, model, tok, thoughts)?
    } else {
        prosqa::generate(&cfg.data.gen_config(), 1, cfg.seed, "demo")?.remove(0)
    };
    let objective = if cfg.frontier > 0.0 && cfg.recipe == Recipe::Coconut {
        "coconut+frontier"
    } else {
        cfg.recipe.name()
    };
    let meta_path = out.join(crate::model::meta::FILE_NAME);
    // Keep accuracy figures recorded by `eval --record`.
    let accuracy = ModelMeta::read(&meta_path)
        .ok()
        .flatten()
        .map(|m| m.accuracy)
        .unwrap_or_default();
    let meta = ModelMeta {
        thoughts: Some(thoughts),
        demo_prompt: Some(demo.question),
        demo_answer: Some(demo.answer),
        recipe: Some(cfg.recipe.name().to_string()),
        objective: Some(objective.to_string()),
        steps_done: Some(st.step),
        training: Some(serde_json::to_value(cfg)?),
        history: Some(serde_json::to_value(&st.history)?),
        accuracy,
        other: Default::default(),
    };
    meta.write(&meta_path)
}
