//! Attention-head importance: zero-ablation (KL of an answer token's distribution) and
//! Michel et al. (2019) gradients |∂L/∂ξ_h| of a gate ξ on each head's output.
//!
//! Both score one answer position: the first by default, or answer token k with the base run's
//! first k answer tokens forced (teacher forcing, see [`scored_spec`]), so that every variant
//! is compared at the same position of the same text.

use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Result, bail};
use candle_core::{DType, IndexOp, Tensor, Var};
use serde::{Deserialize, Serialize};

use crate::model::{Capture, Hooks, Interventions, KvCache, Model, OpMode, Tokenizer};
use crate::numeric::{kl, kl_rows, log_probs};
use crate::thought::{Run, RunSpec, StepRecord, continue_batch, prefix_ids, run};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImportanceMethod {
    Ablation,
    Gradient,
}

impl ImportanceMethod {
    pub fn name(self) -> &'static str {
        match self {
            Self::Ablation => "ablation",
            Self::Gradient => "gradient",
        }
    }
}

impl std::str::FromStr for ImportanceMethod {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "ablation" => Ok(Self::Ablation),
            "gradient" => Ok(Self::Gradient),
            _ => bail!("unknown head-importance method \"{s}\" (expected ablation or gradient)"),
        }
    }
}

/// Progress reports and cancellation for long sweeps.
pub struct SweepControl<'a> {
    /// Called with (done, total) units of work.
    pub progress: &'a mut dyn FnMut(usize, usize),
    pub cancel: Option<&'a AtomicBool>,
}

impl SweepControl<'_> {
    fn check(&self) -> Result<()> {
        if self.cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
            bail!("cancelled");
        }
        Ok(())
    }
}

/// Ablation importance of every head and every layer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AblationImportance {
    /// `[layers][heads]` KL(p_base ‖ p_ablated) in nats; 0 for heads already ablated.
    pub heads: Vec<Vec<f32>>,
    /// `[layers]` KL when the whole layer is skipped; 0 for layers already skipped.
    pub layers: Vec<f32>,
}

/// The sweep runs only up to the scored distribution: the answer token after the forced ones.
fn sweep_spec(spec: &RunSpec) -> RunSpec {
    RunSpec {
        max_new_tokens: spec.forced_answer.len() + 1,
        context_rows: 1,
        attention: false,
        ..spec.clone()
    }
}

/// The step of `run` that importance scores: the answer token after the forced ones.
fn scored_step<'r>(run: &'r Run, spec: &RunSpec) -> Result<&'r StepRecord> {
    let k = spec.forced_answer.len();
    run.answer
        .get(k)
        .ok_or_else(|| anyhow::anyhow!("the answer ends before answer token {k}"))
}

fn check_step_in_range(spec: &RunSpec, step: usize) -> Result<()> {
    if step > 0 && step >= spec.max_new_tokens {
        bail!(
            "answer token {step} cannot be scored: the answer is at most {} tokens long",
            spec.max_new_tokens
        );
    }
    Ok(())
}

/// The spec that scores answer token `step` (0-based) of the base run (the user's
/// interventions applied): its first `step` greedy answer tokens become forced. Also returns
/// the base's greedy token at `step`, the default gradient target.
pub fn scored_spec(
    model: &Model,
    tokenizer: &Tokenizer,
    prompt_ids: &[u32],
    spec: &RunSpec,
    base: &Interventions,
    step: usize,
) -> Result<(RunSpec, u32)> {
    check_step_in_range(spec, step)?;
    let probe = RunSpec {
        max_new_tokens: step + 1,
        context_rows: 1,
        attention: false,
        forced_answer: Vec::new(),
        ..spec.clone()
    };
    let r = run(model, tokenizer, prompt_ids, &probe, &model.hooks(base)?)?;
    scored_spec_of_answer(model, spec, &r.answer_ids, step)
}

/// [`scored_spec`] from the base run's greedy answer (at least its first `step + 1` tokens),
/// when the caller has already run it.
pub fn scored_spec_of_answer(
    model: &Model,
    spec: &RunSpec,
    answer_ids: &[u32],
    step: usize,
) -> Result<(RunSpec, u32)> {
    check_step_in_range(spec, step)?;
    let n = answer_ids.len();
    let Some(&target) = answer_ids.get(step) else {
        bail!("answer token {step} cannot be scored: the answer has only {n} tokens");
    };
    if let Some(&end) = answer_ids[..step]
        .iter()
        .find(|id| model.info.eos_ids.contains(id))
    {
        bail!("answer token {step} cannot be scored: the answer ends (token {end}) before it");
    }
    let scored = RunSpec {
        forced_answer: answer_ids[..step].to_vec(),
        ..spec.clone()
    };
    Ok((scored, target))
}

