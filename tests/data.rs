//! The ProsQA-style generator, its statistics against the real validation set, and the
//! word-level tokenizer. Needs nothing beside the checkout (no data, no network).

mod common;

use common::scratch;

use std::sync::LazyLock;

use coconut_lens::data::prosqa::{GenConfig, ProsQaProblem, generate, to_json, validate};
use coconut_lens::data::tokenizer::TextForm;
use coconut_lens::data::{stats, tokenizer};
use coconut_lens::model::tokenizer::{END_LATENT, LATENT, START_LATENT};

/// Statistics of the real ProsQA validation set (`prosqa_valid.json`, 300 problems), measured
/// with `coconut-lens data stats` (docs/data.md). The file itself is not needed here.
mod real {
    pub const PROBLEMS: f64 = 300.0;
    pub const NODES_MEAN: f64 = 22.82;
    pub const NODES_MAX: usize = 28;
    pub const EDGES_MEAN: f64 = 36.26;
    pub const EDGES_MAX: usize = 53;
    /// Problems with 3, 4, 5, 6 steps.
    pub const DEPTHS: [(usize, f64); 4] = [(3, 124.0), (4, 133.0), (5, 36.0), (6, 7.0)];
    pub const DEPTH_MEAN: f64 = 3.7533;
    pub const SHORTEST_PATHS_MEAN: f64 = 1.6133;
    pub const PEOPLE_PER_PROBLEM: f64 = 2.5133;
    pub const DISTINCT_WORDS: usize = 60;
    pub const PEOPLE: usize = 17;
    pub const CONCEPTS: usize = 38;
    pub const WORDS_PER_PROBLEM: f64 = 202.28;
}

const N: usize = 5000;

static PROBLEMS: LazyLock<Vec<ProsQaProblem>> =
    LazyLock::new(|| generate(&GenConfig::default(), N, 0, "test").expect("generates"));

#[test]
fn thousands_of_generated_problems_validate() {
    assert_eq!(PROBLEMS.len(), N);
    for (i, p) in PROBLEMS.iter().enumerate() {
        if let Err(e) = validate(p) {
            panic!("problem {i} is invalid: {e:#}\n{p:?}");
        }
    }
}

#[test]
fn generation_is_deterministic() {
    let cfg = GenConfig::default();
    let a = to_json(&generate(&cfg, 300, 7, "train").unwrap()).unwrap();
    let b = to_json(&generate(&cfg, 300, 7, "train").unwrap()).unwrap();
    assert!(a == b, "same seed, different bytes");
    let other_seed = to_json(&generate(&cfg, 300, 8, "train").unwrap()).unwrap();
    let other_split = to_json(&generate(&cfg, 300, 7, "valid").unwrap()).unwrap();
    assert!(a != other_seed && a != other_split);
    // A prefix of a longer run is the shorter run.
    let longer = generate(&cfg, 400, 7, "train").unwrap();
    assert!(to_json(&longer[..300]).unwrap() == a);
}

#[test]
fn generated_problems_are_distinct() {
    let mut questions: Vec<&str> = PROBLEMS.iter().map(|p| p.question.as_str()).collect();
    questions.sort_unstable();
    questions.dedup();
    assert_eq!(questions.len(), N);
}

fn close(what: &str, got: f64, want: f64, tol: f64) {
    assert!(
        (got - want).abs() <= tol,
        "{what}: generated {got:.4}, real {want:.4} (tolerance {tol})"
    );
}

#[test]
fn statistics_match_the_real_validation_set() {
    let s = stats::compute(&PROBLEMS).unwrap();
    assert_eq!(s.problems, N);
    assert_eq!(s.valid, N, "{:?}", s.first_invalid);
    assert_eq!(s.target_reachable_neg_unreachable, 1.0);
    close("mean nodes", s.nodes_mean, real::NODES_MEAN, 0.4);
    assert!(s.nodes_max <= real::NODES_MAX && s.nodes_max >= real::NODES_MAX - 2);
    close("mean edges", s.edges_mean, real::EDGES_MEAN, 1.0);
    assert!(
        s.edges_max >= real::EDGES_MAX - 8 && s.edges_max <= GenConfig::default().max_edges,
        "max edges {}",
        s.edges_max
    );
    for (depth, count) in real::DEPTHS {
        let got = *s.depth_histogram.get(&depth).unwrap_or(&0) as f64 / N as f64;
        close(
            &format!("fraction of depth {depth}"),
            got,
            count / real::PROBLEMS,
            0.03,
        );
    }
    assert!(s.depth_histogram.keys().all(|d| (3..=6).contains(d)));
    close("mean depth", s.depth_mean, real::DEPTH_MEAN, 0.08);
    close(
        "mean shortest paths",
        s.shortest_paths_mean,
        real::SHORTEST_PATHS_MEAN,
        0.15,
    );
    close(
        "people per problem",
        s.people_per_problem_mean,
        real::PEOPLE_PER_PROBLEM,
        0.1,
    );
    assert_eq!(s.distinct_words, real::DISTINCT_WORDS);
    assert_eq!(s.people, real::PEOPLE);
    assert_eq!(s.concepts, real::CONCEPTS);
    close(
        "words per problem",
        s.words_per_problem_mean,
        real::WORDS_PER_PROBLEM,
        6.0,
    );
}

