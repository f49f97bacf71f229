//! `coconut-lens report`: the measurements of the Coconut paper and its follow-ups over a
//! ProsQA-schema file, as one JSON document (`coconut-lens.report.v1`) and a Markdown page.
//!
//! Sections so far: accuracy against the number of thoughts (coconut and pause modes, Wilson
//! intervals, McNemar's exact test against coconut at the model's own count), the thought
//! frontier, the superposition inner products (Zhu et al.), thought norms against the token
//! embeddings, the intervention sweep, and the errors by kind with examples.

pub mod cli;
pub mod markdown;
pub mod plots;

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};

use candle_core::DType;

use crate::data::prosqa::{Graph, ProsQaProblem, gold_path};
use crate::eval::stats::{Z95, mcnemar_exact, wilson};
use crate::eval::{
    EvalMode, EvalRun, EvalSettings, InterventionSweep, SWEEP_OPS, ThoughtFrontier, evaluate_with,
    intervention_sweep, node_tokens,
};
use crate::model::{Hooks, Model, Tokenizer};
use crate::thought::{Feeds, RunSpec, ThoughtCount, ThoughtMode, run};

pub const SCHEMA: &str = "coconut-lens.report.v1";

/// One accuracy measurement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccuracyRow {
    pub mode: EvalMode,
    pub thoughts: usize,
    pub correct: usize,
    pub n: usize,
    pub accuracy: f64,
    /// Wilson's 95% interval.
    pub ci95: (f64, f64),
}

/// McNemar's exact test of coconut against another run on the same problems.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Paired {
    pub mode: EvalMode,
    pub thoughts: usize,
    /// Problems only coconut (at the model's count) answers right, and only the other.
    pub coconut_only: usize,
    pub other_only: usize,
    pub p_value: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    pub mean: f64,
    pub sd: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    pub fn of(values: &[f32]) -> Spread {
        let n = values.len().max(1) as f64;
        let mean = values.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
        let var = values
            .iter()
            .map(|&v| (f64::from(v) - mean).powi(2))
            .sum::<f64>()
            / n;
        let fold =
            |f: fn(f64, f64) -> f64, init: f64| values.iter().map(|&v| f64::from(v)).fold(init, f);
        Spread {
            mean,
            sd: var.sqrt(),
            min: if values.is_empty() {
                0.0
            } else {
                fold(f64::min, f64::INFINITY)
            },
            max: if values.is_empty() {
                0.0
            } else {
                fold(f64::max, f64::NEG_INFINITY)
            },
        }
    }
}

/// Thought norms per index against the input embeddings' norms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Norms {
    /// `thoughts[k - 1]`: the L2 norm of thought k as fed back, over the problems.
    pub thoughts: Vec<Spread>,
    /// Every token of the vocabulary.
    pub token_embeddings: Spread,
}

/// Zhu et al.'s superposition measure for one thought: the inner product of the thought (as
/// fed back) with the input embedding of each graph node, grouped. Thought k has taken k − 1
/// hops (thought 1 is the state at `<|start-latent|>`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Superposition {
    pub thought: usize,
    pub hops: usize,
    /// Nodes exactly `hops` from the person.
    pub frontier: Spread,
    /// Nodes within `hops` (the frontier included).
    pub reachable: Spread,
    /// Nodes not reachable from the person at all.
    pub unreachable: Spread,
    /// The nodes of the gold path (the person to the answer), at any depth.
    pub answer_path: Spread,
}

/// Which of the groups frontier, reachable, unreachable, answer path a node belongs to after
/// `hops` hops, given its breadth-first depth and whether the gold path visits it.
pub fn node_groups(depth: Option<usize>, on_path: bool, hops: usize) -> [bool; 4] {
    [
        depth == Some(hops),
        depth.is_some_and(|d| d <= hops),
        depth.is_none(),
        on_path,
    ]
}

