//! Speed and memory of the engine on a random GPT-2-124M-shaped model, each figure as a ratio
//! against a reference measured in the same run:
//!
//! - pipeline (140-token prompt, 6 continuous thoughts, 8 answer tokens, logit lens at every
//!   layer of every step) vs the same pipeline in PyTorch + transformers (`scripts/bench_torch.py`,
//!   when a Python with torch is found: `COCONUT_LENS_PYTHON`, default `python3`);
//! - cold vs warm: the same run as `coconut-lens analyze` in fresh processes (its `compute_ms`,
//!   loading excluded) and as the first run after loading in this process, vs the warm median;
//! - the ablation sweep (prefix reuse + batched variants) vs a naive full rerun per head;
//! - gradient head importance vs one pipeline run;
//! - peak memory of `coconut-lens analyze` (those fresh processes) vs the size of the weights file;
//! - a floor for the pipeline: the prefix forward plus, for each single-token step, the time to
//!   read the weights file once from memory (every step reads every weight).
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
use support::{ANSWER_TOKENS, PROMPT_TOKENS, THOUGHTS, median, pipeline, spec, time_ms};

fn ensure_model(dir: &Path) {
    if !dir.join("model.safetensors").is_file() {
        eprintln!("generating {} ...", dir.display());
        write_random_model(dir, &Shape::GPT2_124M, 0).unwrap();
    }
}

fn torch_reference(dir: &Path) -> Option<serde_json::Value> {
    support::torch_reference(dir, &["--threads", "2"])
}

/// Median time to sum every f32 of the weights file (memory-mapped, warm, all cores): what one
/// single-token step costs at least, since it must read every weight once.
fn weights_read_ms(dir: &Path) -> f64 {
    use rayon::prelude::*;
    let file = std::fs::File::open(dir.join("model.safetensors")).unwrap();
    // SAFETY: the benchmark's own generated file, not modified while mapped.
    let map = unsafe { memmap2::Mmap::map(&file) }.unwrap();
    let floats: &[f32] = as_f32s(&map);
    // Sixteen independent lanes, so that the adds vectorise and the loop is bound by memory.
    let lanes = |c: &[f32]| {
        let mut acc = [0f32; 16];
        for v in c.chunks_exact(16) {
            for (a, x) in acc.iter_mut().zip(v) {
                *a += x;
            }
        }
        acc.iter().sum::<f32>()
    };
    let sum = || floats.par_chunks(1 << 16).map(lanes).sum::<f32>();
    std::hint::black_box(sum()); // fault the pages in
    median(
        (0..5)
            .map(|_| time_ms(|| std::hint::black_box(sum())).0)
            .collect(),
    )
}

/// The whole 4-byte-aligned body of a byte slice as f32 (header bytes included: only the
/// reading time matters).
fn as_f32s(bytes: &[u8]) -> &[f32] {
    // SAFETY: every bit pattern is a valid f32, and align_to only hands out aligned elements.
    let (_, floats, _) = unsafe { bytes.align_to::<f32>() };
    floats
}

/// Median time of the prefix forward alone (prompt and start marker, one batched pass).
fn prefix_ms(m: &coconut_lens::model::LoadedModel, ids: &[u32]) -> f64 {
    use coconut_lens::model::{Capture, KvCache};
    let hooks = m.model.hooks(&Interventions::default()).unwrap();
    let ids = coconut_lens::thought::prefix_ids(&m.model, &m.tokenizer, ids, &spec()).unwrap();
    let capture = Capture {
        resid_rows: vec![ids.len() - 1],
        attention: false,
    };
    let embeds = m.model.embed_ids(&ids).unwrap();
    let once = || {
        let mut cache = KvCache::new(m.model.info.layers);
        m.model
            .forward(&embeds, &mut cache, &capture, &hooks)
            .unwrap()
            .hidden
    };
    once();
    median((0..5).map(|_| time_ms(once).0).collect())
}