#[test]
fn generated_answers_are_balanced_and_graphs_have_distractors() {
    // The answer comes first in the query about half of the time, as in the real data.
    let first = PROBLEMS
        .iter()
        .filter(|p| {
            let t = &p.idx_to_symbol[p.target];
            p.question
                .ends_with(&format!(" or {}?", p.idx_to_symbol[p.neg_target]))
                && p.question.contains(&format!(" a {t} or "))
        })
        .count() as f64
        / N as f64;
    close("target named first", first, 0.5, 0.03);
    // Distractors: every graph has many more edges than the chain of thought uses.
    assert!(PROBLEMS.iter().all(|p| p.edges.len() >= 3 * p.steps.len()));
}

#[test]
fn tokenizer_round_trips_every_generated_problem() {
    let tok = tokenizer::build(TextForm::Words).unwrap();
    let unk = tok.token_to_id(tokenizer::UNK).unwrap();
    let newline = tok.token_to_id("\n").unwrap();
    for p in PROBLEMS.iter() {
        let texts = std::iter::once(&p.question)
            .chain(&p.steps)
            .chain(std::iter::once(&p.answer));
        for text in texts {
            let enc = tok.encode(text.as_str(), false).unwrap();
            assert!(!enc.get_ids().contains(&unk), "unknown token in {text:?}");
            assert_eq!(&tok.decode(enc.get_ids(), true).unwrap(), text);
        }
        // The prompt ends with the newline token.
        let enc = tok.encode(format!("{}\n", p.question), true).unwrap();
        assert_eq!(enc.get_ids().last(), Some(&newline));
    }
}

#[test]
fn tokenizer_handles_the_coconut_format() {
    let tok = tokenizer::build(TextForm::Words).unwrap();
    let p = &PROBLEMS[0];
    let id = |t: &str| tok.token_to_id(t).unwrap();
    for t in [
        START_LATENT,
        END_LATENT,
        LATENT,
        tokenizer::EOS,
        "###",
        "\n",
    ] {
        let enc = tok.encode(t, false).unwrap();
        assert_eq!(enc.get_ids(), [id(t)], "{t:?} is not a single id");
    }
    // question \n <|start-latent|> <|latent|>x2 <|end-latent|> steps[2..] joined by \n, then
    // "### answer" and end-of-text, as in the Coconut training data at stage 2.
    let text = format!(
        "{}\n{START_LATENT}{LATENT}{LATENT}{END_LATENT}{}\n### {}{}",
        p.question,
        p.steps[2..].join("\n"),
        p.answer,
        tokenizer::EOS
    );
    let enc = tok.encode(text.as_str(), false).unwrap();
    let ids = enc.get_ids();
    assert_eq!(ids.iter().filter(|&&i| i == id(LATENT)).count(), 2);
    assert_eq!(ids.last(), Some(&id(tokenizer::EOS)));
    assert!(!ids.contains(&id(tokenizer::UNK)));
    // Skipping special tokens leaves the readable text, and the answer after ###.
    let decoded = tok.decode(ids, true).unwrap();
    let after = decoded.rsplit('#').next().unwrap().trim();
    assert_eq!(after, p.answer);
    let with_special = tok.decode(ids, false).unwrap();
    assert!(with_special.contains(LATENT) && with_special.ends_with(tokenizer::EOS));
}

#[test]
fn tokenizer_file_loads_and_is_reproducible() {
    let dir = scratch("data-tokenizer");
    let path = dir.join("tokenizer.json");
    tokenizer::write(&path, TextForm::Words).unwrap();
    let first = std::fs::read(&path).unwrap();
    tokenizer::write(&path, TextForm::Words).unwrap();
    assert!(first == std::fs::read(&path).unwrap(), "not byte-identical");

    let loaded = tokenizers::Tokenizer::from_file(&path).unwrap();
    let built = tokenizer::build(TextForm::Words).unwrap();
    let text = format!("{}\n", PROBLEMS[1].question);
    assert_eq!(
        loaded.encode(text.as_str(), true).unwrap().get_ids(),
        built.encode(text.as_str(), true).unwrap().get_ids()
    );
    // The engine's tokenizer finds the Coconut tokens without adding any.
    let engine = coconut_lens::model::tokenizer::Tokenizer::from_file(&path).unwrap();
    let coconut = engine.coconut.expect("Coconut tokens present");
    assert_eq!(engine.vocab_size(), tokenizer::vocabulary().len());
    assert!(coconut.latent == Some((tokenizer::vocabulary().len() - 1) as u32));
    let ids = engine.encode_prompt(&PROBLEMS[1].question).unwrap();
    assert_eq!(engine.decode(&ids).unwrap(), text);
}
