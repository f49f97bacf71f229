//! The `analyze` command end to end: output shape, model sources (hub cache, Coconut
//! checkpoint), and one-line errors on bad input.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;
use serde_json::Value;

const PROMPT: &str = "Every wumpus is a yumpus. Alex is a wumpus. Is Alex a yumpus?";

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_coconut-lens"));
    c.env_remove("HF_HOME")
        .env_remove("HF_HUB_CACHE")
        .env("HF_HUB_OFFLINE", "1");
    c
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("binary runs")
}

fn json_of(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("stdout is JSON")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

fn gpt2() -> String {
    model_dir("gpt2-tiny").to_string_lossy().into_owned()
}

#[test]
fn analyze_prints_the_v1_document() {
    let out = run(&[
        "analyze",
        "--model",
        &gpt2(),
        "--prompt",
        PROMPT,
        "--thoughts",
        "0",
        "--top-k",
        "3",
        "--max-new-tokens",
        "4",
    ]);
    let doc = json_of(&out);
    assert_eq!(doc["schema"], "coconut-lens.analysis.v1");
    let m = &doc["model"];
    assert_eq!(
        (
            m["arch"].as_str(),
            m["layers"].as_u64(),
            m["heads"].as_u64()
        ),
        (Some("gpt2"), Some(3), Some(4))
    );
    assert_eq!(m["kv_heads"], 4);
    assert_eq!(m["d_model"], 32);
    assert!(m["vocab"].as_u64().unwrap() > 300);
    assert_eq!(doc["thoughts"].as_array().unwrap().len(), 0);
    let tokens = doc["tokens"].as_array().unwrap();
    assert_eq!(tokens.last().unwrap()["text"], "<|end-latent|>");
    let first = &doc["answer"]["first"];
    assert_eq!(
        first["position"].as_u64().unwrap() as usize,
        tokens.len() - 1
    );
    let lens = first["lens"].as_array().unwrap();
    assert_eq!(lens.len(), 4, "L + 1 lens layers");
    for (l, layer) in lens.iter().enumerate() {
        assert_eq!(layer["layer"].as_u64().unwrap() as usize, l);
        let top = layer["top"].as_array().unwrap();
        assert_eq!(top.len(), 3);
        let probs: Vec<f64> = top.iter().map(|t| t["prob"].as_f64().unwrap()).collect();
        assert!(probs.windows(2).all(|w| w[0] >= w[1]), "sorted");
        assert!(
            top.iter()
                .all(|t| t["text"].is_string() && t["id"].is_u64())
        );
    }
    assert_eq!(first["angular"].as_array().unwrap().len(), 3);
    assert!(first["entropy"].as_f64().unwrap() > 0.0);
    let ids = doc["answer"]["ids"].as_array().unwrap();
    assert!(!ids.is_empty() && ids.len() <= 4);
    assert!(doc["answer"]["text"].is_string());
    assert!(doc["timings"]["load_ms"].as_f64().unwrap() >= 0.0);
    assert!(doc["timings"]["compute_ms"].as_f64().unwrap() >= 0.0);
}

#[test]
fn ablations_change_the_analysis() {
    let base = json_of(&run(&[
        "analyze",
        "--model",
        &gpt2(),
        "--prompt",
        PROMPT,
        "--thoughts",
        "0",
    ]));
    let abl = json_of(&run(&[
        "analyze",
        "--model",
        &gpt2(),
        "--prompt",
        PROMPT,
        "--thoughts",
        "0",
        "--ablate-heads",
        "0.1,2.3",
        "--ablate-layers",
        "1",
    ]));
    assert_ne!(
        base["answer"]["first"]["lens"],
        abl["answer"]["first"]["lens"]
    );
    // Layer 0's lens reads x^0, which no ablation touches.
    assert_eq!(
        base["answer"]["first"]["lens"][0],
        abl["answer"]["first"]["lens"][0]
    );
}

/// Lays out `fixture` like the Hugging Face cache: blobs, a snapshot of symlinks, refs/main.
fn fake_hub_cache(hf_home: &Path, repo: &str, fixture: &str) -> String {
    fake_hub_cache_of(hf_home, repo, &model_dir(fixture))
}

#[test]
fn hub_ids_load_from_the_cache_without_network() {
    let home = scratch("hf-home");
    let commit = fake_hub_cache(&home, "tiny-org/gpt2-tiny", "gpt2-tiny");
    let local = json_of(&run(&[
        "analyze",
        "--model",
        &gpt2(),
        "--prompt",
        PROMPT,
        "--thoughts",
        "1",
    ]));
    for model in [
        "tiny-org/gpt2-tiny".to_string(),
        format!("tiny-org/gpt2-tiny@{commit}"),
    ] {
        let out = bin()
            .env("HF_HOME", &home)
            .args([
                "analyze",
                "--model",
                &model,
                "--prompt",
                PROMPT,
                "--thoughts",
                "1",
            ])
            .output()
            .unwrap();
        let hub = json_of(&out);
        assert_eq!(hub["answer"], local["answer"], "{model}");
        assert_eq!(hub["thoughts"], local["thoughts"], "{model}");
    }
    // HF_HUB_CACHE points straight at the hub folder.
    let out = bin()
        .env("HF_HUB_CACHE", home.join("hub"))
        .args([
            "analyze",
            "--model",
            "tiny-org/gpt2-tiny",
            "--prompt",
            PROMPT,
            "--thoughts",
            "1",
        ])
        .output()
        .unwrap();
    assert_eq!(json_of(&out)["answer"], local["answer"]);
    // Not cached and offline: a clear error naming the cache.
    let out = bin()
        .env("HF_HOME", &home)
        .args(["analyze", "--model", "tiny-org/absent", "--prompt", PROMPT])
        .output()
        .unwrap();
    assert_one_line_error(&out, "not in the Hugging Face cache");
}

#[test]
fn a_checkpoints_base_needs_only_its_config_and_tokenizer() {
    let ckpt = model_dir("gpt2-tiny-coconut-ckpt/checkpoint_2");
    let dir = scratch("config-only-base");
    let base = dir.join("base");
    std::fs::create_dir_all(&base).unwrap();
    for f in ["config.json", "tokenizer.json"] {
        std::fs::copy(model_dir("gpt2-tiny-base").join(f), base.join(f)).unwrap();
    }
    let args = ["--prompt", PROMPT, "--thoughts", "3"];
    let from_dir = json_of(&run(&[
        "analyze",
        "--model",
        &gpt2(),
        args[0],
        args[1],
        args[2],
        args[3],
    ]));
    let from_folder = json_of(&run(&[
        "analyze",
        "--model",
        ckpt.to_str().unwrap(),
        "--base",
        base.to_str().unwrap(),
        args[0],
        args[1],
        args[2],
        args[3],
    ]));
    // A hub base with no weight files in the cache, offline: asking for one would fail.
    let home = dir.join("hf-home");
    fake_hub_cache_of(&home, "tiny-org/config-only", &base);
    let out = bin()
        .env("HF_HOME", &home)
        .env("HF_HUB_OFFLINE", "1")
        .args([
            "analyze",
            "--model",
            ckpt.to_str().unwrap(),
            "--base",
            "tiny-org/config-only",
        ])
        .args(args)
        .output()
        .unwrap();
    let from_hub = json_of(&out);
    for key in ["tokens", "thoughts", "answer"] {
        assert_eq!(from_folder[key], from_dir[key], "folder base: {key}");
        assert_eq!(from_hub[key], from_dir[key], "hub base: {key}");
    }
}

#[test]
fn coconut_checkpoint_gives_the_same_analysis_as_the_folder() {
    let ckpt = model_dir("gpt2-tiny-coconut-ckpt/checkpoint_2");
    let base = model_dir("gpt2-tiny-base");
    let args = [
        "--prompt",
        PROMPT,
        "--thoughts",
        "3",
        "--ablate-heads",
        "1.2",
    ];
    let from_ckpt = json_of(
        &bin()
            .args([
                "analyze",
                "--model",
                ckpt.to_str().unwrap(),
                "--base",
                base.to_str().unwrap(),
            ])
            .args(args)
            .output()
            .unwrap(),
    );
    let from_dir = json_of(
        &bin()
            .args(["analyze", "--model", &gpt2()])
            .args(args)
            .output()
            .unwrap(),
    );
    for key in ["model", "tokens", "thoughts", "answer", "blocks"] {
        assert_eq!(from_ckpt[key], from_dir[key], "{key}");
    }
    let out = run(&[
        "analyze",
        "--model",
        ckpt.to_str().unwrap(),
        "--prompt",
        PROMPT,
    ]);
    assert_one_line_error(&out, "--base");
}

/// Every checkpoint layout gives the equivalent folder's analysis exactly (everything but the
/// timings): GPT-2 with and without `embedding.weight`, Llama with it (untied, base tokenizer
/// without the Coconut tokens), and a tied Llama 3.2-style one without it on a config-only base.
#[test]
fn coconut_checkpoints_in_every_layout_give_the_folders_analysis() {
    let cases = [
        (
            "gpt2-tiny-coconut-ckpt/checkpoint_2",
            "gpt2-tiny-base",
            "gpt2-tiny",
        ),
        (
            "gpt2-tiny-coconut-noemb/checkpoint_2",
            "gpt2-tiny-base",
            "gpt2-tiny",
        ),
        (
            "llama-tiny-coconut-ckpt/checkpoint_1",
            "llama-tiny-base",
            "llama-tiny-gqa",
        ),
        (
            "llama-tiny-tied-coconut/checkpoint_1",
            "llama-tiny-tied-coconut/base",
            "llama-tiny-tied",
        ),
    ];
    let args = [
        "--prompt",
        PROMPT,
        "--thoughts",
        "3",
        "--ablate-heads",
        "1.2",
        "--head-importance",
        "ablation",
    ];
    for (ckpt, base, folder) in cases {
        let analysis = |model: &[&str]| {
            let mut doc = json_of(
                &bin()
                    .arg("analyze")
                    .args(model)
                    .args(args)
                    .output()
                    .unwrap(),
            );
            doc.as_object_mut().unwrap().remove("timings");
            doc
        };
        let (ckpt, base, folder) = (model_dir(ckpt), model_dir(base), model_dir(folder));
        let from_ckpt = analysis(&[
            "--model",
            ckpt.to_str().unwrap(),
            "--base",
            base.to_str().unwrap(),
        ]);
        let from_dir = analysis(&["--model", folder.to_str().unwrap()]);
        assert!(from_dir["head_importance"].is_object());
        assert_eq!(from_ckpt, from_dir, "{}", ckpt.display());
    }
}

/// A checkpoint whose pickle would run `touch coconut-lens-pwned` if unpickled normally is
/// refused in one line, and nothing ran: no marker appears in the working directory.
#[test]
fn a_malicious_pickle_is_refused_and_nothing_runs() {
    let ckpt = model_dir("malicious-ckpt/checkpoint_1");
    let bytes = std::fs::read(&ckpt).unwrap();
    let has = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    assert!(
        has(b"posix\nsystem") && has(b"touch coconut-lens-pwned"),
        "the payload is there"
    );
    let cwd = scratch("malicious-pickle");
    let out = bin()
        .current_dir(&cwd)
        .args([
            "analyze",
            "--model",
            ckpt.to_str().unwrap(),
            "--base",
            model_dir("gpt2-tiny-base").to_str().unwrap(),
            "--prompt",
            PROMPT,
        ])
        .output()
        .unwrap();
    assert_one_line_error(&out, "refused, its pickle calls posix.system");
    assert!(!cwd.join("coconut-lens-pwned").exists(), "the payload ran");
    assert_eq!(
        std::fs::read_dir(&cwd).unwrap().count(),
        0,
        "nothing written"
    );
}

#[test]
fn bad_model_folders_are_one_line_errors() {
    let out = run(&["analyze", "--model", "/no/such/folder", "--prompt", PROMPT]);
    assert_one_line_error(&out, "no such folder");

    let empty = scratch("empty-model");
    let out = run(&[
        "analyze",
        "--model",
        empty.to_str().unwrap(),
        "--prompt",
        PROMPT,
    ]);
    assert_one_line_error(&out, "missing config.json");

    let dir = scratch("no-weights");
    copy_dir(&model_dir("gpt2-tiny"), &dir);
    std::fs::remove_file(dir.join("model.safetensors")).unwrap();
    let out = run(&[
        "analyze",
        "--model",
        dir.to_str().unwrap(),
        "--prompt",
        PROMPT,
    ]);
    assert_one_line_error(&out, "missing model.safetensors");

    let dir = scratch("truncated");
    copy_dir(&model_dir("gpt2-tiny"), &dir);
    let weights = dir.join("model.safetensors");
    let len = std::fs::metadata(&weights).unwrap().len();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&weights)
        .unwrap();
    f.set_len(len / 2).unwrap();
    let out = run(&[
        "analyze",
        "--model",
        dir.to_str().unwrap(),
        "--prompt",
        PROMPT,
    ]);
    assert_one_line_error(&out, "not a valid safetensors file");

    let dir = scratch("garbage-weights");
    copy_dir(&model_dir("gpt2-tiny"), &dir);
    std::fs::write(dir.join("model.safetensors"), b"definitely not safetensors").unwrap();
    let out = run(&[
        "analyze",
        "--model",
        dir.to_str().unwrap(),
        "--prompt",
        PROMPT,
    ]);
    assert_one_line_error(&out, "not a valid safetensors file");
}

