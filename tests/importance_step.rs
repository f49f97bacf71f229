//! Head importance scored at a later answer token: the earlier answer tokens are forced to the
//! base run's, the fast sweep still equals a naive rerun per head, and the gate gradient is the
//! derivative a finite difference measures.

mod common;

use candle_core::{D, IndexOp, Tensor};
use coconut_lens::analysis::importance::{
    SweepControl, ablation_importance, ablation_importance_naive, gradient_importance, scored_spec,
    scored_spec_of_answer,
};
use coconut_lens::model::{Interventions, LoadedModel};
use coconut_lens::thought::{RunSpec, ThoughtCount, ThoughtMode, run};
use common::*;

const PROMPT: &str =
    "Every wumpus is a yumpus. Every yumpus is a gorpus. Alex is a wumpus. Is Alex a gorpus?";

fn spec() -> RunSpec {
    RunSpec {
        thoughts: ThoughtCount::Fixed { n: 3 },
        mode: ThoughtMode::Coconut,
        max_new_tokens: 8,
        context_rows: 1,
        attention: false,
        forced_answer: Vec::new(),
        feeds: coconut_lens::thought::Feeds::none(),
        sampling: Default::default(),
    }
}

fn ablated() -> Interventions {
    let mut iv = Interventions::default();
    iv.ablated_heads.insert((1, 0));
    iv
}

/// −log p(target) at answer token `forced.len()`, with the head gates `gates` `[L, H]`.
fn loss_with_gates(m: &LoadedModel, scored: &RunSpec, gates: Tensor, target: u32) -> f64 {
    let ids = m.tokenizer.encode_prompt(PROMPT).unwrap();
    let mut hooks = m.model.hooks(&ablated()).unwrap();
    hooks.gates = Some(gates);
    let spec = RunSpec {
        max_new_tokens: scored.forced_answer.len() + 1,
        ..scored.clone()
    };
    let r = run(&m.model, &m.tokenizer, &ids, &spec, &hooks).unwrap();
    let logits = &r.answer[scored.forced_answer.len()].logits;
    let lp = candle_nn::ops::log_softmax(logits, D::Minus1).unwrap();
    -(lp.i(target as usize).unwrap().to_scalar::<f32>().unwrap() as f64)
}

#[test]
fn forced_answer_tokens_replace_the_greedy_ones_and_nothing_else() {
    let m = load_dir("gpt2-tiny");
    let ids = m.tokenizer.encode_prompt(PROMPT).unwrap();
    let hooks = m.model.hooks(&Interventions::default()).unwrap();
    let greedy = run(&m.model, &m.tokenizer, &ids, &spec(), &hooks).unwrap();
    assert!(
        greedy.answer_ids.len() >= 4,
        "a long enough answer to force"
    );

    // Forcing the greedy prefix reproduces the greedy run.
    let same = RunSpec {
        forced_answer: greedy.answer_ids[..3].to_vec(),
        ..spec()
    };
    let r = run(&m.model, &m.tokenizer, &ids, &same, &hooks).unwrap();
    assert_eq!(r.answer_ids, greedy.answer_ids);
    for (a, b) in r.answer.iter().zip(&greedy.answer) {
        let d = (&a.logits - &b.logits).unwrap().abs().unwrap();
        assert_eq!(d.max_all().unwrap().to_scalar::<f32>().unwrap(), 0.0);
    }

    // Forcing another token changes what follows, and the forced ids are the answer's.
    let other = (0..m.model.info.vocab as u32)
        .find(|&t| t != greedy.answer_ids[0] && !m.model.info.eos_ids.contains(&t))
        .unwrap();
    let forced = RunSpec {
        forced_answer: vec![other],
        ..spec()
    };
    let r = run(&m.model, &m.tokenizer, &ids, &forced, &hooks).unwrap();
    assert_eq!(r.answer_ids[0], other);
    let d = (&r.answer[1].logits - &greedy.answer[1].logits)
        .unwrap()
        .abs()
        .unwrap();
    assert!(d.max_all().unwrap().to_scalar::<f32>().unwrap() > 1e-3);
}