/// `[B, layers, heads]` gates: the base gates with one extra head zeroed per variant.
fn variant_gates(
    model: &Model,
    base: &Interventions,
    layer: usize,
    heads: &[usize],
) -> Result<Tensor> {
    let gates = heads
        .iter()
        .map(|&h| {
            let mut iv = base.clone();
            iv.ablated_heads.insert((layer, h));
            model.gate_tensor(&iv)
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Tensor::stack(&gates, 0)?)
}

/// Zero-ablation sweep (heads only when `with_heads`; layers always). The prefix runs once;
/// for each layer l, the variants that ablate one head of l reuse the prefix's keys, values
/// and residual stream below l, and run together as one batch through the rest of the prefix,
/// the thoughts, the end marker and the forced answer tokens.
pub fn ablation_importance(
    model: &Model,
    tokenizer: &Tokenizer,
    prompt_ids: &[u32],
    spec: &RunSpec,
    base: &Interventions,
    with_heads: bool,
    ctl: &mut SweepControl,
) -> Result<AblationImportance> {
    let spec = sweep_spec(spec);
    let ids = prefix_ids(model, tokenizer, prompt_ids, &spec)?;
    let (layers, heads) = (model.info.layers, model.info.heads);
    let hooks = model.hooks(base)?;
    let t = ids.len();
    let mut prefix_cache = KvCache::new(layers);
    let capture = Capture {
        resid_rows: (0..t).collect(),
        attention: false,
    };
    let out = model.forward(&model.embed_ids(&ids)?, &mut prefix_cache, &capture, &hooks)?;
    let resid = out.resid.expect("captured"); // [L+1, T, D]
    let base_logits = continue_batch(
        model,
        tokenizer,
        &spec,
        out.hidden.i(t - 1)?.unsqueeze(0)?,
        &mut prefix_cache.clone(),
        &hooks,
    )?;
    let base_lp = log_probs(&base_logits)?; // [1, V], stays on the device
    let batched = matches!(spec.thoughts, crate::thought::ThoughtCount::Fixed { .. });

    // Runs variants (gates `[B, L, H]` or skips) from layer `l` on; returns their KL from the base.
    let variants_from = |l: usize, hooks: &Hooks, b: usize| -> Result<Vec<f32>> {
        let x = resid
            .i(l)?
            .unsqueeze(0)?
            .expand((b, t, model.info.d_model))?
            .contiguous()?;
        let mut cache = prefix_cache.expand_below(l, b)?;
        let hidden = model.rerun_from_layer(l, &x, &mut cache, hooks)?;
        let last = hidden.i((.., t - 1))?;
        let logits = continue_batch(model, tokenizer, &spec, last, &mut cache, hooks)?;
        kl_rows(&base_lp, &log_probs(&logits)?)
    };

    let total = layers * heads + layers;
    let mut done = 0;
    let mut head_kl = vec![vec![0f32; heads]; layers];
    let mut layer_kl = vec![0f32; layers];
    for l in 0..layers {
        ctl.check()?;
        let todo: Vec<usize> = if !with_heads || base.skipped_layers.contains(&l) {
            vec![]
        } else {
            (0..heads)
                .filter(|&h| !base.ablated_heads.contains(&(l, h)))
                .collect()
        };
        let groups: Vec<Vec<usize>> = if batched {
            vec![todo]
        } else {
            todo.into_iter().map(|h| vec![h]).collect()
        };
        for group in groups.into_iter().filter(|g| !g.is_empty()) {
            let hooks = Hooks {
                gates: Some(variant_gates(model, base, l, &group)?),
                ..hooks.clone()
            };
            for (&h, kl) in group.iter().zip(variants_from(l, &hooks, group.len())?) {
                head_kl[l][h] = kl;
            }
            ctl.check()?;
        }
        done += heads;
        (ctl.progress)(done, total);
        if !base.skipped_layers.contains(&l) {
            let mut skip_hooks = hooks.clone();
            skip_hooks.skip[l] = true;
            layer_kl[l] = variants_from(l, &skip_hooks, 1)?[0];
        }
        done += 1;
        (ctl.progress)(done, total);
    }
    Ok(AblationImportance {
        heads: head_kl,
        layers: layer_kl,
    })
}

/// The same quantities by rerunning the whole pipeline for each variant, with no reuse: the
/// reference the fast sweep is tested and benchmarked against.
pub fn ablation_importance_naive(
    model: &Model,
    tokenizer: &Tokenizer,
    prompt_ids: &[u32],
    spec: &RunSpec,
    base: &Interventions,
) -> Result<AblationImportance> {
    let spec = sweep_spec(spec);
    let answer_lp = |iv: &Interventions| -> Result<Vec<f32>> {
        let r = run(model, tokenizer, prompt_ids, &spec, &model.hooks(iv)?)?;
        Ok(log_probs(&scored_step(&r, &spec)?.logits.unsqueeze(0)?)?
            .to_vec2::<f32>()?
            .remove(0))
    };
    let base_lp = answer_lp(base)?;
    let (layers, heads) = (model.info.layers, model.info.heads);
    let mut out = AblationImportance {
        heads: vec![vec![0f32; heads]; layers],
        layers: vec![0f32; layers],
    };
    for l in 0..layers {
        if base.skipped_layers.contains(&l) {
            continue;
        }
        for h in 0..heads {
            if base.ablated_heads.contains(&(l, h)) {
                continue;
            }
            let mut iv = base.clone();
            iv.ablated_heads.insert((l, h));
            out.heads[l][h] = kl(&base_lp, &answer_lp(&iv)?);
        }
        let mut iv = base.clone();
        iv.skipped_layers.insert(l);
        out.layers[l] = kl(&base_lp, &answer_lp(&iv)?);
    }
    Ok(out)
}

/// |∂L/∂ξ_{l,h}| with L = −log p(target) at the scored answer position and ξ a gate on every
/// head output in every forward of the run (1, or 0 for heads already ablated). One backward
/// pass; gradients flow through the recycled thoughts.
pub fn gradient_importance(
    model: &Model,
    tokenizer: &Tokenizer,
    prompt_ids: &[u32],
    spec: &RunSpec,
    base: &Interventions,
    target: u32,
) -> Result<Vec<Vec<f32>>> {
    if target as usize >= model.info.vocab {
        bail!(
            "target id {target} is outside the vocabulary ({} ids)",
            model.info.vocab
        );
    }
    let mut hooks = model.hooks(base)?;
    let gates = Var::from_tensor(&model.gate_tensor(base)?)?;
    hooks.gates = Some(gates.as_tensor().clone());
    hooks.mode = OpMode::INPUT_GRADS;
    let spec = sweep_spec(spec);
    let r = run(model, tokenizer, prompt_ids, &spec, &hooks)?;
    let logits = scored_step(&r, &spec)?.logits.to_dtype(DType::F32)?;
    let loss = crate::model::fused::log_softmax_last_dim(&logits)?
        .i(target as usize)?
        .neg()?;
    let grads = loss.backward()?;
    let g = grads
        .get(gates.as_tensor())
        .ok_or_else(|| anyhow::anyhow!("no gradient reached the head gates"))?;
    Ok(g.abs()?.to_dtype(DType::F32)?.to_vec2()?)
}

/// Head and layer importance for one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Importance {
    pub method: ImportanceMethod,
    /// The answer token (0-based) whose distribution (ablation) or log-probability (gradient)
    /// is measured; earlier answer tokens are forced to the run's own.
    pub step: usize,
    /// The greedy token at that step, as shown.
    pub target: String,
    /// Its token id.
    pub target_id: u32,
    /// `[layers][heads]`.
    pub heads: Vec<Vec<f32>>,
    /// `[layers]`: KL when the layer is skipped (ablation) or the sum over its heads (gradient).
    pub layers: Vec<f32>,
    pub compute_ms: f64,
}

