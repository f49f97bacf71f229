//! Training speed: one optimizer step of `coconut-lens train` (the bundled recipe at full
//! problem size: batch, six recycled thoughts, frontier loss, backward, AdamW) against the
//! same step in PyTorch + transformers on the same batches (`scripts/train_torch.py`, when
//! `COCONUT_LENS_PYTHON`, default `python3`, has torch and transformers), both on 2 threads.
//!
//! Ours runs as `coconut-lens train` does: the batch in `shards` parts on threads of their
//! own, each op on one thread.
//!
//! `cargo bench --bench train [-- --steps N]` (default 6 timed steps after one warm-up). A
//! JSON report goes to `target/bench-train.json`.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use candle_core::{Device, Var};
use coconut_lens::data::tokenizer::{self, TextForm};
use coconut_lens::model::Tokenizer;
use coconut_lens::model::config::ArchConfig;
use coconut_lens::train::optim::AdamW;
use coconut_lens::train::{Batch, Recipe, TrainConfig, batch, batch_gradients, params};
use serde_json::json;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    // As `coconut-lens train`: batch shards on threads of their own, each op on one thread.
    // SAFETY: no other thread runs yet.
    unsafe { std::env::set_var("RAYON_NUM_THREADS", "1") };
    coconut_lens::train::keep_freed_memory();
    let args: Vec<String> = std::env::args().collect();
    let steps: usize = args
        .iter()
        .position(|a| a == "--steps")
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(6);
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
    std::fs::create_dir_all(&target).unwrap();

    // Full-size problems: the curriculum's last share, every batch at it.
    let cfg = TrainConfig {
        spread_facts: false,
        ..TrainConfig::bundled(Recipe::Coconut)
    };
    let tok_path = target.join("bench-train-tokenizer.json");
    tokenizer::write(&tok_path, TextForm::Compact).unwrap();
    let tok = Tokenizer::from_file(&tok_path).unwrap();
    let first = cfg.grow_steps;
    let drawing = Instant::now();
    let batches: Vec<Batch> = (0..=steps as u64)
        .map(|i| batch::draw_batch(&cfg, &tok, first + i).unwrap().0)
        .collect();
    let draw_ms = drawing.elapsed().as_secs_f64() * 1e3 / batches.len() as f64;
    println!("drawing a batch (generator, thinning, encoding): {draw_ms:.1} ms");
    let tokens: Vec<usize> = batches
        .iter()
        .map(|b| b.rows * (b.prefix_len + b.latents + b.suffix_len))
        .collect();

    let vocab = tok.vocab_size();
    let hf = cfg.hf_config(vocab);
    let arch = ArchConfig::from_json(&hf.to_string()).unwrap();
    let varmap = params::init(&cfg, vocab, &Device::Cpu).unwrap();
    let vars: Vec<(String, Var)> = {
        let data = varmap.data().lock().unwrap();
        data.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    };
    let mut opt = AdamW::new(vars, cfg.optim).unwrap();
    let mut ours = Vec::new();
    let mut losses = Vec::new();
    for (i, b) in batches.iter().enumerate() {
        let t = Instant::now();
        let (grads, l) = batch_gradients(&arch, &varmap, b, cfg.shards, cfg.frontier).unwrap();
        let fb = t.elapsed().as_secs_f64() * 1e3;
        opt.step(&grads, cfg.lr).unwrap();
        let ms = t.elapsed().as_secs_f64() * 1e3;
        losses.push(l.total / b.rows as f64);
        eprintln!(
            "ours step {i}: {ms:.1} ms (forward + backward {fb:.0}, optimizer {:.0}), loss {:.4}",
            ms - fb,
            losses[i]
        );
        if i > 0 {
            ours.push(ms);
        }
    }
    let ours_ms = median(ours.clone());
    let tok_per_step = tokens.iter().sum::<usize>() as f64 / tokens.len() as f64;
    // 6 × parameters × tokens for the matrices (forward + backward).
    let n_params: usize = params::parameters(&cfg, vocab)
        .iter()
        .map(|(_, s)| s.iter().product::<usize>())
        .sum();
    let gflops = 6.0 * n_params as f64 * tok_per_step / (ours_ms * 1e-3) / 1e9;
    println!(
        "train step (batch {}, {:.0} tokens, {} thoughts): ours {ours_ms:.0} ms, {:.0} tokens/s, ~{gflops:.1} GFLOP/s",
        cfg.batch_size,
        tok_per_step,
        batches[0].latents,
        tok_per_step / (ours_ms * 1e-3)
    );

    // The same batches for PyTorch.
    let spec = json!({
        "config": hf,
        "lr": cfg.lr,
        "betas": [cfg.optim.beta1, cfg.optim.beta2],
        "eps": cfg.optim.eps,
        "weight_decay": cfg.optim.weight_decay,
        "clip_norm": cfg.optim.clip_norm,
        "frontier": cfg.frontier,
        "batches": batches.iter().map(|b| json!({
            "rows": b.rows, "prefix_len": b.prefix_len, "prefix": b.prefix,
            "latents": b.latents, "suffix_len": b.suffix_len, "suffix": b.suffix,
            "loss_mask": b.loss_mask, "frontier": b.frontier,
        })).collect::<Vec<_>>(),
    });
    let spec_path = target.join("bench-train-batches.json");
    std::fs::write(&spec_path, spec.to_string()).unwrap();
    let python = std::env::var("COCONUT_LENS_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/train_torch.py");
    let torch = Command::new(&python)
        .arg(&script)
        .arg(&spec_path)
        .args(["--threads", "2"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| serde_json::from_slice::<serde_json::Value>(&o.stdout).ok());
    let torch_ms = torch.as_ref().and_then(|t| t["step_ms"].as_f64());
    match torch_ms {
        Some(t) => println!(
            "PyTorch step {t:.0} ms: ours / PyTorch = {:.2}x (target <= 1.0x)",
            ours_ms / t
        ),
        None => println!(
            "PyTorch step: not measured (set COCONUT_LENS_PYTHON to a Python with torch + transformers)"
        ),
    }
    let report = json!({
        "batch": cfg.batch_size,
        "tokens_per_step": tok_per_step,
        "thoughts": batches[0].latents,
        "ours_ms": ours_ms,
        "draw_ms": draw_ms,
        "ours_steps_ms": ours,
        "ours_losses": losses,
        "gflops": gflops,
        "torch": torch,
        "ratio": torch_ms.map(|t| ours_ms / t),
    });
    std::fs::write(
        target.join("bench-train.json"),
        serde_json::to_string_pretty(&report).unwrap(),
    )
    .unwrap();
}
