//! One run, analysed: [`RunAnalysis`] holds everything a view of the run needs (the
//! explorer's tabs, sessions, plots, the `analyze` document), built once here from the thought
//! runner's records and then only read.

use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Result, bail};
use candle_core::{DType, IndexOp};
use serde::{Deserialize, Serialize};

use super::effect::Effect;
use super::graph::{self, GraphAnalysis, GraphStep};
use super::{BlockChoice, TokenProb, angular_profile, lens_summaries, prune_blocks, resid_host};
use crate::model::{Interventions, Model, ModelInfo, Tokenizer};
use crate::numeric::{kl, log_softmax_host};
use crate::thought::{
    self, Feeds, Run, RunSpec, Sampling, StepKind, StepRecord, ThoughtCount, ThoughtEdits,
    ThoughtMode, ThoughtOp,
};

pub const SCHEMA: &str = "coconut-lens.run.v1";

/// Everything that decides a run, apart from the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunParams {
    pub prompt: String,
    pub thoughts: ThoughtCount,
    pub mode: ThoughtMode,
    pub max_new_tokens: usize,
    /// Tokens per cell in the logit lens.
    pub top_k: usize,
    /// How many of the last prompt tokens appear as steps.
    pub context_tokens: usize,
    pub interventions: Interventions,
    /// Interventions on the thoughts (what their slots receive, residual patches).
    #[serde(default, skip_serializing_if = "ThoughtEdits::is_empty")]
    pub thought_edits: ThoughtEdits,
    /// How answer tokens are chosen (greedy unless a temperature is set).
    #[serde(default, skip_serializing_if = "Sampling::is_greedy")]
    pub sampling: Sampling,
}

impl RunParams {
    /// Whether anything intervenes: ablations or thought edits.
    pub fn intervened(&self) -> bool {
        !self.interventions.is_empty() || !self.thought_edits.is_empty()
    }

    /// The same run without interventions: the baseline.
    pub fn baseline(&self) -> RunParams {
        RunParams {
            interventions: Interventions::default(),
            thought_edits: ThoughtEdits::default(),
            ..self.clone()
        }
    }

    /// The runner's spec of these settings; `attention` records every head's attention.
    pub fn spec(&self, attention: bool) -> RunSpec {
        RunSpec {
            thoughts: self.thoughts,
            mode: self.mode,
            max_new_tokens: self.max_new_tokens,
            // One more row than shown: the last is the first thought's (or the answer's).
            context_rows: self.context_tokens + 1,
            attention,
            forced_answer: Vec::new(),
            feeds: Feeds::none(),
            sampling: self.sampling,
        }
    }
}

/// Where the analysis ran.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Runtime {
    /// `cpu` or `cuda:N`.
    pub device: String,
    /// The model's dtype: `f32`, `f16` or `bf16`.
    pub dtype: String,
}

/// One cell of the logit lens: one layer at one step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LensCell {
    /// Top-k of softmax(W_U · final_norm(x^l)), largest first.
    pub top: Vec<TokenProb>,
    /// Entropy (nats) of this layer's lens distribution; NaN where unknown.
    #[serde(with = "finite")]
    pub entropy: f32,
    /// 1-based rank of the tracked answer token in this distribution; 0 where unknown.
    pub target_rank: usize,
    #[serde(with = "finite")]
    pub target_prob: f32,
}

impl LensCell {
    pub fn top1(&self) -> Option<&TokenProb> {
        self.top.first()
    }
}

/// Per layer (`None` when skipped), per head, the attention over the prompt tokens.
pub type StepAttention = Vec<Option<Vec<Vec<f32>>>>;

/// One column of the run: a position whose residual stream is recorded at every layer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    pub kind: StepKind,
    pub position: usize,
    /// Column label: the prompt token, `T1`, `A1`, ...
    pub label: String,
    /// Layers 0..=L.
    pub lens: Vec<LensCell>,
    /// d(x^l, x^{l+1}) for l = 0..L-1.
    pub angular: Vec<f32>,
    /// For thoughts and answer steps, when recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attention: Option<StepAttention>,
}

impl Step {
    /// The model's own prediction here (the last layer's top token).
    pub fn output(&self) -> Option<&TokenProb> {
        self.lens.last().and_then(LensCell::top1)
    }

