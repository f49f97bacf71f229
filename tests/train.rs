//! Training and evaluation: batched losses against per-sequence ones, the batches' fact
//! counts, a quick smoke run on tiny graphs (the loss falls), an exact resume
//! after an interruption, the exported model loads and evaluates, and `eval` rejects bad input.

mod common;

use common::{assert_one_line_error, scratch};

use std::path::Path;
use std::process::{Command, Output};

use candle_core::{DType, Device};
use coconut_lens::data::prosqa;
use coconut_lens::data::tokenizer::{self, TextForm};
use coconut_lens::eval::{EvalMode, evaluate};
use coconut_lens::model::config::ArchConfig;
use coconut_lens::model::{Arch, Hooks, Model, Tokenizer};
use coconut_lens::model::{ModelSource, load_model};
use coconut_lens::train::{
    Batch, ChainStep, DEMO_CANDIDATES, DataShape, Progress, Recipe, TrainConfig, TrainOptions,
    TrainState, batch, batch_gradients, batch_loss, chain_steps, encode_sample, params, train,
};

/// Two layers, d = 32, tiny problems, coconut stage 0 for 10 steps, then stage 1 for 4:
/// 14 steps, evaluated at steps 7 and 14.
fn tiny_config() -> TrainConfig {
    TrainConfig {
        data: DataShape::Tiny,
        val_size: 8,
        layers: 2,
        d_model: 32,
        heads: 2,
        context: 256,
        batch_size: 8,
        lr: 1e-2,
        warmup_steps: 2,
        decay_steps: 0,
        max_stage: 1,
        steps_first: 10,
        steps_per_stage: 2,
        steps_last: 2,
        reset_optimizer: true,
        facts_from: 0.5,
        grow_steps: 4,
        eval_every: 7,
        ..TrainConfig::bundled(Recipe::Coconut)
    }
}

fn run_training(cfg: &TrainConfig, out: &Path, max_steps: Option<u64>) -> (TrainState, Vec<f64>) {
    let mut losses = Vec::new();
    let st = train(
        cfg,
        out,
        TrainOptions {
            max_steps,
            checkpoint_every_s: f64::INFINITY,
            watch: None,
            progress: &mut |p| {
                if let Progress::Step { loss, .. } = p {
                    losses.push(*loss);
                }
            },
        },
    )
    .expect("training runs");
    (st, losses)
}

/// The error of a one-step run of `cfg` into `out`.
fn train_error(cfg: &TrainConfig, out: &Path) -> anyhow::Error {
    let opts = TrainOptions {
        max_steps: Some(1),
        checkpoint_every_s: f64::INFINITY,
        watch: None,
        progress: &mut |_| {},
    };
    match train(cfg, out, opts) {
        Ok(_) => panic!("the run of other settings was resumed"),
        Err(e) => e,
    }
}

fn tensors(path: &Path) -> Vec<(String, Vec<f32>)> {
    let mut t: Vec<(String, Vec<f32>)> = candle_core::safetensors::load(path, &Device::Cpu)
        .unwrap()
        .into_iter()
        .map(|(k, v)| (k, v.flatten_all().unwrap().to_vec1::<f32>().unwrap()))
        .collect();
    t.sort_by(|a, b| a.0.cmp(&b.0));
    t
}

/// A model of `cfg`'s shape with its initial weights, as the trainer builds it.
fn fresh_model(cfg: &TrainConfig, tok: &Tokenizer) -> Model {
    let vocab = tok.vocab_size();
    let varmap = params::init(cfg, vocab, &Device::Cpu).unwrap();
    let arch = ArchConfig::from_json(&cfg.hf_config(vocab).to_string()).unwrap();
    Model::build(
        &arch,
        candle_nn::VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
        false,
    )
    .unwrap()
}

fn compact_tokenizer(dir: &Path) -> Tokenizer {
    let path = dir.join("tokenizer.json");
    tokenizer::write(&path, TextForm::Compact).unwrap();
    Tokenizer::from_file(&path).unwrap()
}

