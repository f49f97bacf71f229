//! Training a GPT-2 from scratch on ProsQA with the Coconut curriculum (Hao et al. 2024, §3),
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

pub mod cli;
pub mod optim;
mod state;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use serde::{Deserialize, Serialize};

use crate::data::prosqa::{self, GenConfig, ProsQaProblem};
use crate::data::rng::Rng;
use crate::eval::{self, EvalMode};
use crate::model::config::ArchConfig;
use crate::model::{Hooks, KvCache, Model, OpMode, Tokenizer};
use optim::{AdamW, AdamWParams};
pub use state::{EpochLog, TrainState};

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

/// Everything that determines a training run. A checkpoint is only resumed with the same.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub recipe: Recipe,
    pub seed: u64,
    pub data: DataShape,
    pub train_size: usize,
    pub val_size: usize,
    pub layers: usize,
    pub d_model: usize,
    pub heads: usize,
    pub context: usize,
    pub batch_size: usize,
    pub lr: f64,
    /// Linear warm-up after every optimizer reset, in optimizer steps.
    pub warmup_steps: u64,
    pub optim: AdamWParams,
    /// Continuous thoughts per replaced step (c in the paper).
    pub thoughts_per_step: usize,
    /// Last curriculum stage (6 for ProsQA in the paper).
    pub max_stage: usize,
    pub epochs_first: usize,
    pub epochs_per_stage: usize,
    /// Extra epochs at the last stage.
    pub epochs_last: usize,
}

impl TrainConfig {
    /// The settings of the bundled model.
    pub fn bundled(recipe: Recipe) -> Self {
        Self {
            recipe,
            seed: 0,
            data: DataShape::Prosqa,
            train_size: 6000,
            val_size: 200,
            layers: 4,
            d_model: 128,
            heads: 4,
            context: 512,
            // Small batches: more updates for the same compute. The lookup ("X is a" → Y)
            // the model must learn appears after a plateau of some hundreds of updates.
            batch_size: 8,
            lr: 1e-3,
            warmup_steps: 100,
            optim: AdamWParams::default(),
            thoughts_per_step: 1,
            max_stage: 6,
            epochs_first: 5,
            epochs_per_stage: 1,
            epochs_last: 3,
        }
    }

    /// The curriculum stage of every epoch. Baselines train the same number of epochs.
    pub fn schedule(&self) -> Vec<usize> {
        let mut stages = vec![0; self.epochs_first];
        for k in 1..=self.max_stage {
            stages.extend(std::iter::repeat_n(k, self.epochs_per_stage));
        }
        stages.extend(std::iter::repeat_n(self.max_stage, self.epochs_last));
        match self.recipe {
            Recipe::Coconut => stages,
            Recipe::Cot | Recipe::NoCot => vec![0; stages.len()],
        }
    }

    /// Number of thoughts the model is run with at `stage`.
    pub fn thoughts_at(&self, stage: usize) -> usize {
        match self.recipe {
            Recipe::Coconut => stage * self.thoughts_per_step,
            Recipe::Cot | Recipe::NoCot => 0,
        }
    }

    /// Rejects settings that cannot train.
    pub fn check(&self) -> Result<()> {
        ensure!(self.train_size > 0, "--train-size must be positive");
        ensure!(self.batch_size > 0, "--batch-size must be positive");
        ensure!(
            self.layers > 0 && self.heads > 0 && self.d_model.is_multiple_of(self.heads),
            "--d-model must be a multiple of --heads (both positive, with at least one layer)"
        );
        ensure!(!self.schedule().is_empty(), "the schedule has no epochs");
        ensure!(self.lr > 0.0, "--lr must be positive");
        Ok(())
    }

    /// `config.json` of the model, in the Hugging Face GPT-2 format.
    pub fn hf_config(&self, vocab: usize) -> serde_json::Value {
        let eos = crate::data::tokenizer::vocabulary()
            .iter()
            .position(|w| *w == crate::data::tokenizer::EOS)
            .unwrap_or(0);
        serde_json::json!({
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
        })
    }
}

/// One training sequence: `prefix`, then `latents` continuous thoughts, then `suffix`.
/// The loss covers `suffix[loss_from..]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub prefix: Vec<u32>,
    pub latents: usize,
    pub suffix: Vec<u32>,
    pub loss_from: usize,
}

