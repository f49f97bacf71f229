//! Causal effects of interventions: what an intervention does to the answer, measured
//! against the un-intervened run with the base answer teacher-forced, and the activation
//! patching sweep over (thought, layer).

use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};

use super::graph::problem_nodes;
use super::run::{AnalysedRun, RunParams, finite, tracked_step};
use candle_core::IndexOp;

use crate::model::{Hooks, Model, ResidWrite, Tokenizer};
use crate::numeric::{kl, log_softmax_host};
use crate::thought::intervene::prepare;
use crate::thought::{Run, RunSpec, max_thoughts, run};

/// The two candidates a ProsQA question names (`Is Tom a X or Y?`), by first token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidates {
    pub names: [String; 2],
    pub tokens: [u32; 2],
}

impl Candidates {
    /// The candidates of `prompt`, when it states a problem with two.
    pub fn of_prompt(prompt: &str, tok: &Tokenizer) -> Result<Option<Candidates>> {
        let Some((graph, tokens)) = problem_nodes(prompt, tok)? else {
            return Ok(None);
        };
        let [a, b] = graph.candidates[..] else {
            return Ok(None);
        };
        if tokens[a] == tokens[b] {
            return Ok(None);
        }
        Ok(Some(Candidates {
            names: [graph.nodes[a].clone(), graph.nodes[b].clone()],
            tokens: [tokens[a], tokens[b]],
        }))
    }

    /// The first answer position whose token is a candidate's: where the answer names it.
    pub fn position_in(&self, answer_ids: &[u32]) -> Option<usize> {
        answer_ids.iter().position(|id| self.tokens.contains(id))
    }

    /// logit(first) − logit(second) from log-probabilities (the normaliser cancels).
    pub fn logit_diff(&self, log_probs: &[f32]) -> f32 {
        log_probs[self.tokens[0] as usize] - log_probs[self.tokens[1] as usize]
    }
}

/// What an intervention did, against the base run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Effect {
    pub answer_changed: bool,
    /// KL(base ‖ intervened) of the first answer token's distribution (nats).
    #[serde(with = "finite")]
    pub kl_first: f32,
    /// The answer position scored: where the base answer names a candidate, else its last
    /// word (the token the lens tracks). The candidates' difference is taken there too.
    pub scored_step: Option<usize>,
    #[serde(with = "finite")]
    pub kl_scored: f32,
    /// log p(base answer | intervened) − log p(base answer | base), teacher-forced, summed
    /// over the answer's tokens.
    #[serde(with = "finite")]
    pub delta_logprob: f32,
    /// For two-candidate prompts: logit(first candidate) − logit(second) at the scored step,
    /// base and intervened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidates: Option<CandidateEffect>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CandidateEffect {
    pub names: [String; 2],
    #[serde(with = "finite")]
    pub base: f32,
    #[serde(with = "finite")]
    pub intervened: f32,
}

/// Log-probabilities of every answer step of a run.
fn answer_log_probs(run: &Run) -> Result<Vec<Vec<f32>>> {
    run.answer
        .iter()
        .map(|s| log_softmax_host(&s.logits))
        .collect()
}

/// The run of `prompt_ids` under `spec` and `hooks` with `forced` teacher-forced (and nothing
/// generated after it); returns each forced position's log-probabilities.
fn forced_log_probs(
    model: &Model,
    tok: &Tokenizer,
    prompt_ids: &[u32],
    spec: &RunSpec,
    hooks: &Hooks,
    forced: &[u32],
) -> Result<Vec<Vec<f32>>> {
    let forced_spec = RunSpec {
        forced_answer: forced.to_vec(),
        max_new_tokens: forced.len(),
        context_rows: 1,
        attention: false,
        ..spec.clone()
    };
    let r = run(model, tok, prompt_ids, &forced_spec, hooks)?;
    let mut lp = answer_log_probs(&r)?;
    lp.truncate(forced.len());
    Ok(lp)
}

