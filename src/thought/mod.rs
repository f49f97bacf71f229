//! The continuous-thought runner: prompt, then thoughts, then the answer (greedy or sampled).
//!
//! The prefix runs once; each thought and each answer token is one cached step. Every mode is a
//! small rule for "what is the next input embedding" given the last final hidden state, and
//! [`Feeds`] may replace what a thought's slot receives.

pub mod intervene;
pub mod sampling;

pub use intervene::{Feeds, ResidPatch, ThoughtEdits, ThoughtMeans, ThoughtOp};
pub use sampling::{Sampler, Sampling};

use anyhow::{Result, bail};
use candle_core::{D, IndexOp, Tensor};
use serde::{Deserialize, Serialize};

use crate::model::{Capture, Family, Hooks, KvCache, Model, Tokenizer};
use crate::numeric::{entropy, top_k_indices, top_k_rows};

/// How a thought becomes the next input embedding.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "name")]
pub enum ThoughtMode {
    /// Coconut: the final hidden state (after the final norm) is the next input embedding; for
    /// a CODI model, its projection.
    Coconut,
    /// Soft Thinking: the probability-weighted mix of the embeddings of the top tokens.
    Soft { top_k: usize, top_p: f32 },
    /// Chain of thought: the greedy token is embedded.
    Token,
    /// Pause tokens: the `<|latent|>` embedding itself, no recycling.
    Pause,
}

impl ThoughtMode {
    /// The mode named `name` (coconut, soft, token or pause); `soft` is Soft Thinking's
    /// (top-k, top-p). Errors name the command-line options.
    pub fn parse(name: &str, soft: (usize, f32)) -> Result<ThoughtMode> {
        Ok(match name {
            "coconut" => Self::Coconut,
            "soft" => {
                let (top_k, top_p) = soft;
                if top_k == 0 || !(top_p > 0.0 && top_p <= 1.0) {
                    bail!("--soft-top-k must be at least 1 and --soft-top-p in (0, 1]");
                }
                Self::Soft { top_k, top_p }
            }
            "token" => Self::Token,
            "pause" => Self::Pause,
            other => bail!("unknown mode \"{other}\" (expected coconut, soft, token or pause)"),
        })
    }

    pub fn name(&self) -> &'static str {
        match self {
            Self::Coconut => "coconut",
            Self::Soft { .. } => "soft",
            Self::Token => "token",
            Self::Pause => "pause",
        }
    }
}

/// How many thoughts to run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum ThoughtCount {
    Fixed {
        n: usize,
    },
    /// Stop once a thought's decoded distribution has entropy below `entropy_stop` (nats);
    /// that thought is still fed. At most `max` thoughts.
    Auto {
        entropy_stop: f32,
        max: usize,
    },
}

impl ThoughtCount {
    /// `"N"` or `"auto"` (which needs `entropy_stop`, in nats), at most `max` thoughts when
    /// auto. Errors name the command-line options.
    pub fn parse(text: &str, entropy_stop: Option<f32>, max: usize) -> Result<ThoughtCount> {
        let count = match text {
            "auto" => {
                let Some(t) = entropy_stop else {
                    bail!("--thoughts auto needs --entropy-stop T (nats)");
                };
                if !(t.is_finite() && t >= 0.0) {
                    bail!("--entropy-stop must be a non-negative number of nats");
                }
                ThoughtCount::Auto {
                    entropy_stop: t,
                    max,
                }
            }
            n => match n.parse::<usize>() {
                Ok(n) => ThoughtCount::Fixed { n },
                Err(_) => bail!("--thoughts must be a non-negative integer or auto, got \"{n}\""),
            },
        };
        if entropy_stop.is_some() && !matches!(count, ThoughtCount::Auto { .. }) {
            bail!("--entropy-stop only applies with --thoughts auto");
        }
        Ok(count)
    }
}

