//! Properties of the thought runner: the cached path equals a full recompute in every mode, and
//! each thought mode does what defines it.

mod common;

use std::sync::atomic::AtomicBool;

use candle_core::{D, Tensor};
use coconut_lens::analysis::importance::{SweepControl, ablation_importance};
use coconut_lens::model::{Capture, Hooks, Interventions, KvCache, LoadedModel};
use coconut_lens::thought::{Run, RunSpec, ThoughtCount, ThoughtMode, next_embeddings, run};
use common::*;

const PROMPT: &str =
    "Every wumpus is a yumpus. Every yumpus is a gorpus. Alex is a wumpus. Is Alex a gorpus?";

fn spec(mode: ThoughtMode, n: usize, answer: usize) -> RunSpec {
    RunSpec {
        thoughts: ThoughtCount::Fixed { n },
        mode,
        max_new_tokens: answer,
        context_rows: 1,
        attention: false,
        forced_answer: Vec::new(),
        feeds: coconut_lens::thought::Feeds::none(),
        sampling: Default::default(),
    }
}

fn run_mode(m: &LoadedModel, spec: &RunSpec, iv: &Interventions) -> Run {
    let ids = m.tokenizer.encode_prompt(PROMPT).unwrap();
    run(
        &m.model,
        &m.tokenizer,
        &ids,
        spec,
        &m.model.hooks(iv).unwrap(),
    )
    .unwrap()
}

const MODES: [ThoughtMode; 4] = [
    ThoughtMode::Coconut,
    ThoughtMode::Soft {
        top_k: 4,
        top_p: 0.9,
    },
    ThoughtMode::Token,
    ThoughtMode::Pause,
];

/// Rebuilds every input embedding of a run and recomputes the whole sequence in one uncached
/// forward pass; the cached steps must agree at every recorded position.
fn check_cached_equals_recompute(m: &LoadedModel, iv: &Interventions) {
    let (model, tok) = (&m.model, &m.tokenizer);
    let hooks = model.hooks(iv).unwrap();
    for mode in MODES {
        let r = run_mode(m, &spec(mode, 3, 4), iv);
        let prompt_ids = tok.encode_prompt(PROMPT).unwrap();
        let mut prefix = prompt_ids.clone();
        if let Some(mk) = tok.coconut {
            prefix.push(mk.start);
        }
        let mut embeds = vec![model.embed_ids(&prefix).unwrap()];
        for t in &r.thoughts {
            let (e, _) = next_embeddings(
                model,
                tok,
                mode,
                &t.hidden.unsqueeze(0).unwrap(),
                &t.logits.unsqueeze(0).unwrap(),
            )
            .unwrap();
            embeds.push(e);
        }
        if let Some(mk) = tok.coconut {
            embeds.push(model.embed_ids(&[mk.end]).unwrap());
        }
        let answered = &r.answer_ids[..r.answer_ids.len().saturating_sub(1)];
        if !answered.is_empty() {
            embeds.push(model.embed_ids(answered).unwrap());
        }
        let all = Tensor::cat(&embeds, 0).unwrap();
        let steps: Vec<_> = r.thoughts.iter().chain(&r.answer).collect();
        let rows: Vec<usize> = steps.iter().map(|s| s.position).collect();
        let mut cache = KvCache::new(model.info.layers);
        let capture = Capture {
            resid_rows: rows.clone(),
            attention: false,
        };
        let full = model.forward(&all, &mut cache, &capture, &hooks).unwrap();
        let resid = full.resid.unwrap();
        for (i, s) in steps.iter().enumerate() {
            let ctx = format!("{mode:?} step {:?}", s.kind);
            let d = max_abs_diff(
                &s.resid,
                &resid.narrow(1, i, 1).unwrap().squeeze(1).unwrap(),
            );
            assert!(d < 1e-4, "{ctx}: residual differs by {d}");
            let d = max_abs_diff(&s.hidden, &full.hidden.get(s.position).unwrap());
            assert!(d < 1e-4, "{ctx}: hidden differs by {d}");
        }
    }
}

#[test]
fn cached_steps_equal_a_full_recompute_in_every_mode() {
    for fixture in ["gpt2-tiny", "llama-tiny-gqa"] {
        let m = load_dir(fixture);
        check_cached_equals_recompute(&m, &Interventions::default());
        let iv = Interventions {
            ablated_heads: [(0, 1), (1, 0)].into_iter().collect(),
            skipped_layers: [2].into_iter().collect(),
        };
        check_cached_equals_recompute(&m, &iv);
    }
}

/// Greedy decoding with no cache and no thought machinery: one full forward per token.
fn plain_greedy(m: &LoadedModel, ids: &[u32], n: usize) -> Vec<u32> {
    let hooks = Hooks::none(m.model.info.layers);
    let mut ids = ids.to_vec();
    let mut out = vec![];
    for _ in 0..n {
        let mut cache = KvCache::new(m.model.info.layers);
        let o = m
            .model
            .forward(
                &m.model.embed_ids(&ids).unwrap(),
                &mut cache,
                &Capture::default(),
                &hooks,
            )
            .unwrap();
        let last = o.hidden.get(ids.len() - 1).unwrap().unsqueeze(0).unwrap();
        let tok = m
            .model
            .unembed(&last)
            .unwrap()
            .argmax(D::Minus1)
            .unwrap()
            .squeeze(0)
            .unwrap()
            .to_scalar::<u32>()
            .unwrap();
        out.push(tok);
        ids.push(tok);
        if m.model.info.eos_ids.contains(&tok) {
            break;
        }
    }
    out
}