/// Token ids of a problem in the layout of `recipe` at curriculum `stage` (the Coconut
/// code's format: `question\n`, steps each followed by `\n`, `### answer`, end of text).
pub fn encode_sample(
    tok: &Tokenizer,
    p: &ProsQaProblem,
    cfg: &TrainConfig,
    stage: usize,
) -> Result<Sample> {
    let question = tok.encode_prompt(&p.question)?;
    let eos = tok
        .token_id(crate::data::tokenizer::EOS)
        .context("the tokenizer has no end-of-text token")?;
    let mut answer = tok.encode_plain(&format!("### {}", p.answer))?;
    answer.push(eos);
    let steps = |skip: usize| -> Result<Vec<u32>> {
        let mut ids = Vec::new();
        for s in p.steps.iter().skip(skip) {
            ids.extend(tok.encode_plain(&format!("{s}\n"))?);
        }
        Ok(ids)
    };
    Ok(match cfg.recipe {
        Recipe::Coconut => {
            let m = tok.coconut.context("the tokenizer has no Coconut tokens")?;
            let mut prefix = question;
            prefix.push(m.start);
            let mut suffix = vec![m.end];
            suffix.extend(steps(stage.min(p.steps.len()))?);
            suffix.extend(answer);
            Sample {
                prefix,
                latents: cfg.thoughts_at(stage),
                suffix,
                loss_from: 1,
            }
        }
        Recipe::Cot => {
            let mut suffix = steps(0)?;
            suffix.extend(answer);
            Sample {
                prefix: question,
                latents: 0,
                suffix,
                loss_from: 0,
            }
        }
        Recipe::NoCot => Sample {
            prefix: question,
            latents: 0,
            suffix: answer,
            loss_from: 0,
        },
    })
}

/// Summed cross-entropy of one sample and the number of predicted tokens. The thoughts are the
/// model's own final hidden states, fed back with gradients flowing through them.
pub fn sample_loss(model: &Model, hooks: &Hooks, s: &Sample) -> Result<(Tensor, usize)> {
    let mut cache = KvCache::new(model.info.layers);
    let prefix = model.embed_ids(&s.prefix)?.unsqueeze(0)?;
    let h = model.forward_batch(&prefix, &mut cache, hooks)?;
    let mut last = h.narrow(1, s.prefix.len() - 1, 1)?;
    for _ in 0..s.latents {
        last = model.forward_batch(&last, &mut cache, hooks)?;
    }
    let n = s.suffix.len();
    let suffix = model.embed_ids(&s.suffix)?.unsqueeze(0)?;
    let hs = model.forward_batch(&suffix, &mut cache, hooks)?;
    // The hidden state before each suffix token predicts it.
    let before = Tensor::cat(&[&last, &hs.narrow(1, 0, n - 1)?], 1)?.squeeze(0)?;
    let count = n - s.loss_from;
    let before = before.narrow(0, s.loss_from, count)?;
    let logits = model.unembed_with(&before, hooks.mode)?;
    let targets = Tensor::new(&s.suffix[s.loss_from..], model.device())?;
    let mean = candle_nn::loss::cross_entropy(&logits, &targets)?;
    Ok(((mean * count as f64)?, count))
}

/// Parameter names and shapes of a Hugging Face GPT-2 (`transformer.` prefix, tied head).
fn gpt2_parameters(cfg: &TrainConfig, vocab: usize) -> Vec<(String, Vec<usize>)> {
    let d = cfg.d_model;
    let mut p = vec![
        ("transformer.wte.weight".to_string(), vec![vocab, d]),
        ("transformer.wpe.weight".to_string(), vec![cfg.context, d]),
        ("transformer.ln_f.weight".to_string(), vec![d]),
        ("transformer.ln_f.bias".to_string(), vec![d]),
    ];
    for l in 0..cfg.layers {
        let h = format!("transformer.h.{l}");
        for (name, shape) in [
            ("ln_1.weight", vec![d]),
            ("ln_1.bias", vec![d]),
            ("attn.c_attn.weight", vec![d, 3 * d]),
            ("attn.c_attn.bias", vec![3 * d]),
            ("attn.c_proj.weight", vec![d, d]),
            ("attn.c_proj.bias", vec![d]),
            ("ln_2.weight", vec![d]),
            ("ln_2.bias", vec![d]),
            ("mlp.c_fc.weight", vec![d, 4 * d]),
            ("mlp.c_fc.bias", vec![4 * d]),
            ("mlp.c_proj.weight", vec![4 * d, d]),
            ("mlp.c_proj.bias", vec![d]),
        ] {
            p.push((format!("{h}.{name}"), shape));
        }
    }
    p
}

