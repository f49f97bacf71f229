//! The bundled model (`assets/coconut-prosqa`): a standard Hugging Face folder made by the
//! documented training command, the default model of every command, and it still gives the
//! validation accuracy the trainer recorded.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use candle_core::{DType, Device};
use coconut_lens::data::prosqa;
use coconut_lens::eval::{EvalMode, evaluate};
use coconut_lens::model::Arch;
use coconut_lens::model::{ModelSource, load_model};
use coconut_lens::train::{DataShape, Recipe, TrainConfig, params};
use serde_json::Value;

fn bundled() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/coconut-prosqa")
}

fn json_file(path: &Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn metadata() -> Value {
    json_file(&bundled().join("coconut-lens.json"))
}

/// The shape the bundled model was trained with, read from its `config.json`.
fn shape_of(cfg: &Value) -> TrainConfig {
    let n = |k: &str| {
        cfg[k]
            .as_u64()
            .unwrap_or_else(|| panic!("config.json lacks {k}")) as usize
    };
    let base = TrainConfig::bundled(Recipe::Coconut);
    match cfg["model_type"].as_str() {
        Some("gpt2") => TrainConfig {
            arch: Arch::Gpt2,
            layers: n("n_layer"),
            d_model: n("n_embd"),
            heads: n("n_head"),
            context: n("n_positions"),
            ..base
        },
        Some("llama") => TrainConfig {
            arch: Arch::Llama,
            layers: n("num_hidden_layers"),
            d_model: n("hidden_size"),
            heads: n("num_attention_heads"),
            context: n("max_position_embeddings"),
            ..base
        },
        other => panic!("the bundled model is a {other:?}, not GPT-2 or Llama"),
    }
}

#[test]
fn it_is_a_standard_hugging_face_folder_under_10_mb() {
    let dir = bundled();
    let total: u64 = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum();
    assert!(total < 10 << 20, "the bundled model takes {total} bytes");

    let cfg = json_file(&dir.join("config.json"));
    let shape = shape_of(&cfg);
    let tok = tokenizers::Tokenizer::from_file(dir.join("tokenizer.json")).unwrap();
    let vocab = tok.get_vocab_size(true);
    assert_eq!(cfg["vocab_size"], vocab);
    if shape.arch == Arch::Llama {
        assert_eq!(cfg["intermediate_size"], shape.intermediate_size());
    }

    // Hugging Face key names, one tensor per parameter (tied head), of the shapes the trainer
    // gives them.
    let tensors = candle_core::safetensors::load(dir.join("model.safetensors"), &Device::Cpu)
        .expect("safetensors loads");
    let mut want = params::parameters(&shape, vocab);
    want.sort();
    let mut have: Vec<(String, Vec<usize>)> = tensors
        .iter()
        .map(|(k, t)| (k.clone(), t.dims().to_vec()))
        .collect();
    have.sort();
    assert_eq!(have, want);
    for t in tensors.values() {
        assert_eq!(t.dtype(), DType::F32);
    }
    for special in [
        "<|start-latent|>",
        "<|end-latent|>",
        "<|latent|>",
        "<|endoftext|>",
    ] {
        assert!(
            tok.token_to_id(special).is_some(),
            "{special} is in the vocabulary"
        );
    }
}

#[test]
fn its_metadata_names_the_training_command_and_the_measured_accuracy() {
    let meta = metadata();
    let history = meta["history"].as_array().unwrap();
    assert!(!history.is_empty());
    // `coconut-lens train --out assets/coconut-prosqa` with no other option made it.
    let train = TrainConfig::bundled(Recipe::Coconut);
    assert_eq!(meta["training"], serde_json::to_value(&train).unwrap());
    assert_eq!(
        meta["steps_done"],
        train.total_steps(),
        "training ran to the end"
    );
    assert_eq!(history.last().unwrap()["step"], train.total_steps());
    assert_eq!(meta["thoughts"], train.final_thoughts());
    assert_eq!(meta["recipe"], "coconut");
    assert!(!meta["demo_prompt"].as_str().unwrap().is_empty());
    // Measured on the real ProsQA validation set with `eval --record`.
    let real = &meta["accuracy"]["prosqa_valid"]["coconut"];
    assert_eq!(real["n"], 300);
    let acc = real["accuracy"].as_f64().unwrap();
    assert_eq!(acc, real["correct"].as_f64().unwrap() / 300.0);
    assert!(acc >= 0.9, "the bundled model's bar: {acc}");
    // The accuracy-against-thoughts table of the README: every count from 0 to the model's.
    for k in 0..train.final_thoughts() {
        assert_eq!(
            meta["accuracy"]["prosqa_valid"][format!("coconut@{k}")]["thoughts"],
            k
        );
    }
    assert_eq!(meta["accuracy"]["prosqa_valid"]["pause"]["n"], 300);
}

#[test]
fn it_reproduces_the_validation_accuracy_the_trainer_recorded() {
    let meta = metadata();
    let last = meta["history"].as_array().unwrap().last().unwrap().clone();
    let recorded = last["val_accuracy"].as_f64().unwrap();
    // The generated validation split of the recorded run: its seed and size.
    let training = &meta["training"];
    let seed = training["seed"].as_u64().unwrap();
    let size = training["val_size"].as_u64().unwrap() as usize;
    assert_eq!(training["data"], "prosqa");
    let val = prosqa::generate(&DataShape::Prosqa.gen_config(), size, seed, "val").unwrap();
    let loaded = load_model(&ModelSource::Local(bundled()), &Device::Cpu, DType::F32).unwrap();
    let thoughts = meta["thoughts"].as_u64().unwrap() as usize;
    let report = evaluate(
        &loaded.model,
        &loaded.tokenizer,
        &val,
        EvalMode::Coconut,
        thoughts,
        &mut |_, _| {},
    )
    .unwrap();
    assert_eq!(report.n, size);
    assert_eq!(report.accuracy, recorded, "{report:?}");
}

#[test]
fn analyze_with_no_arguments_runs_it_on_its_demo_prompt() {
    let meta = metadata();
    let prompt = meta["demo_prompt"].as_str().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_coconut-lens"))
        .arg("analyze")
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let cfg = json_file(&bundled().join("config.json"));
    let shape = shape_of(&cfg);
    assert_eq!(
        doc["model"]["arch"],
        serde_json::to_value(shape.arch).unwrap()
    );
    assert_eq!(doc["model"]["layers"], shape.layers);
    // The model's own number of thoughts, between the Coconut markers.
    assert_eq!(doc["thoughts"].as_array().unwrap().len(), meta["thoughts"]);
    // The input is the demo prompt as the folder's tokenizer encodes it (the compact form drops
    // the template words of facts), then the markers.
    let tok = tokenizers::Tokenizer::from_file(bundled().join("tokenizer.json")).unwrap();
    let want = tok
        .encode(format!("{prompt}\n"), true)
        .unwrap()
        .get_ids()
        .to_vec();
    let input: Vec<u64> = doc["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_u64().unwrap())
        .collect();
    assert_eq!(
        input.len(),
        want.len() + 2 + doc["thoughts"].as_array().unwrap().len()
    );
    assert!(
        input.iter().zip(&want).all(|(&a, &b)| a == u64::from(b)),
        "{input:?}"
    );
    let text = doc["answer"]["text"].as_str().unwrap();
    assert!(text.starts_with("###"), "a ProsQA-style answer: {text}");
}
