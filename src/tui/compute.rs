//! What the worker computes, from the engine's outputs to the plain [`RunView`]. This is the
//! only TUI module that sees tensors.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{Result, bail};
use candle_core::{DType, IndexOp};

use super::data::{
    Comparison, Documents, Importance, LensCell, ModelSummary, RunParams, RunSummary, RunView,
    Step, StepKind, TokProb,
};
use crate::analysis::document::{AnalysisDocument, document_from_analyses};
use crate::analysis::importance::{
    ImportanceMethod, SweepControl, ablation_importance, gradient_importance, scored_spec_of_answer,
};
use crate::analysis::{angular_profile, lens_summaries, prune_blocks, resid_host, step_analysis};
use crate::model::load::{device_label, dtype_label};
use crate::model::{LoadedModel, ModelSource, Tokenizer};
use crate::numeric::{kl, log_softmax_host};
use crate::thought::{self, RunSpec, StepRecord};

pub fn model_summary(lm: &LoadedModel) -> ModelSummary {
    let info = &lm.model.info;
    let name = match &lm.source {
        ModelSource::Local(p) => p.file_name().map_or_else(
            || p.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        ),
        ModelSource::Hub { repo, .. } => repo.clone(),
        ModelSource::Coconut { checkpoint, .. } => checkpoint
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
    };
    ModelSummary {
        name,
        arch: info.arch.label().to_string(),
        layers: info.layers,
        heads: info.heads,
        d_model: info.d_model,
        device: device_label(lm.model.device()),
        dtype: dtype_label(lm.model.dtype()).to_string(),
        coconut_tokens: lm.tokenizer.coconut.is_some(),
    }
}

/// A token as shown on screen: decoded, trimmed, newlines as `⏎`, special tokens by name.
/// Byte-level pieces of a character (which decode to U+FFFD) show as their vocabulary string.
pub fn display_token(tok: &Tokenizer, id: u32) -> String {
    let text = tok.decode(&[id]).unwrap_or_default();
    let shown = if text.contains('\u{FFFD}') {
        tok.token_text(id)
    } else if text.trim().is_empty() {
        if text.contains('\n') {
            "⏎".to_string()
        } else if !text.is_empty() {
            "␣".to_string()
        } else {
            tok.token_text(id)
        }
    } else {
        text.trim().replace('\n', "⏎").replace('\t', "⇥")
    };
    // Nothing visible (control or zero-width characters): name the id.
    let visible: String = shown.chars().filter(|c| !c.is_control()).collect();
    if crate::tui::widgets::width(&visible) == 0 {
        format!("<{id}>")
    } else {
        visible
    }
}

fn check(cancel: &AtomicBool) -> Result<()> {
    if cancel.load(Ordering::Relaxed) {
        bail!("cancelled");
    }
    Ok(())
}

fn spec(params: &RunParams, context_rows: usize, attention: bool) -> RunSpec {
    RunSpec {
        thoughts: params.thoughts,
        mode: params.mode,
        max_new_tokens: params.max_new_tokens,
        context_rows,
        attention,
        forced_answer: Vec::new(),
    }
}

/// One run, analysed; kept by the worker for comparisons.
pub struct RunData {
    pub params: RunParams,
    pub prompt_tokens: Vec<String>,
    pub markers: bool,
    pub steps: Vec<Step>,
    pub summary: RunSummary,
    pub answer_ids: Vec<u32>,
    /// Log-probabilities of every answer step.
    pub answer_lp: Vec<Vec<f32>>,
    pub target: Option<TokProb>,
    pub blocks: Vec<crate::analysis::BlockChoice>,
    /// The engine's analysis document of this run (what sessions save).
    pub document: AnalysisDocument,
}

/// The answer step the lens tracks and head importance scores: the last answer token with a
/// letter or digit in it (the concept of a ProsQA answer), else the first.
fn tracked_step(tok: &Tokenizer, ids: &[u32], eos: &[u32]) -> Option<usize> {
    ids.iter()
        .rposition(|&id| {
            !eos.contains(&id) && display_token(tok, id).chars().any(char::is_alphanumeric)
        })
        .or((!ids.is_empty()).then_some(0))
}