fn with_config(name: &str, edit: impl Fn(&mut Value)) -> PathBuf {
    let dir = scratch(name);
    copy_dir(&model_dir("gpt2-tiny"), &dir);
    let mut cfg: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    edit(&mut cfg);
    std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
    dir
}

#[test]
fn bad_configs_are_one_line_errors() {
    let dir = with_config("cfg-missing", |c| {
        c.as_object_mut().unwrap().remove("n_embd");
    });
    let out = run(&[
        "analyze",
        "--model",
        dir.to_str().unwrap(),
        "--prompt",
        PROMPT,
    ]);
    assert_one_line_error(&out, "missing field `n_embd`");

    let dir = with_config("cfg-type", |c| c["model_type"] = "bert".into());
    let out = run(&[
        "analyze",
        "--model",
        dir.to_str().unwrap(),
        "--prompt",
        PROMPT,
    ]);
    assert_one_line_error(
        &out,
        "unsupported model_type \"bert\" in config.json (supported: gpt2, llama)",
    );

    let dir = with_config("cfg-shape", |c| c["n_positions"] = 64.into());
    let out = run(&[
        "analyze",
        "--model",
        dir.to_str().unwrap(),
        "--prompt",
        PROMPT,
    ]);
    assert_one_line_error(&out, "has shape");

    let dir = scratch("cfg-json");
    copy_dir(&model_dir("gpt2-tiny"), &dir);
    std::fs::write(dir.join("config.json"), "{ not json").unwrap();
    let out = run(&[
        "analyze",
        "--model",
        dir.to_str().unwrap(),
        "--prompt",
        PROMPT,
    ]);
    assert_one_line_error(&out, "not valid JSON");
}

