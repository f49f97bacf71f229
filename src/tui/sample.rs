//! Synthetic, deterministic results of every shape, for the TUI's tests, snapshots and
//! benchmarks (no weights needed).

use std::sync::Arc;

use super::data::{ModelSummary, RunResult};
use crate::analysis::graph::{GraphAnalysis, GraphStep, graph_analysis};
use crate::analysis::importance::{Importance, ImportanceMethod};
use crate::analysis::run::{
    Comparison, LensCell, RunAnalysis, RunParams, RunSummary, Runtime, SCHEMA, Step,
};
use crate::analysis::{BlockChoice, TokenProb};
use crate::model::Interventions;
use crate::thought::{StepKind, ThoughtCount, ThoughtMode};

/// The size of a synthetic result.
#[derive(Debug, Clone, Copy)]
pub struct SampleShape {
    pub layers: usize,
    pub heads: usize,
    pub prompt_len: usize,
    pub context: usize,
    pub thoughts: usize,
    pub answer_len: usize,
    pub top_k: usize,
}

impl SampleShape {
    /// Small enough to read in a snapshot.
    pub const SMALL: SampleShape = SampleShape {
        layers: 4,
        heads: 4,
        prompt_len: 30,
        context: 3,
        thoughts: 3,
        answer_len: 5,
        top_k: 5,
    };

    /// GPT-2 124M with a ProsQA-length prompt, 6 thoughts and 16 answer tokens.
    pub const GPT2_124M: SampleShape = SampleShape {
        layers: 12,
        heads: 12,
        prompt_len: 240,
        context: 3,
        thoughts: 6,
        answer_len: 16,
        top_k: 5,
    };
}

const WORDS: [&str; 16] = [
    "Alex", "is", "a", "wumpus", "yumpus", "Every", "rompus", "gerpus", "lorpus", "zhorpus",
    "sterpus", ".", "?", "###", "Tom", "impus",
];

/// A small deterministic hash in [0, 1).
fn unit(a: usize, b: usize, c: usize) -> f32 {
    let mut z = (a as u64)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add((b as u64).wrapping_mul(0xBF58_476D_1CE4_E5B9))
        .wrapping_add((c as u64).wrapping_mul(0x94D0_49BB_1331_11EB));
    z ^= z >> 31;
    z = z.wrapping_mul(0xD6E8_FEB8_6659_FD93);
    z ^= z >> 29;
    (z >> 40) as f32 / (1u64 << 24) as f32
}

fn word(i: usize) -> &'static str {
    WORDS[i % WORDS.len()]
}

pub fn model_summary(shape: SampleShape) -> ModelSummary {
    ModelSummary {
        name: "sample-model".into(),
        arch: "GPT-2".into(),
        family: crate::model::Family::Coconut,
        layers: shape.layers,
        heads: shape.heads,
        d_model: 64 * shape.heads,
        device: "cpu".into(),
        dtype: "f32".into(),
        coconut_tokens: true,
    }
}

pub fn params(shape: SampleShape) -> RunParams {
    RunParams {
        prompt: "Every wumpus is a yumpus. Alex is a wumpus. Is Alex a yumpus or lorpus?".into(),
        thoughts: ThoughtCount::Fixed { n: shape.thoughts },
        mode: ThoughtMode::Coconut,
        max_new_tokens: shape.answer_len,
        top_k: shape.top_k,
        context_tokens: shape.context,
        interventions: Interventions::default(),
        thought_edits: Default::default(),
        sampling: Default::default(),
    }
}

fn lens_cell(shape: SampleShape, step: usize, layer: usize, salt: usize) -> LensCell {
    let depth = layer as f32 / shape.layers as f32;
    let p1 = (0.05 + 0.9 * depth * (0.5 + 0.5 * unit(step, layer, salt))).min(0.97);
    let mut rest = 1.0 - p1;
    let mut top = vec![TokenProb {
        id: ((step * 3 + layer + salt) % WORDS.len()) as u32,
        text: word(step * 3 + layer + salt).into(),
        prob: p1,
    }];
    for r in 1..shape.top_k {
        let p = (rest * 0.5).min(top[r - 1].prob);
        rest -= p;
        let i = step * 5 + layer * 2 + r * 7 + salt;
        top.push(TokenProb {
            id: (i % WORDS.len()) as u32,
            text: word(i).into(),
            prob: p,
        });
    }
    LensCell {
        top,
        entropy: 0.2 + 3.0 * (1.0 - depth),
        target_rank: 1 + (shape.layers - layer) * 3,
        target_prob: p1 * depth,
    }
}

