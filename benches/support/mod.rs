//! What the CPU benchmark (`pipeline`) and the GPU benchmark (`gpu`) share: the benchmark run
//! spec, the timed pipeline and the PyTorch reference.
#![allow(dead_code)]

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use coconut_lens::analysis::run::{RunParams, analyze_run};
use coconut_lens::model::{Interventions, LoadedModel};
use coconut_lens::thought::{RunSpec, ThoughtCount, ThoughtMode, run};

pub const PROMPT_TOKENS: usize = 140;
pub const THOUGHTS: usize = 6;
pub const ANSWER_TOKENS: usize = 8;

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

pub fn time_ms<T>(f: impl FnOnce() -> T) -> (f64, T) {
    let t = Instant::now();
    let out = f();
    (t.elapsed().as_secs_f64() * 1e3, out)
}

pub fn spec() -> RunSpec {
    RunSpec {
        thoughts: ThoughtCount::Fixed { n: THOUGHTS },
        mode: ThoughtMode::Coconut,
        max_new_tokens: ANSWER_TOKENS,
        context_rows: 1,
        attention: false,
        forced_answer: Vec::new(),
        feeds: coconut_lens::thought::Feeds::none(),
        sampling: Default::default(),
    }
}

/// The whole user-facing pipeline: run, then the analysis (lens, entropy, tracked rank and
/// angular distances at every step, blocks).
pub fn pipeline(m: &LoadedModel, ids: &[u32]) -> usize {
    let hooks = m.model.hooks(&Interventions::default()).unwrap();
    let r = run(&m.model, &m.tokenizer, ids, &spec(), &hooks).unwrap();
    // Fixed work: the random model must not stop early on its end-of-text token.
    assert_eq!(r.thoughts.len(), THOUGHTS);
    let params = RunParams {
        prompt: String::new(),
        thoughts: spec().thoughts,
        mode: spec().mode,
        max_new_tokens: ANSWER_TOKENS,
        top_k: 5,
        context_tokens: 0,
        interventions: Interventions::default(),
        thought_edits: Default::default(),
        sampling: Default::default(),
    };
    let a = analyze_run(&m.model, &m.tokenizer, &r, params, None).unwrap();
    a.analysis.steps.len() + a.analysis.blocks.len()
}

/// The PyTorch pipeline's median time (`scripts/bench_torch.py`), when `COCONUT_LENS_PYTHON`
/// (default `python3`) has torch and transformers.
pub fn torch_pipeline_ms(dir: &Path, extra: &[&str]) -> Option<f64> {
    torch_reference(dir, extra)?["pipeline_ms"].as_f64()
}

/// The JSON line of `scripts/bench_torch.py` (`pipeline_ms`, `prefix_ms`, ...), when
/// `COCONUT_LENS_PYTHON` (default `python3`) has torch and transformers.
pub fn torch_reference(dir: &Path, extra: &[&str]) -> Option<serde_json::Value> {
    let python = std::env::var("COCONUT_LENS_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/bench_torch.py");
    let out = Command::new(&python)
        .arg(&script)
        .arg(dir)
        .args(["--runs", "5"])
        .args(extra)
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!(
            "torch reference skipped: {}",
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("")
        );
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}