/// A greedy coconut run of `thoughts` thoughts and up to `new_tokens` answer tokens.
fn coconut_spec(thoughts: usize, new_tokens: usize) -> RunSpec {
    RunSpec {
        thoughts: ThoughtCount::Fixed { n: thoughts },
        mode: ThoughtMode::Coconut,
        max_new_tokens: new_tokens,
        context_rows: 1,
        attention: false,
        forced_answer: Vec::new(),
        feeds: Feeds::none(),
        sampling: Default::default(),
    }
}

/// [`Superposition`] for thoughts 1..=`thoughts` over the problems (one coconut run each).
pub fn superposition(
    model: &Model,
    tokenizer: &Tokenizer,
    problems: &[ProsQaProblem],
    thoughts: usize,
    progress: &mut dyn FnMut(usize),
) -> Result<Vec<Superposition>> {
    let spec = coconut_spec(thoughts, 1);
    let hooks = Hooks::none(model.info.layers);
    // [thought][group] values.
    let mut groups = vec![[Vec::new(), Vec::new(), Vec::new(), Vec::new()]; thoughts];
    for (i, p) in problems.iter().enumerate() {
        crate::interrupt::check()?;
        let ids = tokenizer.encode_prompt(&p.question)?;
        let r = run(model, tokenizer, &ids, &spec, &hooks)?;
        let depth = Graph::of(p)?.distances(p.root);
        let mut on_path = vec![false; p.idx_to_symbol.len()];
        for [a, b] in gold_path(p)? {
            on_path[a] = true;
            on_path[b] = true;
        }
        // Nodes whose name is one token, with that token's embedding.
        let nodes: Vec<(usize, u32)> = node_tokens(tokenizer, p)
            .into_iter()
            .enumerate()
            .filter_map(|(node, id)| Some((node, id?)))
            .collect();
        let ids: Vec<u32> = nodes.iter().map(|&(_, id)| id).collect();
        let emb = model.embed_ids(&ids)?.to_dtype(DType::F32)?;
        for (k, fed) in r.fed.iter().enumerate() {
            let dots: Vec<f32> = emb
                .matmul(&fed.to_dtype(DType::F32)?.unsqueeze(1)?)?
                .squeeze(1)?
                .to_vec1()?;
            for (&(node, _), &v) in nodes.iter().zip(&dots) {
                let member = node_groups(depth[node], on_path[node], k);
                for (values, inside) in groups[k].iter_mut().zip(member) {
                    if inside {
                        values.push(v);
                    }
                }
            }
        }
        progress(i + 1);
    }
    Ok(groups
        .iter()
        .enumerate()
        .map(|(k, g)| Superposition {
            thought: k + 1,
            hops: k,
            frontier: Spread::of(&g[0]),
            reachable: Spread::of(&g[1]),
            unreachable: Spread::of(&g[2]),
            answer_path: Spread::of(&g[3]),
        })
        .collect())
}

/// Where the value of a frontier node is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ValueSource {
    /// Hao et al.'s probe: after k thoughts and `<|end-latent|>` the model writes its next step
    /// greedily; the value of a node is the probability of its token at the step's first node
    /// slot (the concept after "Every").
    Language,
    /// For a model that writes no step after k thoughts: the state that would feed thought
    /// k + 1 (the last latent position's final hidden state), read through the unembedding.
    Decoded,
}

/// Hao et al.'s value analysis (§5, Fig. 9) after `thoughts` continuous thoughts: the values
/// of the frontier nodes (exactly `thoughts` hops from the person).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThoughtValue {
    pub thoughts: usize,
    pub source: ValueSource,
    /// Problems whose greedy continuation after the thoughts names a graph node before the
    /// answer's `#` (a step written in language).
    pub wrote_step: usize,
    /// Problems in the curves: those that wrote a step (language), else all.
    pub n: usize,
    /// Mean number of frontier nodes (single-token names).
    pub frontier_nodes: f64,
    /// `cumulative[i]`: per problem, the summed values of its top i + 1 frontier nodes, in
    /// ascending order (the figure plots them against the percentile of problems).
    pub cumulative: [Vec<f64>; 3],
}