/// GPT-2's initialisation: N(0, 0.02) matrices, residual projections scaled by 1/√(2L),
/// zero biases, unit norm gains. Drawn from the project's own generator, in name order.
fn init_parameters(cfg: &TrainConfig, vocab: usize, dev: &Device) -> Result<VarMap> {
    let mut rng = Rng::with_label(cfg.seed, "init");
    let mut params = gpt2_parameters(cfg, vocab);
    params.sort();
    let varmap = VarMap::new();
    {
        let mut data = varmap.data().lock().expect("fresh varmap");
        for (name, shape) in params {
            let n: usize = shape.iter().product();
            let values: Vec<f32> = if name.ends_with(".bias") {
                vec![0.0; n]
            } else if name.contains("ln_") {
                vec![1.0; n]
            } else {
                let std = if name.ends_with("c_proj.weight") {
                    0.02 / (2.0 * cfg.layers as f64).sqrt()
                } else {
                    0.02
                };
                (0..n).map(|_| (normal(&mut rng) * std) as f32).collect()
            };
            let t = Tensor::from_vec(values, shape, dev)?;
            data.insert(name, Var::from_tensor(&t)?);
        }
    }
    Ok(varmap)
}

/// A standard normal draw (Box–Muller).
fn normal(rng: &mut Rng) -> f64 {
    let u1 = rng.next_f64().max(f64::MIN_POSITIVE);
    let u2 = rng.next_f64();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// What a training loop reports.
#[derive(Debug, Clone)]
pub enum Progress {
    Batch {
        epoch: usize,
        epochs: usize,
        stage: usize,
        batch: usize,
        batches: usize,
        loss: f64,
        /// Estimated seconds left for the whole run.
        eta_s: f64,
    },
    Epoch(EpochLog),
    Checkpoint(PathBuf),
}

/// Options of one invocation (not part of the run's identity).
pub struct TrainOptions<'a> {
    /// Stop (after checkpointing) once this many batches ran in this invocation: simulates an
    /// interruption in tests.
    pub max_batches: Option<usize>,
    /// Seconds between mid-epoch checkpoints.
    pub checkpoint_every_s: f64,
    pub progress: &'a mut dyn FnMut(&Progress),
}

