//! CODI checkpoints (Shen et al. 2025): the tiny GPT-2 and Llama fixtures of
//! `scripts/make_codi_fixtures.py` against the PyTorch reference of CODI's inference loop
//! (thought lens, answer ids), the family in the JSON and the explorer's header, and one-line
//! errors for damaged checkpoints.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use candle_core::{DType, Device, Tensor};
use coconut_lens::model::codi::CodiCheckpoint;
use coconut_lens::model::{Family, LoadedModel, ModelSource, load_model};
use coconut_lens::thought::answer_argmax;
use common::check::{Tol, check_model};
use common::*;
use serde_json::Value;

const GPT2: &str = "gpt2-tiny-codi";
const LLAMA: &str = "llama-tiny-codi";

fn base_of(name: &str) -> &'static str {
    if name.starts_with("gpt2") {
        "gpt2-tiny-base"
    } else {
        "llama-tiny-base"
    }
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn load(model: &Path, base: &str) -> LoadedModel {
    let src = ModelSource::parse(path_str(model), Some(path_str(&model_dir(base)))).unwrap();
    load_model(&src, &Device::Cpu, DType::F32).unwrap()
}

#[test]
fn gpt2_codi_folder_matches_the_pytorch_reference() {
    let m = load(&model_dir(GPT2), base_of(GPT2));
    assert_eq!(m.model.info.family, Family::Codi);
    assert!(matches!(
        m.source,
        ModelSource::Codi {
            checkpoint: CodiCheckpoint::Folder(_),
            ..
        }
    ));
    check_model(&m, GPT2, &Tol::F32, None);
}

#[test]
fn llama_codi_folder_matches_the_pytorch_reference() {
    let m = load(&model_dir(LLAMA), base_of(LLAMA));
    assert_eq!(m.model.info.family, Family::Codi);
    check_model(&m, LLAMA, &Tol::F32, None);
}

#[test]
fn a_codi_checkpoint_file_is_recognised_by_its_keys() {
    for (name, file) in [(GPT2, "pytorch_model.bin"), (LLAMA, "model.safetensors")] {
        let m = load(&model_dir(name).join(file), base_of(name));
        assert!(
            matches!(
                m.source,
                ModelSource::Codi {
                    checkpoint: CodiCheckpoint::File(_),
                    ..
                }
            ),
            "{name}"
        );
        // The Llama file finds its adapter_config.json (lora_alpha 16) beside it.
        check_model(&m, name, &Tol::F32, None);
    }
    // A Coconut checkpoint file stays one.
    let src = ModelSource::parse(
        path_str(&model_dir("gpt2-tiny-coconut-ckpt/checkpoint_2")),
        Some(path_str(&model_dir("gpt2-tiny-base"))),
    )
    .unwrap();
    assert!(matches!(src, ModelSource::Coconut { .. }));
}

#[test]
fn the_bot_and_eot_tokens_are_named_and_the_answer_never_picks_eot() {
    let m = load(&model_dir(GPT2), base_of(GPT2));
    let tok = &m.tokenizer;
    let markers = tok.coconut.unwrap();
    assert_eq!(
        (markers.start, markers.end, markers.latent),
        (361, 362, None)
    );
    assert_eq!(tok.display(360), "[PAD]");
    assert_eq!(tok.display(361), "<bot>");
    assert_eq!(tok.display(362), "<eot>");
    // CODI's prompt: stripped, double spaces made single, no newline appended.
    assert_eq!(
        tok.encode_prompt("  Tom is a cat.  Is Tom a cat? ")
            .unwrap(),
        tok.encode_plain("Tom is a cat. Is Tom a cat?").unwrap()
    );
    // Greedy decoding skips the last id (eot), as CODI's test.py slices it off.
    let mut logits = vec![0f32; m.model.info.vocab];
    logits[362] = 9.0;
    logits[361] = 5.0;
    let logits = Tensor::new(logits, &Device::Cpu).unwrap();
    assert_eq!(answer_argmax(&m.model, &logits).unwrap(), 361);
    let coconut = load_dir("gpt2-tiny");
    let mut l = vec![0f32; coconut.model.info.vocab];
    l[362] = 9.0;
    let l = Tensor::new(l, &Device::Cpu).unwrap();
    assert_eq!(answer_argmax(&coconut.model, &l).unwrap(), 362);
}

