//! Interventions on continuous thoughts: each operation does what defines it against the
//! runner driven by hand, patching from the same prompt changes nothing, the patching sweep
//! equals one-by-one runs, noise is reproducible, and bad input gives one line.

mod common;

use candle_core::{IndexOp, Tensor};
use coconut_lens::analysis::effect::{Candidates, effect, patch_sweep};
use coconut_lens::analysis::run::RunParams;
use coconut_lens::model::{Capture, Hooks, Interventions, KvCache, LoadedModel};
use coconut_lens::thought::intervene::prepare;
use coconut_lens::thought::{
    Feeds, ResidPatch, Run, RunSpec, ThoughtCount, ThoughtEdits, ThoughtMeans, ThoughtMode,
    ThoughtOp, run,
};
use common::*;

const PROMPT: &str = "Every wumpus is a yumpus. Every yumpus is a gorpus. Every bompus is a zumpus. Alex is a wumpus. Is Alex a gorpus or zumpus?";
/// The same words in another order: the other candidate is reachable.
const OTHER: &str = "Every wumpus is a yumpus. Every yumpus is a zumpus. Every bompus is a gorpus. Alex is a wumpus. Is Alex a gorpus or zumpus?";
const FIXTURES: [&str; 2] = ["gpt2-tiny", "llama-tiny-gqa"];
const THOUGHTS: usize = 3;

fn spec() -> RunSpec {
    RunSpec {
        thoughts: ThoughtCount::Fixed { n: THOUGHTS },
        mode: ThoughtMode::Coconut,
        max_new_tokens: 5,
        context_rows: 1,
        attention: false,
        forced_answer: Vec::new(),
        feeds: Feeds::none(),
        sampling: Default::default(),
    }
}

fn edits(ops: &str, resid: &str, patch_prompt: Option<&str>) -> ThoughtEdits {
    ThoughtEdits {
        ops: ThoughtEdits::parse_ops(ops).unwrap(),
        resid: ThoughtEdits::parse_resid(resid).unwrap(),
        patch_prompt: patch_prompt.map(str::to_string),
        ..ThoughtEdits::default()
    }
}

fn run_with(m: &LoadedModel, prompt: &str, e: &ThoughtEdits) -> Run {
    let ids = m.tokenizer.encode_prompt(prompt).unwrap();
    let hooks = Hooks::none(m.model.info.layers);
    let (s, h) = prepare(&m.model, &m.tokenizer, &ids, &spec(), &hooks, e).unwrap();
    run(&m.model, &m.tokenizer, &ids, &s, &h).unwrap()
}

/// Every recorded step of two runs is the same, bit for bit.
fn assert_same_run(a: &Run, b: &Run, what: &str) {
    assert_eq!(a.answer_ids, b.answer_ids, "{what}: answers differ");
    for (x, y) in a
        .thoughts
        .iter()
        .chain(&a.answer)
        .zip(b.thoughts.iter().chain(&b.answer))
    {
        assert_eq!(
            max_abs_diff(&x.logits, &y.logits),
            0.0,
            "{what}: {:?}",
            x.kind
        );
        assert_eq!(
            max_abs_diff(&x.resid, &y.resid),
            0.0,
            "{what}: {:?}",
            x.kind
        );
    }
}

