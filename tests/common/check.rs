//! The golden comparison: one run per golden case, checked against the transformers reference
//! (or against another run), with tolerances for the dtype. Shared by the CPU golden tests and
//! the GPU check (`tests/gpu.rs`).

use candle_core::{DType, Device};
use coconut_lens::analysis::StepAnalysis;
use coconut_lens::analysis::document::{AnalysisDocument, analyze_prompt};
use coconut_lens::analysis::importance::{
    SweepControl, ablation_importance, ablation_importance_naive, gradient_importance, scored_spec,
};
use coconut_lens::model::{LoadedModel, ModelSource, load_model};
use coconut_lens::thought::{Run, RunSpec, ThoughtCount, ThoughtMode};

use super::*;

/// How close a run must be to its reference.
#[derive(Debug, Clone, Copy)]
pub struct Tol {
    /// Absolute: lens probabilities (rank by rank), angular and block distances, attention.
    pub value: f32,
    /// Absolute, nats.
    pub entropy: f32,
    /// `None`: top-k ids, greedy answers, gradient target and block choices must match exactly
    /// (f32). `Some(m)`: a lower precision may break near-ties, so only the greedy choices
    /// where the reference is decisive must match: answers are compared token by token up to
    /// the first difference (after it the contexts differ), which must come at a step where
    /// the reference's top-1 probability led its top-2 by at most `m`; the gradient target
    /// must match when the first answer token is decisive. Lens ids are then not compared
    /// (their probabilities are). Needs an f32 reference run ([`check_model`]'s `reference`).
    pub decisive: Option<f32>,
    /// Ablation (head and layer) importance: |got − want| ≤ max(`importance_rel` × |want|,
    /// floor), the floor being `importance_floor` × the largest |want| of the matrix (1e-6
    /// when 0). Compared only when the reference's first answer token is decisive.
    pub importance_rel: f32,
    pub importance_floor: f32,
    /// Gradient importance, the same rule with this floor; `None`: only checked finite.
    pub gradient_floor: Option<f32>,
}

impl Tol {
    /// f32 against transformers (f32): the project's golden standard.
    pub const F32: Tol = Tol {
        value: 1e-4,
        entropy: 1e-4,
        decisive: None,
        importance_rel: 1e-3,
        importance_floor: 0.0,
        gradient_floor: Some(0.0),
    };
    /// bf16 weights and activations (softmax, lens, entropy and KL in f32) against the f32
    /// reference, calibrated on the CPU's bf16 path over every fixture (worst cases measured
    /// there, in the README's GPU section, are 1.5-2x below these). The fixtures are tiny
    /// random models with near-uniform distributions that bf16 moves a lot: rounding only the
    /// weights to bf16 (f32 compute) already changes 6 of their 21 Llama greedy answers, and
    /// bf16 gate gradients through 4 recycled thoughts deviate by up to 0.75 of the largest
    /// one, so the bf16 check only requires them finite (the f32 check carries their accuracy).
    pub const BF16: Tol = Tol {
        value: 0.3,
        entropy: 0.8,
        decisive: Some(0.06),
        importance_rel: 0.25,
        importance_floor: 0.15,
        gradient_floor: None,
    };
}

pub fn load_dir_on(name: &str, device: &Device, dtype: DType) -> LoadedModel {
    let src = ModelSource::Local(model_dir(name));
    load_model(&src, device, dtype).expect("fixture loads")
}

pub fn load_checkpoint_on(ckpt: &str, base: &str, device: &Device, dtype: DType) -> LoadedModel {
    let src = ModelSource::parse(
        model_dir(ckpt).to_str().unwrap(),
        Some(model_dir(base).to_str().unwrap()),
    )
    .unwrap();
    load_model(&src, device, dtype).unwrap()
}

/// Every fixture model with the golden file it must match: (label, loader, golden name).
pub fn fixture_models(
    device: &Device,
    dtype: DType,
) -> Vec<(&'static str, LoadedModel, &'static str)> {
    vec![
        (
            "gpt2-tiny",
            load_dir_on("gpt2-tiny", device, dtype),
            "gpt2-tiny",
        ),
        (
            "gpt2-tiny-noprefix",
            load_dir_on("gpt2-tiny-noprefix", device, dtype),
            "gpt2-tiny",
        ),
        (
            "llama-tiny-gqa",
            load_dir_on("llama-tiny-gqa", device, dtype),
            "llama-tiny-gqa",
        ),
        (
            "llama-tiny-tied",
            load_dir_on("llama-tiny-tied", device, dtype),
            "llama-tiny-tied",
        ),
        (
            "gpt2-tiny-coconut-ckpt",
            load_checkpoint_on(
                "gpt2-tiny-coconut-ckpt/checkpoint_2",
                "gpt2-tiny-base",
                device,
                dtype,
            ),
            "gpt2-tiny",
        ),
        (
            "llama-tiny-coconut-ckpt",
            load_checkpoint_on(
                "llama-tiny-coconut-ckpt/checkpoint_1",
                "llama-tiny-base",
                device,
                dtype,
            ),
            "llama-tiny-gqa",
        ),
    ]
}