#[test]
fn a_batch_loss_is_the_sum_of_its_sequences_losses() {
    let dir = scratch("train-batch-sum");
    let tok = compact_tokenizer(&dir);
    for (arch, stage, frontier) in [
        (Arch::Llama, 1, 1.0),
        (Arch::Llama, 0, 0.0),
        (Arch::Gpt2, 1, 0.5),
    ] {
        let cfg = TrainConfig {
            arch,
            frontier,
            steps_first: 0,
            steps_per_stage: 0,
            max_stage: stage,
            batch_size: 4,
            ..tiny_config()
        };
        let model = fresh_model(&cfg, &tok);
        let hooks = Hooks::none(cfg.layers);
        let (problems, draw) = batch::draw_problems(&cfg, 3).unwrap();
        assert_eq!(draw.stage, stage);
        let samples: Vec<_> = problems
            .iter()
            .map(|p| encode_sample(&tok, p, &cfg, stage).unwrap())
            .collect();
        // Different chains of thought: suffixes of different lengths, padded in the batch.
        let whole = Batch::stack(&samples, 0).unwrap();
        let got = batch_loss(&model, &hooks, &whole, cfg.frontier).unwrap();
        let (mut language, mut front, mut total) = (0f64, 0f64, 0f64);
        for s in &samples {
            let one = Batch::stack(std::slice::from_ref(s), 0).unwrap();
            let l = batch_loss(&model, &hooks, &one, cfg.frontier).unwrap();
            language += f64::from(l.language.to_scalar::<f32>().unwrap());
            total += f64::from(l.total.to_scalar::<f32>().unwrap());
            if let Some(f) = l.frontier {
                front += f64::from(f.to_scalar::<f32>().unwrap());
            }
        }
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-4 * b.abs().max(1.0);
        let value = |t: &candle_core::Tensor| f64::from(t.to_scalar::<f32>().unwrap());
        assert!(close(value(&got.language), language), "{arch:?} language");
        assert!(close(value(&got.total), total), "{arch:?} total");
        match got.frontier {
            Some(f) => assert!(close(value(&f), front) && front > 0.0, "{arch:?} frontier"),
            None => assert_eq!(stage, 0, "stage 0 has no thoughts to score"),
        }
        assert!(total > language || frontier == 0.0 || stage == 0);
    }
}

/// Tom -> wumpus -> {yumpus, zumpus}; yumpus -> gorpus. Chain: Tom, wumpus, yumpus, gorpus.
fn hand_made_problem() -> prosqa::ProsQaProblem {
    let sym = ["Tom", "wumpus", "yumpus", "zumpus", "gorpus", "bompus"];
    let edges = vec![[0, 1], [1, 2], [1, 3], [2, 4], [3, 5]];
    let fact = |[a, b]: [usize; 2]| {
        if a == 0 {
            format!("{} is a {}.", sym[a], sym[b])
        } else {
            format!("Every {} is a {}.", sym[a], sym[b])
        }
    };
    let facts: Vec<String> = edges.iter().map(|&e| fact(e)).collect();
    prosqa::ProsQaProblem {
        question: format!("{} Is Tom a gorpus or bompus?", facts.join(" ")),
        answer: "Tom is a gorpus.".into(),
        steps: [[0, 1], [1, 2], [2, 4]].into_iter().map(fact).collect(),
        idx_to_symbol: sym.iter().map(|s| s.to_string()).collect(),
        edges,
        root: 0,
        target: 4,
        neg_target: 5,
    }
}

#[test]
fn chain_steps_point_at_each_steps_node_in_the_stage_0_suffix() {
    let dir = scratch("train-chain-steps");
    let p = hand_made_problem();
    for form in [TextForm::Compact, TextForm::Words] {
        let path = dir.join(format!("{form:?}.json"));
        tokenizer::write(&path, form).unwrap();
        let tok = Tokenizer::from_file(&path).unwrap();
        let id = |s: &str| tok.token_id(s).unwrap();
        for recipe in [Recipe::Coconut, Recipe::Cot] {
            let cfg = TrainConfig {
                text: form,
                ..TrainConfig::bundled(recipe)
            };
            let sample = encode_sample(&tok, &p, &cfg, 0).unwrap();
            let steps = chain_steps(&tok, &cfg, &p).unwrap();
            let named: Vec<u32> = steps.iter().map(|s| sample.suffix[s.at]).collect();
            assert_eq!(
                named,
                vec![id("wumpus"), id("yumpus"), id("gorpus")],
                "{form:?} {recipe:?}"
            );
            assert_eq!(
                steps[1],
                ChainStep {
                    at: steps[1].at,
                    children: vec![id("yumpus"), id("zumpus")],
                },
                "{form:?} {recipe:?}"
            );
            assert_eq!(steps[0].children, vec![id("wumpus")]);
            // The source comes just before its node in the compact form.
            if form == TextForm::Compact {
                assert_eq!(sample.suffix[steps[2].at - 1], id("yumpus"));
            }
        }
    }
}