/// The runner by hand: prefix, thoughts fed back (thought `k` replaced by `feed(k, thought)`),
/// end marker, greedy answer of `n` tokens. Returns the answer ids and the first answer logits.
fn by_hand(
    m: &LoadedModel,
    prompt: &str,
    n: usize,
    feed: impl Fn(usize, &Tensor) -> Tensor,
) -> (Vec<u32>, Tensor) {
    let (model, tok) = (&m.model, &m.tokenizer);
    let marks = tok.coconut.expect("the fixture has the Coconut tokens");
    let hooks = Hooks::none(model.info.layers);
    let none = Capture::default();
    let mut ids = tok.encode_prompt(prompt).unwrap();
    ids.push(marks.start);
    let mut cache = KvCache::new(model.info.layers);
    let out = model
        .forward(&model.embed_ids(&ids).unwrap(), &mut cache, &none, &hooks)
        .unwrap();
    let mut hidden = out.hidden.i(ids.len() - 1).unwrap();
    for k in 1..=THOUGHTS {
        let fed = feed(k, &hidden).unsqueeze(0).unwrap();
        let out = model.forward(&fed, &mut cache, &none, &hooks).unwrap();
        hidden = out.hidden.i(0).unwrap();
    }
    let end = model.embed_ids(&[marks.end]).unwrap();
    hidden = model
        .forward(&end, &mut cache, &none, &hooks)
        .unwrap()
        .hidden
        .i(0)
        .unwrap();
    let first = model
        .unembed(&hidden.unsqueeze(0).unwrap())
        .unwrap()
        .squeeze(0)
        .unwrap();
    let mut logits = first.clone();
    let mut answer = Vec::new();
    for _ in 0..n {
        let t = logits.argmax(0).unwrap().to_scalar::<u32>().unwrap();
        answer.push(t);
        if model.info.eos_ids.contains(&t) || answer.len() == n {
            break;
        }
        let e = model.embed_ids(&[t]).unwrap();
        hidden = model
            .forward(&e, &mut cache, &none, &hooks)
            .unwrap()
            .hidden
            .i(0)
            .unwrap();
        logits = model
            .unembed(&hidden.unsqueeze(0).unwrap())
            .unwrap()
            .squeeze(0)
            .unwrap();
    }
    (answer, first)
}

#[test]
fn zero_and_scale_equal_feeding_the_vector_by_hand() {
    for fixture in FIXTURES {
        let m = load_dir(fixture);
        let r = run_with(&m, PROMPT, &edits("T2=zero", "", None));
        let (ids, first) = by_hand(&m, PROMPT, 5, |k, h| {
            if k == 2 {
                h.zeros_like().unwrap()
            } else {
                h.clone()
            }
        });
        assert_eq!(r.answer_ids, ids, "{fixture}: zero");
        assert!(
            max_abs_diff(&r.answer[0].logits, &first) < 1e-5,
            "{fixture}: zero"
        );
        // The thought's own record is what the model computed; its slot received zeros.
        assert_eq!(
            r.fed[1]
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap(),
            0.0
        );
        let base = run_with(&m, PROMPT, &ThoughtEdits::default());
        assert_eq!(
            max_abs_diff(&r.thoughts[1].hidden, &base.thoughts[1].hidden),
            0.0
        );

        let r = run_with(&m, PROMPT, &edits("T1=scale:0.5,T3=scale:2", "", None));
        let (ids, first) = by_hand(&m, PROMPT, 5, |k, h| match k {
            1 => (h * 0.5).unwrap(),
            3 => (h * 2.0).unwrap(),
            _ => h.clone(),
        });
        assert_eq!(r.answer_ids, ids, "{fixture}: scale");
        assert!(
            max_abs_diff(&r.answer[0].logits, &first) < 1e-5,
            "{fixture}: scale"
        );
        // scale:1 and noise:0 are the base run.
        assert_same_run(
            &run_with(&m, PROMPT, &edits("T1=scale:1,T2=noise:0", "", None)),
            &base,
            fixture,
        );
    }
}

#[test]
fn mean_feeds_the_file_or_the_mean_embedding() {
    let m = load_dir("gpt2-tiny");
    let d = m.model.info.d_model;
    let mean_embedding: Vec<f32> = m.model.mean_embedding().unwrap().to_vec1().unwrap();
    let r = run_with(&m, PROMPT, &edits("T2=mean", "", None));
    assert_eq!(r.fed[1].to_vec1::<f32>().unwrap(), mean_embedding);

    let means = ThoughtMeans {
        means: (0..THOUGHTS)
            .map(|k| vec![k as f32 * 0.1 + 0.05; d])
            .collect(),
        n: 7,
    };
    let dir = scratch("interventions-means");
    let file = dir.join("means.safetensors");
    std::fs::write(&file, means.to_bytes().unwrap()).unwrap();
    assert_eq!(ThoughtMeans::read(&file).unwrap(), means);
    let e = ThoughtEdits {
        means_file: Some(file.display().to_string()),
        ..edits("T3=mean", "", None)
    };
    let r = run_with(&m, PROMPT, &e);
    assert_eq!(r.fed[2].to_vec1::<f32>().unwrap(), means.means[2]);
    let (ids, _) = by_hand(&m, PROMPT, 5, |k, h| {
        if k == 3 {
            Tensor::new(means.means[2].as_slice(), h.device()).unwrap()
        } else {
            h.clone()
        }
    });
    assert_eq!(r.answer_ids, ids);
}

