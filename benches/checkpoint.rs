//! Memory of reading a large Coconut checkpoint: `coconut-lens analyze` on a random
//! GPT-2-124M-shaped model (the folder of `target/bench-models/gpt2-124m`, shared with the
//! pipeline benchmark) or another shape, once from its safetensors folder and once from the same weights saved
//! as the official Coconut code saves them (`scripts/coconut_checkpoint.py`: `base_causallm.*`,
//! the tied head and `embedding.weight` sharing the embedding's storage). Each run is a fresh
//! process; its peak RSS (`VmHWM`, the document's `timings.peak_rss_mib`) is reported against
//! the file size. Writing the checkpoint needs torch (`COCONUT_LENS_PYTHON`, default `python3`).
//!
//! `cargo bench --bench checkpoint [-- --shape llama-1b]` (or `--profile dev`: the memory
//! does not depend on it); `llama-1b` is a Llama 3.2 1B-shaped model, a 4.6 GiB file.

use std::path::{Path, PathBuf};
use std::process::Command;

use coconut_lens::synthetic::{Shape, write_random_model};
use serde_json::{Value, json};

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

/// `analyze` on a short prompt, no thoughts, one answer token: loading dominates the memory.
fn analyze(model: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_coconut-lens"))
        .arg("analyze")
        .args(model)
        .args(["--prompt", "Every wumpus is a yumpus. Is Alex a yumpus?"])
        .args(["--thoughts", "0", "--max-new-tokens", "1", "--top-k", "1"])
        .args(["--device", "cpu"])
        .output()
        .expect("the binary runs");
    assert!(
        out.status.success(),
        "analyze failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    doc["timings"].clone()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let name = args
        .iter()
        .position(|a| a == "--shape")
        .and_then(|i| args.get(i + 1))
        .map_or("gpt2-124m", String::as_str);
    let shape = Shape::by_name(name).unwrap();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dir = root.join("target/bench-models").join(name);
    if !dir.join("model.safetensors").is_file() {
        eprintln!("generating {} ...", dir.display());
        write_random_model(&dir, &shape, 0).unwrap();
    }
    let ckpt = root
        .join("target/bench-models")
        .join(format!("{name}-coconut"))
        .join("checkpoint_1");
    if !ckpt.is_file() {
        let python = std::env::var("COCONUT_LENS_PYTHON").unwrap_or_else(|_| "python3".into());
        let status = Command::new(&python)
            .arg(root.join("scripts/coconut_checkpoint.py"))
            .arg(&dir)
            .arg(&ckpt)
            .status();
        if !matches!(status, Ok(s) if s.success()) {
            println!(
                "checkpoint: not measured (set COCONUT_LENS_PYTHON to a Python with torch and safetensors)"
            );
            return;
        }
    }
    let size = |p: &Path| std::fs::metadata(p).unwrap().len();
    let folder_bytes = size(&dir.join("model.safetensors"));
    let ckpt_bytes = size(&ckpt);
    let from_folder = analyze(&["--model", dir.to_str().unwrap()]);
    let from_ckpt = analyze(&[
        "--model",
        ckpt.to_str().unwrap(),
        "--base",
        dir.to_str().unwrap(),
    ]);
    let peak = |t: &Value| t["peak_rss_mib"].as_f64().unwrap_or(f64::NAN);
    for (label, bytes, t) in [
        ("safetensors folder", folder_bytes, &from_folder),
        ("Coconut checkpoint", ckpt_bytes, &from_ckpt),
    ] {
        println!(
            "{label}: file {:.0} MiB, load {:.0} ms, peak RSS {:.0} MiB = {:.2}x the file",
            mib(bytes),
            t["load_ms"].as_f64().unwrap_or(f64::NAN),
            peak(t),
            peak(t) / mib(bytes)
        );
    }
    let report = json!({
        "folder": {"bytes": folder_bytes, "timings": from_folder},
        "checkpoint": {"bytes": ckpt_bytes, "timings": from_ckpt},
    });
    std::fs::write(
        root.join(format!("target/bench-checkpoint-{name}.json")),
        serde_json::to_string_pretty(&report).unwrap(),
    )
    .unwrap();
}