    /// The model's own entropy here.
    pub fn entropy(&self) -> f32 {
        self.lens.last().map_or(0.0, |c| c.entropy)
    }
}

/// The outcome of a run in brief.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    /// Per thought, its top tokens (model's own distribution).
    pub thoughts: Vec<Vec<TokenProb>>,
    /// The greedy answer tokens with their probabilities.
    pub answer: Vec<TokenProb>,
    pub answer_text: String,
}

impl RunSummary {
    /// Probability of the whole greedy answer (product over its tokens).
    pub fn answer_prob(&self) -> f32 {
        self.answer.iter().map(|t| t.prob as f64).product::<f64>() as f32
    }

    /// Probability of the first answer token.
    pub fn first_prob(&self) -> f32 {
        self.answer.first().map_or(0.0, |t| t.prob)
    }
}

/// Baseline against current.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    pub baseline: RunSummary,
    /// KL(p_base ‖ p_current) in nats of the answer's first-token distribution; NaN where
    /// unknown.
    #[serde(with = "finite")]
    pub kl_first: f32,
    /// KL at each answer position as long as the two answers agree on every earlier token
    /// (the two distributions then condition on the same input).
    #[serde(with = "finite_vec")]
    pub kl_aligned: Vec<f32>,
    /// The first answer position where the two greedy answers differ.
    pub divergence: Option<usize>,
}

/// What an intervened thought's slot received. The thought's own step (its lens) is what the
/// model computed; this is what was fed back instead.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FedThought {
    /// 1-based.
    pub thought: usize,
    pub op: ThoughtOp,
    /// L2 norms of the input the mode computed and of the input fed.
    pub computed_norm: f32,
    pub fed_norm: f32,
    /// The fed vector read through the unembedding, as a thought's own lens reads its final
    /// hidden state (the same tokens when nothing changed it), top tokens.
    pub lens: Vec<TokenProb>,
}

/// One run, analysed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunAnalysis {
    pub schema: String,
    pub params: RunParams,
    pub model: ModelInfo,
    #[serde(default)]
    pub runtime: Runtime,
    /// Every input id fed before the answer (see [`Run::input_ids`]).
    pub input_ids: Vec<u32>,
    /// Display texts of the prompt tokens.
    pub prompt_tokens: Vec<String>,
    /// Whether the run used the Coconut markers.
    pub markers: bool,
    /// Prompt context steps, thoughts, answer steps, in order.
    pub steps: Vec<Step>,
    pub summary: RunSummary,
    /// The answer token tracked in the lens (the baseline answer's last word).
    pub target: Option<TokenProb>,
    /// Gromov et al.'s blocks over the thoughts.
    pub blocks: Vec<BlockChoice>,
    pub comparison: Comparison,
    /// The prompt's problem graph with each thought's and answer step's lens probability on
    /// its nodes; `None` when the prompt states no recognisable problem.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub graph: Option<GraphAnalysis>,
    /// Per thought, the input its slot received, where an intervention changed it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fed: Vec<FedThought>,
    /// The interventions' effect against the baseline, where there are interventions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effect: Option<Effect>,
    /// Time spent computing this result.
    pub compute_ms: f64,
}

impl RunAnalysis {
    pub fn thought_count(&self) -> usize {
        self.summary.thoughts.len()
    }

    pub fn layers(&self) -> usize {
        self.steps.first().map_or(0, |s| s.angular.len())
    }

    /// The steps of one kind of position, in order.
    pub fn steps_where(&self, keep: impl Fn(StepKind) -> bool) -> impl Iterator<Item = &Step> {
        self.steps.iter().filter(move |s| keep(s.kind))
    }
}

/// A run's analysis with what comparisons need and the views do not: the log-probabilities of
/// every answer step.
pub struct AnalysedRun {
    pub analysis: RunAnalysis,
    pub(crate) answer_lp: Vec<Vec<f32>>,
}

/// The answer step the lens tracks and head importance scores: the last answer token with a
/// letter or digit in it (the concept of a ProsQA answer), else the first.
pub fn tracked_step(tok: &Tokenizer, ids: &[u32], eos: &[u32]) -> Option<usize> {
    ids.iter()
        .rposition(|&id| !eos.contains(&id) && tok.display(id).chars().any(char::is_alphanumeric))
        .or((!ids.is_empty()).then_some(0))
}