/// The reference form of an analysed step, to compare two runs with [`check_step`].
pub fn golden_step(s: &StepAnalysis) -> GoldenStep {
    GoldenStep {
        index: None,
        position: s.position,
        entropy: s.entropy,
        lens: s
            .lens
            .iter()
            .map(|l| GoldenLens {
                layer: l.layer,
                ids: l.top.iter().map(|t| t.id).collect(),
                probs: l.top.iter().map(|t| t.prob).collect(),
            })
            .collect(),
        angular: s.angular.clone(),
    }
}

pub fn check_step(ctx: &str, got: &StepAnalysis, want: &GoldenStep, tol: &Tol) {
    assert_eq!(got.position, want.position, "{ctx}: position");
    assert_close(
        &format!("{ctx}: entropy"),
        got.entropy,
        want.entropy,
        tol.entropy,
    );
    assert_eq!(got.lens.len(), want.lens.len(), "{ctx}: lens layers");
    for (g, w) in got.lens.iter().zip(&want.lens) {
        assert_eq!(g.layer, w.layer);
        let ids: Vec<u32> = g.top.iter().map(|t| t.id).collect();
        if tol.decisive.is_none() {
            assert_eq!(ids, w.ids, "{ctx}: top-k ids at layer {}", w.layer);
        }
        assert_eq!(g.top.len(), w.probs.len(), "{ctx}: k at layer {}", w.layer);
        for (r, (t, p)) in g.top.iter().zip(&w.probs).enumerate() {
            assert_close(
                &format!("{ctx}: layer {} rank {r} prob (id {})", w.layer, t.id),
                t.prob,
                *p,
                tol.value,
            );
        }
    }
    assert_eq!(
        got.angular.len(),
        want.angular.len(),
        "{ctx}: angular length"
    );
    for (l, (g, w)) in got.angular.iter().zip(&want.angular).enumerate() {
        assert_close(&format!("{ctx}: angular {l}"), *g, *w, tol.value);
    }
}

fn spec_of(case: &Case) -> RunSpec {
    RunSpec {
        thoughts: ThoughtCount::Fixed { n: case.thoughts },
        mode: ThoughtMode::Coconut,
        max_new_tokens: case.max_new_tokens,
        context_rows: 1,
        attention: case.attention_last.is_some(),
        forced_answer: Vec::new(),
        feeds: coconut_lens::thought::Feeds::none(),
        sampling: Default::default(),
    }
}

/// Runs and analyses one golden case.
pub fn analyze_case(loaded: &LoadedModel, case: &Case) -> (Run, AnalysisDocument) {
    let hooks = loaded.model.hooks(&case.interventions()).unwrap();
    analyze_prompt(
        &loaded.model,
        &loaded.tokenizer,
        &case.prompt,
        &spec_of(case),
        &hooks,
        case.top_k,
    )
    .unwrap()
}

/// Top-1 minus top-2 probability of each answer step of a run: how decisive each greedy choice was.
pub fn answer_margins(run: &Run) -> Vec<f32> {
    run.answer
        .iter()
        .map(|s| {
            let logits = s.logits.to_dtype(DType::F32).unwrap();
            let p: Vec<f32> = candle_nn::ops::softmax_last_dim(&logits)
                .unwrap()
                .to_vec1()
                .unwrap();
            let (mut a, mut b) = (0f32, 0f32);
            for &x in &p {
                if x > a {
                    b = a;
                    a = x;
                } else if x > b {
                    b = x;
                }
            }
            a - b
        })
        .collect()
}

