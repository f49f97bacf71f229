//! Shared helpers for the integration tests: fixture paths and the golden reference format
//! written by `scripts/make_fixtures.py` (Hugging Face transformers, f32).
#![allow(dead_code)]

pub mod tui;

pub mod check;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Output;

use coconut_lens::model::{Interventions, LoadedModel, ModelSource, load_model};
use serde::Deserialize;

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

pub fn model_dir(name: &str) -> PathBuf {
    fixture("models").join(name)
}

pub fn load_dir(name: &str) -> LoadedModel {
    let src = ModelSource::Local(model_dir(name));
    load_model(&src, &candle_core::Device::Cpu, candle_core::DType::F32).expect("fixture loads")
}

#[derive(Debug, Deserialize)]
pub struct Golden {
    pub model: String,
    pub cases: Vec<Case>,
}

#[derive(Debug, Deserialize)]
pub struct Case {
    pub name: String,
    pub prompt: String,
    pub thoughts: usize,
    pub ablate_heads: Vec<[usize; 2]>,
    pub ablate_layers: Vec<usize>,
    pub top_k: usize,
    pub max_new_tokens: usize,
    pub input_ids: Vec<u32>,
    pub thought_steps: Vec<GoldenStep>,
    pub answer_first: GoldenStep,
    pub answer_ids: Vec<u32>,
    #[serde(default)]
    pub blocks: Option<Vec<GoldenBlock>>,
    #[serde(default)]
    pub attention_last: Option<Vec<Vec<Vec<f32>>>>,
    #[serde(default)]
    pub head_importance: Option<GoldenImportance>,
}

impl Case {
    pub fn interventions(&self) -> Interventions {
        Interventions {
            ablated_heads: self
                .ablate_heads
                .iter()
                .map(|[l, h]| (*l, *h))
                .collect::<BTreeSet<_>>(),
            skipped_layers: self.ablate_layers.iter().copied().collect(),
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct GoldenStep {
    #[serde(default)]
    pub index: Option<usize>,
    pub position: usize,
    pub entropy: f32,
    pub lens: Vec<GoldenLens>,
    pub angular: Vec<f32>,
}

#[derive(Debug, Deserialize)]
pub struct GoldenLens {
    pub layer: usize,
    pub ids: Vec<u32>,
    pub probs: Vec<f32>,
}

#[derive(Debug, Deserialize)]
pub struct GoldenBlock {
    pub n: usize,
    pub start: usize,
    pub distance: f32,
}

#[derive(Debug, Deserialize)]
pub struct GoldenImportance {
    pub target: u32,
    pub ablation: Vec<Vec<f32>>,
    pub gradient: Vec<Vec<f32>>,
    pub layer_ablation: Vec<f32>,
}

pub fn golden(model: &str) -> Golden {
    let path = fixture("golden").join(format!("{model}.json"));
    let text = std::fs::read_to_string(&path).expect("golden file");
    serde_json::from_str(&text).expect("golden parses")
}

pub fn assert_close(what: &str, got: f32, want: f32, tol: f32) {
    assert!(
        (got - want).abs() <= tol,
        "{what}: got {got}, want {want} (|diff| {} > {tol})",
        (got - want).abs()
    );
}

/// Relative closeness with an absolute floor for values near zero.
pub fn assert_rel(what: &str, got: f32, want: f32, rel: f32, floor: f32) {
    let tol = (rel * want.abs()).max(floor);
    assert!(
        (got - want).abs() <= tol,
        "{what}: got {got}, want {want} (|diff| {} > {tol})",
        (got - want).abs()
    );
}

/// An empty folder for one test under the target's temporary directory.
/// The largest absolute difference of two tensors of one shape.
pub fn max_abs_diff(a: &candle_core::Tensor, b: &candle_core::Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

/// Runs the binary offline with `args` then `extra`.
pub fn coconut_lens(args: &[&str], extra: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_coconut-lens"))
        .args(args)
        .args(extra)
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .expect("the binary runs")
}

/// A generated file of `n` tiny ProsQA-shaped problems (seed `seed`) in `dir`.
pub fn tiny_problems(dir: &Path, n: usize, seed: u64) -> String {
    use coconut_lens::data::prosqa;
    let path = dir.join("tiny.json");
    let shape = coconut_lens::train::DataShape::Tiny.gen_config();
    prosqa::write_problems(&path, &prosqa::generate(&shape, n, seed, "tiny").unwrap()).unwrap();
    path.display().to_string()
}

pub fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Asserts a clean failure: non-zero exit, one line on stderr mentioning `needle` (any case),
/// no panic.
pub fn assert_one_line_error(out: &Output, needle: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "expected failure, stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(!err.contains("panicked"), "panic: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "not one line: {err}");
    assert!(
        err.to_lowercase().contains(&needle.to_lowercase()),
        "expected {needle:?} in: {err}"
    );
}

/// Lays out the files of `dir` like the Hugging Face cache under `hf_home`: blobs, a snapshot
/// of symlinks, refs/main. Returns the snapshot's commit.
#[allow(dead_code)]
pub fn fake_hub_cache_of(hf_home: &Path, repo: &str, dir: &Path) -> String {
    let commit = "0123456789abcdef0123456789abcdef01234567";
    let root = hf_home
        .join("hub")
        .join(format!("models--{}", repo.replace('/', "--")));
    let (blobs, snap) = (root.join("blobs"), root.join("snapshots").join(commit));
    std::fs::create_dir_all(&blobs).unwrap();
    std::fs::create_dir_all(&snap).unwrap();
    std::fs::create_dir_all(root.join("refs")).unwrap();
    std::fs::write(root.join("refs/main"), commit).unwrap();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let blob = blobs.join(format!("blob-{}", e.file_name().to_string_lossy()));
        std::fs::copy(e.path(), &blob).unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink(&blob, snap.join(e.file_name())).unwrap();
        #[cfg(not(unix))]
        std::fs::copy(&blob, snap.join(e.file_name())).unwrap();
    }
    commit.to_string()
}
