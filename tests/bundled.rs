//! The bundled model (`assets/coconut-prosqa`): a standard Hugging Face GPT-2 folder made by the
//! documented training command, the default model of every command, and it still gives the
//! validation accuracy the trainer recorded.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use candle_core::{DType, Device};
use coconut_lens::data::prosqa;
use coconut_lens::eval::{EvalMode, evaluate};
use coconut_lens::model::{ModelSource, load_model};
use coconut_lens::train::{Recipe, TrainConfig};
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

#[test]
fn it_is_a_standard_gpt2_folder_under_20_mb() {
    let dir = bundled();
    let total: u64 = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum();
    assert!(total < 20 << 20, "the bundled model takes {total} bytes");

    let cfg = json_file(&dir.join("config.json"));
    let train = TrainConfig::bundled(Recipe::Coconut);
    assert_eq!(cfg["model_type"], "gpt2");
    assert_eq!(cfg["n_layer"], train.layers);
    assert_eq!(cfg["n_embd"], train.d_model);
    assert_eq!(cfg["n_head"], train.heads);

    // Hugging Face key names, one tensor per parameter of GPT2LMHeadModel (tied head).
    let tensors = candle_core::safetensors::load(dir.join("model.safetensors"), &Device::Cpu)
        .expect("safetensors loads");
    let mut want = vec![
        "transformer.wte.weight".to_string(),
        "transformer.wpe.weight".into(),
        "transformer.ln_f.weight".into(),
        "transformer.ln_f.bias".into(),
    ];
    for l in 0..train.layers {
        for p in [
            "ln_1.weight",
            "ln_1.bias",
            "attn.c_attn.weight",
            "attn.c_attn.bias",
            "attn.c_proj.weight",
            "attn.c_proj.bias",
            "ln_2.weight",
            "ln_2.bias",
            "mlp.c_fc.weight",
            "mlp.c_fc.bias",
            "mlp.c_proj.weight",
            "mlp.c_proj.bias",
        ] {
            want.push(format!("transformer.h.{l}.{p}"));
        }
    }
    let mut have: Vec<String> = tensors.keys().cloned().collect();
    have.sort();
    want.sort();
    assert_eq!(have, want);
    for t in tensors.values() {
        assert_eq!(t.dtype(), DType::F32);
    }

    let tok = tokenizers::Tokenizer::from_file(dir.join("tokenizer.json")).unwrap();
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
    assert_eq!(cfg["vocab_size"], tok.get_vocab_size(true));
}

#[test]
fn its_metadata_names_the_training_command_and_the_measured_accuracy() {
    let meta = metadata();
    let train = TrainConfig::bundled(Recipe::Coconut);
    // `coconut-lens train --out assets/coconut-prosqa` with no other option made it.
    assert_eq!(meta["training"], serde_json::to_value(&train).unwrap());
    assert_eq!(meta["recipe"], "coconut");
    let epochs = train.schedule().len();
    assert_eq!(meta["epochs_done"], epochs, "training ran to the end");
    assert_eq!(meta["history"].as_array().unwrap().len(), epochs);
    assert_eq!(meta["thoughts"], train.thoughts_at(train.max_stage));
    assert!(!meta["demo_prompt"].as_str().unwrap().is_empty());
    // Measured on the real ProsQA validation set with `eval --record`.
    let real = &meta["accuracy"]["prosqa_valid"]["coconut"];
    assert_eq!(real["n"], 300);
    let acc = real["accuracy"].as_f64().unwrap();
    assert_eq!(acc, real["correct"].as_f64().unwrap() / 300.0);
}

#[test]
fn it_reproduces_the_validation_accuracy_the_trainer_recorded() {
    let meta = metadata();
    let last = meta["history"].as_array().unwrap().last().unwrap().clone();
    let recorded = last["val_accuracy"].as_f64().unwrap();
    let train = TrainConfig::bundled(Recipe::Coconut);
    let val =
        prosqa::generate(&train.data.gen_config(), train.val_size, train.seed, "val").unwrap();
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
    assert_eq!(report.n, train.val_size);
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
    assert_eq!(doc["model"]["arch"], "gpt2");
    assert_eq!(doc["model"]["layers"], 4);
    // The model's own number of thoughts, between the Coconut markers.
    assert_eq!(doc["thoughts"].as_array().unwrap().len(), meta["thoughts"]);
    // The input starts with the demo prompt, token by token.
    let squeeze = |t: &str| t.split_whitespace().collect::<String>();
    let input: String = doc["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| squeeze(t["text"].as_str().unwrap()))
        .collect();
    assert!(input.starts_with(&squeeze(prompt)), "{input}");
    let text = doc["answer"]["text"].as_str().unwrap();
    assert!(text.starts_with("###"), "a ProsQA-style answer: {text}");
}