/// Head and layer importance of the run of `params` whose greedy answer is `answer`, scored at
/// the answer token the lens tracks (see [`crate::analysis::run::tracked_step`]) with the
/// answer before it forced.
pub fn importance_of_answer(
    model: &Model,
    tokenizer: &Tokenizer,
    params: &crate::analysis::run::RunParams,
    answer: &[u32],
    method: ImportanceMethod,
    ctl: &mut SweepControl,
) -> Result<Importance> {
    let t0 = std::time::Instant::now();
    let ids = tokenizer.encode_prompt(&params.prompt)?;
    let spec = RunSpec {
        context_rows: 1,
        ..params.spec(false)
    };
    let iv = &params.interventions;
    let step =
        crate::analysis::run::tracked_step(tokenizer, answer, &model.info.eos_ids).unwrap_or(0);
    let (spec, target) = scored_spec_of_answer(model, &spec, answer, step)?;
    ctl.check()?;
    let (heads, layers) = match method {
        ImportanceMethod::Ablation => {
            let (l, h) = (model.info.layers, model.info.heads);
            (ctl.progress)(0, l * h + l);
            let sweep = ablation_importance(model, tokenizer, &ids, &spec, iv, true, ctl)?;
            (sweep.heads, sweep.layers)
        }
        ImportanceMethod::Gradient => {
            (ctl.progress)(0, 1);
            let g = gradient_importance(model, tokenizer, &ids, &spec, iv, target)?;
            (ctl.progress)(1, 1);
            let layers = g.iter().map(|row| row.iter().sum()).collect();
            (g, layers)
        }
    };
    Ok(Importance {
        method,
        step,
        target: tokenizer.display(target),
        target_id: target,
        heads,
        layers,
        compute_ms: t0.elapsed().as_secs_f64() * 1e3,
    })
}