/// The sums of the largest one, two and three of `values` (fewer nodes: all of them).
pub fn cumulative_top(values: &[f64]) -> [f64; 3] {
    let mut v = values.to_vec();
    v.sort_by(|a, b| b.total_cmp(a));
    let mut out = [0.0; 3];
    let mut sum = 0.0;
    for (i, o) in out.iter_mut().enumerate() {
        sum += v.get(i).copied().unwrap_or(0.0);
        *o = sum;
    }
    out
}

/// The values of the frontier nodes (`depth == hops`) in a next-token distribution.
fn frontier_values(
    probs: &[f32],
    tokens: &[Option<u32>],
    depth: &[Option<usize>],
    hops: usize,
) -> Vec<f64> {
    tokens
        .iter()
        .zip(depth)
        .filter(|(_, d)| **d == Some(hops))
        .filter_map(|(t, _)| t.map(|id| f64::from(probs[id as usize])))
        .collect()
}

fn softmax(logits: &candle_core::Tensor) -> Result<Vec<f32>> {
    Ok(
        candle_nn::ops::softmax(&logits.to_dtype(DType::F32)?, candle_core::D::Minus1)?
            .to_vec1()?,
    )
}

/// [`ThoughtValue`] after 1..`thoughts` thoughts (after the model's own count it answers;
/// there is no next step). Per count, [`ValueSource::Language`] where at least half the
/// problems write a step, else [`ValueSource::Decoded`].
pub fn value(
    model: &Model,
    tokenizer: &Tokenizer,
    problems: &[ProsQaProblem],
    thoughts: usize,
    progress: &mut dyn FnMut(usize),
) -> Result<Vec<ThoughtValue>> {
    let spec = coconut_spec;
    let hooks = Hooks::none(model.info.layers);
    let counts = thoughts.saturating_sub(1);
    // [k - 1]: per problem, the language values (if it wrote a step) and the decoded ones.
    let mut language: Vec<Vec<Vec<f64>>> = vec![Vec::new(); counts];
    let mut decoded: Vec<Vec<Vec<f64>>> = vec![Vec::new(); counts];
    let mut sizes = vec![0usize; counts];
    for (i, p) in problems.iter().enumerate() {
        crate::interrupt::check()?;
        let ids = tokenizer.encode_prompt(&p.question)?;
        let depth = Graph::of(p)?.distances(p.root);
        let tokens = node_tokens(tokenizer, p);
        let node_ids: Vec<u32> = tokens.iter().flatten().copied().collect();
        let own = run(model, tokenizer, &ids, &spec(thoughts, 1), &hooks)?;
        for k in 1..=counts {
            sizes[k - 1] += tokens
                .iter()
                .zip(&depth)
                .filter(|(t, d)| t.is_some() && **d == Some(k))
                .count();
            // Thought k + 1's record is the state at latent slot k.
            let probs = softmax(&own.thoughts[k].logits)?;
            decoded[k - 1].push(frontier_values(&probs, &tokens, &depth, k));
            let r = run(model, tokenizer, &ids, &spec(k, 8), &hooks)?;
            let slot = r.answer_ids.iter().enumerate().find_map(|(j, id)| {
                let before = tokenizer.decode(&r.answer_ids[..j]).unwrap_or_default();
                (!before.contains('#') && node_ids.contains(id)).then_some(j)
            });
            if let Some(j) = slot {
                let probs = softmax(&r.answer[j].logits)?;
                language[k - 1].push(frontier_values(&probs, &tokens, &depth, k));
            }
        }
        progress(i + 1);
    }
    let n = problems.len();
    Ok((1..=counts)
        .map(|k| {
            let wrote_step = language[k - 1].len();
            let (source, rows) = if 2 * wrote_step >= n {
                (ValueSource::Language, &language[k - 1])
            } else {
                (ValueSource::Decoded, &decoded[k - 1])
            };
            let mut cumulative: [Vec<f64>; 3] = Default::default();
            for row in rows {
                for (c, v) in cumulative.iter_mut().zip(cumulative_top(row)) {
                    c.push(v);
                }
            }
            cumulative
                .iter_mut()
                .for_each(|c| c.sort_by(f64::total_cmp));
            ThoughtValue {
                thoughts: k,
                source,
                wrote_step,
                n: rows.len(),
                frontier_nodes: sizes[k - 1] as f64 / n.max(1) as f64,
                cumulative,
            }
        })
        .collect())
}