/// The effect of `params`' interventions (head and layer ablations and thought edits)
/// against the same run without them.
pub fn effect(model: &Model, tok: &Tokenizer, params: &RunParams) -> Result<Effect> {
    let ids = tok.encode_prompt(&params.prompt)?;
    let base_spec = params.spec(false);
    let base = run(
        model,
        tok,
        &ids,
        &base_spec,
        &Hooks::none(model.info.layers),
    )?;
    let hooks = model.hooks(&params.interventions)?;
    let (spec, hooks) = prepare(model, tok, &ids, &base_spec, &hooks, &params.thought_edits)?;
    let greedy = run(model, tok, &ids, &spec, &hooks)?;
    let base_lp = answer_log_probs(&base)?;
    let first = answer_log_probs(&greedy)?.into_iter().next();
    measure(
        model,
        tok,
        params,
        &base.answer_ids,
        &base_lp,
        &greedy.answer_ids,
        first.as_deref(),
    )
}

/// [`effect`] of an analysed run against its analysed baseline: one more run, the base
/// answer teacher-forced under the interventions.
pub fn effect_between(
    model: &Model,
    tok: &Tokenizer,
    params: &RunParams,
    base: &AnalysedRun,
    current: &AnalysedRun,
) -> Result<Effect> {
    let ids =
        |r: &AnalysedRun| -> Vec<u32> { r.analysis.summary.answer.iter().map(|t| t.id).collect() };
    measure(
        model,
        tok,
        params,
        &ids(base),
        &base.answer_lp,
        &ids(current),
        current.answer_lp.first().map(Vec::as_slice),
    )
}

/// The measures, given the base run's answer and log-probabilities and the intervened
/// greedy answer with its first log-probabilities.
fn measure(
    model: &Model,
    tok: &Tokenizer,
    params: &RunParams,
    forced: &[u32],
    base_lp: &[Vec<f32>],
    greedy: &[u32],
    greedy_first: Option<&[f32]>,
) -> Result<Effect> {
    let ids = tok.encode_prompt(&params.prompt)?;
    let hooks = model.hooks(&params.interventions)?;
    let (spec, hooks) = prepare(
        model,
        tok,
        &ids,
        &params.spec(false),
        &hooks,
        &params.thought_edits,
    )?;
    let cur_lp = forced_log_probs(model, tok, &ids, &spec, &hooks, forced)?;
    let cands = Candidates::of_prompt(&params.prompt, tok)?;
    let scored_step = cands
        .as_ref()
        .and_then(|c| c.position_in(forced))
        .or_else(|| tracked_step(tok, forced, &model.info.eos_ids));
    let delta_logprob = forced
        .iter()
        .enumerate()
        .map(|(i, &t)| f64::from(cur_lp[i][t as usize]) - f64::from(base_lp[i][t as usize]))
        .sum::<f64>() as f32;
    let kl_first = match (base_lp.first(), greedy_first) {
        (Some(b), Some(c)) => kl(b, c),
        _ => f32::NAN,
    };
    let kl_scored = scored_step.map_or(f32::NAN, |i| kl(&base_lp[i], &cur_lp[i]));
    let candidates = match (cands, scored_step) {
        (Some(c), Some(i)) => Some(CandidateEffect {
            base: c.logit_diff(&base_lp[i]),
            intervened: c.logit_diff(&cur_lp[i]),
            names: c.names,
        }),
        _ => None,
    };
    Ok(Effect {
        answer_changed: greedy != forced,
        kl_first,
        scored_step,
        kl_scored,
        delta_logprob,
        candidates,
    })
}