fn check(cancel: &AtomicBool) -> Result<()> {
    if cancel.load(Ordering::Relaxed) {
        bail!("cancelled");
    }
    Ok(())
}

/// Runs `params` and analyses the run; the lens tracks `target` (else this run's own answer
/// token).
pub fn run_and_analyze(
    model: &Model,
    tok: &Tokenizer,
    params: &RunParams,
    target: Option<u32>,
    attention: bool,
    cancel: &AtomicBool,
) -> Result<AnalysedRun> {
    let ids = tok.encode_prompt(&params.prompt)?;
    let hooks = model.hooks(&params.interventions)?;
    let (spec, hooks) = thought::intervene::prepare(
        model,
        tok,
        &ids,
        &params.spec(attention),
        &hooks,
        &params.thought_edits,
    )?;
    let run = thought::run(model, tok, &ids, &spec, &hooks)?;
    check(cancel)?;
    analyze_run(model, tok, &run, params.clone(), target)
}

/// Analyses a finished run of `params`. Its prompt steps are the recorded prompt rows but the
/// last (which is the first thought's or the answer's position).
pub fn analyze_run(
    model: &Model,
    tok: &Tokenizer,
    run: &Run,
    params: RunParams,
    target: Option<u32>,
) -> Result<AnalysedRun> {
    let ctx = run.prompt_steps.len().saturating_sub(1);
    let mut records: Vec<(&StepRecord, String)> = Vec::new();
    for s in &run.prompt_steps[..ctx] {
        records.push((s, tok.display(run.input_ids[s.position])));
    }
    for (k, s) in run.thoughts.iter().enumerate() {
        records.push((s, format!("T{}", k + 1)));
    }
    for (i, s) in run.answer.iter().enumerate() {
        records.push((s, format!("A{}", i + 1)));
    }
    let answer_lp = run
        .answer
        .iter()
        .map(|s| log_softmax_host(&s.logits))
        .collect::<Result<Vec<_>>>()?;
    let target = target.or_else(|| {
        tracked_step(tok, &run.answer_ids, &model.info.eos_ids).map(|k| run.answer_ids[k])
    });
    let refs: Vec<&StepRecord> = records.iter().map(|(s, _)| *s).collect();
    let problem = graph::problem_nodes(&params.prompt, tok)?;
    let node_tokens = problem.as_ref().map_or(&[][..], |(_, t)| t.as_slice());
    let summaries = lens_summaries(model, &refs, params.top_k, target, node_tokens)?;
    let mut graph_steps = Vec::new();
    let prompt_ids = &run.input_ids[..run.prompt_len];
    let prompt_len = run.prompt_len;
    let tp = |id: u32, prob: f32| TokenProb {
        id,
        text: tok.display(id),
        prob,
    };
    let mut steps = Vec::with_capacity(records.len());
    let mut thought_resids = Vec::new();
    for ((s, label), layers) in records.into_iter().zip(summaries) {
        if problem.is_some() && !matches!(s.kind, StepKind::Prompt) {
            graph_steps.push(GraphStep {
                label: label.clone(),
                probs: layers.iter().map(|l| l.picked.clone()).collect(),
            });
        }
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
        if matches!(s.kind, StepKind::Thought(_)) {
            thought_resids.push(resid);
        }
        let attention = match (s.kind, &s.attention) {
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
            kind: s.kind,
            position: s.position,
            label,
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
    let fed = fed_thoughts(model, tok, run, &params)?;
    let analysis = RunAnalysis {
        schema: SCHEMA.to_string(),
        model: model.info.clone(),
        runtime: Runtime {
            device: crate::model::load::device_label(model.device()),
            dtype: crate::model::load::dtype_label(model.dtype()).to_string(),
        },
        input_ids: run.input_ids.clone(),
        prompt_tokens: prompt_ids.iter().map(|&id| tok.display(id)).collect(),
        markers: tok.coconut.is_some(),
        comparison: Comparison {
            baseline: summary.clone(),
            kl_first: 0.0,
            kl_aligned: vec![0.0; answer_lp.len()],
            divergence: None,
        },
        steps,
        summary,
        target: target.map(|t| tp(t, 0.0)),
        blocks: prune_blocks(&thought_resids),
        graph: problem.map(|(g, tokens)| graph::graph_analysis(g, &tokens, graph_steps)),
        fed,
        effect: None,
        params,
        compute_ms: 0.0,
    };
    Ok(AnalysedRun {
        analysis,
        answer_lp,
    })
}

/// The intervened thoughts' fed inputs.
fn fed_thoughts(
    model: &Model,
    tok: &Tokenizer,
    run: &Run,
    params: &RunParams,
) -> Result<Vec<FedThought>> {
    let mut out = Vec::new();
    for (&k, &op) in &params.thought_edits.ops {
        let (Some(fed), Some(step)) = (run.fed.get(k - 1), run.thoughts.get(k - 1)) else {
            continue;
        };
        let norm = |t: &candle_core::Tensor| -> Result<f32> {
            Ok(t.to_dtype(DType::F32)?
                .sqr()?
                .sum_all()?
                .sqrt()?
                .to_scalar::<f32>()?)
        };
        let (computed, _) = thought::next_embeddings(
            model,
            tok,
            params.mode,
            &step.hidden.unsqueeze(0)?,
            &step.logits.unsqueeze(0)?,
        )?;
        let lp = log_softmax_host(&model.unembed(&fed.unsqueeze(0)?)?.squeeze(0)?)?;
        let lens = crate::numeric::top_k_indices(&lp, 3)
            .into_iter()
            .map(|i| TokenProb {
                id: i as u32,
                text: tok.display(i as u32),
                prob: lp[i].exp(),
            })
            .collect();
        out.push(FedThought {
            thought: k,
            op,
            computed_norm: norm(&computed)?,
            fed_norm: norm(fed)?,
            lens,
        });
    }
    Ok(out)
}

/// Baseline against current: KL of the first answer distribution, and at every answer position
/// while the two greedy answers agree so far.
pub fn compare(base: &AnalysedRun, cur: &AnalysedRun) -> Comparison {
    let ids =
        |r: &AnalysedRun| -> Vec<u32> { r.analysis.summary.answer.iter().map(|t| t.id).collect() };
    let (base_ids, cur_ids) = (ids(base), ids(cur));
    let n = base.answer_lp.len().min(cur.answer_lp.len());
    let mut kl_aligned = Vec::new();
    for i in 0..n {
        if i > 0 && base_ids.get(i - 1) != cur_ids.get(i - 1) {
            break;
        }
        kl_aligned.push(kl(&base.answer_lp[i], &cur.answer_lp[i]));
    }
    let m = base_ids.len().max(cur_ids.len());
    let divergence = (0..m).find(|&i| base_ids.get(i) != cur_ids.get(i));
    Comparison {
        baseline: base.analysis.summary.clone(),
        kl_first: kl_aligned.first().copied().unwrap_or(0.0),
        kl_aligned,
        divergence,
    }
}

/// `f32` fields that may be NaN or infinite (unknown, or a divergence against a zero
/// probability): JSON has no such numbers, so they are written as `null` and read back NaN.
pub mod finite {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &f32, s: S) -> Result<S::Ok, S::Error> {
        if v.is_finite() {
            s.serialize_f32(*v)
        } else {
            s.serialize_none()
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f32, D::Error> {
        Ok(Option::<f32>::deserialize(d)?.unwrap_or(f32::NAN))
    }
}

/// [`finite`] for a list.
pub mod finite_vec {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[f32], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(|x| x.is_finite().then_some(*x)))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f32>, D::Error> {
        let v = Vec::<Option<f32>>::deserialize(d)?;
        Ok(v.into_iter().map(|x| x.unwrap_or(f32::NAN)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_numbers_survive_json_as_nan() {
        let c = Comparison {
            baseline: RunSummary {
                thoughts: vec![],
                answer: vec![],
                answer_text: String::new(),
            },
            kl_first: f32::NAN,
            kl_aligned: vec![0.5, f32::INFINITY],
            divergence: Some(1),
        };
        let text = serde_json::to_string(&c).unwrap();
        assert!(text.contains("\"kl_first\":null"), "{text}");
        let back: Comparison = serde_json::from_str(&text).unwrap();
        assert!(back.kl_first.is_nan());
        assert_eq!(back.kl_aligned[0], 0.5);
        assert!(back.kl_aligned[1].is_nan());
    }
}