#[test]
fn lora_alpha_comes_from_the_adapter_config() {
    // Without its adapter_config.json (lora_alpha 16) the Llama checkpoint is merged with the
    // default 32: another model.
    let dir = scratch("codi-no-adapter-config");
    std::fs::copy(
        model_dir(LLAMA).join("model.safetensors"),
        dir.join("model.safetensors"),
    )
    .unwrap();
    let with = load(&model_dir(LLAMA), base_of(LLAMA));
    let without = load(&dir, base_of(LLAMA));
    let probe = |m: &LoadedModel| {
        let ids = m.tokenizer.encode_prompt("Alex is a wumpus.").unwrap();
        let e = m.model.embed_ids(&ids).unwrap();
        let mut cache = coconut_lens::model::KvCache::new(m.model.info.layers);
        let hooks = coconut_lens::model::Hooks::none(m.model.info.layers);
        let out = m
            .model
            .forward(&e, &mut cache, &Default::default(), &hooks)
            .unwrap();
        out.hidden
    };
    assert!(max_abs_diff(&probe(&with), &probe(&without)) > 1e-2);
}

fn analyze_json(model: &str, base: &str, extra: &[&str]) -> Value {
    let out = coconut_lens(
        &[
            "analyze", "--model", model, "--base", base, "--device", "cpu",
        ],
        extra,
    );
    assert!(
        out.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("stdout is JSON")
}

#[test]
fn analyze_names_the_family_and_reproduces_the_reference_answer() {
    let golden = golden(GPT2);
    let case = golden.cases.iter().find(|c| c.name == "t2").unwrap();
    let thoughts = case.thoughts.to_string();
    let new_tokens = case.max_new_tokens.to_string();
    let doc = analyze_json(
        path_str(&model_dir(GPT2)),
        path_str(&model_dir(base_of(GPT2))),
        &[
            "--prompt",
            &case.prompt,
            "--thoughts",
            &thoughts,
            "--max-new-tokens",
            &new_tokens,
        ],
    );
    assert_eq!(doc["model"]["family"], "codi");
    let ids: Vec<u64> = doc["answer"]["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    let want: Vec<u64> = case.answer_ids.iter().map(|&i| i as u64).collect();
    assert_eq!(ids, want);
    assert_eq!(doc["thoughts"].as_array().unwrap().len(), case.thoughts);
    let tokens: Vec<&str> = doc["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["text"].as_str().unwrap())
        .collect();
    assert_eq!(&tokens[tokens.len() - 2..], ["<bot>", "<eot>"]);

    let out = coconut_lens(
        &[
            "analyze",
            "--model",
            path_str(&model_dir("gpt2-tiny")),
            "--device",
            "cpu",
            "--prompt",
            &case.prompt,
            "--thoughts",
            "1",
            "--max-new-tokens",
            "1",
        ],
        &[],
    );
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["model"]["family"], "coconut");
}

/// The Llama fixture's tensors, edited by `edit`, saved in a scratch folder of that name
/// (with the fixture's adapter_config.json unless `edit` removes it from the folder after).
fn damaged(name: &str, edit: impl FnOnce(&mut HashMap<String, Tensor>)) -> PathBuf {
    let dir = scratch(name);
    let mut tensors =
        candle_core::safetensors::load(model_dir(LLAMA).join("model.safetensors"), &Device::Cpu)
            .unwrap();
    edit(&mut tensors);
    candle_core::safetensors::save(&tensors, dir.join("model.safetensors")).unwrap();
    std::fs::copy(
        model_dir(LLAMA).join("adapter_config.json"),
        dir.join("adapter_config.json"),
    )
    .unwrap();
    dir
}

fn assert_refused(model: &Path, base: &str, needle: &str) {
    let out = coconut_lens(
        &[
            "analyze",
            "--model",
            path_str(model),
            "--base",
            path_str(&model_dir(base)),
            "--device",
            "cpu",
            "--prompt",
            "Alex is a wumpus.",
        ],
        &[],
    );
    assert_one_line_error(&out, needle);
}

#[test]
fn damaged_codi_checkpoints_are_one_line_errors() {
    let lora_b = "codi.base_model.model.model.layers.1.self_attn.q_proj.lora_B.default.weight";

    let no_fc2 = damaged("codi-no-prj3", |t| {
        t.remove("prj.3.weight");
    });
    assert_refused(&no_fc2, base_of(LLAMA), "prj.3.weight");

    let no_prj = damaged("codi-no-prj", |t| t.retain(|k, _| !k.starts_with("prj.")));
    assert_refused(&no_prj, base_of(LLAMA), "no projection weights");

    let rank = damaged("codi-rank-mismatch", |t| {
        let b = t[lora_b].narrow(1, 0, 7).unwrap().contiguous().unwrap();
        t.insert(lora_b.to_string(), b);
    });
    assert_refused(&rank, base_of(LLAMA), "LoRA rank mismatch");

    let half = damaged("codi-half-adapter", |t| {
        t.remove(lora_b);
    });
    assert_refused(&half, base_of(LLAMA), "lacks its lora_A or lora_B");

    let config_rank = damaged("codi-config-rank", |_| {});
    std::fs::write(
        config_rank.join("adapter_config.json"),
        r#"{"peft_type": "LORA", "r": 4, "lora_alpha": 16}"#,
    )
    .unwrap();
    assert_refused(&config_rank, base_of(LLAMA), "LoRA rank mismatch");

    // The wrong base: its vocabulary does not account for the embedding's rows.
    assert_refused(&model_dir(LLAMA), "llama-tiny-gqa", "pad, bot and eot");

    // A folder without weights.
    let empty = scratch("codi-empty");
    assert_refused(&empty, base_of(LLAMA), "no CODI checkpoint here");
}

#[test]
fn the_explorer_opens_a_codi_model_and_labels_it() {
    use coconut_lens::tui::app::{Action, App};
    use coconut_lens::tui::update::update;
    use coconut_lens::tui::worker::Worker;

    let (tx, rx) = mpsc::channel();
    let worker = Worker::spawn(
        || {
            let src = ModelSource::parse(
                path_str(&model_dir(GPT2)),
                Some(path_str(&model_dir(base_of(GPT2)))),
            )?;
            load_model(&src, &Device::Cpu, DType::F32)
        },
        move |m| {
            let _ = tx.send(m);
        },
    );
    let mut app = App::new(GPT2.into(), common::tui::tiny_params(), (120, 40));
    let start = std::time::Instant::now();
    while app.busy() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the worker answers"
        );
        let action = match rx.recv_timeout(Duration::from_millis(20)) {
            Ok(msg) => Action::Worker(msg),
            Err(_) => Action::Tick,
        };
        if let Some(job) = update(&mut app, action) {
            worker.submit(job);
        }
        assert!(app.fatal.is_none(), "{:?}", app.fatal);
    }
    assert!(app.run.is_some());
    let screen = common::tui::screen(&app);
    assert!(
        screen[0].contains("gpt2-tiny-codi · CODI · GPT-2"),
        "{}",
        screen[0]
    );
    assert!(
        screen[3].contains("<bot>") && screen[3].contains("<eot>"),
        "{}",
        screen[3]
    );
}

