//! Speed and memory of the engine on a random GPT-2-124M-shaped model, each figure as a ratio
//! against a reference measured in the same run:
//!
//! - pipeline (140-token prompt, 6 continuous thoughts, 8 answer tokens, logit lens at every
//!   layer of every step) vs the same pipeline in PyTorch + transformers (`scripts/bench_torch.py`,
//!   when a Python with torch is found: `COCONUT_LENS_PYTHON`, default `python3`);
//! - the ablation sweep (prefix reuse + batched variants) vs a naive full rerun per head;
//! - gradient head importance vs one pipeline run;
//! - peak memory of `coconut-lens analyze` vs the size of the weights file.
//!
//! `cargo bench --bench pipeline` (add `-- --quick` to skip the naive sweep). The model is
//! generated once under `target/bench-models/`. A JSON report goes to `target/bench-report.json`.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use coconut_lens::analysis::importance::{
    SweepControl, ablation_importance, ablation_importance_naive, gradient_importance,
};
use coconut_lens::model::{Interventions, ModelSource, load_model};
use coconut_lens::synthetic::{Shape, synthetic_prompt, write_random_model};
use coconut_lens::thought::run;
use serde_json::json;
use support::{PROMPT_TOKENS, median, pipeline, spec, time_ms};

fn ensure_model(dir: &Path) {
    if !dir.join("model.safetensors").is_file() {
        eprintln!("generating {} ...", dir.display());
        write_random_model(dir, &Shape::GPT2_124M, 0).unwrap();
    }
}

fn torch_pipeline_ms(dir: &Path) -> Option<f64> {
    support::torch_pipeline_ms(dir, &["--threads", "2"])
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dir = root.join("target/bench-models/gpt2-124m");
    ensure_model(&dir);
    let weights_mib = std::fs::metadata(dir.join("model.safetensors"))
        .unwrap()
        .len() as f64
        / (1 << 20) as f64;

    let (load_ms, m) = time_ms(|| {
        load_model(
            &ModelSource::Local(dir.clone()),
            &candle_core::Device::Cpu,
            candle_core::DType::F32,
        )
        .unwrap()
    });
    let ids = synthetic_prompt(PROMPT_TOKENS, m.model.info.vocab);
    pipeline(&m, &ids); // warm-up
    let pipe_ms = median((0..5).map(|_| time_ms(|| pipeline(&m, &ids)).0).collect());
    println!("load: {load_ms:.0} ms; pipeline: {pipe_ms:.0} ms (median of 5)");

    let iv = Interventions::default();
    let probe = run(
        &m.model,
        &m.tokenizer,
        &ids,
        &spec(),
        &m.model.hooks(&iv).unwrap(),
    )
    .unwrap();
    let target = probe.answer_ids[0];
    let grad_ms = median(
        (0..3)
            .map(|_| {
                time_ms(|| {
                    gradient_importance(&m.model, &m.tokenizer, &ids, &spec(), &iv, target).unwrap()
                })
                .0
            })
            .collect(),
    );
    println!(
        "gradient importance: {grad_ms:.0} ms = {:.2}x one pipeline run (target <= 4x)",
        grad_ms / pipe_ms
    );

    let mut progress = |_: usize, _: usize| {};
    let mut ctl = SweepControl {
        progress: &mut progress,
        cancel: None,
    };
    let (sweep_ms, fast) = time_ms(|| {
        ablation_importance(&m.model, &m.tokenizer, &ids, &spec(), &iv, true, &mut ctl).unwrap()
    });
    println!(
        "ablation sweep (144 heads + 12 layers): {:.1} s",
        sweep_ms / 1e3
    );
    let naive_ms = if quick {
        None
    } else {
        let (ms, naive) = time_ms(|| {
            ablation_importance_naive(&m.model, &m.tokenizer, &ids, &spec(), &iv).unwrap()
        });
        let worst = fast
            .heads
            .iter()
            .flatten()
            .zip(naive.heads.iter().flatten())
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        println!(
            "naive sweep: {:.1} s; fast/naive = {:.2}x (target <= 0.5x); max |KL diff| {worst:.2e}",
            ms / 1e3,
            sweep_ms / ms
        );
        Some(ms)
    };

    // Peak memory of the real binary on this folder.
    let prompt: Vec<String> = ids.iter().map(|i| format!("t{i}")).collect();
    let out = Command::new(env!("CARGO_BIN_EXE_coconut-lens"))
        .args([
            "analyze",
            "--model",
            dir.to_str().unwrap(),
            "--thoughts",
            "6",
            "--max-new-tokens",
            "8",
            "--prompt",
        ])
        .arg(prompt.join(" "))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let peak = doc["timings"]["peak_rss_mib"].as_f64();
    if let Some(peak) = peak {
        println!(
            "analyze peak RSS: {peak:.0} MiB for a {weights_mib:.0} MiB weights file = {:.2}x (target < 1.3x)",
            peak / weights_mib
        );
    }

    let torch_ms = torch_pipeline_ms(&dir);
    match torch_ms {
        Some(t) => println!(
            "PyTorch pipeline: {t:.0} ms; coconut-lens/PyTorch = {:.2}x (target <= 0.5x)",
            pipe_ms / t
        ),
        None => println!(
            "PyTorch pipeline: not measured (set COCONUT_LENS_PYTHON to a Python with torch + transformers)"
        ),
    }

    let report = json!({
        "model": "random gpt2-124m (f32, CPU)",
        "threads": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "load_ms": load_ms,
        "pipeline_ms": pipe_ms,
        "gradient_ms": grad_ms,
        "gradient_over_pipeline": grad_ms / pipe_ms,
        "sweep_ms": sweep_ms,
        "naive_sweep_ms": naive_ms,
        "sweep_over_naive": naive_ms.map(|n| sweep_ms / n),
        "peak_rss_mib": peak,
        "weights_mib": weights_mib,
        "peak_over_weights": peak.map(|p| p / weights_mib),
        "torch_pipeline_ms": torch_ms,
        "pipeline_over_torch": torch_ms.map(|t| pipe_ms / t),
    });
    let path = root.join("target/bench-report.json");
    std::fs::write(&path, serde_json::to_string_pretty(&report).unwrap()).unwrap();
    println!("report: {}", path.display());
}