#[test]
fn bad_arguments_are_one_line_errors() {
    let m = gpt2();
    let cases: &[(&[&str], &str)] = &[
        (&["--prompt", ""], "prompt is empty"),
        (&["--prompt", "   "], "prompt is empty"),
        (
            &["--prompt", PROMPT, "--ablate-heads", "99.0"],
            "head 99.0 is out of range",
        ),
        (
            &["--prompt", PROMPT, "--ablate-heads", "0.99"],
            "head 0.99 is out of range",
        ),
        (
            &["--prompt", PROMPT, "--ablate-heads", "1-2"],
            "malformed head \"1-2\"",
        ),
        (
            &["--prompt", PROMPT, "--ablate-heads", "0.1,x.y"],
            "malformed head \"x.y\"",
        ),
        (
            &["--prompt", PROMPT, "--ablate-heads", "1."],
            "malformed head",
        ),
        (
            &["--prompt", PROMPT, "--ablate-layers", "7"],
            "layer 7 is out of range",
        ),
        (
            &["--prompt", PROMPT, "--ablate-layers", "1,a"],
            "malformed layer \"a\"",
        ),
        (
            &["--prompt", PROMPT, "--thoughts", "-1"],
            "--thoughts must be a non-negative integer",
        ),
        (
            &["--prompt", PROMPT, "--mode", "bogus"],
            "unknown mode \"bogus\"",
        ),
        (
            &["--prompt", PROMPT, "--entropy-stop", "0.5"],
            "--entropy-stop only applies with --thoughts auto",
        ),
        (
            &["--prompt", PROMPT, "--thoughts", "auto"],
            "needs --entropy-stop",
        ),
        (&["--prompt", PROMPT, "--device", "tpu"], "unknown device"),
        (&["--prompt", PROMPT, "--dtype", "f8"], "unknown dtype"),
        (&["--prompt", PROMPT, "--top-k", "nope"], "invalid value"),
        (
            &[
                "--prompt",
                PROMPT,
                "--head-importance",
                "gradient",
                "--target",
                "zzqqxx",
            ],
            "target token \"zzqqxx\" does not exist",
        ),
        (
            &["--prompt", PROMPT, "--target", "Ġwumpus"],
            "--target only applies",
        ),
        (
            &["--prompt", PROMPT, "--head-importance", "magic"],
            "unknown head-importance method",
        ),
        (
            &["--prompt", PROMPT, "--importance-step", "2"],
            "--importance-step only applies with --head-importance",
        ),
        (
            &[
                "--prompt",
                PROMPT,
                "--head-importance",
                "ablation",
                "--importance-step",
                "40",
            ],
            "answer token 40 cannot be scored",
        ),
        (
            &[
                "--prompt",
                PROMPT,
                "--mode",
                "pause",
                "--max-new-tokens",
                "x",
            ],
            "invalid value",
        ),
    ];
    for (args, needle) in cases {
        let out = bin()
            .args(["analyze", "--model", &m])
            .args(*args)
            .output()
            .unwrap();
        assert_one_line_error(&out, needle);
    }
}