/// One `coconut-lens analyze` of the benchmark's run in a fresh process: its compute_ms (load
/// excluded), load_ms and peak RSS in MiB. `inputs` is the warm pipeline's input length,
/// checked so that both time the same work.
fn analyze_once(dir: &Path, ids: &[u32], inputs: usize) -> (f64, f64, f64) {
    let prompt: Vec<String> = ids.iter().map(|i| format!("t{i}")).collect();
    let out = Command::new(env!("CARGO_BIN_EXE_coconut-lens"))
        .args(["analyze", "--model", dir.to_str().unwrap()])
        .args(["--thoughts", &THOUGHTS.to_string()])
        .args(["--max-new-tokens", &ANSWER_TOKENS.to_string()])
        .arg("--prompt")
        .arg(prompt.join(" "))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let tokens = doc["tokens"].as_array().unwrap().len();
    let answer = doc["answer"]["ids"].as_array().unwrap().len();
    assert_eq!(
        (tokens, answer),
        (inputs, ANSWER_TOKENS),
        "analyze ran other work than the pipeline"
    );
    let t = &doc["timings"];
    (
        t["compute_ms"].as_f64().unwrap(),
        t["load_ms"].as_f64().unwrap(),
        t["peak_rss_mib"].as_f64().unwrap_or(f64::NAN),
    )
}

fn main() {
    // As the binary does; SAFETY: no thread has started yet.
    unsafe { coconut_lens::model::pin_cpu_threads() };
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
    let (first_ms, _) = time_ms(|| pipeline(&m, &ids));
    let pipe_ms = median((0..5).map(|_| time_ms(|| pipeline(&m, &ids)).0).collect());
    println!(
        "load: {load_ms:.0} ms; pipeline: first run {first_ms:.0} ms, warm {pipe_ms:.0} ms (median of 5)"
    );

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

    // The first run a user waits for: `analyze` in fresh processes (its own compute_ms, load
    // excluded), on the same prompt, thoughts and answer length as the warm pipeline.
    let cold = (0..5)
        .map(|_| analyze_once(&dir, &ids, probe.input_ids.len()))
        .collect::<Vec<_>>();
    let cold_ms = median(cold.iter().map(|c| c.0).collect());
    let cold_load_ms = median(cold.iter().map(|c| c.1).collect());
    println!(
        "cold: analyze in a fresh process: {cold_ms:.0} ms (median of 5; its load {cold_load_ms:.0} ms) \
         = {:.2}x warm (target <= 1.3x); first run in this process {first_ms:.0} ms = {:.2}x warm",
        cold_ms / pipe_ms,
        first_ms / pipe_ms
    );
    let peak = median(cold.iter().map(|c| c.2).collect());
    println!(
        "analyze peak RSS: {peak:.0} MiB for a {weights_mib:.0} MiB weights file = {:.2}x (target < 1.3x)",
        peak / weights_mib
    );

    let prefix = prefix_ms(&m, &ids);
    let read = weights_read_ms(&dir);
    // After the prefix: 6 thoughts, the end marker, and 7 more answer tokens.
    let steps = THOUGHTS + ANSWER_TOKENS;
    let floor = prefix + steps as f64 * read;
    println!(
        "prefix forward: {prefix:.0} ms; reading the weights once: {read:.1} ms; \
         floor = prefix + {steps} steps x one read = {floor:.0} ms"
    );

    let torch = torch_reference(&dir);
    let torch_ms = torch.as_ref().and_then(|t| t["pipeline_ms"].as_f64());
    let torch_prefix = torch.as_ref().and_then(|t| t["prefix_ms"].as_f64());
    match torch_ms {
        Some(t) => {
            println!(
                "PyTorch pipeline: {t:.0} ms (prefix {}); coconut-lens/PyTorch = {:.2}x (target <= 0.5x)",
                torch_prefix.map_or("?".into(), |p| format!("{p:.0} ms")),
                pipe_ms / t
            );
            println!(
                "floor/PyTorch = {:.2}x: with this prefix, even steps at the memory-bandwidth floor (and a free lens) end here",
                floor / t
            );
        }
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
        "first_run_ms": first_ms,
        "cold_ms": cold_ms,
        "cold_load_ms": cold_load_ms,
        "cold_over_warm": cold_ms / pipe_ms,
        "peak_rss_mib": peak,
        "weights_mib": weights_mib,
        "peak_over_weights": peak / weights_mib,
        "prefix_ms": prefix,
        "weights_read_ms": read,
        "floor_ms": floor,
        "torch_pipeline_ms": torch_ms,
        "torch_prefix_ms": torch_prefix,
        "floor_over_torch": torch_ms.map(|t| floor / t),
        "pipeline_over_torch": torch_ms.map(|t| pipe_ms / t),
    });
    let path = root.join("target/bench-report.json");
    std::fs::write(&path, serde_json::to_string_pretty(&report).unwrap()).unwrap();
    println!("report: {}", path.display());
}