/// Greedy answers agree wherever the reference was decisive: compared token by token up to the
/// first difference, which must come at a step whose reference margin (top-1 − top-2
/// probability) is at most `margin`. Returns how many leading tokens agree.
pub fn check_greedy_decisive(
    ctx: &str,
    got: &[u32],
    want: &[u32],
    want_margins: &[f32],
    margin: f32,
) -> usize {
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        if g != w {
            assert!(
                want_margins[i] <= margin,
                "{ctx}: answer token {i} is {g}, the reference's {w} led its runner-up by {} > {margin}",
                want_margins[i]
            );
            return i;
        }
    }
    assert_eq!(got.len(), want.len(), "{ctx}: answer length");
    got.len()
}

/// Runs every case of `golden_name` on `loaded` and compares with the transformers reference.
/// With a [`Tol::decisive`] tolerance, `reference` is the same fixture run in f32 on the CPU
/// (which matches the golden file within [`Tol::F32`]): it tells which greedy choices were
/// decisive.
pub fn check_model(
    loaded: &LoadedModel,
    golden_name: &str,
    tol: &Tol,
    reference: Option<&LoadedModel>,
) {
    let golden = golden(golden_name);
    assert!(!golden.cases.is_empty());
    if tol.decisive.is_some() {
        assert!(
            reference.is_some(),
            "a low-precision check needs an f32 reference run"
        );
    }
    for case in &golden.cases {
        let ctx = format!("{}/{}", golden.model, case.name);
        let spec = spec_of(case);
        let (run, doc) = analyze_case(loaded, case);
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
            check_step(&format!("{ctx} thought {}", g.index), &g.step, w, tol);
        }
        check_step(
            &format!("{ctx} answer"),
            &doc.answer.first,
            &case.answer_first,
            tol,
        );
        let first_decisive = match (tol.decisive, reference) {
            (Some(m), Some(reference)) => {
                let (ref_run, ref_doc) = analyze_case(reference, case);
                assert_eq!(ref_doc.answer.ids, case.answer_ids, "{ctx}: f32 reference");
                let margins = answer_margins(&ref_run);
                check_greedy_decisive(&ctx, &doc.answer.ids, &case.answer_ids, &margins, m);
                margins[0] > m
            }
            _ => {
                assert_eq!(doc.answer.ids, case.answer_ids, "{ctx}: answer ids");
                true
            }
        };
        if let Some(blocks) = &case.blocks {
            assert_eq!(doc.blocks.len(), blocks.len(), "{ctx}: blocks");
            for (g, w) in doc.blocks.iter().zip(blocks) {
                assert_close(
                    &format!("{ctx}: block {} distance", w.n),
                    g.distance,
                    w.distance,
                    tol.value,
                );
                if tol.decisive.is_none() {
                    assert_eq!((g.n, g.start), (w.n, w.start), "{ctx}: block n={}", w.n);
                }
            }
        }
        if let Some(want) = &case.head_importance {
            check_importance(loaded, case, &spec, want, &ctx, tol, first_decisive);
        }
        if let Some(want) = &case.attention_last {
            let att = run
                .answer_first()
                .attention
                .as_ref()
                .expect("attention recorded");
            for (l, (g, w)) in att.iter().zip(want).enumerate() {
                let g = g.as_ref().expect("layer not skipped");
                let g: Vec<Vec<f32>> = g.to_dtype(DType::F32).unwrap().to_vec2().unwrap();
                for (h, (gh, wh)) in g.iter().zip(w).enumerate() {
                    assert_eq!(gh.len(), wh.len());
                    for (j, (a, b)) in gh.iter().zip(wh).enumerate() {
                        assert_close(
                            &format!("{ctx}: attention l{l} h{h} k{j}"),
                            *a,
                            *b,
                            tol.value,
                        );
                    }
                }
            }
        }
    }
}

/// `frac` × the largest |value| (1e-6 when `frac` is 0, and at least 1e-6).
fn importance_floor(want: &[Vec<f32>], frac: f32) -> f32 {
    let max = want.iter().flatten().fold(0f32, |m, v| m.max(v.abs()));
    (frac * max).max(1e-6)
}

