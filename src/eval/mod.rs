//! Accuracy on ProsQA-schema files, and how much the continuous thoughts look like a
//! breadth-first frontier (the analysis of Hao et al. 2024, §5).
//!
//! An answer counts as correct when the generated text after the last `#`, commas removed and
//! trimmed, equals the gold answer: the rule of the official Coconut code.

pub mod cli;
pub mod stats;

use std::collections::BTreeMap;

use anyhow::{Result, bail};
use candle_core::{D, DType};
use serde::{Deserialize, Serialize};

use crate::data::prosqa::{Graph, ProsQaProblem};
use crate::model::{Hooks, Model, Tokenizer};
use crate::thought::{
    Feeds, RunSpec, Sampling, ThoughtCount, ThoughtEdits, ThoughtMeans, ThoughtMode, ThoughtOp, run,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EvalMode {
    /// Question, `<|start-latent|>`, N continuous thoughts, `<|end-latent|>`, answer.
    Coconut,
    /// The same layout with the `<|latent|>` embedding in every thought slot (nothing fed
    /// back): the pause-token control of the critiques of Coconut.
    Pause,
    /// The same layout, each slot fed Soft Thinking's mix of the top-token embeddings
    /// ([`SOFT_THINKING`]).
    Soft,
    /// The same layout, each slot fed the embedding of the greedy token: a chain of thought
    /// written inside the markers.
    Token,
    /// Question, then free generation (steps, then the answer).
    Cot,
    /// Question, then the answer directly.
    NoCot,
}

impl EvalMode {
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "coconut" => Ok(Self::Coconut),
            "pause" => Ok(Self::Pause),
            "soft" => Ok(Self::Soft),
            "token" => Ok(Self::Token),
            "cot" => Ok(Self::Cot),
            "no-cot" => Ok(Self::NoCot),
            _ => bail!(
                "unknown eval mode \"{s}\" (expected coconut, pause, soft, token, cot or no-cot)"
            ),
        }
    }
}

/// Soft Thinking's (top-k, top-p) in the `soft` evaluation mode: `analyze`'s defaults.
pub const SOFT_THINKING: (usize, f32) = (5, 0.95);

/// Mean probability mass a thought's decoded distribution puts on graph nodes, by their
/// breadth-first depth from the root.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThoughtFrontier {
    pub thought: usize,
    /// `mass_by_depth[d]`: nodes at shortest distance d from the root (0 is the root).
    pub mass_by_depth: Vec<f64>,
    /// Nodes not reachable from the root.
    pub unreachable: f64,
    /// Everything else (template words, punctuation, special tokens).
    pub other: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    pub mode: EvalMode,
    pub thoughts: usize,
    pub n: usize,
    pub correct: usize,
    pub accuracy: f64,
    /// Wilson's 95% interval of the accuracy.
    #[serde(default)]
    pub ci95: (f64, f64),
    /// Wrong answers that name the other candidate (the unreachable one) in the gold
    /// answer's sentence.
    pub wrong_candidate: usize,
    /// Wrong answers that name neither candidate (another concept, or no well-formed answer).
    pub no_candidate: usize,
    /// How answers were decoded (greedy unless `eval --temperature`).
    #[serde(default)]
    pub sampling: Sampling,
    /// Coconut mode only.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub thought_frontier: Vec<ThoughtFrontier>,
}

/// The answer text after the last `#`, as the official code extracts it.
pub fn extract_answer(text: &str) -> String {
    text.rsplit('#')
        .next()
        .unwrap_or("")
        .replace(',', "")
        .trim()
        .to_string()
}

/// The gold answer with its last word (the reachable candidate) replaced by the other
/// candidate: the answer a model gives when it picks the wrong one.
fn wrong_candidate_answer(p: &ProsQaProblem) -> Option<String> {
    let gold = p.answer.trim();
    let target = p.idx_to_symbol.get(p.target)?;
    let other = p.idx_to_symbol.get(p.neg_target)?;
    let stem = gold.strip_suffix(&format!("{target}."))?;
    Some(format!("{stem}{other}."))
}