/// Runs and analyses `params`; the lens tracks `target` (else this run's own answer token).
pub fn analyse_run(
    lm: &LoadedModel,
    params: &RunParams,
    target: Option<u32>,
    cancel: &AtomicBool,
) -> Result<RunData> {
    let (model, tok) = (&lm.model, &lm.tokenizer);
    let ids = tok.encode_prompt(&params.prompt)?;
    let hooks = model.hooks(&params.interventions)?;
    let run = thought::run(
        model,
        tok,
        &ids,
        &spec(params, params.context_tokens + 1, true),
        &hooks,
    )?;
    check(cancel)?;
    let markers = tok.coconut.is_some();

    // The last prompt row is the first thought's (or the answer's) position: drop it.
    let ctx = run.prompt_steps.len().saturating_sub(1);
    let mut records: Vec<(&StepRecord, StepKind, String)> = Vec::new();
    for s in &run.prompt_steps[..ctx] {
        let label = display_token(tok, run.input_ids[s.position]);
        records.push((s, StepKind::Prompt, label));
    }
    for (k, s) in run.thoughts.iter().enumerate() {
        records.push((s, StepKind::Thought(k + 1), format!("T{}", k + 1)));
    }
    for (i, s) in run.answer.iter().enumerate() {
        records.push((s, StepKind::Answer(i), format!("A{}", i + 1)));
    }

    let answer_lp = run
        .answer
        .iter()
        .map(|s| log_softmax_host(&s.logits))
        .collect::<Result<Vec<_>>>()?;
    let target = target.or_else(|| {
        tracked_step(tok, &run.answer_ids, &model.info.eos_ids).map(|k| run.answer_ids[k])
    });

    let refs: Vec<&StepRecord> = records.iter().map(|(s, _, _)| *s).collect();
    let summaries = lens_summaries(model, &refs, params.top_k, target)?;
    check(cancel)?;
    // The engine's document from the same lens: the thoughts and the answer's first position.
    let analyses = (ctx..=ctx + run.thoughts.len())
        .map(|i| step_analysis(tok, refs[i], &summaries[i], params.top_k))
        .collect::<Result<Vec<_>>>()?;
    let document = document_from_analyses(model, tok, &run, analyses)?;
    let prompt_len = ids.len();
    let tp = |id: u32, prob: f32| TokProb {
        id,
        text: display_token(tok, id),
        prob,
    };
    let mut steps = Vec::with_capacity(records.len());
    let mut thought_resids = Vec::new();
    for ((s, kind, label), layers) in records.iter().zip(summaries) {
        let lens = layers
            .into_iter()
            .map(|summary| {
                let (target_rank, target_prob) = summary.tracked.unwrap_or((0, 0.0));
                LensCell {
                    top: summary.top.into_iter().map(|(id, p)| tp(id, p)).collect(),
                    entropy: summary.entropy,
                    target_rank,
                    target_prob,
                }
            })
            .collect();
        let resid = resid_host(s)?;
        let angular = angular_profile(&resid);
        if matches!(kind, StepKind::Thought(_)) {
            thought_resids.push(resid);
        }
        let attention = match (kind, &s.attention) {
            (StepKind::Prompt, _) | (_, None) => None,
            (_, Some(layers)) => Some(
                layers
                    .iter()
                    .map(|a| {
                        a.as_ref()
                            .map(|a| -> Result<Vec<Vec<f32>>> {
                                let a = a.i((.., ..prompt_len))?.to_dtype(DType::F32)?;
                                Ok(a.to_vec2()?)
                            })
                            .transpose()
                    })
                    .collect::<Result<Vec<_>>>()?,
            ),
        };
        steps.push(Step {
            kind: *kind,
            position: s.position,
            label: label.clone(),
            lens,
            angular,
            attention,
        });
    }
    let top_n = params.top_k.min(3);
    let summary = RunSummary {
        thoughts: steps
            .iter()
            .filter(|s| matches!(s.kind, StepKind::Thought(_)))
            .map(|s| {
                s.lens
                    .last()
                    .map_or(vec![], |c| c.top[..top_n.min(c.top.len())].to_vec())
            })
            .collect(),
        answer: run
            .answer_ids
            .iter()
            .zip(&answer_lp)
            .map(|(&id, lp)| tp(id, lp[id as usize].exp()))
            .collect(),
        answer_text: tok.decode(&run.answer_ids)?,
    };
    Ok(RunData {
        params: params.clone(),
        prompt_tokens: ids.iter().map(|&id| display_token(tok, id)).collect(),
        markers,
        steps,
        summary,
        answer_ids: run.answer_ids.clone(),
        answer_lp,
        target: target.map(|t| tp(t, 0.0)),
        blocks: prune_blocks(&thought_resids),
        document,
    })
}