#[test]
fn patching_every_thought_from_the_same_prompt_reproduces_the_base_run() {
    for fixture in FIXTURES {
        let m = load_dir(fixture);
        let base = run_with(&m, PROMPT, &ThoughtEdits::default());
        let all = run_with(
            &m,
            PROMPT,
            &edits("T1=patch,T2=patch,T3=patch", "", Some(PROMPT)),
        );
        assert_same_run(&all, &base, fixture);
        // Every (thought, layer) of the residual stream at once, from an identical prompt.
        let every: Vec<String> = (1..=THOUGHTS)
            .flat_map(|k| (0..=m.model.info.layers).map(move |l| format!("{l}@T{k}")))
            .collect();
        let resid = run_with(&m, PROMPT, &edits("", &every.join(","), Some(PROMPT)));
        assert_same_run(&resid, &base, fixture);
        // From another prompt, a patch does change the run: the thought fed is the other's.
        let other = run_with(&m, OTHER, &ThoughtEdits::default());
        let patched = run_with(&m, PROMPT, &edits("T1=patch", "", Some(OTHER)));
        assert_eq!(max_abs_diff(&patched.fed[0], &other.fed[0]), 0.0);
        assert!(max_abs_diff(&patched.thoughts[1].hidden, &base.thoughts[1].hidden) > 0.0);
        // A patch of the last layer at thought k's position is thought k itself.
        let top = m.model.info.layers;
        let last = run_with(&m, PROMPT, &edits("", &format!("{top}@T2"), Some(OTHER)));
        assert!(max_abs_diff(&last.thoughts[1].hidden, &other.thoughts[1].hidden) < 1e-5);
    }
}

#[test]
fn noise_is_reproducible_with_its_seed() {
    let m = load_dir("llama-tiny-gqa");
    let with_seed = |seed: u64, op: &str| {
        let e = ThoughtEdits {
            seed,
            ..edits(op, "", None)
        };
        run_with(&m, PROMPT, &e)
    };
    let a = with_seed(7, "T2=noise:0.5");
    let b = with_seed(7, "T2=noise:0.5");
    let c = with_seed(8, "T2=noise:0.5");
    assert_same_run(&a, &b, "same seed");
    assert!(
        max_abs_diff(&a.fed[1], &c.fed[1]) > 0.0,
        "another seed draws other noise"
    );
    // noise:s adds noise of s times the thought's RMS; random:s is that noise alone.
    let base = run_with(&m, PROMPT, &ThoughtEdits::default());
    let thought = &base.fed[1];
    let alone = with_seed(7, "T2=random:0.5");
    let added = (&a.fed[1] - thought).unwrap();
    assert!(max_abs_diff(&added, &alone.fed[1]) < 1e-5);
    let rms = |t: &Tensor| {
        t.sqr()
            .unwrap()
            .mean_all()
            .unwrap()
            .sqrt()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    };
    let ratio = rms(&alone.fed[1]) / rms(thought);
    assert!(
        (0.25..1.0).contains(&ratio),
        "noise RMS ratio {ratio} for s = 0.5"
    );
}

fn params(prompt: &str, e: ThoughtEdits) -> RunParams {
    RunParams {
        prompt: prompt.to_string(),
        thoughts: ThoughtCount::Fixed { n: THOUGHTS },
        mode: ThoughtMode::Coconut,
        max_new_tokens: 5,
        top_k: 3,
        context_tokens: 0,
        interventions: Interventions::default(),
        thought_edits: e,
        sampling: Default::default(),
    }
}