#[test]
fn a_batch_split_over_threads_has_the_gradient_of_one_pass() {
    let dir = scratch("train-shards");
    let tok = compact_tokenizer(&dir);
    let cfg = TrainConfig {
        steps_first: 0,
        steps_per_stage: 0,
        batch_size: 5,
        ..tiny_config()
    };
    let vocab = tok.vocab_size();
    let varmap = params::init(&cfg, vocab, &Device::Cpu).unwrap();
    let arch = ArchConfig::from_json(&cfg.hf_config(vocab).to_string()).unwrap();
    let (b, _) = batch::draw_batch(&cfg, &tok, 0).unwrap();
    assert_eq!(
        b.split(2).iter().map(|p| p.rows).collect::<Vec<_>>(),
        [3, 2]
    );
    let (one, l1) = batch_gradients(&arch, &varmap, &b, 1, cfg.frontier).unwrap();
    let (two, l2) = batch_gradients(&arch, &varmap, &b, 2, cfg.frontier).unwrap();
    assert!((l1.total - l2.total).abs() < 1e-4 * l1.total.abs());
    assert!(l1.frontier.is_some() && l2.frontier.is_some());
    let data = varmap.data().lock().unwrap();
    for (name, var) in data.iter() {
        let a = one
            .get(var.as_tensor())
            .expect("a gradient for every parameter");
        let b = two
            .get(var.as_tensor())
            .expect("a gradient for every parameter");
        let diff = (a - b).unwrap().abs().unwrap().max_all().unwrap();
        let scale = a
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        let diff = diff.to_scalar::<f32>().unwrap();
        assert!(
            diff <= 1e-4 * scale.max(1e-3),
            "{name}: {diff} against {scale}"
        );
    }
}

#[test]
fn batches_keep_one_fact_count_and_grow_with_the_curriculum() {
    let cfg = TrainConfig {
        data: DataShape::Prosqa,
        facts_from: 0.2,
        grow_steps: 100,
        batch_size: 6,
        ..TrainConfig::bundled(Recipe::Coconut)
    };
    let dir = scratch("train-batch-draw");
    let tok = compact_tokenizer(&dir);
    let (first, d0) = batch::draw_batch(&cfg, &tok, 0).unwrap();
    let (late, d1) = batch::draw_batch(&cfg, &tok, 100).unwrap();
    // One fact is 3 tokens; the query and the markers 9.
    assert_eq!(first.prefix_len, 3 * d0.facts + 9);
    assert_eq!(late.prefix_len, 3 * d1.facts + 9);
    assert!(d0.facts >= batch::MIN_FACTS);
    let (problems, _) = batch::draw_problems(&cfg, 0).unwrap();
    for p in &problems {
        prosqa::validate(p).unwrap();
        assert_eq!(p.edges.len(), d0.facts);
    }
    // The same step draws the same batch; another step other problems.
    assert_eq!(batch::draw_batch(&cfg, &tok, 0).unwrap().0, first);
    assert_ne!(batch::draw_problems(&cfg, 1).unwrap().0, problems);
    assert_eq!(cfg.fact_share(0), 0.2);
    assert!((cfg.fact_share(50) - 0.6).abs() < 1e-12);
    assert_eq!(cfg.fact_share(100), 1.0);
    // Every row ends with its answer; the first thought count is the schedule's.
    assert_eq!(first.latents, cfg.thoughts_at(cfg.stage_at(0)));
    assert_eq!(first.frontier.len(), first.rows);
}