fn attention(shape: SampleShape, step: usize, salt: usize) -> Vec<Option<Vec<Vec<f32>>>> {
    (0..shape.layers)
        .map(|l| {
            Some(
                (0..shape.heads)
                    .map(|h| {
                        let centre = unit(step + salt, l, h) * shape.prompt_len as f32;
                        let width = 1.0 + 4.0 * unit(h, l, 7);
                        let w: Vec<f32> = (0..shape.prompt_len)
                            .map(|i| {
                                let d = (i as f32 - centre) / width;
                                (-0.5 * d * d).exp() + 0.01
                            })
                            .collect();
                        let s: f32 = w.iter().sum::<f32>() / 0.95;
                        w.into_iter().map(|x| x / s).collect()
                    })
                    .collect(),
            )
        })
        .collect()
}

fn steps(shape: SampleShape, salt: usize) -> Vec<Step> {
    let mut out = Vec::new();
    let n = shape.context + shape.thoughts + shape.answer_len;
    for i in 0..n {
        let (kind, label) = if i < shape.context {
            (
                StepKind::Prompt,
                word(shape.prompt_len - shape.context + i).to_string(),
            )
        } else if i < shape.context + shape.thoughts {
            let k = i - shape.context + 1;
            (StepKind::Thought(k), format!("T{k}"))
        } else {
            let a = i - shape.context - shape.thoughts;
            (StepKind::Answer(a), format!("A{}", a + 1))
        };
        let position = shape.prompt_len - shape.context + i;
        out.push(Step {
            kind,
            position,
            label,
            lens: (0..=shape.layers)
                .map(|l| lens_cell(shape, i, l, salt))
                .collect(),
            angular: (0..shape.layers)
                .map(|l| 0.05 + 0.5 * unit(i, l, 3) * if l == 0 { 1.0 } else { 0.5 })
                .collect(),
            attention: (kind != StepKind::Prompt).then(|| attention(shape, i, salt)),
        });
    }
    out
}

fn summary(steps: &[Step]) -> RunSummary {
    let answer: Vec<TokenProb> = steps
        .iter()
        .filter(|s| matches!(s.kind, StepKind::Answer(_)))
        .filter_map(|s| s.output().cloned())
        .collect();
    RunSummary {
        thoughts: steps
            .iter()
            .filter(|s| matches!(s.kind, StepKind::Thought(_)))
            .map(|s| s.lens.last().unwrap().top[..3].to_vec())
            .collect(),
        answer_text: answer
            .iter()
            .map(|t| t.text.as_str())
            .collect::<Vec<_>>()
            .join(" "),
        answer,
    }
}

/// The analysis of the sample run with `interventions`, compared against the run without.
pub fn analysis(shape: SampleShape, interventions: Interventions) -> RunAnalysis {
    let baseline = summary(&steps(shape, 0));
    let ablated = !interventions.is_empty();
    let salt = usize::from(ablated);
    let steps = steps(shape, salt);
    let summary = summary(&steps);
    let problem_graph = graph(&steps, salt);
    let comparison = if ablated {
        Comparison {
            baseline,
            kl_first: 0.4213,
            kl_aligned: vec![0.4213, 0.0021],
            divergence: Some(1),
        }
    } else {
        Comparison {
            baseline,
            kl_first: 0.0,
            kl_aligned: vec![0.0; shape.answer_len],
            divergence: None,
        }
    };
    RunAnalysis {
        schema: SCHEMA.to_string(),
        params: RunParams {
            interventions,
            ..params(shape)
        },
        model: crate::model::ModelInfo {
            arch: crate::model::Arch::Gpt2,
            family: crate::model::Family::Coconut,
            layers: shape.layers,
            heads: shape.heads,
            kv_heads: shape.heads,
            d_model: 64,
            vocab: WORDS.len(),
            context: 1024,
            eos_ids: vec![],
        },
        runtime: Runtime {
            device: "cpu".into(),
            dtype: "f32".into(),
        },
        input_ids: (0..shape.prompt_len)
            .map(|i| (i % WORDS.len()) as u32)
            .collect(),
        prompt_tokens: (0..shape.prompt_len).map(|i| word(i).to_string()).collect(),
        markers: true,
        steps,
        summary,
        target: Some(TokenProb {
            id: 4,
            text: "yumpus".into(),
            prob: 0.0,
        }),
        blocks: (1..shape.layers)
            .map(|n| BlockChoice {
                n,
                start: (shape.layers - n) / 2,
                distance: 0.05 * n as f32 + 0.01,
            })
            .collect(),
        comparison,
        graph: Some(problem_graph),
        fed: Vec::new(),
        // Made-up figures of the right kinds, for the Compare tab.
        effect: ablated.then(|| crate::analysis::effect::Effect {
            answer_changed: true,
            kl_first: 0.421,
            scored_step: Some(1),
            kl_scored: 0.002,
            delta_logprob: -1.25,
            candidates: Some(crate::analysis::effect::CandidateEffect {
                names: ["gerpus".into(), "rompus".into()],
                base: -2.5,
                intervened: 1.75,
            }),
        }),
        compute_ms: 12.0,
    }
}