#[derive(Debug, Clone)]
pub struct RunSpec {
    pub thoughts: ThoughtCount,
    pub mode: ThoughtMode,
    pub max_new_tokens: usize,
    /// How many of the last input positions before the thoughts to record as steps.
    pub context_rows: usize,
    /// Record attention probabilities of every step.
    pub attention: bool,
    /// Answer tokens fed in place of the first decoded ones (teacher forcing); the rest of
    /// the answer is decoded by `sampling`. Empty for plain decoding.
    pub forced_answer: Vec<u32>,
    /// Interventions on what the thoughts feed back.
    pub feeds: Feeds,
    /// How the answer tokens after the forced ones are chosen (greedy or sampled).
    pub sampling: Sampling,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StepKind {
    /// A prompt position (the last `context_rows` before the thoughts).
    Prompt,
    /// Thought k (1-based).
    Thought(usize),
    /// The position that predicts answer token i (0-based); i = 0 is the last input position.
    Answer(usize),
}

/// What the analyses need of one position.
#[derive(Clone)]
pub struct StepRecord {
    pub kind: StepKind,
    pub position: usize,
    /// `[L+1, D]`: x^0..x^L at this position.
    pub resid: Tensor,
    /// `[D]`: the final hidden state after the final norm.
    pub hidden: Tensor,
    /// `[V]`: the model's next-token logits here.
    pub logits: Tensor,
    /// Per layer `[H, position + 1]` attention of this query position, when asked.
    pub attention: Option<Vec<Option<Tensor>>>,
}

pub struct Run {
    /// Every input id fed before the answer (thought slots carry `<|latent|>` or, in token
    /// mode, the greedy token; without Coconut markers latent slots have no id).
    pub input_ids: Vec<u32>,
    /// The prompt's ids are `input_ids[..prompt_len]`.
    pub prompt_len: usize,
    pub prompt_steps: Vec<StepRecord>,
    pub thoughts: Vec<StepRecord>,
    /// `answer[0]` is at the last input position.
    pub answer: Vec<StepRecord>,
    pub answer_ids: Vec<u32>,
    /// Per thought, the input its slot received (`[D]`): what its mode computed, or what an
    /// intervention put there.
    pub fed: Vec<Tensor>,
}

impl Run {
    pub fn answer_first(&self) -> &StepRecord {
        &self.answer[0]
    }
}

/// Records the step at `row` of a forward output.
fn record(
    model: &Model,
    out: &crate::model::StepOutput,
    row: usize,
    rows_captured: &[usize],
    kind: StepKind,
    position: usize,
    mode: crate::model::OpMode,
) -> Result<StepRecord> {
    let ri = rows_captured
        .iter()
        .position(|&r| r == row)
        .expect("row captured");
    let resid = out
        .resid
        .as_ref()
        .expect("resid captured")
        .i((.., ri, ..))?;
    let hidden = out.hidden.i(row)?;
    let logits = model
        .unembed_with(&hidden.unsqueeze(0)?, mode)?
        .squeeze(0)?;
    let attention = if out.attention.is_empty() {
        None
    } else {
        Some(
            out.attention
                .iter()
                .map(|a| a.as_ref().map(|a| a.i((.., row, ..))).transpose())
                .collect::<candle_core::Result<Vec<_>>>()?,
        )
    };
    Ok(StepRecord {
        kind,
        position,
        resid,
        hidden,
        logits,
        attention,
    })
}

/// The logits `[V]` an answer token is chosen from. CODI's decoding never picks its eot id,
/// the last (`logits[:, -1, :vocab_size - 1]` in its `test.py`).
pub fn answer_logits(model: &Model, logits: &Tensor) -> Result<Tensor> {
    Ok(match model.info.family {
        Family::Codi => logits.narrow(0, 0, logits.dim(0)? - 1)?,
        Family::Coconut => logits.clone(),
    })
}

/// The greedy answer token of logits `[V]` (see [`answer_logits`]).
pub fn answer_argmax(model: &Model, logits: &Tensor) -> Result<u32> {
    Ok(answer_logits(model, logits)?
        .argmax(D::Minus1)?
        .to_scalar::<u32>()?)
}

/// The Soft Thinking input: renormalised top-k / top-p mix of token embeddings, `[D]`.
pub fn soft_embedding(model: &Model, logits: &Tensor, top_k: usize, top_p: f32) -> Result<Tensor> {
    let probs = candle_nn::ops::softmax_last_dim(&logits.to_dtype(candle_core::DType::F32)?)?;
    // The ranked candidates: on a GPU only the top k come back to the host.
    let ranked: Vec<(u32, f32)> = if probs.device().is_cpu() {
        let p: Vec<f32> = probs.to_vec1()?;
        top_k_indices(&p, top_k.max(1))
            .into_iter()
            .map(|i| (i as u32, p[i]))
            .collect()
    } else {
        top_k_rows(&probs.unsqueeze(0)?, top_k.max(1))?.remove(0)
    };
    let mut ids = Vec::new();
    let mut weights = Vec::new();
    let mut mass = 0.0;
    for (id, p) in ranked {
        ids.push(id);
        weights.push(p);
        mass += p;
        if mass >= top_p {
            break;
        }
    }
    let total: f32 = weights.iter().sum();
    let w = Tensor::from_vec(
        weights.iter().map(|w| w / total).collect::<Vec<_>>(),
        (1, ids.len()),
        model.device(),
    )?;
    let e = model.embed_ids(&ids)?.to_dtype(candle_core::DType::F32)?;
    Ok(w.matmul(&e)?.squeeze(0)?)
}

/// The largest number of thoughts a spec may run.
pub fn max_thoughts(spec: &RunSpec) -> usize {
    match spec.thoughts {
        ThoughtCount::Fixed { n } => n,
        ThoughtCount::Auto { max, .. } => max,
    }
}

/// Checks a run can be done, and returns the prefix ids: the prompt, then `<|start-latent|>`
/// when the tokenizer has the Coconut tokens.
pub fn prefix_ids(
    model: &Model,
    tokenizer: &Tokenizer,
    prompt_ids: &[u32],
    spec: &RunSpec,
) -> Result<Vec<u32>> {
    if prompt_ids.is_empty() {
        bail!("the prompt encodes to no tokens");
    }
    let markers = tokenizer.coconut;
    if spec.mode == ThoughtMode::Pause && markers.and_then(|m| m.latent).is_none() {
        bail!("pause mode needs the <|latent|> token, which this tokenizer does not have");
    }
    let max = max_thoughts(spec);
    let needed = prompt_ids.len() + max + if markers.is_some() { 2 } else { 0 };
    if needed > model.info.context {
        bail!(
            "the prompt has {} tokens; with {} thoughts and the markers the input needs {} positions, more than the model's context of {}",
            prompt_ids.len(),
            max,
            needed,
            model.info.context
        );
    }
    let mut ids = prompt_ids.to_vec();
    if let Some(m) = markers {
        ids.push(m.start);
    }
    Ok(ids)
}

/// The next input embeddings `[B, D]` of a batch of thoughts, given their final hidden states
/// `hidden` `[B, D]` and logits `logits` `[B, V]`; also the id each slot carries, if any.
pub fn next_embeddings(
    model: &Model,
    tokenizer: &Tokenizer,
    mode: ThoughtMode,
    hidden: &Tensor,
    logits: &Tensor,
) -> Result<(Tensor, Vec<Option<u32>>)> {
    let b = hidden.dim(0)?;
    let latent = tokenizer.coconut.and_then(|m| m.latent);
    Ok(match mode {
        ThoughtMode::Coconut => (model.thought_input(hidden)?, vec![latent; b]),
        ThoughtMode::Pause => {
            let latent = latent.expect("pause mode is checked before running");
            let e = model.embed_ids(&vec![latent; b])?;
            (e, vec![Some(latent); b])
        }
        ThoughtMode::Token => {
            let ids: Vec<u32> = logits.argmax(D::Minus1)?.to_vec1()?;
            (model.embed_ids(&ids)?, ids.into_iter().map(Some).collect())
        }
        ThoughtMode::Soft { top_k, top_p } => {
            let rows = (0..b)
                .map(|i| soft_embedding(model, &logits.i(i)?, top_k, top_p))
                .collect::<Result<Vec<_>>>()?;
            (Tensor::stack(&rows, 0)?, vec![latent; b])
        }
    })
}

/// Runs prompt -> thoughts -> answer. `prompt_ids` is `encode(prompt + "\n")`.
pub fn run(
    model: &Model,
    tokenizer: &Tokenizer,
    prompt_ids: &[u32],
    spec: &RunSpec,
    hooks: &Hooks,
) -> Result<Run> {
    let mut ids = prefix_ids(model, tokenizer, prompt_ids, spec)?;
    let markers = tokenizer.coconut;
    let mut cache = KvCache::new(model.info.layers);
    let prefix_len = ids.len();
    let ctx = spec.context_rows.clamp(1, prefix_len);
    let rows: Vec<usize> = (prefix_len - ctx..prefix_len).collect();
    let capture = Capture {
        resid_rows: rows.clone(),
        attention: spec.attention,
    };
    let out = model.forward(&model.embed_ids(&ids)?, &mut cache, &capture, hooks)?;
    let mut prompt_steps = Vec::with_capacity(ctx);
    for &r in &rows {
        prompt_steps.push(record(
            model,
            &out,
            r,
            &rows,
            StepKind::Prompt,
            r,
            hooks.mode,
        )?);
    }
    // The step at the last position so far (tensors are shared, not copied).
    let mut last = prompt_steps
        .last()
        .expect("at least one context row")
        .clone();
    let step_capture = Capture {
        resid_rows: vec![0],
        attention: spec.attention,
    };
    let step = |embed: &Tensor, cache: &mut KvCache, kind: StepKind| -> Result<StepRecord> {
        let pos = cache.len();
        let out = model.forward(embed, cache, &step_capture, hooks)?;
        record(model, &out, 0, &[0], kind, pos, hooks.mode)
    };

    let mut thoughts = Vec::new();
    let mut fed = Vec::new();
    for k in 1..=max_thoughts(spec) {
        let mut thought = last;
        thought.kind = StepKind::Thought(k);
        let (next, slot) = next_embeddings(
            model,
            tokenizer,
            spec.mode,
            &thought.hidden.unsqueeze(0)?,
            &thought.logits.unsqueeze(0)?,
        )?;
        let next = spec.feeds.apply(k, &next)?;
        let stop = match spec.thoughts {
            ThoughtCount::Auto { entropy_stop, .. } => entropy(&thought.logits)? < entropy_stop,
            ThoughtCount::Fixed { .. } => false,
        };
        thoughts.push(thought);
        fed.push(next.squeeze(0)?);
        ids.extend(slot[0]);
        last = step(&next, &mut cache, StepKind::Thought(k + 1))?;
        if stop {
            break;
        }
    }
    if let Some(m) = markers {
        ids.push(m.end);
        last = step(&model.embed_ids(&[m.end])?, &mut cache, StepKind::Answer(0))?;
    }

    let mut answer = Vec::new();
    let mut answer_ids = Vec::new();
    let mut sampler = spec.sampling.sampler();
    let mut here = last;
    for i in 0.. {
        here.kind = StepKind::Answer(i);
        let tok = match spec.forced_answer.get(i) {
            Some(&forced) => forced,
            None => sampler.next(&answer_logits(model, &here.logits)?)?,
        };
        answer.push(here);
        if i >= spec.max_new_tokens {
            break;
        }
        answer_ids.push(tok);
        if model.info.eos_ids.contains(&tok)
            || i + 1 == spec.max_new_tokens
            || cache.len() >= model.info.context
        {
            break;
        }
        here = step(
            &model.embed_ids(&[tok])?,
            &mut cache,
            StepKind::Answer(i + 1),
        )?;
    }
    Ok(Run {
        input_ids: ids,
        prompt_len: prompt_ids.len(),
        prompt_steps,
        thoughts,
        answer,
        answer_ids,
        fed,
    })
}

/// Continues `B` variants whose prefix is in `cache` (last final hidden states `hidden`
/// `[B, D]`) through the thoughts, the end marker and the forced answer tokens. Returns the
/// logits `[B, V]` of the answer token after the forced ones.
/// With `--thoughts auto`, `B` must be 1.
pub fn continue_batch(
    model: &Model,
    tokenizer: &Tokenizer,
    spec: &RunSpec,
    mut hidden: Tensor,
    cache: &mut KvCache,
    hooks: &Hooks,
) -> Result<Tensor> {
    let b = hidden.dim(0)?;
    let auto = matches!(spec.thoughts, ThoughtCount::Auto { .. });
    if auto && b != 1 {
        bail!("continue_batch: --thoughts auto runs one variant at a time");
    }
    let mut logits = model.unembed(&hidden)?;
    for k in 1..=max_thoughts(spec) {
        let (next, _) = next_embeddings(model, tokenizer, spec.mode, &hidden, &logits)?;
        let next = spec.feeds.apply(k, &next)?;
        let stop = match spec.thoughts {
            ThoughtCount::Auto { entropy_stop, .. } => entropy(&logits.i(0)?)? < entropy_stop,
            ThoughtCount::Fixed { .. } => false,
        };
        hidden = model
            .forward_batch(&next.unsqueeze(1)?, cache, hooks)?
            .squeeze(1)?;
        logits = model.unembed(&hidden)?;
        if stop {
            break;
        }
    }
    if let Some(m) = tokenizer.coconut {
        let end = model.embed_ids(&vec![m.end; b])?.unsqueeze(1)?;
        hidden = model.forward_batch(&end, cache, hooks)?.squeeze(1)?;
        logits = model.unembed(&hidden)?;
    }
    for &tok in &spec.forced_answer {
        let embed = model.embed_ids(&vec![tok; b])?.unsqueeze(1)?;
        hidden = model.forward_batch(&embed, cache, hooks)?.squeeze(1)?;
        logits = model.unembed(&hidden)?;
    }
    Ok(logits)
}
