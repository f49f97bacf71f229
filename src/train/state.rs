//! The resumable state of a training run: `out/checkpoint/{state.json, params.safetensors,
//! optimizer.safetensors}`, replaced as a whole (written beside, then renamed).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use candle_core::{Device, Tensor, Var};
use candle_nn::VarMap;
use serde::{Deserialize, Serialize};

use super::TrainConfig;
use super::optim::AdamW;

pub const STATE_FORMAT: &str = "coconut-lens.train-state.v2";

/// The figures of one evaluation during training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalLog {
    /// Optimizer steps done.
    pub step: u64,
    pub stage: usize,
    /// Share of each problem's facts the last batch told.
    pub facts_share: f64,
    /// Mean optimised loss per sequence since the previous evaluation.
    pub loss: f64,
    /// Mean language loss per scored token since the previous evaluation.
    pub language_loss: f64,
    /// Mean frontier loss per sequence (summed over its outputs), when trained.
    pub frontier_loss: Option<f64>,
    /// Accuracy on the generated validation problems.
    pub val_accuracy: f64,
    /// Per output (`<|start-latent|>`, then each thought): share of validation problems whose
    /// frontier set is exactly the top-ranked tokens.
    pub frontier_match: Vec<f64>,
    /// At stage 0: share of chain steps whose predicted node is a child of the step's source
    /// (see [`super::chain_lookup`]).
    #[serde(default)]
    pub chain_lookup: Option<f64>,
    /// Accuracy on the watched problems (`--watch`), when given.
    pub watch_accuracy: Option<f64>,
    /// Training time so far, seconds.
    pub seconds: f64,
}

/// Running sums of the losses between two evaluations.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LossSums {
    pub steps: u64,
    pub total: f64,
    pub language: f64,
    pub frontier: f64,
    pub frontier_steps: u64,
}

impl LossSums {
    pub fn add(&mut self, total: f64, language_per_token: f64, frontier: Option<f64>) {
        self.steps += 1;
        self.total += total;
        self.language += language_per_token;
        if let Some(f) = frontier {
            self.frontier += f;
            self.frontier_steps += 1;
        }
    }

    fn mean(sum: f64, n: u64) -> f64 {
        if n == 0 { f64::NAN } else { sum / n as f64 }
    }

    pub fn mean_total(&self) -> f64 {
        Self::mean(self.total, self.steps)
    }

    pub fn mean_language(&self) -> f64 {
        Self::mean(self.language, self.steps)
    }

    pub fn mean_frontier(&self) -> Option<f64> {
        (self.frontier_steps > 0).then(|| Self::mean(self.frontier, self.frontier_steps))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    pub format: String,
    pub config: TrainConfig,
    /// Optimizer steps done.
    pub step: u64,
    pub sums: LossSums,
    pub adam_steps: u64,
    pub elapsed_s: f64,
    pub history: Vec<EvalLog>,
}

impl TrainState {
    pub fn new(config: TrainConfig) -> Self {
        Self {
            format: STATE_FORMAT.to_string(),
            config,
            step: 0,
            sums: LossSums::default(),
            adam_steps: 0,
            elapsed_s: 0.0,
            history: Vec::new(),
        }
    }

    pub fn done(&self) -> bool {
        self.step >= self.config.total_steps()
    }
}

fn checkpoint_dir(out: &Path) -> PathBuf {
    out.join("checkpoint")
}

/// Writes the checkpoint next to the old one, then swaps them, so that an interruption at any
/// point leaves a complete checkpoint (the new one, or the old one under `checkpoint.old`).
pub fn save(out: &Path, st: &TrainState, varmap: &VarMap, opt: &AdamW) -> Result<PathBuf> {
    let dir = checkpoint_dir(out);
    let tmp = out.join("checkpoint.tmp");
    let old = out.join("checkpoint.old");
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp)?;
    }
    std::fs::create_dir_all(&tmp)?;
    varmap.save(tmp.join("params.safetensors"))?;
    let mut moments: HashMap<String, Tensor> = HashMap::new();
    for s in &opt.slots {
        moments.insert(format!("m.{}", s.name), s.m.clone());
        moments.insert(format!("v.{}", s.name), s.v.clone());
    }
    candle_core::safetensors::save(&moments, tmp.join("optimizer.safetensors"))?;
    let mut st = st.clone();
    st.adam_steps = opt.t;
    std::fs::write(tmp.join("state.json"), serde_json::to_string_pretty(&st)?)?;
    if dir.exists() {
        if old.exists() {
            std::fs::remove_dir_all(&old)?;
        }
        std::fs::rename(&dir, &old)?;
    }
    std::fs::rename(&tmp, &dir)?;
    if old.exists() {
        std::fs::remove_dir_all(&old)?;
    }
    Ok(dir)
}

/// Loads the checkpoint of `out`, if any; it must have been written with `cfg`, or with a
/// schedule that differs only in its length and has trained identically so far
/// ([`TrainConfig::same_run_until`]). The returned state keeps the saved configuration.
pub fn load(out: &Path, cfg: &TrainConfig) -> Result<Option<(VarMap, AdamW, TrainState)>> {
    let mut dir = checkpoint_dir(out);
    if !dir.join("state.json").exists() {
        // Interrupted between the two renames of `save`.
        dir = out.join("checkpoint.old");
        if !dir.join("state.json").exists() {
            return Ok(None);
        }
    }
    let text = std::fs::read_to_string(dir.join("state.json"))
        .with_context(|| format!("cannot read {}", dir.display()))?;
    let st: TrainState = serde_json::from_str(&text)
        .with_context(|| format!("{}/state.json is damaged", dir.display()))?;
    if st.format != STATE_FORMAT {
        bail!(
            "{}: unknown checkpoint format {} (expected {STATE_FORMAT})",
            dir.display(),
            st.format
        );
    }
    let until = st.config.same_run_until(cfg);
    if let Some(until) = until.filter(|&u| st.step > u) {
        bail!(
            "{} holds a run with other settings: its length differs, and it is at step {}, past step {until} where the two schedules part; only a run stopped before then can be lengthened",
            out.display(),
            st.step
        );
    }
    if until.is_none() {
        bail!(
            "{} holds a run with other settings; pass the same options to resume it, or choose another --out\n  saved: {}\n  given: {}",
            out.display(),
            serde_json::to_string(&st.config)?,
            serde_json::to_string(cfg)?
        );
    }
    let dev = Device::Cpu;
    let params = candle_core::safetensors::load(dir.join("params.safetensors"), &dev)
        .with_context(|| format!("{}: cannot read params.safetensors", dir.display()))?;
    let varmap = VarMap::new();
    {
        let mut data = varmap.data().lock().expect("fresh varmap");
        for (name, t) in params {
            data.insert(name, Var::from_tensor(&t)?);
        }
    }
    let mut moments = candle_core::safetensors::load(dir.join("optimizer.safetensors"), &dev)
        .with_context(|| format!("{}: cannot read optimizer.safetensors", dir.display()))?;
    let vars = {
        let data = varmap.data().lock().expect("varmap lock");
        data.iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<Vec<_>>()
    };
    let mut opt = AdamW::new(vars, cfg.optim)?;
    for s in &mut opt.slots {
        s.m = moments
            .remove(&format!("m.{}", s.name))
            .with_context(|| format!("{}: no moment for {}", dir.display(), s.name))?;
        s.v = moments
            .remove(&format!("v.{}", s.name))
            .with_context(|| format!("{}: no moment for {}", dir.display(), s.name))?;
    }
    opt.t = st.adam_steps;
    Ok(Some((varmap, opt, st)))
}