/// Ablation KL and gate gradients against the PyTorch-hook reference, the gradient taken for
/// the reference's target. `decisive`: the reference's first answer token (the target and the
/// distribution the KL compares) is not a near-tie; otherwise a low-precision run may follow
/// another answer, and only the fast sweep's agreement with the naive one and finiteness are
/// checked.
fn check_importance(
    loaded: &LoadedModel,
    case: &Case,
    spec: &RunSpec,
    want: &GoldenImportance,
    ctx: &str,
    tol: &Tol,
    decisive: bool,
) {
    let (m, tok) = (&loaded.model, &loaded.tokenizer);
    let ids = tok.encode_prompt(&case.prompt).unwrap();
    let iv = case.interventions();
    let (_, target) = scored_spec(m, tok, &ids, spec, &iv, 0).unwrap();
    if decisive {
        assert_eq!(target, want.target, "{ctx}: gradient target");
    }

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
    let all_finite = |v: &[Vec<f32>]| v.iter().flatten().all(|x| x.is_finite());
    assert!(all_finite(&fast.heads), "{ctx}: ablation importance finite");
    assert!(
        all_finite(std::slice::from_ref(&fast.layers)),
        "{ctx}: layer importance finite"
    );
    if decisive {
        let floor = importance_floor(&want.ablation, tol.importance_floor);
        for (l, row) in want.ablation.iter().enumerate() {
            for (h, w) in row.iter().enumerate() {
                assert_rel(
                    &format!("{ctx}: ablation {l}.{h}"),
                    fast.heads[l][h],
                    *w,
                    tol.importance_rel,
                    floor,
                );
            }
        }
        let floor = importance_floor(
            std::slice::from_ref(&want.layer_ablation),
            tol.importance_floor,
        );
        for (l, w) in want.layer_ablation.iter().enumerate() {
            assert_rel(
                &format!("{ctx}: layer ablation {l}"),
                fast.layers[l],
                *w,
                tol.importance_rel,
                floor,
            );
        }
    }
    for &(l, h) in &iv.ablated_heads {
        assert_eq!(fast.heads[l][h], 0.0, "{ctx}: already-ablated heads get 0");
    }
    // The fast sweep (prefix reuse, batched variants) equals a naive rerun per head.
    let naive = ablation_importance_naive(m, tok, &ids, spec, &iv).unwrap();
    let (rel, head_floor, layer_floor) = if tol.decisive.is_none() {
        (1e-4, 1e-6, 1e-6)
    } else {
        (
            tol.importance_rel,
            importance_floor(&naive.heads, tol.importance_floor),
            importance_floor(std::slice::from_ref(&naive.layers), tol.importance_floor),
        )
    };
    for l in 0..naive.heads.len() {
        for h in 0..naive.heads[l].len() {
            assert_rel(
                &format!("{ctx}: fast vs naive {l}.{h}"),
                fast.heads[l][h],
                naive.heads[l][h],
                rel,
                head_floor,
            );
        }
        assert_rel(
            &format!("{ctx}: fast vs naive layer {l}"),
            fast.layers[l],
            naive.layers[l],
            rel,
            layer_floor,
        );
    }

    let grad = gradient_importance(m, tok, &ids, spec, &iv, want.target).unwrap();
    assert!(all_finite(&grad), "{ctx}: gradient importance finite");
    if let (true, Some(frac)) = (decisive, tol.gradient_floor) {
        let floor = importance_floor(&want.gradient, frac);
        for (l, row) in want.gradient.iter().enumerate() {
            for (h, w) in row.iter().enumerate() {
                assert_rel(
                    &format!("{ctx}: gradient {l}.{h}"),
                    grad[l][h],
                    *w,
                    tol.importance_rel,
                    floor,
                );
            }
        }
    }
}

/// Two analyses of the same case (e.g. GPU against CPU) agree within `tol`.
pub fn check_documents(ctx: &str, got: &AnalysisDocument, want: &AnalysisDocument, tol: &Tol) {
    let ids = |d: &AnalysisDocument| d.tokens.iter().map(|t| t.id).collect::<Vec<_>>();
    assert_eq!(ids(got), ids(want), "{ctx}: input ids");
    assert_eq!(got.thoughts.len(), want.thoughts.len(), "{ctx}: thoughts");
    for (g, w) in got.thoughts.iter().zip(&want.thoughts) {
        check_step(
            &format!("{ctx} thought {}", g.index),
            &g.step,
            &golden_step(&w.step),
            tol,
        );
    }
    check_step(
        &format!("{ctx} answer"),
        &got.answer.first,
        &golden_step(&want.answer.first),
        tol,
    );
    assert_eq!(got.answer.ids, want.answer.ids, "{ctx}: answer ids");
    assert_eq!(got.blocks.len(), want.blocks.len(), "{ctx}: blocks");
    for (g, w) in got.blocks.iter().zip(&want.blocks) {
        assert_close(
            &format!("{ctx}: block {} distance", w.n),
            g.distance,
            w.distance,
            tol.value,
        );
    }
}
