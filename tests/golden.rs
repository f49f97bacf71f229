//! Golden tests: the engine against Hugging Face transformers in f32 on tiny random models
//! (fixtures and references from `scripts/make_fixtures.py`).

mod common;

use coconut_lens::analysis::StepAnalysis;
use coconut_lens::analysis::document::analyze_prompt;
use coconut_lens::analysis::importance::{
    SweepControl, ablation_importance, ablation_importance_naive, gradient_importance,
    greedy_target,
};
use coconut_lens::model::LoadedModel;
use coconut_lens::thought::{RunSpec, ThoughtCount, ThoughtMode};
use common::*;

const TOL: f32 = 1e-4;

fn check_step(ctx: &str, got: &StepAnalysis, want: &GoldenStep) {
    assert_eq!(got.position, want.position, "{ctx}: position");
    assert_close(&format!("{ctx}: entropy"), got.entropy, want.entropy, TOL);
    assert_eq!(got.lens.len(), want.lens.len(), "{ctx}: lens layers");
    for (g, w) in got.lens.iter().zip(&want.lens) {
        assert_eq!(g.layer, w.layer);
        let ids: Vec<u32> = g.top.iter().map(|t| t.id).collect();
        assert_eq!(ids, w.ids, "{ctx}: top-k ids at layer {}", w.layer);
        for (t, p) in g.top.iter().zip(&w.probs) {
            assert_close(
                &format!("{ctx}: layer {} prob of {}", w.layer, t.id),
                t.prob,
                *p,
                TOL,
            );
        }
    }
    assert_eq!(
        got.angular.len(),
        want.angular.len(),
        "{ctx}: angular length"
    );
    for (l, (g, w)) in got.angular.iter().zip(&want.angular).enumerate() {
        assert_close(&format!("{ctx}: angular {l}"), *g, *w, TOL);
    }
}

/// Runs every case of `golden_name` on `loaded` and compares with the reference.
fn check_model(loaded: &LoadedModel, golden_name: &str) {
    let golden = golden(golden_name);
    assert!(!golden.cases.is_empty());
    for case in &golden.cases {
        let ctx = format!("{}/{}", golden.model, case.name);
        let hooks = loaded.model.hooks(&case.interventions()).unwrap();
        let spec = RunSpec {
            thoughts: ThoughtCount::Fixed { n: case.thoughts },
            mode: ThoughtMode::Coconut,
            max_new_tokens: case.max_new_tokens,
            context_rows: 1,
            attention: case.attention_last.is_some(),
        };
        let (run, doc) = analyze_prompt(
            &loaded.model,
            &loaded.tokenizer,
            &case.prompt,
            &spec,
            &hooks,
            case.top_k,
        )
        .unwrap();
        let ids: Vec<u32> = doc.tokens.iter().map(|t| t.id).collect();
        assert_eq!(ids, case.input_ids, "{ctx}: input ids");
        assert_eq!(
            doc.thoughts.len(),
            case.thought_steps.len(),
            "{ctx}: thoughts"
        );
        for (g, w) in doc.thoughts.iter().zip(&case.thought_steps) {
            if let Some(i) = w.index {
                assert_eq!(g.index, i);
            }
            check_step(&format!("{ctx} thought {}", g.index), &g.step, w);
        }
        check_step(
            &format!("{ctx} answer"),
            &doc.answer.first,
            &case.answer_first,
        );
        assert_eq!(doc.answer.ids, case.answer_ids, "{ctx}: answer ids");
        if let Some(blocks) = &case.blocks {
            assert_eq!(doc.blocks.len(), blocks.len(), "{ctx}: blocks");
            for (g, w) in doc.blocks.iter().zip(blocks) {
                assert_eq!((g.n, g.start), (w.n, w.start), "{ctx}: block n={}", w.n);
                assert_close(
                    &format!("{ctx}: block {} distance", w.n),
                    g.distance,
                    w.distance,
                    TOL,
                );
            }
        }
        if let Some(want) = &case.head_importance {
            check_importance(loaded, case, &spec, want, &ctx);
        }
        if let Some(want) = &case.attention_last {
            let att = run
                .answer_first()
                .attention
                .as_ref()
                .expect("attention recorded");
            for (l, (g, w)) in att.iter().zip(want).enumerate() {
                let g: Vec<Vec<f32>> = g.as_ref().expect("layer not skipped").to_vec2().unwrap();
                for (h, (gh, wh)) in g.iter().zip(w).enumerate() {
                    assert_eq!(gh.len(), wh.len());
                    for (j, (a, b)) in gh.iter().zip(wh).enumerate() {
                        assert_close(&format!("{ctx}: attention l{l} h{h} k{j}"), *a, *b, TOL);
                    }
                }
            }
        }
    }
}