/// The token of each graph node whose name is one token (the nodes the frontier analyses
/// can read in a next-token distribution).
pub fn node_tokens(tokenizer: &Tokenizer, p: &ProsQaProblem) -> Vec<Option<u32>> {
    p.idx_to_symbol
        .iter()
        .map(|s| match tokenizer.encode_plain(s).ok().as_deref() {
            Some([id]) => Some(*id),
            _ => None,
        })
        .collect()
}

/// Generates greedily for every problem and scores the answers. `progress(done, total)`.
pub fn evaluate(
    model: &Model,
    tokenizer: &Tokenizer,
    problems: &[ProsQaProblem],
    mode: EvalMode,
    thoughts: usize,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<EvalReport> {
    let none = EvalSettings::default();
    Ok(evaluate_with(model, tokenizer, problems, mode, thoughts, &none, progress)?.report)
}

/// How every problem of an evaluation runs beyond its mode: thought interventions and the
/// answer's decoding. `noise`, `random` and sampling draw per problem from `seed` and the
/// problem's index.
#[derive(Debug, Clone, Default)]
pub struct EvalSettings {
    pub ops: BTreeMap<usize, ThoughtOp>,
    /// For `mean`; the mean input embedding without.
    pub means: Option<ThoughtMeans>,
    pub seed: u64,
    /// Greedy, or sampled (its own seed is replaced by each problem's).
    pub sampling: Sampling,
}

/// An evaluation with what the intervention sweep compares: each problem's extracted answer
/// and the mean thought fed per index.
pub struct EvalRun {
    pub report: EvalReport,
    pub answers: Vec<String>,
    pub means: ThoughtMeans,
    /// `[thought - 1][problem]`: the L2 norm of what each thought slot received.
    pub fed_norms: Vec<Vec<f32>>,
    /// Each problem's generated text, whole.
    pub texts: Vec<String>,
}

/// [`evaluate`] with thought interventions.
pub fn evaluate_with(
    model: &Model,
    tokenizer: &Tokenizer,
    problems: &[ProsQaProblem],
    mode: EvalMode,
    thoughts: usize,
    edit: &EvalSettings,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<EvalRun> {
    let mut tok = tokenizer.clone();
    let thoughts = match mode {
        EvalMode::Coconut | EvalMode::Pause | EvalMode::Soft | EvalMode::Token => {
            if tok.coconut.is_none() {
                bail!(
                    "coconut, pause, soft and token modes need the Coconut tokens (<|start-latent|>, <|end-latent|>, <|latent|>), which this model's tokenizer does not have"
                );
            }
            thoughts
        }
        EvalMode::Cot | EvalMode::NoCot => {
            // Plain generation after the question: no markers, no thoughts.
            tok.coconut = None;
            0
        }
    };
    let spec = RunSpec {
        thoughts: ThoughtCount::Fixed { n: thoughts },
        mode: match mode {
            EvalMode::Pause => ThoughtMode::Pause,
            EvalMode::Soft => ThoughtMode::Soft {
                top_k: SOFT_THINKING.0,
                top_p: SOFT_THINKING.1,
            },
            EvalMode::Token => ThoughtMode::Token,
            EvalMode::Coconut | EvalMode::Cot | EvalMode::NoCot => ThoughtMode::Coconut,
        },
        // Enough for a full chain of thought (up to 6 steps) and the answer; generation
        // stops at the end-of-text token.
        max_new_tokens: 96,
        context_rows: 1,
        attention: false,
        forced_answer: Vec::new(),
        feeds: crate::thought::Feeds::none(),
        sampling: Default::default(),
    };
    let hooks = Hooks::none(model.info.layers);
    if let Some(&k) = edit.ops.keys().find(|&&k| k > thoughts) {
        bail!("thought T{k} is past the evaluation's {thoughts} thoughts");
    }
    if edit.ops.values().any(|op| *op == ThoughtOp::Patch) {
        bail!("patch copies from a second prompt, which an evaluation does not have");
    }
    let frontier = mode == EvalMode::Coconut && thoughts > 0;
    let solve = |i: usize| -> Result<Solved> {
        let p = &problems[i];
        let ids = tok.encode_prompt(&p.question)?;
        let seed = edit.seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let mut spec = RunSpec {
            sampling: edit.sampling.reseeded(seed),
            ..spec.clone()
        };
        if !edit.ops.is_empty() {
            let edits = ThoughtEdits {
                ops: edit.ops.clone(),
                seed,
                ..ThoughtEdits::default()
            };
            spec.feeds = Feeds::resolve(model, &edits, edit.means.as_ref(), &[])?;
        }
        let r = run(model, &tok, &ids, &spec, &hooks)?;
        let fed = r
            .fed
            .iter()
            .map(|f| Ok(f.to_dtype(DType::F32)?.to_vec1()?))
            .collect::<Result<_>>()?;
        let mut node_mass = Vec::new();
        if frontier {
            let depth = Graph::of(p)?.distances(p.root);
            let node_ids = node_tokens(&tok, p);
            for t in &r.thoughts {
                let probs: Vec<f32> =
                    candle_nn::ops::softmax(&t.logits.to_dtype(DType::F32)?, D::Minus1)?
                        .to_vec1()?;
                node_mass.push(
                    node_ids
                        .iter()
                        .zip(&depth)
                        .filter_map(|(id, &d)| Some((d, f64::from(probs[(*id)? as usize]))))
                        .collect(),
                );
            }
        }
        let text = tok.decode(&r.answer_ids)?;
        Ok(Solved {
            answer: extract_answer(&text),
            text,
            fed,
            node_mass,
        })
    };
    let solved = map_problems(problems.len(), solve, progress)?;

    let mut answers = Vec::with_capacity(problems.len());
    let mut texts = Vec::with_capacity(problems.len());
    let mut fed_sums = vec![vec![0f64; model.info.d_model]; thoughts];
    let mut fed_norms = vec![Vec::with_capacity(problems.len()); thoughts];
    let (mut correct, mut wrong_candidate) = (0, 0);
    let mut sums: Vec<ThoughtFrontier> = (1..=thoughts)
        .map(|k| ThoughtFrontier {
            thought: k,
            mass_by_depth: Vec::new(),
            unreachable: 0.0,
            other: 0.0,
        })
        .collect();
    // Folded in problem order, so the figures do not depend on which thread ran what.
    for (p, s) in problems.iter().zip(solved) {
        for ((sum, norms), v) in fed_sums.iter_mut().zip(&mut fed_norms).zip(s.fed) {
            norms.push(v.iter().map(|x| x * x).sum::<f32>().sqrt());
            sum.iter_mut().zip(v).for_each(|(s, x)| *s += f64::from(x));
        }
        if s.answer == p.answer.trim() {
            correct += 1;
        } else if wrong_candidate_answer(p).is_some_and(|w| w == s.answer) {
            wrong_candidate += 1;
        }
        for (acc, masses) in sums.iter_mut().zip(&s.node_mass) {
            let mut on_nodes = 0.0;
            for &(depth, m) in masses {
                on_nodes += m;
                match depth {
                    Some(d) => {
                        if acc.mass_by_depth.len() <= d {
                            acc.mass_by_depth.resize(d + 1, 0.0);
                        }
                        acc.mass_by_depth[d] += m;
                    }
                    None => acc.unreachable += m,
                }
            }
            acc.other += 1.0 - on_nodes;
        }
        answers.push(s.answer);
        texts.push(s.text);
    }
    let n = problems.len();
    let means = ThoughtMeans {
        means: fed_sums
            .iter()
            .map(|s| s.iter().map(|&x| (x / n.max(1) as f64) as f32).collect())
            .collect(),
        n,
    };
    let scale = 1.0 / n.max(1) as f64;
    for s in &mut sums {
        s.mass_by_depth.iter_mut().for_each(|m| *m *= scale);
        s.unreachable *= scale;
        s.other *= scale;
    }
    let report = EvalReport {
        mode,
        thoughts,
        n,
        correct,
        wrong_candidate,
        no_candidate: n - correct - wrong_candidate,
        accuracy: if n == 0 {
            0.0
        } else {
            correct as f64 / n as f64
        },
        ci95: stats::wilson(correct, n, stats::Z95),
        sampling: edit.sampling,
        thought_frontier: if mode == EvalMode::Coconut {
            sums
        } else {
            Vec::new()
        },
    };
    Ok(EvalRun {
        report,
        answers,
        means,
        fed_norms,
        texts,
    })
}

/// One problem's run, as an evaluation folds it.
struct Solved {
    text: String,
    answer: String,
    /// Per thought: what its slot received.
    fed: Vec<Vec<f32>>,
    /// Per thought (coconut mode), per graph node with a token of its own: the node's depth
    /// and the probability of its token in the thought's decoded distribution.
    node_mass: Vec<Vec<(Option<usize>, f64)>>,
}

/// `solve(i)` for every problem index, on every core: a small model's single runs leave the
/// second core mostly idle (one run at a time is only about 8% faster on two threads than on
/// one). Results come back in index order; `progress(done, total)` and the Ctrl-C check run
/// as problems finish. A failure stops the problems not yet started; the error returned is
/// that of the lowest index that failed.
pub fn map_problems<T: Send>(
    n: usize,
    solve: impl Fn(usize) -> Result<T> + Sync,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<T>> {
    use rayon::prelude::*;
    use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
    let stop = AtomicBool::new(false);
    let mut out: Vec<Option<T>> = (0..n).map(|_| None).collect();
    let mut failed: Option<(usize, anyhow::Error)> = None;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::scope(|scope| {
        let (solve, stop) = (&solve, &stop);
        scope.spawn(move || {
            (0..n).into_par_iter().for_each_with(tx, |tx, i| {
                if stop.load(Relaxed) {
                    return;
                }
                let r = crate::interrupt::check().and_then(|()| solve(i));
                if r.is_err() {
                    stop.store(true, Relaxed);
                }
                // The receiver lives until every sender is gone.
                let _ = tx.send((i, r));
            });
        });
        let mut done = 0;
        for (i, r) in rx {
            match r {
                Ok(v) => out[i] = Some(v),
                Err(e) => {
                    if failed.as_ref().is_none_or(|(j, _)| i < *j) {
                        failed = Some((i, e));
                    }
                }
            }
            done += 1;
            progress(done, n);
        }
    });
    if let Some((_, e)) = failed {
        return Err(e);
    }
    Ok(out
        .into_iter()
        .map(|v| v.expect("every problem ran"))
        .collect())
}

/// One row of the intervention sweep: thought `thought` replaced by `op` on every problem.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InterventionRow {
    pub thought: usize,
    pub op: ThoughtOp,
    pub correct: usize,
    pub accuracy: f64,
    /// Share of problems whose answer differs from the un-intervened run's.
    pub flip_rate: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InterventionSweep {
    pub n: usize,
    pub thoughts: usize,
    pub base_accuracy: f64,
    /// Where `mean` comes from: a file, or the un-intervened run of this sweep.
    pub means_from: String,
    pub rows: Vec<InterventionRow>,
}

/// The operations the sweep applies to each thought: zero, the mean thought, and noise as
/// large as the thought (`noise:1`).
pub const SWEEP_OPS: [ThoughtOp; 3] = [ThoughtOp::Zero, ThoughtOp::Mean, ThoughtOp::Noise(1.0)];

/// For every thought index and each of [`SWEEP_OPS`], accuracy and the flip rate against the
/// un-intervened run (coconut mode). `mean` uses `means` if given, else the mean thoughts of
/// the un-intervened run. `progress(done, total)` counts problem runs. Returns the sweep and
/// the means it used.
pub fn intervention_sweep(
    model: &Model,
    tokenizer: &Tokenizer,
    problems: &[ProsQaProblem],
    thoughts: usize,
    means: Option<(ThoughtMeans, String)>,
    seed: u64,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<(InterventionSweep, ThoughtMeans)> {
    let n = problems.len();
    let total = n * (1 + thoughts * SWEEP_OPS.len());
    let mut offset = 0;
    let mut step = |edit: &EvalSettings, offset: &mut usize| -> Result<EvalRun> {
        let base = *offset;
        let r = evaluate_with(
            model,
            tokenizer,
            problems,
            EvalMode::Coconut,
            thoughts,
            edit,
            &mut |d, _| progress(base + d, total),
        )?;
        *offset += n;
        Ok(r)
    };
    let base = step(&EvalSettings::default(), &mut offset)?;
    let (means, means_from) = match means {
        Some((m, from)) => (m, from),
        None => (base.means.clone(), "the un-intervened run".to_string()),
    };
    let mut rows = Vec::new();
    for k in 1..=thoughts {
        for op in SWEEP_OPS {
            let edit = EvalSettings {
                ops: BTreeMap::from([(k, op)]),
                means: Some(means.clone()),
                seed,
                sampling: Sampling::Greedy,
            };
            let r = step(&edit, &mut offset)?;
            let flips = r
                .answers
                .iter()
                .zip(&base.answers)
                .filter(|(a, b)| a != b)
                .count();
            rows.push(InterventionRow {
                thought: k,
                op,
                correct: r.report.correct,
                accuracy: r.report.accuracy,
                flip_rate: flips as f64 / n.max(1) as f64,
            });
        }
    }
    Ok((
        InterventionSweep {
            n,
            thoughts,
            base_accuracy: base.report.accuracy,
            means_from,
            rows,
        },
        means,
    ))
}

#[cfg(test)]
mod tests {
    use super::{extract_answer, map_problems, wrong_candidate_answer};
    use crate::data::prosqa::ProsQaProblem;

    #[test]
    fn problems_run_on_every_core_come_back_in_order() {
        let mut seen = Vec::new();
        let out = map_problems(
            40,
            |i| {
                // Uneven work, so that problems finish out of order.
                std::thread::sleep(std::time::Duration::from_micros(((i * 7) % 5) as u64 * 300));
                Ok(i * i)
            },
            &mut |done, total| seen.push((done, total)),
        )
        .unwrap();
        assert_eq!(out, (0..40).map(|i| i * i).collect::<Vec<_>>());
        assert_eq!(seen, (1..=40).map(|d| (d, 40)).collect::<Vec<_>>());
        // A failure stops the problems not yet started and is reported.
        let err = map_problems(
            40,
            |i| {
                if i % 10 == 7 {
                    anyhow::bail!("problem {i} failed")
                }
                Ok(i)
            },
            &mut |_, _| {},
        )
        .unwrap_err();
        assert!(err.to_string().starts_with("problem "), "{err}");
    }

    #[test]
    fn the_answer_is_the_text_after_the_last_hash() {
        assert_eq!(extract_answer("### Tom is a lempus."), "Tom is a lempus.");
        assert_eq!(
            extract_answer("Tom is a terpus.\nEvery terpus is a brimpus.\n### Tom is a lempus.\n"),
            "Tom is a lempus."
        );
        assert_eq!(extract_answer("# 1,024"), "1024");
        assert_eq!(extract_answer("no marker"), "no marker");
    }

    #[test]
    fn the_wrong_candidate_answer_swaps_the_last_word() {
        let p = ProsQaProblem {
            question: "Is Tom a lempus or scrompus?".into(),
            answer: "Tom is a lempus.".into(),
            steps: Vec::new(),
            idx_to_symbol: vec!["Tom".into(), "lempus".into(), "scrompus".into()],
            edges: Vec::new(),
            root: 0,
            target: 1,
            neg_target: 2,
        };
        assert_eq!(
            wrong_candidate_answer(&p).as_deref(),
            Some("Tom is a scrompus.")
        );
        let odd = ProsQaProblem {
            answer: "Tom is not a lempus".into(),
            ..p
        };
        assert_eq!(wrong_candidate_answer(&odd), None);
    }
}