#[test]
fn loss_falls_and_resume_is_bit_exact() {
    let cfg = tiny_config();
    let straight = scratch("train-straight");
    let (st, losses) = run_training(&cfg, &straight, None);
    assert!(st.done());
    assert_eq!(losses.len() as u64, cfg.total_steps());
    assert_eq!(st.history.len(), 2, "evaluations at steps 7 and 14");
    let first = losses[0];
    let stage0_end = losses[8..10].iter().sum::<f64>() / 2.0;
    assert!(
        stage0_end < 0.8 * first,
        "loss did not fall: first step {first}, steps 9-10 {stage0_end}"
    );

    // Interrupted after 9 steps (mid-stage, after an evaluation), then resumed to the end
    // across the stage change and its optimizer reset.
    let resumed = scratch("train-resumed");
    let (st1, l1) = run_training(&cfg, &resumed, Some(9));
    assert!(!st1.done());
    assert_eq!(st1.step, 9);
    let (st2, l2) = run_training(&cfg, &resumed, None);
    assert!(st2.done());
    assert_eq!([l1, l2].concat(), losses, "losses differ after resume");
    assert_eq!(st2.history.len(), st.history.len());
    for (a, b) in st.history.iter().zip(&st2.history) {
        assert_eq!(
            (a.step, a.stage, a.loss, a.val_accuracy, &a.frontier_match),
            (b.step, b.stage, b.loss, b.val_accuracy, &b.frontier_match)
        );
    }
    let a = tensors(&straight.join("model.safetensors"));
    let b = tensors(&resumed.join("model.safetensors"));
    assert_eq!(a.len(), b.len());
    for ((na, va), (nb, vb)) in a.iter().zip(&b) {
        assert_eq!(na, nb);
        assert!(
            va.iter().zip(vb).all(|(x, y)| x.to_bits() == y.to_bits()),
            "{na} differs after resume"
        );
    }
    let ma = tensors(&straight.join("checkpoint/optimizer.safetensors"));
    let mb = tensors(&resumed.join("checkpoint/optimizer.safetensors"));
    assert_eq!(ma, mb, "optimizer moments differ after resume");

    // The exported folder is a Hugging Face Llama folder the engine loads and evaluates.
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(straight.join("config.json")).unwrap())
            .unwrap();
    assert_eq!(config["model_type"], "llama");
    assert!(straight.join("tokenizer_config.json").exists());
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(straight.join("coconut-lens.json")).unwrap())
            .unwrap();
    assert_eq!(meta["thoughts"], 1);
    assert_eq!(meta["steps_done"], cfg.total_steps());
    assert!(meta["demo_prompt"].as_str().unwrap().ends_with('?'));
    let loaded = load_model(
        &ModelSource::Local(straight.clone()),
        &Device::Cpu,
        DType::F32,
    )
    .unwrap();
    // The demo prompt is the first generated demo problem the model answers correctly (else
    // the first of them).
    let candidates =
        prosqa::generate(&cfg.data.gen_config(), DEMO_CANDIDATES, cfg.seed, "demo").unwrap();
    let solved: Vec<bool> = candidates
        .iter()
        .map(|p| {
            let one = std::slice::from_ref(p);
            let r = evaluate(
                &loaded.model,
                &loaded.tokenizer,
                one,
                EvalMode::Coconut,
                1,
                &mut |_, _| {},
            );
            r.unwrap().correct == 1
        })
        .collect();
    let want = solved.iter().position(|&ok| ok).unwrap_or(0);
    assert_eq!(meta["demo_prompt"], candidates[want].question.as_str());
    assert_eq!(meta["demo_answer"], candidates[want].answer.as_str());

    // The same command on a finished run writes the folder again, identically.
    std::fs::remove_file(straight.join("coconut-lens.json")).unwrap();
    let (again, no_steps) = run_training(&cfg, &straight, None);
    assert!(again.done() && no_steps.is_empty());
    let rewritten: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(straight.join("coconut-lens.json")).unwrap())
            .unwrap();
    assert_eq!(rewritten, meta);

    let problems = prosqa::generate(&DataShape::Tiny.gen_config(), 6, 1, "eval-test").unwrap();
    let mut seen = 0;
    let report = evaluate(
        &loaded.model,
        &loaded.tokenizer,
        &problems,
        EvalMode::Coconut,
        2,
        &mut |done, total| {
            assert_eq!(total, 6);
            seen = done;
        },
    )
    .unwrap();
    assert_eq!(seen, 6);
    assert_eq!(report.n, 6);
    assert!(report.correct <= 6);
    assert_eq!(
        report.correct + report.wrong_candidate + report.no_candidate,
        6
    );
    assert_eq!(report.thought_frontier.len(), 2);
    for f in &report.thought_frontier {
        let total: f64 = f.mass_by_depth.iter().sum::<f64>() + f.unreachable + f.other;
        assert!((total - 1.0).abs() < 1e-4, "masses sum to {total}");
        assert!(f.mass_by_depth.iter().all(|&m| (0.0..=1.0).contains(&m)));
    }
}

