//! The problem graph under the lens: node probabilities are the lens probabilities of the
//! node tokens, masses by depth sum to at most 1, and a prompt with no problem has no graph.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use coconut_lens::analysis::run::{RunParams, run_and_analyze};
use coconut_lens::data::facts;
use coconut_lens::model::meta::ModelMeta;
use coconut_lens::model::{Interventions, LoadedModel, ModelSource, load_model};
use coconut_lens::thought::{StepKind, ThoughtCount, ThoughtMode};

fn bundled() -> (LoadedModel, String) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/coconut-prosqa");
    let meta = ModelMeta::of_source(&ModelSource::Local(dir.clone())).expect("bundled metadata");
    let loaded = load_model(
        &ModelSource::Local(dir),
        &candle_core::Device::Cpu,
        candle_core::DType::F32,
    )
    .expect("the bundled model loads");
    (loaded, meta.demo_prompt.expect("a demo prompt"))
}

fn params(prompt: &str) -> RunParams {
    RunParams {
        prompt: prompt.into(),
        thoughts: ThoughtCount::Fixed { n: 4 },
        mode: ThoughtMode::Coconut,
        max_new_tokens: 8,
        top_k: 10,
        context_tokens: 0,
        interventions: Interventions::default(),
        thought_edits: Default::default(),
        sampling: Default::default(),
    }
}

#[test]
fn node_probabilities_are_the_lens_probabilities_of_their_tokens() {
    let (lm, prompt) = bundled();
    let (model, tok) = (&lm.model, &lm.tokenizer);
    let never = AtomicBool::new(false);
    let first = run_and_analyze(model, tok, &params(&prompt), None, false, &never).unwrap();
    let g = first
        .analysis
        .graph
        .clone()
        .expect("the demo prompt states a problem");
    let parsed = facts::parse(&prompt).unwrap();
    let names: Vec<&str> = g.nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(
        names,
        parsed.nodes.iter().map(String::as_str).collect::<Vec<_>>()
    );
    assert_eq!((g.root, &g.candidates), (parsed.root, &parsed.candidates));
    // Tracking a candidate's token gives its lens probability by another path.
    let c = g.candidates[0];
    let tracked = run_and_analyze(
        model,
        tok,
        &params(&prompt),
        Some(g.nodes[c].token),
        false,
        &never,
    )
    .unwrap()
    .analysis;
    let steps: Vec<_> = tracked
        .steps
        .iter()
        .filter(|s| !matches!(s.kind, StepKind::Prompt))
        .collect();
    assert_eq!(steps.len(), g.steps.len());
    assert_eq!(g.steps[0].label, "T1");
    let mut compared = 0;
    for (step, gs) in steps.iter().zip(&g.steps) {
        assert_eq!(step.label, gs.label);
        assert_eq!(step.lens.len(), gs.probs.len(), "a row per lens layer");
        for (cell, probs) in step.lens.iter().zip(&gs.probs) {
            assert!((cell.target_prob - probs[c]).abs() <= 1e-6);
            for t in &cell.top {
                for (i, n) in g.nodes.iter().enumerate() {
                    if n.token == t.id {
                        assert!(
                            (t.prob - probs[i]).abs() <= 1e-6,
                            "{} at {}",
                            n.name,
                            gs.label
                        );
                        compared += 1;
                    }
                }
            }
        }
    }
    assert!(compared > 0, "some node is among the top tokens somewhere");
    for s in 0..g.steps.len() {
        for layer in 0..g.steps[s].probs.len() {
            let m = g.mass_by_depth(s, layer);
            assert!(
                m.total() <= 1.0 + 1e-5,
                "{} layer {layer}: {}",
                g.steps[s].label,
                m.total()
            );
            assert!(m.by_depth.iter().all(|&p| p >= 0.0));
        }
    }
}

#[test]
fn a_prompt_with_no_problem_has_no_graph() {
    let (lm, _) = bundled();
    let never = AtomicBool::new(false);
    let run = run_and_analyze(
        &lm.model,
        &lm.tokenizer,
        &params("Every wumpus is a yumpus."),
        None,
        false,
        &never,
    )
    .unwrap();
    assert!(run.analysis.graph.is_none());
}