#[test]
fn the_patching_sweep_equals_one_by_one_runs() {
    for fixture in FIXTURES {
        let m = load_dir(fixture);
        let (model, tok) = (&m.model, &m.tokenizer);
        let p = params(PROMPT, ThoughtEdits::default());
        let mut seen = 0;
        let sweep = patch_sweep(model, tok, &p, OTHER, &mut |done, _| seen = done, None).unwrap();
        let layers = model.info.layers + 1;
        assert_eq!(seen, THOUGHTS * layers);
        let cands = Candidates::of_prompt(PROMPT, tok)
            .unwrap()
            .expect("two candidates");
        let ids = tok.encode_prompt(PROMPT).unwrap();
        let base = run_with(&m, PROMPT, &ThoughtEdits::default());
        let forced = base.answer_ids[..=sweep.scored_step].to_vec();
        for k in 1..=THOUGHTS {
            for l in 0..layers {
                let e = edits("", &format!("{l}@T{k}"), Some(OTHER));
                let hooks = Hooks::none(model.info.layers);
                let (s, h) = prepare(model, tok, &ids, &spec(), &hooks, &e).unwrap();
                let s = RunSpec {
                    forced_answer: forced.clone(),
                    max_new_tokens: forced.len(),
                    ..s
                };
                let r = run(model, tok, &ids, &s, &h).unwrap();
                let lp =
                    coconut_lens::numeric::log_softmax_host(&r.answer[sweep.scored_step].logits)
                        .unwrap();
                assert_eq!(
                    sweep.logit_diff[k - 1][l],
                    cands.logit_diff(&lp),
                    "{fixture} {l}@T{k}"
                );
            }
        }
        // From the same prompt nothing is restored or lost: every cell is the corrupted run's.
        let same = patch_sweep(model, tok, &p, PROMPT, &mut |_, _| {}, None).unwrap();
        assert!(
            same.logit_diff
                .iter()
                .flatten()
                .all(|&d| d == same.corrupted)
        );
        assert_eq!(same.clean, same.corrupted);
    }
}

#[test]
fn effects_compare_against_the_base_run() {
    let m = load_dir("gpt2-tiny");
    let (model, tok) = (&m.model, &m.tokenizer);
    let none = effect(
        model,
        tok,
        &params(PROMPT, edits("T1=patch", "", Some(PROMPT))),
    )
    .unwrap();
    assert!(!none.answer_changed);
    assert_eq!(
        (none.kl_first, none.kl_scored, none.delta_logprob),
        (0.0, 0.0, 0.0)
    );
    let c = none.candidates.expect("the prompt names two candidates");
    assert_eq!(c.base, c.intervened);

    let zero = effect(
        model,
        tok,
        &params(PROMPT, edits("T1=zero,T2=zero,T3=zero", "", None)),
    )
    .unwrap();
    assert!(zero.kl_first > 0.0 && zero.kl_scored > 0.0);
    assert!(zero.delta_logprob.is_finite() && zero.delta_logprob != 0.0);
    let c = zero.candidates.clone().unwrap();
    assert_ne!(c.base, c.intervened);
    // JSON carries every measure.
    let v = serde_json::to_value(&zero).unwrap();
    for key in [
        "answer_changed",
        "kl_first",
        "kl_scored",
        "delta_logprob",
        "candidates",
    ] {
        assert!(v.get(key).is_some(), "{key} missing: {v}");
    }
}

#[test]
fn the_operations_parse_and_print_back() {
    let ops =
        ThoughtEdits::parse_ops("T2=zero, T4=noise:0.5,T1=patch,T3=scale:-1,T5=random:2,T6=mean")
            .unwrap();
    let text: Vec<String> = ops.iter().map(|(k, op)| format!("T{k}={op}")).collect();
    assert_eq!(
        text.join(","),
        "T1=patch,T2=zero,T3=scale:-1,T4=noise:0.5,T5=random:2,T6=mean"
    );
    assert_eq!(ops[&4], ThoughtOp::Noise(0.5));
    let json = serde_json::to_string(&ops).unwrap();
    assert_eq!(
        serde_json::from_str::<std::collections::BTreeMap<usize, ThoughtOp>>(&json).unwrap(),
        ops
    );
    assert_eq!(
        ThoughtEdits::parse_resid("2@T3, 0@T1").unwrap(),
        vec![
            ResidPatch {
                layer: 0,
                thought: 1
            },
            ResidPatch {
                layer: 2,
                thought: 3
            }
        ]
    );
    for bad in [
        "T0=zero",
        "2=zero",
        "T1",
        "T1=blur",
        "T1=noise",
        "T1=noise:x",
        "T1=zero:2",
        "T1=noise:-1",
        "T1=zero,T1=mean",
    ] {
        assert!(ThoughtEdits::parse_ops(bad).is_err(), "{bad} parsed");
    }
    for bad in ["2T3", "x@T1", "1@3"] {
        assert!(ThoughtEdits::parse_resid(bad).is_err(), "{bad} parsed");
    }
}

