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

pub const STATE_FORMAT: &str = "coconut-lens.train-state.v1";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochLog {
    pub epoch: usize,
    pub stage: usize,
    /// Mean training loss (nats per predicted token) over the epoch.
    pub loss: f64,
    /// Accuracy on the generated validation problems at the end of the epoch.
    pub val_accuracy: f64,
    /// Training time so far, seconds.
    pub seconds: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    pub format: String,
    pub config: TrainConfig,
    /// Epoch in progress (index into the schedule); equal to its length when done.
    pub epoch: usize,
    /// Next batch of that epoch.
    pub batch: usize,
    pub epoch_loss_sum: f64,
    pub epoch_batches: usize,
    pub adam_steps: u64,
    pub elapsed_s: f64,
    pub history: Vec<EpochLog>,
}

impl TrainState {
    pub fn new(config: TrainConfig) -> Self {
        Self {
            format: STATE_FORMAT.to_string(),
            config,
            epoch: 0,
            batch: 0,
            epoch_loss_sum: 0.0,
            epoch_batches: 0,
            adam_steps: 0,
            elapsed_s: 0.0,
            history: Vec::new(),
        }
    }

    pub fn done(&self) -> bool {
        self.epoch >= self.config.schedule().len()
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

/// Loads the checkpoint of `out`, if any; it must have been written with `cfg`.
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
    if &st.config != cfg {
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