/// Baseline against current: KL of the first answer distribution, and at every answer position
/// while the two greedy answers agree so far.
pub fn compare(base: &RunData, cur: &RunData) -> Comparison {
    let n = base.answer_lp.len().min(cur.answer_lp.len());
    let mut kl_aligned = Vec::new();
    for i in 0..n {
        if i > 0 && base.answer_ids.get(i - 1) != cur.answer_ids.get(i - 1) {
            break;
        }
        kl_aligned.push(kl(&base.answer_lp[i], &cur.answer_lp[i]));
    }
    let m = base.answer_ids.len().max(cur.answer_ids.len());
    let divergence = (0..m).find(|&i| base.answer_ids.get(i) != cur.answer_ids.get(i));
    Comparison {
        baseline: base.summary.clone(),
        kl_first: kl_aligned.first().copied().unwrap_or(0.0),
        kl_aligned,
        divergence,
    }
}

/// The baseline of the current settings, reused while only the interventions change.
#[derive(Default)]
pub struct BaselineCache {
    data: Option<RunData>,
}

impl BaselineCache {
    fn get(
        &mut self,
        lm: &LoadedModel,
        params: &RunParams,
        cancel: &AtomicBool,
    ) -> Result<&RunData> {
        let key = params.baseline();
        if self.data.as_ref().is_none_or(|d| d.params != key) {
            self.data = None;
            self.data = Some(analyse_run(lm, &key, None, cancel)?);
        }
        Ok(self.data.as_ref().expect("just filled"))
    }

    pub fn clear(&mut self) {
        self.data = None;
    }
}

fn view_of(data: &RunData, base: &RunData, comparison: Comparison, compute_ms: f64) -> RunView {
    RunView {
        params: data.params.clone(),
        prompt_tokens: data.prompt_tokens.clone(),
        markers: data.markers,
        steps: data.steps.clone(),
        summary: data.summary.clone(),
        target: data.target.clone(),
        blocks: data.blocks.clone(),
        comparison,
        compute_ms,
        documents: Some(Box::new(Documents {
            baseline: base.document.clone(),
            current: data.document.clone(),
        })),
    }
}

/// The view of `params` with its comparison to the baseline.
pub fn compute_run(
    lm: &LoadedModel,
    params: &RunParams,
    cache: &mut BaselineCache,
    cancel: &AtomicBool,
) -> Result<RunView> {
    let t0 = Instant::now();
    let base = cache.get(lm, params, cancel)?;
    if params.interventions.is_empty() {
        let cmp = compare(base, base);
        return Ok(view_of(base, base, cmp, t0.elapsed().as_secs_f64() * 1e3));
    }
    check(cancel)?;
    let target = base.target.as_ref().map(|t| t.id);
    let cur = analyse_run(lm, params, target, cancel)?;
    let cmp = compare(base, &cur);
    Ok(view_of(&cur, base, cmp, t0.elapsed().as_secs_f64() * 1e3))
}

/// Head and layer importance on top of the run's interventions.
pub fn compute_importance(
    lm: &LoadedModel,
    params: &RunParams,
    method: ImportanceMethod,
    progress: &mut dyn FnMut(usize, usize),
    cancel: &AtomicBool,
) -> Result<Importance> {
    let t0 = Instant::now();
    let (model, tok) = (&lm.model, &lm.tokenizer);
    let ids = tok.encode_prompt(&params.prompt)?;
    let spec = spec(params, 1, false);
    let iv = &params.interventions;
    // Scored at the token the lens tracks, with the answer before it forced.
    let answer = thought::run(model, tok, &ids, &spec, &model.hooks(iv)?)?.answer_ids;
    let step = tracked_step(tok, &answer, &model.info.eos_ids).unwrap_or(0);
    check(cancel)?;
    let (spec, target) = scored_spec_of_answer(model, &spec, &answer, step)?;
    check(cancel)?;
    let (heads, layers) = match method {
        ImportanceMethod::Ablation => {
            let (l, h) = (model.info.layers, model.info.heads);
            progress(0, l * h + l);
            let mut ctl = SweepControl {
                progress,
                cancel: Some(cancel),
            };
            let sweep = ablation_importance(model, tok, &ids, &spec, iv, true, &mut ctl)?;
            (sweep.heads, sweep.layers)
        }
        ImportanceMethod::Gradient => {
            progress(0, 1);
            let g = gradient_importance(model, tok, &ids, &spec, iv, target)?;
            progress(1, 1);
            let layers = g.iter().map(|row| row.iter().sum()).collect();
            (g, layers)
        }
    };
    Ok(Importance {
        method,
        step,
        target: display_token(tok, target),
        target_id: target,
        heads,
        layers,
        compute_ms: t0.elapsed().as_secs_f64() * 1e3,
    })
}