/// Trains into `out` (the model folder; the resumable state lives in `out/checkpoint`).
/// Resumes when `out` holds a checkpoint of the same configuration.
pub fn train(cfg: &TrainConfig, out: &Path, opts: TrainOptions) -> Result<TrainState> {
    cfg.check()?;
    let dev = Device::Cpu;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let tok_path = out.join("tokenizer.json");
    crate::data::tokenizer::write(&tok_path)?;
    let tok = Tokenizer::from_file(&tok_path)?;
    let vocab = tok.vocab_size();
    let arch = ArchConfig::from_json(&cfg.hf_config(vocab).to_string())?;

    let gen_cfg = cfg.data.gen_config();
    let train_set = prosqa::generate(&gen_cfg, cfg.train_size, cfg.seed, "train")?;
    let val_set = prosqa::generate(&gen_cfg, cfg.val_size, cfg.seed, "val")?;

    let (varmap, mut opt, mut st) = match state::load(out, cfg)? {
        Some(resumed) => resumed,
        None => {
            let varmap = init_parameters(cfg, vocab, &dev)?;
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
    let schedule = cfg.schedule();
    let batches = cfg.train_size.div_ceil(cfg.batch_size);
    let total_batches = schedule.len() * batches;
    let started = Instant::now();
    let elapsed_before = st.elapsed_s;
    let done_before = st.epoch * batches + st.batch;
    let mut ran = 0usize;
    let mut last_ckpt = Instant::now();
    let hooks = Hooks {
        mode: OpMode::TRAIN,
        ..Hooks::none(cfg.layers)
    };

    while st.epoch < schedule.len() {
        let stage = schedule[st.epoch];
        if st.batch == 0 && st.epoch > 0 && schedule[st.epoch - 1] != stage {
            opt.reset()?;
        }
        let order = epoch_order(cfg, st.epoch);
        while st.batch < batches {
            if opts.max_batches.is_some_and(|m| ran >= m) {
                st.elapsed_s = elapsed_before + started.elapsed().as_secs_f64();
                let dir = state::save(out, &st, &varmap, &opt)?;
                (opts.progress)(&Progress::Checkpoint(dir));
                return Ok(st);
            }
            let model = model_of(&varmap)?;
            let lo = st.batch * cfg.batch_size;
            let hi = (lo + cfg.batch_size).min(cfg.train_size);
            let mut total: Option<Tensor> = None;
            let mut count = 0usize;
            for &i in &order[lo..hi] {
                let s = encode_sample(&tok, &train_set[i], cfg, stage)?;
                let (l, n) = sample_loss(&model, &hooks, &s)?;
                total = Some(match total {
                    None => l,
                    Some(t) => (t + l)?,
                });
                count += n;
            }
            let loss = (total.expect("a batch has samples") / count as f64)?;
            let grads = loss.backward()?;
            let warm = ((opt.t + 1) as f64 / cfg.warmup_steps.max(1) as f64).min(1.0);
            opt.step(&grads, cfg.lr * warm)?;
            let loss_value = f64::from(loss.to_scalar::<f32>()?);
            st.epoch_loss_sum += loss_value;
            st.epoch_batches += 1;
            st.batch += 1;
            ran += 1;
            let done = st.epoch * batches + st.batch;
            let rate = started.elapsed().as_secs_f64() / (done - done_before) as f64;
            (opts.progress)(&Progress::Batch {
                epoch: st.epoch,
                epochs: schedule.len(),
                stage,
                batch: st.batch,
                batches,
                loss: loss_value,
                eta_s: rate * (total_batches - done) as f64,
            });
            if last_ckpt.elapsed().as_secs_f64() >= opts.checkpoint_every_s && st.batch < batches {
                st.elapsed_s = elapsed_before + started.elapsed().as_secs_f64();
                let dir = state::save(out, &st, &varmap, &opt)?;
                (opts.progress)(&Progress::Checkpoint(dir));
                last_ckpt = Instant::now();
            }
        }
        // End of epoch: validate, export the model, checkpoint.
        let model = model_of(&varmap)?;
        let report = eval::evaluate(
            &model,
            &tok,
            &val_set,
            cfg.recipe.eval_mode(),
            cfg.thoughts_at(stage),
            &mut |_, _| {},
        )?;
        let log = EpochLog {
            epoch: st.epoch,
            stage,
            loss: st.epoch_loss_sum / st.epoch_batches.max(1) as f64,
            val_accuracy: report.accuracy,
            seconds: elapsed_before + started.elapsed().as_secs_f64(),
        };
        (opts.progress)(&Progress::Epoch(log.clone()));
        st.history.push(log);
        st.epoch += 1;
        st.batch = 0;
        st.epoch_loss_sum = 0.0;
        st.epoch_batches = 0;
        st.elapsed_s = elapsed_before + started.elapsed().as_secs_f64();
        export_model(out, cfg, &model_of(&varmap)?, &tok, &varmap, &st)?;
        let dir = state::save(out, &st, &varmap, &opt)?;
        (opts.progress)(&Progress::Checkpoint(dir));
        last_ckpt = Instant::now();
    }
    if ran == 0 && st.epoch == schedule.len() && !st.history.is_empty() {
        // A finished run: the same command writes the model folder again (metadata included).
        export_model(out, cfg, &model_of(&varmap)?, &tok, &varmap, &st)?;
    }
    Ok(st)
}

fn named_vars(varmap: &VarMap) -> Vec<(String, Var)> {
    let data = varmap.data().lock().expect("varmap lock");
    data.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// The order of the training problems in `epoch`.
fn epoch_order(cfg: &TrainConfig, epoch: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..cfg.train_size).collect();
    Rng::with_label(cfg.seed, &format!("epoch-{epoch}")).shuffle(&mut order);
    order
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
    crate::data::write_atomic(&out.join("config.json"), config.as_bytes())?;
    let tmp = out.join("model.safetensors.tmp");
    varmap.save(&tmp)?;
    std::fs::rename(&tmp, out.join("model.safetensors"))?;
    let stage = cfg.schedule()[st.epoch - 1];
    let demo = pick_demo(cfg, model, tok, cfg.thoughts_at(stage))?;
    let meta = serde_json::json!({
        "thoughts": cfg.thoughts_at(stage),
        "demo_prompt": demo.question,
        "demo_answer": demo.answer,
        "recipe": cfg.recipe.name(),
        "epochs_done": st.epoch,
        "training": cfg,
        "history": st.history,
    });
    let meta_path = out.join("coconut-lens.json");
    // Keep accuracy figures recorded by `eval --record`.
    let mut meta = meta;
    if let Ok(old) = std::fs::read_to_string(&meta_path)
        && let Ok(old) = serde_json::from_str::<serde_json::Value>(&old)
        && let Some(acc) = old.get("accuracy")
    {
        meta["accuracy"] = acc.clone();
    }
    crate::data::write_atomic(&meta_path, serde_json::to_string_pretty(&meta)?.as_bytes())
}