/// The kind of a wrong answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The gold sentence with the other candidate.
    WrongCandidate,
    /// A well-formed `Name is a X.` naming neither candidate.
    NeitherCandidate,
    /// Anything else.
    Malformed,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorExample {
    pub problem: usize,
    pub question: String,
    pub gold: String,
    pub answer: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorGroup {
    pub kind: ErrorKind,
    pub count: usize,
    /// The first three.
    pub examples: Vec<ErrorExample>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub schema: String,
    pub model: String,
    pub data: String,
    pub n: usize,
    /// The model's own number of thoughts.
    pub thoughts: usize,
    /// Whether the model writes steps in language after fewer thoughts than its own count
    /// (with 0 thoughts, at least half the problems get text before the answer's `#`); token
    /// mode is measured only then.
    pub writes_steps: bool,
    /// Coconut, pause, soft (Soft Thinking, top-k 5, top-p 0.95) and, where the model writes
    /// steps, token mode, each at 0..=max thoughts.
    pub accuracy: Vec<AccuracyRow>,
    pub paired: Vec<Paired>,
    /// Coconut at the model's count: each thought's mass by breadth-first depth.
    pub frontier: Vec<ThoughtFrontier>,
    pub value: Vec<ThoughtValue>,
    pub superposition: Vec<Superposition>,
    pub norms: Norms,
    pub causal: InterventionSweep,
    pub errors: Vec<ErrorGroup>,
    pub compute_s: f64,
}

/// What the report runs.
#[derive(Debug, Clone)]
pub struct ReportOptions {
    /// Thought counts 0..=this in the accuracy table (at least the model's own).
    pub max_thoughts: usize,
    pub seed: u64,
}

/// The kind of a wrong answer `answer` (extracted, after the last `#`) to `p`.
pub fn error_kind(p: &ProsQaProblem, answer: &str) -> ErrorKind {
    let gold = p.answer.trim();
    let (Some(target), Some(other)) = (
        p.idx_to_symbol.get(p.target),
        p.idx_to_symbol.get(p.neg_target),
    ) else {
        return ErrorKind::Malformed;
    };
    let Some(stem) = gold.strip_suffix(&format!("{target}.")) else {
        return ErrorKind::Malformed;
    };
    if answer == format!("{stem}{other}.") {
        return ErrorKind::WrongCandidate;
    }
    match answer.strip_prefix(stem).and_then(|w| w.strip_suffix('.')) {
        Some(word) if !word.is_empty() && word.chars().all(char::is_alphanumeric) => {
            ErrorKind::NeitherCandidate
        }
        _ => ErrorKind::Malformed,
    }
}

/// Groups the wrong answers of a run by kind.
pub fn errors(problems: &[ProsQaProblem], answers: &[String]) -> Vec<ErrorGroup> {
    let kinds = [
        ErrorKind::WrongCandidate,
        ErrorKind::NeitherCandidate,
        ErrorKind::Malformed,
    ];
    let mut groups: Vec<ErrorGroup> = kinds
        .iter()
        .map(|&kind| ErrorGroup {
            kind,
            count: 0,
            examples: Vec::new(),
        })
        .collect();
    for (i, (p, a)) in problems.iter().zip(answers).enumerate() {
        if a == p.answer.trim() {
            continue;
        }
        let kind = error_kind(p, a);
        let g = groups
            .iter_mut()
            .find(|g| g.kind == kind)
            .expect("every kind has a group");
        g.count += 1;
        if g.examples.len() < 3 {
            g.examples.push(ErrorExample {
                problem: i,
                question: p.question.clone(),
                gold: p.answer.trim().to_string(),
                answer: a.clone(),
            });
        }
    }
    groups
}

/// Which problems a run answers right.
fn right(problems: &[ProsQaProblem], run: &EvalRun) -> Vec<bool> {
    problems
        .iter()
        .zip(&run.answers)
        .map(|(p, a)| *a == p.answer.trim())
        .collect()
}

/// McNemar's test of `a` (coconut) against `b` on the same problems.
pub fn paired(a: &[bool], b: &[bool], mode: EvalMode, thoughts: usize) -> Paired {
    let coconut_only = a.iter().zip(b).filter(|&(&x, &y)| x && !y).count();
    let other_only = a.iter().zip(b).filter(|&(&x, &y)| !x && y).count();
    Paired {
        mode,
        thoughts,
        coconut_only,
        other_only,
        p_value: mcnemar_exact(coconut_only, other_only),
    }
}

/// Problem runs the report makes, for a progress bar.
/// (Token mode's runs are counted; a model that writes no steps skips them.)
pub fn total_runs(n: usize, own: usize, opts: &ReportOptions) -> usize {
    let counts = opts.max_thoughts.max(own) + 1;
    let accuracy = n * MODES.len() * counts;
    let value = n * own.max(1);
    accuracy + value + n + n * (1 + own * SWEEP_OPS.len())
}

/// The thought modes of the accuracy table, in order.
pub const MODES: [EvalMode; 4] = [
    EvalMode::Coconut,
    EvalMode::Pause,
    EvalMode::Soft,
    EvalMode::Token,
];

/// Whether at least half of `texts` have an answer (`#`) with text before it.
pub fn writes_steps(texts: &[String]) -> bool {
    let with_steps = texts
        .iter()
        .filter(|t| t.split_once('#').is_some_and(|(s, _)| !s.trim().is_empty()))
        .count();
    !texts.is_empty() && 2 * with_steps >= texts.len()
}

/// Runs the report. `progress(done, total)` counts problem runs.
#[allow(clippy::too_many_arguments)]
pub fn report(
    model: &Model,
    tokenizer: &Tokenizer,
    model_name: &str,
    data_name: &str,
    problems: &[ProsQaProblem],
    own: usize,
    opts: &ReportOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Report> {
    if tokenizer.coconut.is_none() {
        bail!(
            "report needs a Coconut model: this tokenizer has no <|start-latent|>, <|end-latent|> and <|latent|> tokens"
        );
    }
    if problems.is_empty() {
        bail!("the data file has no problems");
    }
    let started = std::time::Instant::now();
    let n = problems.len();
    let total = total_runs(n, own, opts);
    let mut done = 0;
    let none = EvalSettings::default();
    let mut evaluate = |mode: EvalMode, k: usize, done: &mut usize| -> Result<EvalRun> {
        let base = *done;
        let r = evaluate_with(model, tokenizer, problems, mode, k, &none, &mut |d, _| {
            progress(base + d, total)
        })?;
        *done += n;
        Ok(r)
    };
    let mut accuracy = Vec::new();
    let mut runs = Vec::new();
    let counts = opts.max_thoughts.max(own);
    let mut steps = false;
    for mode in MODES {
        if mode == EvalMode::Token && !steps {
            done += n * (counts + 1);
            continue;
        }
        for k in 0..=counts {
            let r = evaluate(mode, k, &mut done)?;
            if mode == EvalMode::Coconut && k == 0 {
                steps = writes_steps(&r.texts);
            }
            accuracy.push(AccuracyRow {
                mode,
                thoughts: k,
                correct: r.report.correct,
                n,
                accuracy: r.report.accuracy,
                ci95: wilson(r.report.correct, n, Z95),
            });
            runs.push((mode, k, r));
        }
    }
    let own_run = &runs
        .iter()
        .find(|(m, k, _)| *m == EvalMode::Coconut && *k == own)
        .expect("the model's own count is in the table")
        .2;
    let own_right = right(problems, own_run);
    let paired_rows = runs
        .iter()
        .filter(|(m, k, _)| {
            *m != EvalMode::Coconut && *k == own || *m == EvalMode::Coconut && *k == 0 && own > 0
        })
        .map(|(m, k, r)| paired(&own_right, &right(problems, r), *m, *k))
        .collect();
    let norms = Norms {
        thoughts: own_run.fed_norms.iter().map(|v| Spread::of(v)).collect(),
        token_embeddings: Spread::of(&model.embedding_norms()?),
    };
    let base = done;
    let superposition = superposition(model, tokenizer, problems, own, &mut |d| {
        progress(base + d, total)
    })?;
    done += n;
    let base = done;
    let value = value(model, tokenizer, problems, own, &mut |d| {
        progress(base + d * own.max(1), total)
    })?;
    done += n * own.max(1);
    let base = done;
    let (causal, _) = intervention_sweep(
        model,
        tokenizer,
        problems,
        own,
        None,
        opts.seed,
        &mut |d, _| progress(base + d, total),
    )?;
    Ok(Report {
        schema: SCHEMA.to_string(),
        model: model_name.to_string(),
        data: data_name.to_string(),
        n,
        thoughts: own,
        writes_steps: steps,
        frontier: own_run.report.thought_frontier.clone(),
        value,
        superposition,
        errors: errors(problems, &own_run.answers),
        accuracy,
        paired: paired_rows,
        norms,
        causal,
        compute_s: started.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem() -> ProsQaProblem {
        ProsQaProblem {
            question: "Every wumpus is a yumpus. Tom is a wumpus. Is Tom a yumpus or lempus?"
                .into(),
            answer: "Tom is a yumpus.".into(),
            steps: vec![
                "Tom is a wumpus.".into(),
                "Every wumpus is a yumpus.".into(),
            ],
            idx_to_symbol: vec![
                "Tom".into(),
                "wumpus".into(),
                "yumpus".into(),
                "lempus".into(),
            ],
            edges: vec![[0, 1], [1, 2]],
            root: 0,
            target: 2,
            neg_target: 3,
        }
    }

    #[test]
    fn wrong_answers_are_grouped_by_kind() {
        let p = problem();
        assert_eq!(
            error_kind(&p, "Tom is a lempus."),
            ErrorKind::WrongCandidate
        );
        assert_eq!(
            error_kind(&p, "Tom is a wumpus."),
            ErrorKind::NeitherCandidate
        );
        assert_eq!(error_kind(&p, "Tom is a"), ErrorKind::Malformed);
        assert_eq!(error_kind(&p, ""), ErrorKind::Malformed);
        assert_eq!(
            error_kind(&p, "Tom is a yumpus yumpus."),
            ErrorKind::Malformed
        );
        let problems = vec![p.clone(), p.clone(), p.clone(), p.clone(), p.clone(), p];
        let answers: Vec<String> = [
            "Tom is a yumpus.",
            "Tom is a lempus.",
            "Tom is a lempus.",
            "Tom is a wumpus.",
            "nonsense",
            "Tom is a lempus.",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let g = errors(&problems, &answers);
        let counts: Vec<(ErrorKind, usize)> = g.iter().map(|g| (g.kind, g.count)).collect();
        assert_eq!(
            counts,
            [
                (ErrorKind::WrongCandidate, 3),
                (ErrorKind::NeitherCandidate, 1),
                (ErrorKind::Malformed, 1)
            ]
        );
        assert_eq!(
            g[0].examples.iter().map(|e| e.problem).collect::<Vec<_>>(),
            [1, 2, 5]
        );
        assert_eq!(g[2].examples[0].answer, "nonsense");
    }

    #[test]
    fn paired_counts_discordant_problems() {
        let a = [true, true, true, false, true, false];
        let b = [true, false, false, false, true, true];
        let p = paired(&a, &b, EvalMode::Pause, 6);
        assert_eq!((p.coconut_only, p.other_only), (2, 1));
        assert_eq!(p.p_value, mcnemar_exact(2, 1));
        assert_eq!(p.p_value, 1.0);
    }

    #[test]
    fn frontier_groups_on_a_hand_made_graph() {
        // Tom -> wumpus -> yumpus; lempus unreachable; the gold path Tom, wumpus, yumpus.
        let p = problem();
        let depth = Graph::of(&p).unwrap().distances(p.root);
        assert_eq!(depth, [Some(0), Some(1), Some(2), None]);
        let mut on_path = [false; 4];
        for [a, b] in gold_path(&p).unwrap() {
            on_path[a] = true;
            on_path[b] = true;
        }
        assert_eq!(on_path, [true, true, true, false]);
        let at = |hops| -> Vec<[bool; 4]> {
            (0..4)
                .map(|n| node_groups(depth[n], on_path[n], hops))
                .collect()
        };
        // Thought 1 (0 hops): the person is the frontier and all that is reachable.
        assert_eq!(at(0)[0], [true, true, false, true]);
        assert_eq!(at(0)[1], [false, false, false, true]);
        // Thought 2 (1 hop): wumpus is the frontier; Tom stays reachable.
        assert_eq!(at(1)[1], [true, true, false, true]);
        assert_eq!(at(1)[0], [false, true, false, true]);
        assert_eq!(at(1)[2], [false, false, false, true]);
        assert_eq!(at(3)[3], [false, false, true, false]);
    }

    #[test]
    fn cumulative_values_of_a_toy_distribution() {
        // Frontier values 0.1, 0.5, 0.05, 0.3 (the rest of the mass elsewhere).
        let [t1, t2, t3] = cumulative_top(&[0.1, 0.5, 0.05, 0.3]);
        assert_eq!(t1, 0.5);
        assert!((t2 - 0.8).abs() < 1e-12 && (t3 - 0.9).abs() < 1e-12);
        // Fewer nodes than three: the sums stop growing.
        assert_eq!(cumulative_top(&[0.25]), [0.25, 0.25, 0.25]);
        assert_eq!(cumulative_top(&[]), [0.0, 0.0, 0.0]);
        // Only the frontier's tokens count, and names of several tokens are skipped.
        let probs = [0.1f32, 0.2, 0.3, 0.4];
        let tokens = [Some(0), Some(3), None, Some(2)];
        let depth = [Some(0), Some(1), Some(1), Some(1)];
        let v = frontier_values(&probs, &tokens, &depth, 1);
        assert_eq!(v, [f64::from(0.4f32), f64::from(0.3f32)]);
    }

    #[test]
    fn a_model_writes_steps_when_half_its_texts_have_one_before_the_answer() {
        let t = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(writes_steps(&t(&[
            "Tom is a wumpus.\n### Tom is a yumpus.",
            "### x"
        ])));
        assert!(!writes_steps(&t(&[
            "### Tom is a yumpus.",
            " ### x",
            "a ### b"
        ])));
        // Text without an answer is not a step.
        assert!(!writes_steps(&t(&["garbage", "garbage"])));
        assert!(!writes_steps(&[]));
    }

    #[test]
    fn spreads() {
        let s = Spread::of(&[1.0, 3.0]);
        assert_eq!((s.mean, s.sd, s.min, s.max), (2.0, 1.0, 1.0, 3.0));
        let e = Spread::of(&[]);
        assert_eq!((e.mean, e.min, e.max), (0.0, 0.0, 0.0));
    }
}