#[test]
fn bad_interventions_give_one_line() {
    let model = model_dir("gpt2-tiny").display().to_string();
    let base = [
        "analyze",
        "--model",
        &model,
        "--prompt",
        PROMPT,
        "--thoughts",
        "3",
    ];
    let analyze = |extra: &[&str]| coconut_lens(&base, extra);
    assert_one_line_error(
        &analyze(&["--intervene", "T4=zero"]),
        "past the run's 3 thoughts",
    );
    assert_one_line_error(
        &analyze(&["--intervene", "T1=blur"]),
        "unknown thought operation",
    );
    assert_one_line_error(&analyze(&["--intervene", "T1=patch"]), "--patch-prompt");
    assert_one_line_error(&analyze(&["--patch-resid", "1@T1"]), "--patch-prompt");
    assert_one_line_error(
        &analyze(&[
            "--patch-resid",
            "1@T1",
            "--patch-prompt",
            "Is Alex a gorpus?",
        ]),
        "same length",
    );
    assert_one_line_error(
        &analyze(&["--patch-resid", "9@T1", "--patch-prompt", OTHER]),
        "out of range",
    );
    assert_one_line_error(&analyze(&["--patch-sweep"]), "--patch-prompt");
    assert_one_line_error(
        &analyze(&[
            "--intervene",
            "T1=mean",
            "--means",
            "/nonexistent/m.safetensors",
        ]),
        "no such file",
    );

    // A good one: the document holds the fed thought and the effect.
    let out = analyze(&[
        "--intervene",
        "T2=zero",
        "--patch-sweep",
        "--patch-prompt",
        OTHER,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["fed"][0]["thought"], 2);
    assert_eq!(v["fed"][0]["op"], "zero");
    assert_eq!(v["fed"][0]["fed_norm"], 0.0);
    assert!(v["effect"]["kl_first"].is_number());
    assert_eq!(v["patch_sweep"]["logit_diff"].as_array().unwrap().len(), 3);
}

#[test]
fn the_intervention_sweep_equals_separate_evaluations() {
    use coconut_lens::data::prosqa;
    use coconut_lens::eval::{
        EvalMode, EvalSettings, SWEEP_OPS, evaluate_with, intervention_sweep,
    };
    use coconut_lens::train::DataShape;
    let m = load_dir("gpt2-tiny");
    let (model, tok) = (&m.model, &m.tokenizer);
    let problems = prosqa::generate(&DataShape::Tiny.gen_config(), 5, 4, "sweep").unwrap();
    let mut last = 0;
    let (sweep, means) =
        intervention_sweep(model, tok, &problems, 2, None, 3, &mut |d, _| last = d).unwrap();
    assert_eq!(last, 5 * (1 + 2 * SWEEP_OPS.len()));
    assert_eq!(sweep.rows.len(), 2 * SWEEP_OPS.len());
    let none = EvalSettings::default();
    let base = evaluate_with(
        model,
        tok,
        &problems,
        EvalMode::Coconut,
        2,
        &none,
        &mut |_, _| {},
    )
    .unwrap();
    assert_eq!(sweep.base_accuracy, base.report.accuracy);
    assert_eq!(means, base.means);
    for row in &sweep.rows {
        let edit = EvalSettings {
            ops: [(row.thought, row.op)].into_iter().collect(),
            means: Some(means.clone()),
            seed: 3,
            ..EvalSettings::default()
        };
        let r = evaluate_with(
            model,
            tok,
            &problems,
            EvalMode::Coconut,
            2,
            &edit,
            &mut |_, _| {},
        )
        .unwrap();
        assert_eq!(row.correct, r.report.correct, "{row:?}");
        let flips = r
            .answers
            .iter()
            .zip(&base.answers)
            .filter(|(a, b)| a != b)
            .count();
        assert_eq!(row.flip_rate, flips as f64 / 5.0, "{row:?}");
    }
    // The mean thought over the problems is the mean of what each slot received.
    assert_eq!(means.n, 5);
    assert_eq!(means.means.len(), 2);
    assert_eq!(means.means[0].len(), model.info.d_model);
}

/// `zero` and `patch` against the PyTorch reference (`scripts/make_fixtures.py
/// --interventions-only`): the same greedy answer, first-token probabilities within 1e-4.
#[test]
fn zero_and_patch_match_the_pytorch_reference() {
    #[derive(serde::Deserialize)]
    struct Reference {
        cases: Vec<ReferenceCase>,
    }
    #[derive(serde::Deserialize)]
    struct ReferenceCase {
        name: String,
        prompt: String,
        patch_prompt: Option<String>,
        thoughts: usize,
        intervene: String,
        max_new_tokens: usize,
        answer_ids: Vec<u32>,
        first_probs: Vec<f32>,
    }
    for name in FIXTURES {
        let text =
            std::fs::read_to_string(fixture(&format!("golden/{name}.interventions.json"))).unwrap();
        let reference: Reference = serde_json::from_str(&text).unwrap();
        assert_eq!(reference.cases.len(), 4);
        let m = load_dir(name);
        for case in reference.cases {
            let spec = RunSpec {
                thoughts: ThoughtCount::Fixed { n: case.thoughts },
                max_new_tokens: case.max_new_tokens,
                ..spec()
            };
            let e = ThoughtEdits {
                ops: ThoughtEdits::parse_ops(&case.intervene).unwrap(),
                patch_prompt: case.patch_prompt.clone(),
                ..ThoughtEdits::default()
            };
            let ids = m.tokenizer.encode_prompt(&case.prompt).unwrap();
            let hooks = Hooks::none(m.model.info.layers);
            let (s, h) = prepare(&m.model, &m.tokenizer, &ids, &spec, &hooks, &e).unwrap();
            let r = run(&m.model, &m.tokenizer, &ids, &s, &h).unwrap();
            let what = format!("{name}/{}", case.name);
            assert_eq!(r.answer_ids, case.answer_ids, "{what}: answer");
            let probs: Vec<f32> = candle_nn::ops::softmax_last_dim(&r.answer[0].logits)
                .unwrap()
                .to_vec1()
                .unwrap();
            assert_eq!(probs.len(), case.first_probs.len());
            let worst = probs
                .iter()
                .zip(&case.first_probs)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(
                worst < 1e-4,
                "{what}: first-token probabilities differ by {worst}"
            );
        }
    }
}

#[test]
fn eval_writes_the_means_and_refuses_bad_intervention_options() {
    let dir = scratch("interventions-eval-cli");
    let data = tiny_problems(&dir, 3, 5);
    let model = model_dir("gpt2-tiny").display().to_string();
    let base = [
        "eval",
        "--data",
        &data,
        "--model",
        &model,
        "--thoughts",
        "2",
    ];
    let eval = |extra: &[&str]| coconut_lens(&base, extra);
    let means = dir.join("means.safetensors");
    let m = means.display().to_string();
    let out = eval(&["--intervention-sweep", "--save-means", &m]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sweep: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(sweep["rows"].as_array().unwrap().len(), 6);
    assert_eq!(sweep["means_from"], "the un-intervened run");
    let saved = ThoughtMeans::read(&means).unwrap();
    assert_eq!((saved.n, saved.means.len()), (3, 2));
    // The saved means feed `mean`; the file is not overwritten.
    let out = eval(&["--intervene", "T1=mean", "--means", &m]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_one_line_error(&eval(&["--save-means", &m]), "already exists");
    assert_one_line_error(
        &eval(&["--intervene", "T3=zero"]),
        "past the evaluation's 2 thoughts",
    );
    assert_one_line_error(&eval(&["--intervene", "T1=patch"]), "second prompt");
    assert_one_line_error(
        &eval(&["--intervene", "T1=zero", "--mode", "pause"]),
        "coconut mode",
    );
    assert_one_line_error(
        &eval(&["--intervene", "T1=zero", "--intervention-sweep"]),
        "exclusive",
    );
    assert_one_line_error(&eval(&["--intervene", "T1=zero", "--record"]), "--record");
}