/// Ablation KL and gate gradients within 1e-3 relative of the PyTorch-hook reference.
fn check_importance(
    loaded: &LoadedModel,
    case: &Case,
    spec: &RunSpec,
    want: &GoldenImportance,
    ctx: &str,
) {
    let (m, tok) = (&loaded.model, &loaded.tokenizer);
    let ids = tok.encode_prompt(&case.prompt).unwrap();
    let iv = case.interventions();
    let target = greedy_target(m, tok, &ids, spec, &iv).unwrap();
    assert_eq!(target, want.target, "{ctx}: gradient target");

    let mut calls = 0;
    let mut progress = |done: usize, total: usize| {
        calls += 1;
        assert!(done <= total);
    };
    let mut ctl = SweepControl {
        progress: &mut progress,
        cancel: None,
    };
    let fast = ablation_importance(m, tok, &ids, spec, &iv, true, &mut ctl).unwrap();
    assert!(calls > 0, "progress reported");
    for (l, row) in want.ablation.iter().enumerate() {
        for (h, w) in row.iter().enumerate() {
            assert_rel(
                &format!("{ctx}: ablation {l}.{h}"),
                fast.heads[l][h],
                *w,
                1e-3,
                1e-6,
            );
        }
    }
    for (l, w) in want.layer_ablation.iter().enumerate() {
        assert_rel(
            &format!("{ctx}: layer ablation {l}"),
            fast.layers[l],
            *w,
            1e-3,
            1e-6,
        );
    }
    for &(l, h) in &iv.ablated_heads {
        assert_eq!(fast.heads[l][h], 0.0, "{ctx}: already-ablated heads get 0");
    }
    // The fast sweep (prefix reuse, batched variants) equals a naive rerun per head.
    let naive = ablation_importance_naive(m, tok, &ids, spec, &iv).unwrap();
    for l in 0..naive.heads.len() {
        for h in 0..naive.heads[l].len() {
            assert_rel(
                &format!("{ctx}: fast vs naive {l}.{h}"),
                fast.heads[l][h],
                naive.heads[l][h],
                1e-4,
                1e-6,
            );
        }
        assert_rel(
            &format!("{ctx}: fast vs naive layer {l}"),
            fast.layers[l],
            naive.layers[l],
            1e-4,
            1e-6,
        );
    }

    let grad = gradient_importance(m, tok, &ids, spec, &iv, target).unwrap();
    for (l, row) in want.gradient.iter().enumerate() {
        for (h, w) in row.iter().enumerate() {
            assert_rel(
                &format!("{ctx}: gradient {l}.{h}"),
                grad[l][h],
                *w,
                1e-3,
                1e-6,
            );
        }
    }
}

#[test]
fn gpt2_matches_transformers() {
    check_model(&load_dir("gpt2-tiny"), "gpt2-tiny");
}

#[test]
fn gpt2_without_transformer_prefix_matches_transformers() {
    check_model(&load_dir("gpt2-tiny-noprefix"), "gpt2-tiny");
}

#[test]
fn llama_gqa_llama3_rope_untied_matches_transformers() {
    check_model(&load_dir("llama-tiny-gqa"), "llama-tiny-gqa");
}

#[test]
fn llama_tied_rope_parameters_matches_transformers() {
    check_model(&load_dir("llama-tiny-tied"), "llama-tiny-tied");
}

fn load_checkpoint(ckpt: &str, base: &str) -> LoadedModel {
    let src = coconut_lens::model::ModelSource::parse(
        model_dir(ckpt).to_str().unwrap(),
        Some(model_dir(base).to_str().unwrap()),
    )
    .unwrap();
    coconut_lens::model::load_model(&src, &candle_core::Device::Cpu, candle_core::DType::F32)
        .unwrap()
}

#[test]
fn coconut_gpt2_checkpoint_matches_its_folder() {
    let loaded = load_checkpoint("gpt2-tiny-coconut-ckpt/checkpoint_2", "gpt2-tiny-base");
    assert!(loaded.tokenizer.coconut.is_some(), "Coconut tokens added");
    check_model(&loaded, "gpt2-tiny");
}

#[test]
fn coconut_llama_checkpoint_matches_its_folder() {
    let loaded = load_checkpoint("llama-tiny-coconut-ckpt/checkpoint_1", "llama-tiny-base");
    check_model(&loaded, "llama-tiny-gqa");
}
