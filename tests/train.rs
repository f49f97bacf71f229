//! Training and evaluation: a quick smoke run on tiny graphs (the loss falls), an exact resume
//! after an interruption, the exported model loads and evaluates, and `eval` rejects bad input.

mod common;

use common::{assert_one_line_error, scratch};

use std::path::Path;
use std::process::{Command, Output};

use candle_core::{DType, Device};
use coconut_lens::data::prosqa;
use coconut_lens::eval::{EvalMode, evaluate};
use coconut_lens::model::{ModelSource, load_model};
use coconut_lens::train::{
    DEMO_CANDIDATES, DataShape, Progress, Recipe, TrainConfig, TrainOptions, TrainState, train,
};

/// Two layers, d = 32, 64 tiny problems, coconut stages 0 and 1.
fn tiny_config() -> TrainConfig {
    TrainConfig {
        data: DataShape::Tiny,
        train_size: 64,
        val_size: 8,
        layers: 2,
        d_model: 32,
        heads: 2,
        context: 256,
        batch_size: 16,
        lr: 3e-3,
        warmup_steps: 2,
        max_stage: 1,
        epochs_first: 2,
        epochs_per_stage: 1,
        epochs_last: 0,
        ..TrainConfig::bundled(Recipe::Coconut)
    }
}

fn run_training(
    cfg: &TrainConfig,
    out: &Path,
    max_batches: Option<usize>,
) -> (TrainState, Vec<f64>) {
    let mut losses = Vec::new();
    let st = train(
        cfg,
        out,
        TrainOptions {
            max_batches,
            checkpoint_every_s: f64::INFINITY,
            progress: &mut |p| {
                if let Progress::Batch { loss, .. } = p {
                    losses.push(*loss);
                }
            },
        },
    )
    .expect("training runs");
    (st, losses)
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

#[test]
fn loss_falls_and_resume_is_bit_exact() {
    let cfg = tiny_config();
    let straight = scratch("train-straight");
    let (st, losses) = run_training(&cfg, &straight, None);
    assert!(st.done());
    assert_eq!(losses.len(), 3 * 4, "3 epochs of 4 batches");
    let first = losses[0];
    let last_epoch: f64 = losses[8..].iter().sum::<f64>() / 4.0;
    assert!(
        last_epoch < 0.8 * first,
        "loss did not fall: first batch {first}, last epoch {last_epoch}"
    );

    // Interrupted after 5 batches (mid-epoch, mid-stage), then resumed to the end.
    let resumed = scratch("train-resumed");
    let (st1, l1) = run_training(&cfg, &resumed, Some(5));
    assert!(!st1.done());
    assert_eq!((st1.epoch, st1.batch), (1, 1));
    let (st2, l2) = run_training(&cfg, &resumed, None);
    assert!(st2.done());
    assert_eq!([l1, l2].concat(), losses, "losses differ after resume");
    assert_eq!(st2.history.len(), st.history.len());
    for (a, b) in st.history.iter().zip(&st2.history) {
        assert_eq!(
            (a.stage, a.loss, a.val_accuracy),
            (b.stage, b.loss, b.val_accuracy)
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

    // The exported folder is a Hugging Face GPT-2 folder the engine loads and evaluates.
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(straight.join("config.json")).unwrap())
            .unwrap();
    assert_eq!(config["model_type"], "gpt2");
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(straight.join("coconut-lens.json")).unwrap())
            .unwrap();
    assert_eq!(meta["thoughts"], 1);
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
    let (again, no_batches) = run_training(&cfg, &straight, None);
    assert!(again.done() && no_batches.is_empty());
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
    let err = train(
        &other,
        &out,
        TrainOptions {
            max_batches: Some(1),
            checkpoint_every_s: f64::INFINITY,
            progress: &mut |_| {},
        },
    )
    .unwrap_err();
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
    assert_one_line_error(
        &bin(&[
            "eval",
            "--data",
            &s(&good),
            "--model",
            &fixture("gpt2-tiny-base"),
        ]),
        "Coconut tokens",
    );
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
    // A well-formed file runs, and reports JSON.
    let ok = bin(&[
        "eval",
        "--data",
        &s(&good),
        "--model",
        &gpt2,
        "--thoughts",
        "2",
    ]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&ok.stdout).unwrap();
    assert_eq!(report["n"], 2);
    assert_eq!(report["thought_frontier"].as_array().unwrap().len(), 2);
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
        &bin(&["train", "--out", &out, "--train-size", "0"]),
        "--train-size",
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
    // Only a local folder has metadata to record in.
    assert_one_line_error(
        &bin(&["eval", "--data", &d, "--model", "owner/name", "--record"]),
        "--record needs a local model folder",
    );
}