/// Activation patching over every (thought, layer): the residual stream at the thought's
/// position after block `layer` copied from the source (clean) prompt's run into the run of
/// the prompt (corrupted), scored by the candidate logit difference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PatchSweep {
    pub source_prompt: String,
    pub candidates: [String; 2],
    /// The answer position scored: where the corrupted run's answer names a candidate, else 0.
    pub scored_step: usize,
    /// logit(first) − logit(second) of the clean and corrupted runs.
    pub clean: f32,
    pub corrupted: f32,
    /// `[thought - 1][layer]`: the patched run's difference.
    pub logit_diff: Vec<Vec<f32>>,
    /// `[thought - 1][layer]`: (patched − corrupted) / (clean − corrupted), the share of the
    /// difference the patch restores (NaN when clean and corrupted agree).
    #[serde(with = "super::graph::finite_rows")]
    pub restored: Vec<Vec<f32>>,
}

/// Runs the sweep; `progress(done, total)`, stopped by `cancel`.
pub fn patch_sweep(
    model: &Model,
    tok: &Tokenizer,
    params: &RunParams,
    source_prompt: &str,
    progress: &mut dyn FnMut(usize, usize),
    cancel: Option<&AtomicBool>,
) -> Result<PatchSweep> {
    let ids = tok.encode_prompt(&params.prompt)?;
    let src_ids = tok.encode_prompt(source_prompt)?;
    if src_ids.len() != ids.len() {
        bail!(
            "the patching sweep needs a second prompt of the same length: it has {} tokens, the prompt {}",
            src_ids.len(),
            ids.len()
        );
    }
    let Some(cands) = Candidates::of_prompt(&params.prompt, tok)? else {
        bail!(
            "the patching sweep scores the two candidates of a question like \"Is Tom a X or Y?\", and the prompt has none"
        );
    };
    let spec = RunSpec {
        context_rows: 1,
        attention: false,
        ..params.spec(false)
    };
    let hooks = model.hooks(&params.interventions)?;
    let corrupted = run(model, tok, &ids, &spec, &hooks)?;
    // Where the answer names a candidate, else its first token.
    let at = cands.position_in(&corrupted.answer_ids).unwrap_or(0);
    if corrupted.answer_ids.is_empty() {
        bail!("the prompt's run gives no answer token to score");
    }
    let forced = &corrupted.answer_ids[..=at];
    let score = |spec: &RunSpec, hooks: &Hooks, ids: &[u32]| -> Result<f32> {
        let lp = forced_log_probs(model, tok, ids, spec, hooks, forced)?;
        Ok(cands.logit_diff(&lp[at]))
    };
    let clean = score(&spec, &hooks, &src_ids)?;
    let corrupted_diff = score(&spec, &hooks, &ids)?;
    let thoughts = max_thoughts(&spec);
    let layers = model.info.layers + 1;
    let total = thoughts * layers;
    let source = run(model, tok, &src_ids, &spec, &hooks)?;
    let (spec, hooks) = prepare(model, tok, &ids, &spec, &hooks, &params.thought_edits)?;
    let mut logit_diff = vec![vec![f32::NAN; layers]; thoughts];
    for (k, thought) in source.thoughts.iter().enumerate().take(thoughts) {
        for (l, cell) in logit_diff[k].iter_mut().enumerate() {
            if cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
                bail!("cancelled");
            }
            let mut patched = hooks.clone();
            patched.writes.push(ResidWrite {
                layer: l,
                position: thought.position,
                value: thought.resid.i(l)?,
            });
            *cell = score(&spec, &patched, &ids)?;
            progress(k * layers + l + 1, total);
        }
    }
    let gap = clean - corrupted_diff;
    let restored = logit_diff
        .iter()
        .map(|row| {
            row.iter()
                .map(|&d| {
                    if gap.abs() > 1e-6 {
                        (d - corrupted_diff) / gap
                    } else {
                        f32::NAN
                    }
                })
                .collect()
        })
        .collect();
    Ok(PatchSweep {
        source_prompt: source_prompt.to_string(),
        candidates: cands.names,
        scored_step: at,
        clean,
        corrupted: corrupted_diff,
        logit_diff,
        restored,
    })
}