#[test]
fn a_prompt_longer_than_the_context_is_an_error() {
    let long = "Every wumpus is a yumpus. ".repeat(40);
    let out = run(&["analyze", "--model", &gpt2(), "--prompt", &long]);
    assert_one_line_error(&out, "context");
}

#[test]
fn cuda_without_the_feature_is_a_clear_error() {
    if cfg!(feature = "cuda") {
        return;
    }
    let out = run(&[
        "analyze",
        "--model",
        &gpt2(),
        "--prompt",
        PROMPT,
        "--device",
        "cuda",
    ]);
    assert_one_line_error(&out, "built without CUDA");
}

/// Whether this test binary can open a GPU (only a CUDA build on a machine with one).
fn gpu_present() -> bool {
    cfg!(feature = "cuda") && candle_core::Device::new_cuda(0).is_ok()
}

#[test]
fn auto_device_without_a_gpu_runs_on_the_cpu_in_f32() {
    if gpu_present() {
        return; // `auto` takes the GPU there: tests/gpu.rs checks that
    }
    let doc = json_of(&run(&[
        "analyze",
        "--model",
        &gpt2(),
        "--prompt",
        PROMPT,
        "--thoughts",
        "1",
    ]));
    assert_eq!(doc["runtime"]["device"], "cpu");
    assert_eq!(doc["runtime"]["dtype"], "f32");
    let doc = json_of(&run(&[
        "analyze",
        "--model",
        &gpt2(),
        "--prompt",
        PROMPT,
        "--thoughts",
        "1",
        "--dtype",
        "bf16",
    ]));
    assert_eq!(doc["runtime"]["dtype"], "bf16");
}