#[test]
fn a_checkpoint_of_other_settings_is_not_resumed() {
    let cfg = tiny_config();
    let out = scratch("train-other-settings");
    run_training(&cfg, &out, Some(1));
    let other = TrainConfig {
        lr: 1e-3,
        ..cfg.clone()
    };
    let err = train_error(&other, &out);
    assert!(format!("{err:#}").contains("other settings"), "{err:#}");
}

/// A run made longer before its final decay continues as if it had been that long from the
/// start; once the decay has begun, it is another run and is refused.
#[test]
fn a_run_extended_before_its_decay_continues_bit_exactly() {
    let short = TrainConfig {
        decay_steps: 2,
        ..tiny_config()
    };
    let long = TrainConfig {
        steps_last: 5,
        ..short.clone()
    };
    // Both decay from step 12 at the earliest: the short run's decay starts there.
    assert_eq!(short.same_run_until(&long), Some(12));
    assert_eq!(
        short.same_run_until(&TrainConfig {
            lr: 1e-3,
            ..long.clone()
        }),
        None
    );

    let straight = scratch("train-extend-straight");
    let (_, losses) = run_training(&long, &straight, None);
    let extended = scratch("train-extend");
    let (st1, l1) = run_training(&short, &extended, Some(11));
    assert_eq!(st1.step, 11);
    let (st2, l2) = run_training(&long, &extended, None);
    assert!(st2.done() && st2.config == long);
    assert_eq!(
        [l1, l2].concat(),
        losses,
        "losses differ after the extension"
    );
    assert_eq!(
        tensors(&straight.join("model.safetensors")),
        tensors(&extended.join("model.safetensors"))
    );

    // Finished (its decay done), the short run cannot become the long one.
    let finished = scratch("train-extend-late");
    run_training(&short, &finished, None);
    let err = train_error(&long, &finished);
    assert!(format!("{err:#}").contains("other settings"), "{err:#}");
}

fn bin(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_coconut-lens"))
        .args(args)
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .expect("binary runs")
}

#[test]
fn eval_rejects_bad_input_with_one_line() {
    let dir = scratch("eval-bad-input");
    let fixture = |name: &str| {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/models")
            .join(name)
            .display()
            .to_string()
    };
    let good = dir.join("good.json");
    prosqa::write_problems(
        &good,
        // Tiny graphs: the fixture's byte-level tokenizer and 128-position context.
        &prosqa::generate(&DataShape::Tiny.gen_config(), 2, 3, "x").unwrap(),
    )
    .unwrap();
    let malformed = dir.join("malformed.json");
    std::fs::write(&malformed, "[{\"question\": \"Is").unwrap();
    let other_schema = dir.join("prontoqa.json");
    std::fs::write(
        &other_schema,
        // ProntoQA in the Coconut format: no graph fields.
        r#"[{"question": "Every wumpus is hot. Max is a wumpus. True or false: Max is hot.", "steps": ["Max is a wumpus.", "Every wumpus is hot."], "answer": "True"}]"#,
    )
    .unwrap();
    let s = |p: &Path| p.display().to_string();
    let gpt2 = fixture("gpt2-tiny");
    assert_one_line_error(
        &bin(&["eval", "--data", &s(&malformed), "--model", &gpt2]),
        "not a ProsQA-schema",
    );
    assert_one_line_error(
        &bin(&["eval", "--data", &s(&other_schema), "--model", &gpt2]),
        "not a ProsQA-schema",
    );
    assert_one_line_error(
        &bin(&[
            "eval",
            "--data",
            &s(&dir.join("missing.json")),
            "--model",
            &gpt2,
        ]),
        "cannot read",
    );
    // Both thought layouts need the Coconut tokens.
    for mode in ["coconut", "pause"] {
        assert_one_line_error(
            &bin(&[
                "eval",
                "--data",
                &s(&good),
                "--model",
                &fixture("gpt2-tiny-base"),
                "--mode",
                mode,
            ]),
            "Coconut tokens",
        );
    }
    assert_one_line_error(
        &bin(&[
            "eval",
            "--data",
            &s(&good),
            "--model",
            &gpt2,
            "--mode",
            "bogus",
        ]),
        "unknown eval mode",
    );
    // A well-formed file runs and reports JSON, in coconut mode and in the pause-token
    // control (the same layout, nothing fed back).
    for mode in ["coconut", "pause"] {
        let ok = bin(&[
            "eval",
            "--data",
            &s(&good),
            "--model",
            &gpt2,
            "--thoughts",
            "2",
            "--mode",
            mode,
        ]);
        assert!(
            ok.status.success(),
            "{mode}: {}",
            String::from_utf8_lossy(&ok.stderr)
        );
        let report: serde_json::Value = serde_json::from_slice(&ok.stdout).unwrap();
        assert_eq!(
            (report["n"].as_u64(), report["mode"].as_str()),
            (Some(2), Some(mode))
        );
        assert_eq!(report["thoughts"], 2);
        let frontier = report.get("thought_frontier").and_then(|f| f.as_array());
        assert_eq!(
            frontier.map(Vec::len),
            (mode == "coconut").then_some(2),
            "{mode}"
        );
    }
}