/// The sample's problem: richer than its prompt's one-fact problem, so that the Graph tab has
/// depths, a branch, a same-depth edge and unreachable nodes to draw.
pub const GRAPH_PROBLEM: &str = "Alex is a wumpus. Alex is a rompus. Every wumpus is a yumpus. \
    Every rompus is a gerpus. Every wumpus is a gerpus. Every yumpus is a gerpus. \
    Every yumpus is a lorpus. Every gerpus is a lorpus. Every impus is a sterpus. \
    Every sterpus is a zhorpus. Is Alex a lorpus or zhorpus?";

/// The sample problem's graph: at thought k the mass sits on depth k (the frontier moves one
/// depth per thought), sharper at later layers; ablations (`salt`) blur it.
fn graph(steps: &[Step], salt: usize) -> GraphAnalysis {
    let problem = crate::data::facts::parse(GRAPH_PROBLEM).expect("a ProsQA problem");
    let depth = problem.depths();
    let tokens: Vec<u32> = (0..problem.nodes.len() as u32).map(|i| 100 + i).collect();
    let graph_steps = steps
        .iter()
        .filter(|s| s.kind != StepKind::Prompt)
        .map(|s| {
            let frontier = match s.kind {
                StepKind::Thought(k) => k,
                _ => 3,
            };
            let layers = s.lens.len();
            let probs = (0..layers)
                .map(|l| {
                    let sharp = (l + 1) as f32 / layers as f32;
                    let raw: Vec<f32> = depth
                        .iter()
                        .enumerate()
                        .map(|(i, d)| {
                            let on = d.is_some_and(|d| d == frontier);
                            let noise = unit(i, l, s.position + salt);
                            if on {
                                sharp * (0.4 + 0.6 * noise) / (1.0 + salt as f32)
                            } else {
                                0.02 * noise
                            }
                        })
                        .collect();
                    let sum: f32 = raw.iter().sum();
                    let scale = if sum > 0.9 { 0.9 / sum } else { 1.0 };
                    raw.into_iter().map(|p| p * scale).collect()
                })
                .collect();
            GraphStep {
                label: s.label.clone(),
                probs,
            }
        })
        .collect();
    graph_analysis(problem, &tokens, graph_steps)
}

/// A finished sample run with `interventions`, with its baseline.
pub fn result(shape: SampleShape, interventions: Interventions) -> RunResult {
    let current = Arc::new(analysis(shape, interventions.clone()));
    let baseline = if interventions.is_empty() {
        current.clone()
    } else {
        Arc::new(analysis(shape, Interventions::default()))
    };
    RunResult { current, baseline }
}

pub fn importance(shape: SampleShape, method: ImportanceMethod) -> Importance {
    Importance {
        method,
        step: 0,
        target: "###".into(),
        target_id: 13,
        heads: (0..shape.layers)
            .map(|l| {
                (0..shape.heads)
                    .map(|h| unit(l, h, 11).powi(3) * 0.8)
                    .collect()
            })
            .collect(),
        layers: (0..shape.layers)
            .map(|l| 0.1 + unit(l, 0, 13) * 2.0)
            .collect(),
        compute_ms: 120.0,
    }
}
