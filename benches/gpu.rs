//! Timings on a GPU: the pipeline, the ablation sweep and gradient importance on random
//! GPT-2-124M-shaped and Llama-3.2-1B-shaped models, in bf16 (the CUDA default) and f32, with
//! the same pipeline in PyTorch on the same GPU when `COCONUT_LENS_PYTHON` (default `python3`)
//! has torch and transformers (`scripts/bench_torch.py --device cuda`).
//!
//! ```sh
//! cargo bench --features cuda --bench gpu
//! cargo bench --features cuda --bench gpu -- --shapes llama-1b --dtypes bf16 --no-torch
//! ```
//!
//! Options: `--shapes gpt2-124m,llama-1b`, `--dtypes bf16,f32`, `--device cuda|cuda:N|cpu`
//! (cpu only to try the harness on a machine without a GPU), `--runs N` (pipeline runs, 5),
//! `--no-torch`. Models are generated once under `target/bench-models/` (the Llama one is a
//! 5 GiB f32 file). Figures go to stdout and `target/gpu-bench-report.json`. Built only with
//! `--features cuda`; without a usable GPU it stops with an error instead of timing anything.

mod support;

use std::path::PathBuf;

use candle_core::{DType, Device};
use coconut_lens::analysis::importance::{SweepControl, ablation_importance, gradient_importance};
use coconut_lens::model::load::{device_label, dtype_label};
use coconut_lens::model::{DeviceSpec, Interventions, ModelSource, load_model, parse_dtype};
use coconut_lens::synthetic::{Shape, synthetic_prompt, write_random_model};
use coconut_lens::thought::run;
use serde_json::json;
use support::{PROMPT_TOKENS, median, pipeline, spec, time_ms};

struct Args {
    shapes: Vec<String>,
    dtypes: Vec<String>,
    device: String,
    runs: usize,
    torch: bool,
}

fn parse_args() -> Args {
    let mut a = Args {
        shapes: vec!["gpt2-124m".into(), "llama-1b".into()],
        dtypes: vec!["bf16".into(), "f32".into()],
        device: "cuda".into(),
        runs: 5,
        torch: true,
    };
    let mut it = std::env::args().skip(1);
    let list = |v: Option<String>| -> Vec<String> {
        v.unwrap_or_default()
            .split(',')
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect()
    };
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--shapes" => a.shapes = list(it.next()),
            "--dtypes" => a.dtypes = list(it.next()),
            "--device" => a.device = it.next().unwrap_or_default(),
            "--runs" => a.runs = it.next().and_then(|n| n.parse().ok()).unwrap_or(0),
            "--no-torch" => a.torch = false,
            "--bench" => {} // added by `cargo bench`
            other => panic!("unknown argument {other:?} (see the header of benches/gpu.rs)"),
        }
    }
    assert!(a.runs >= 1, "--runs must be at least 1");
    a
}

fn open_device(spec: &str) -> Device {
    let device = spec
        .parse::<DeviceSpec>()
        .and_then(|s| s.open())
        .unwrap_or_else(|e| panic!("cannot open device {spec:?}: {e:#}"));
    if spec.starts_with("cuda") {
        assert!(device.is_cuda(), "{spec} did not give a CUDA device");
    }
    device
}

fn main() {
    // As the binary does; SAFETY: no thread has started yet.
    unsafe { coconut_lens::model::pin_cpu_threads() };
    let args = parse_args();
    let device = open_device(&args.device);
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut report = Vec::new();
    println!(
        "device {}; pipeline = {PROMPT_TOKENS}-token prompt, 6 thoughts, 8 answer tokens, lens at every layer",
        device_label(&device)
    );
    for name in &args.shapes {
        let shape = Shape::by_name(name).unwrap();
        let dir = root.join("target/bench-models").join(name);
        if !dir.join("model.safetensors").is_file() {
            eprintln!("generating {} ...", dir.display());
            write_random_model(&dir, &shape, 0).unwrap();
        }
        for dt in &args.dtypes {
            let dtype: DType = parse_dtype(dt).unwrap();
            let (load_ms, m) =
                time_ms(|| load_model(&ModelSource::Local(dir.clone()), &device, dtype).unwrap());
            let sync = || device.synchronize().unwrap();
            let ids = synthetic_prompt(PROMPT_TOKENS, m.model.info.vocab);
            pipeline(&m, &ids); // warm-up: kernels loaded, allocator primed
            sync();
            let pipe_ms = median(
                (0..args.runs)
                    .map(|_| {
                        time_ms(|| {
                            pipeline(&m, &ids);
                            sync()
                        })
                        .0
                    })
                    .collect(),
            );

            let iv = Interventions::default();
            let hooks = m.model.hooks(&iv).unwrap();
            let target = run(&m.model, &m.tokenizer, &ids, &spec(), &hooks)
                .unwrap()
                .answer_ids[0];
            let grad = || {
                gradient_importance(&m.model, &m.tokenizer, &ids, &spec(), &iv, target).unwrap();
                sync()
            };
            grad(); // warm-up
            let grad_ms = median((0..3).map(|_| time_ms(grad).0).collect());

            let mut progress = |_: usize, _: usize| {};
            let mut ctl = SweepControl {
                progress: &mut progress,
                cancel: None,
            };
            let (sweep_ms, sweep) = time_ms(|| {
                let s =
                    ablation_importance(&m.model, &m.tokenizer, &ids, &spec(), &iv, true, &mut ctl)
                        .unwrap();
                sync();
                s
            });
            let finite = sweep.heads.iter().flatten().all(|v| v.is_finite());
            assert!(finite, "{name} {dt}: the sweep gave non-finite KLs");

            let torch_ms = if args.torch && device.is_cuda() {
                support::torch_pipeline_ms(&dir, &["--device", "cuda", "--dtype", dt])
            } else {
                None
            };
            let info = &m.model.info;
            println!(
                "{name} {}: load {load_ms:.0} ms; pipeline {pipe_ms:.1} ms (median of {}); \
                 gradient importance {grad_ms:.1} ms ({:.2}x pipeline); \
                 ablation sweep ({} heads + {} layers) {:.2} s{}",
                dtype_label(dtype),
                args.runs,
                grad_ms / pipe_ms,
                info.layers * info.heads,
                info.layers,
                sweep_ms / 1e3,
                match torch_ms {
                    Some(t) => format!("; PyTorch pipeline {t:.1} ms, ratio {:.2}x", pipe_ms / t),
                    None => String::new(),
                }
            );
            report.push(json!({
                "shape": name,
                "dtype": dtype_label(dtype),
                "device": device_label(&device),
                "load_ms": load_ms,
                "pipeline_ms": pipe_ms,
                "gradient_ms": grad_ms,
                "gradient_over_pipeline": grad_ms / pipe_ms,
                "sweep_s": sweep_ms / 1e3,
                "torch_pipeline_ms": torch_ms,
                "pipeline_over_torch": torch_ms.map(|t| pipe_ms / t),
            }));
        }
    }
    let path = root.join("target/gpu-bench-report.json");
    std::fs::write(&path, serde_json::to_string_pretty(&report).unwrap()).unwrap();
    println!("report: {}", path.display());
}