#[test]
fn cuda_without_a_gpu_is_a_clear_error() {
    if !cfg!(feature = "cuda") || gpu_present() {
        return;
    }
    let out = run(&[
        "analyze",
        "--model",
        &gpt2(),
        "--prompt",
        PROMPT,
        "--device",
        "cuda",
    ]);
    assert_one_line_error(&out, "cannot open CUDA device 0");
}

#[test]
fn head_importance_is_reported_for_both_methods() {
    for method in ["ablation", "gradient"] {
        let doc = json_of(&run(&[
            "analyze",
            "--model",
            &gpt2(),
            "--prompt",
            PROMPT,
            "--thoughts",
            "2",
            "--ablate-heads",
            "1.1",
            "--head-importance",
            method,
        ]));
        let hi = &doc["head_importance"];
        assert_eq!(hi["method"], method);
        let values = hi["values"].as_array().unwrap();
        assert_eq!(values.len(), 3);
        assert!(values.iter().all(|row| row.as_array().unwrap().len() == 4));
        assert_eq!(
            hi["target"], doc["answer"]["ids"][0],
            "default target: first greedy token"
        );
        assert_eq!(doc["layer_importance"].as_array().unwrap().len(), 3);
        if method == "ablation" {
            assert_eq!(values[1][1].as_f64().unwrap(), 0.0, "user-ablated head");
            assert!(
                values
                    .iter()
                    .flat_map(|r| r.as_array().unwrap())
                    .any(|v| v.as_f64().unwrap() > 0.0)
            );
        }
    }
    let doc = json_of(&run(&[
        "analyze",
        "--model",
        &gpt2(),
        "--prompt",
        PROMPT,
        "--head-importance",
        "gradient",
        "--target",
        "Ġwumpus",
    ]));
    assert_eq!(doc["head_importance"]["target"], 326);

    // A later answer token: its greedy id is the target, and the step is recorded.
    let base = json_of(&run(&["analyze", "--model", &gpt2(), "--prompt", PROMPT]));
    let doc = json_of(&run(&[
        "analyze",
        "--model",
        &gpt2(),
        "--prompt",
        PROMPT,
        "--head-importance",
        "ablation",
        "--importance-step",
        "2",
    ]));
    assert_eq!(doc["head_importance"]["answer_step"], 2);
    assert_eq!(doc["head_importance"]["target"], base["answer"]["ids"][2]);
}