#[test]
fn train_rejects_bad_arguments_with_one_line() {
    let dir = scratch("train-bad-args");
    let out = dir.join("m").display().to_string();
    assert_one_line_error(
        &bin(&["train", "--out", &out, "--recipe", "bogus"]),
        "unknown recipe",
    );
    assert_one_line_error(
        &bin(&["train", "--out", &out, "--d-model", "30", "--heads", "4"]),
        "multiple of --heads",
    );
    assert_one_line_error(
        &bin(&["train", "--out", &out, "--batch-size", "0"]),
        "--batch-size",
    );
    assert_one_line_error(
        &bin(&["train", "--out", &out, "--arch", "rnn"]),
        "unknown --arch",
    );
}

#[test]
fn eval_record_adds_its_figures_to_the_model_metadata() {
    let dir = scratch("eval-record");
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/models/gpt2-tiny");
    let model = dir.join("model");
    std::fs::create_dir_all(&model).unwrap();
    for f in std::fs::read_dir(&fixture).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, model.join(f.file_name().unwrap())).unwrap();
    }
    let meta = model.join("coconut-lens.json");
    std::fs::write(&meta, r#"{"thoughts": 2, "recipe": "coconut"}"#).unwrap();
    let data = dir.join("small-set.json");
    prosqa::write_problems(
        &data,
        &prosqa::generate(&DataShape::Tiny.gen_config(), 3, 5, "x").unwrap(),
    )
    .unwrap();
    let (d, m) = (data.display().to_string(), model.display().to_string());
    let mut printed = Vec::new();
    for mode in ["coconut", "no-cot"] {
        let out = bin(&[
            "eval", "--data", &d, "--model", &m, "--mode", mode, "--record",
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        printed.push(serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap());
    }
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&meta).unwrap()).unwrap();
    assert_eq!(doc["thoughts"], 2, "the rest of the metadata is kept");
    assert_eq!(doc["recipe"], "coconut");
    for (mode, report) in ["coconut", "no-cot"].iter().zip(&printed) {
        let rec = &doc["accuracy"]["small-set"][mode];
        for key in [
            "n",
            "correct",
            "accuracy",
            "thoughts",
            "wrong_candidate",
            "no_candidate",
        ] {
            assert_eq!(rec[key], report[key], "{mode}: {key}");
        }
    }
    assert_eq!(doc["accuracy"]["small-set"]["coconut"]["thoughts"], 2);
    // Another thought count has its own key; the default count's figures stay.
    let out = bin(&[
        "eval",
        "--data",
        &d,
        "--model",
        &m,
        "--thoughts",
        "0",
        "--record",
    ]);
    assert!(out.status.success());
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&meta).unwrap()).unwrap();
    assert_eq!(doc["accuracy"]["small-set"]["coconut@0"]["thoughts"], 0);
    assert_eq!(doc["accuracy"]["small-set"]["coconut"]["thoughts"], 2);
    // Only a local folder has metadata to record in.
    assert_one_line_error(
        &bin(&["eval", "--data", &d, "--model", "owner/name", "--record"]),
        "--record needs a local model folder",
    );
}
