//! Statistics of a ProsQA-schema data set, to compare generated data with the real one.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, Result};
use serde::Serialize;

use super::prosqa::{Graph, ProsQaProblem, is_person, validate};

/// Summary of a set of problems. "Depth" is the number of steps.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DatasetStats {
    pub problems: usize,
    pub nodes_mean: f64,
    pub nodes_max: usize,
    pub edges_mean: f64,
    pub edges_max: usize,
    /// Number of problems per number of steps.
    pub depth_histogram: BTreeMap<usize, usize>,
    pub depth_mean: f64,
    /// Fraction of problems whose target is reachable from the root and whose negative
    /// target is not.
    pub target_reachable_neg_unreachable: f64,
    /// Problems passing [`validate`].
    pub valid: usize,
    /// The first validation failure, if any: `problem N: reason`.
    pub first_invalid: Option<String>,
    /// Mean number of shortest root -> target paths.
    pub shortest_paths_mean: f64,
    /// Mean number of people (capitalised symbols) per problem.
    pub people_per_problem_mean: f64,
    /// Distinct words (punctuation stripped) over questions, steps and answers.
    pub distinct_words: usize,
    /// Distinct people (capitalised symbols) and concepts over `idx_to_symbol`.
    pub people: usize,
    pub concepts: usize,
    /// Whitespace-separated words of question + steps + answer.
    pub words_per_problem_mean: f64,
    pub words_per_problem_max: usize,
}

fn mean(total: usize, n: usize) -> f64 {
    if n == 0 { 0.0 } else { total as f64 / n as f64 }
}

/// Computes the statistics; fails (naming the problem) on indices that are not nodes.
pub fn compute(problems: &[ProsQaProblem]) -> Result<DatasetStats> {
    let n = problems.len();
    let (mut nodes, mut edges, mut steps, mut words, mut paths, mut people_count) =
        (0, 0, 0, 0, 0u64, 0);
    let (mut nodes_max, mut edges_max, mut words_max) = (0, 0, 0);
    let mut depth_histogram = BTreeMap::new();
    let mut reachable_ok = 0;
    let mut valid = 0;
    let mut first_invalid = None;
    let mut vocab = BTreeSet::new();
    let mut people = BTreeSet::new();
    let mut concepts = BTreeSet::new();

    for (i, p) in problems.iter().enumerate() {
        let g = Graph::of(p).with_context(|| format!("problem {i}"))?;
        nodes += p.idx_to_symbol.len();
        nodes_max = nodes_max.max(p.idx_to_symbol.len());
        edges += p.edges.len();
        edges_max = edges_max.max(p.edges.len());
        steps += p.steps.len();
        *depth_histogram.entry(p.steps.len()).or_insert(0) += 1;

        let dist = g.distances(p.root);
        if dist[p.target].is_some() && dist[p.neg_target].is_none() {
            reachable_ok += 1;
            paths += g.shortest_path_counts(&dist)[p.target];
        }
        match validate(p) {
            Ok(()) => valid += 1,
            Err(e) if first_invalid.is_none() => {
                first_invalid = Some(format!("problem {i}: {e:#}"))
            }
            Err(_) => {}
        }

        let texts = std::iter::once(&p.question)
            .chain(&p.steps)
            .chain(std::iter::once(&p.answer));
        let mut w = 0;
        for t in texts {
            for word in t.split_whitespace() {
                w += 1;
                let bare = word.trim_matches(|c: char| c.is_ascii_punctuation());
                if !bare.is_empty() {
                    vocab.insert(bare.to_string());
                }
            }
        }
        words += w;
        words_max = words_max.max(w);

        for s in &p.idx_to_symbol {
            if is_person(s) {
                people_count += 1;
                people.insert(s.clone());
            } else {
                concepts.insert(s.clone());
            }
        }
    }
    Ok(DatasetStats {
        problems: n,
        nodes_mean: mean(nodes, n),
        nodes_max,
        edges_mean: mean(edges, n),
        edges_max,
        depth_histogram,
        depth_mean: mean(steps, n),
        target_reachable_neg_unreachable: mean(reachable_ok, n),
        valid,
        first_invalid,
        shortest_paths_mean: if reachable_ok == 0 {
            0.0
        } else {
            paths as f64 / reachable_ok as f64
        },
        people_per_problem_mean: mean(people_count, n),
        distinct_words: vocab.len(),
        people: people.len(),
        concepts: concepts.len(),
        words_per_problem_mean: mean(words, n),
        words_per_problem_max: words_max,
    })
}