#[test]
fn a_codi_hub_repo_loads_from_the_cache_with_a_config_only_base() {
    let src = ModelSource::parse("zen-E/CODI-gpt2", Some("openai-community/gpt2")).unwrap();
    assert_eq!(
        src.to_string(),
        "zen-E/CODI-gpt2 (CODI, base openai-community/gpt2)"
    );
    assert!(matches!(
        src,
        ModelSource::Codi {
            checkpoint: CodiCheckpoint::Hub { .. },
            ..
        }
    ));

    let home = scratch("codi-hf-home");
    fake_hub_cache_of(&home, "tiny-org/CODI-gpt2-tiny", &model_dir(GPT2));
    let base_files = scratch("codi-config-only-base");
    for f in ["config.json", "tokenizer.json"] {
        std::fs::copy(model_dir(base_of(GPT2)).join(f), base_files.join(f)).unwrap();
    }
    fake_hub_cache_of(&home, "tiny-org/gpt2-tiny-base", &base_files);
    let golden = golden(GPT2);
    let case = golden.cases.iter().find(|c| c.name == "t6").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_coconut-lens"))
        .env_remove("HF_HUB_CACHE")
        .env("HF_HOME", &home)
        .env("HF_HUB_OFFLINE", "1")
        .args([
            "analyze",
            "--model",
            "tiny-org/CODI-gpt2-tiny",
            "--base",
            "tiny-org/gpt2-tiny-base",
            "--device",
            "cpu",
            "--prompt",
            &case.prompt,
            "--max-new-tokens",
            &case.max_new_tokens.to_string(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["model"]["family"], "codi");
    // Six thoughts: CODI's default, and coconut-lens's without a coconut-lens.json.
    assert_eq!(doc["thoughts"].as_array().unwrap().len(), case.thoughts);
    let ids: Vec<u32> = serde_json::from_value(doc["answer"]["ids"].clone()).unwrap();
    assert_eq!(ids, case.answer_ids);
}