#[test]
fn a_later_answer_step_is_scored_with_the_base_answer_forced() {
    let m = load_dir("gpt2-tiny");
    let (model, tok) = (&m.model, &m.tokenizer);
    let ids = tok.encode_prompt(PROMPT).unwrap();
    let iv = ablated();
    let base = run(model, tok, &ids, &spec(), &model.hooks(&iv).unwrap()).unwrap();

    let (scored, target) = scored_spec(model, tok, &ids, &spec(), &iv, 2).unwrap();
    assert_eq!(scored.forced_answer, base.answer_ids[..2]);
    assert_eq!(target, base.answer_ids[2]);
    // The same from an answer already computed (what the explorer does).
    let (again, again_target) = scored_spec_of_answer(model, &spec(), &base.answer_ids, 2).unwrap();
    assert_eq!(again.forced_answer, scored.forced_answer);
    assert_eq!(again_target, target);

    let mut progress = |_: usize, _: usize| {};
    let mut ctl = SweepControl {
        progress: &mut progress,
        cancel: None,
    };
    let fast = ablation_importance(model, tok, &ids, &scored, &iv, true, &mut ctl).unwrap();
    let naive = ablation_importance_naive(model, tok, &ids, &scored, &iv).unwrap();
    for (l, (f, n)) in fast.heads.iter().zip(&naive.heads).enumerate() {
        for (h, (a, b)) in f.iter().zip(n).enumerate() {
            assert!(
                (a - b).abs() <= 1e-4 * b.abs().max(1e-3),
                "head {l}.{h}: fast {a} vs naive {b}"
            );
        }
    }
    for (l, (a, b)) in fast.layers.iter().zip(&naive.layers).enumerate() {
        assert!(
            (a - b).abs() <= 1e-4 * b.abs().max(1e-3),
            "layer {l}: {a} vs {b}"
        );
    }
    assert_eq!(fast.heads[1][0], 0.0, "the user's ablation scores 0");

    // Another position gives other importances: the step is really used.
    let (first, _) = scored_spec(model, tok, &ids, &spec(), &iv, 0).unwrap();
    assert!(first.forced_answer.is_empty());
    let mut ctl = SweepControl {
        progress: &mut progress,
        cancel: None,
    };
    let at_first = ablation_importance(model, tok, &ids, &first, &iv, true, &mut ctl).unwrap();
    let differs = at_first
        .heads
        .iter()
        .flatten()
        .zip(fast.heads.iter().flatten())
        .any(|(a, b)| (a - b).abs() > 1e-3 * a.abs().max(b.abs()).max(1e-6));
    assert!(differs, "step 0 and step 2 give the same importances");
}

#[test]
fn the_gate_gradient_at_a_later_step_matches_finite_differences() {
    let m = load_dir("gpt2-tiny");
    let (model, tok) = (&m.model, &m.tokenizer);
    let ids = tok.encode_prompt(PROMPT).unwrap();
    let iv = ablated();
    let (scored, target) = scored_spec(model, tok, &ids, &spec(), &iv, 2).unwrap();
    let grad = gradient_importance(model, tok, &ids, &scored, &iv, target).unwrap();

    let base = model.gate_tensor(&iv).unwrap();
    let (layers, heads) = (model.info.layers, model.info.heads);
    let eps = 1e-2f32;
    for (l, h) in [(0, 0), (0, 1), (1, 1), (layers - 1, heads - 1)] {
        let bump = |delta: f32| {
            let mut g: Vec<f32> = base.flatten_all().unwrap().to_vec1().unwrap();
            g[l * heads + h] += delta;
            Tensor::from_vec(g, (layers, heads), model.device()).unwrap()
        };
        let fd = (loss_with_gates(&m, &scored, bump(eps), target)
            - loss_with_gates(&m, &scored, bump(-eps), target))
            / (2.0 * eps as f64);
        let got = grad[l][h] as f64;
        assert!(
            (got - fd.abs()).abs() <= 2e-2 * fd.abs() + 1e-4,
            "head {l}.{h}: gradient {got} vs finite difference {fd}"
        );
    }
}

#[test]
fn a_step_past_the_answer_is_a_clear_error() {
    let m = load_dir("gpt2-tiny");
    let ids = m.tokenizer.encode_prompt(PROMPT).unwrap();
    let err = scored_spec(
        &m.model,
        &m.tokenizer,
        &ids,
        &spec(),
        &Interventions::default(),
        40,
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("cannot be scored"),
        "unexpected error: {err}"
    );
}