#[test]
fn token_mode_is_plain_greedy_decoding() {
    // gpt2-tiny-base has no Coconut tokens: token thoughts are ordinary chain-of-thought tokens.
    let m = load_dir("gpt2-tiny-base");
    assert!(m.tokenizer.coconut.is_none());
    let r = run_mode(
        &m,
        &spec(ThoughtMode::Token, 4, 5),
        &Interventions::default(),
    );
    let prompt = m.tokenizer.encode_prompt(PROMPT).unwrap();
    let thought_ids = r.input_ids[prompt.len()..].to_vec();
    assert_eq!(thought_ids.len(), 4);
    let mut decoded = thought_ids.clone();
    decoded.extend(&r.answer_ids);
    let greedy = plain_greedy(&m, &prompt, decoded.len());
    assert_eq!(decoded, greedy[..decoded.len()]);
}

#[test]
fn soft_mode_with_top_k_1_is_token_mode() {
    for fixture in ["gpt2-tiny", "llama-tiny-gqa"] {
        let m = load_dir(fixture);
        let iv = Interventions::default();
        let soft = run_mode(
            &m,
            &spec(
                ThoughtMode::Soft {
                    top_k: 1,
                    top_p: 1.0,
                },
                4,
                6,
            ),
            &iv,
        );
        let token = run_mode(&m, &spec(ThoughtMode::Token, 4, 6), &iv);
        assert_eq!(soft.answer_ids, token.answer_ids, "{fixture}");
        for (a, b) in soft.thoughts.iter().zip(&token.thoughts) {
            assert!(max_abs_diff(&a.hidden, &b.hidden) < 1e-5, "{fixture}");
        }
        // A wider mix is a different input.
        let wide = run_mode(
            &m,
            &spec(
                ThoughtMode::Soft {
                    top_k: 8,
                    top_p: 1.0,
                },
                4,
                6,
            ),
            &iv,
        );
        assert!(max_abs_diff(&wide.thoughts[1].hidden, &token.thoughts[1].hidden) > 1e-4);
    }
}

#[test]
fn pause_mode_is_the_latent_token_sequence() {
    let m = load_dir("gpt2-tiny");
    let mk = m.tokenizer.coconut.unwrap();
    let r = run_mode(
        &m,
        &spec(ThoughtMode::Pause, 3, 3),
        &Interventions::default(),
    );
    let mut ids = m.tokenizer.encode_prompt(PROMPT).unwrap();
    ids.push(mk.start);
    ids.extend([mk.latent.unwrap(); 3]);
    ids.push(mk.end);
    assert_eq!(r.input_ids, ids);
    // The same ids as plain tokens give the same answer.
    let greedy = plain_greedy(&m, &ids, r.answer_ids.len());
    assert_eq!(r.answer_ids, greedy);
    // Pause thoughts do not depend on each other's states: coconut mode differs.
    let c = run_mode(
        &m,
        &spec(ThoughtMode::Coconut, 3, 3),
        &Interventions::default(),
    );
    assert!(max_abs_diff(&c.thoughts[2].hidden, &r.thoughts[2].hidden) > 1e-3);
}

#[test]
fn pause_mode_needs_the_latent_token() {
    let m = load_dir("gpt2-tiny-base");
    let ids = m.tokenizer.encode_prompt(PROMPT).unwrap();
    let hooks = m.model.hooks(&Interventions::default()).unwrap();
    let err = run(
        &m.model,
        &m.tokenizer,
        &ids,
        &spec(ThoughtMode::Pause, 2, 2),
        &hooks,
    )
    .err()
    .unwrap();
    assert!(err.to_string().contains("<|latent|>"), "{err}");
}

#[test]
fn auto_thoughts_stop_on_low_entropy() {
    let m = load_dir("gpt2-tiny");
    let auto = |t: f32| RunSpec {
        thoughts: ThoughtCount::Auto {
            entropy_stop: t,
            max: 5,
        },
        ..spec(ThoughtMode::Coconut, 0, 2)
    };
    let iv = Interventions::default();
    // Every entropy is below 100 nats: stop after the first thought.
    assert_eq!(run_mode(&m, &auto(100.0), &iv).thoughts.len(), 1);
    // None is below 0: run to the cap.
    assert_eq!(run_mode(&m, &auto(0.0), &iv).thoughts.len(), 5);
    // A threshold between: stops at the first thought under it, and not before.
    let full = run_mode(&m, &spec(ThoughtMode::Coconut, 5, 2), &iv);
    let ents: Vec<f32> = full
        .thoughts
        .iter()
        .map(|t| coconut_lens::numeric::entropy(&t.logits).unwrap())
        .collect();
    let t = (ents[0] + ents.iter().cloned().fold(f32::INFINITY, f32::min)) / 2.0;
    let want = ents.iter().position(|&e| e < t).map_or(5, |i| i + 1);
    assert_eq!(run_mode(&m, &auto(t), &iv).thoughts.len(), want);
}

#[test]
fn a_cancelled_sweep_stops_with_an_error() {
    let m = load_dir("gpt2-tiny");
    let ids = m.tokenizer.encode_prompt(PROMPT).unwrap();
    let cancel = AtomicBool::new(true);
    let mut progress = |_: usize, _: usize| {};
    let mut ctl = SweepControl {
        progress: &mut progress,
        cancel: Some(&cancel),
    };
    let err = ablation_importance(
        &m.model,
        &m.tokenizer,
        &ids,
        &spec(ThoughtMode::Coconut, 2, 1),
        &Interventions::default(),
        true,
        &mut ctl,
    )
    .unwrap_err();
    assert!(err.to_string().contains("cancelled"));
}
