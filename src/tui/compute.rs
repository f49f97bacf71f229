//! What the worker computes: the engine's analyses of the settings shown, with the baseline
//! kept between runs. This is the only TUI module that sees the model.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use anyhow::Result;

use super::data::{ModelSummary, RunResult};
use crate::analysis::effect::{PatchSweep, effect_between, patch_sweep};
use crate::analysis::importance::{
    Importance, ImportanceMethod, SweepControl, importance_of_answer,
};
use crate::analysis::run::{
    AnalysedRun, RunAnalysis, RunParams, Runtime, compare, run_and_analyze,
};
use crate::model::load::{device_label, dtype_label};
use crate::model::{LoadedModel, ModelSource};

pub fn model_summary(lm: &LoadedModel) -> ModelSummary {
    let info = &lm.model.info;
    let name = match &lm.source {
        ModelSource::Local(p) => p.file_name().map_or_else(
            || p.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        ),
        ModelSource::Hub { repo, .. } => repo.clone(),
        ModelSource::Coconut { checkpoint, .. } => checkpoint
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
        ModelSource::Codi { checkpoint, .. } => checkpoint.short_name(),
    };
    let runtime = Runtime {
        device: device_label(lm.model.device()),
        dtype: dtype_label(lm.model.dtype()).to_string(),
    };
    ModelSummary::new(name, info, runtime, lm.tokenizer.coconut.is_some())
}

/// The baseline run: what comparisons need, and its analysis as results share it.
struct Baseline {
    run: AnalysedRun,
    shown: Arc<RunAnalysis>,
}

/// The baseline of the current settings, reused while only the interventions change.
#[derive(Default)]
pub struct BaselineCache {
    data: Option<Baseline>,
}

impl BaselineCache {
    fn get(
        &mut self,
        lm: &LoadedModel,
        params: &RunParams,
        cancel: &AtomicBool,
    ) -> Result<&Baseline> {
        let key = params.baseline();
        if self
            .data
            .as_ref()
            .is_none_or(|b| b.run.analysis.params != key)
        {
            self.data = None;
            let mut run = run_and_analyze(&lm.model, &lm.tokenizer, &key, None, true, cancel)?;
            run.analysis.comparison = compare(&run, &run);
            let shown = Arc::new(run.analysis.clone());
            self.data = Some(Baseline { run, shown });
        }
        Ok(self.data.as_ref().expect("just filled"))
    }

    pub fn clear(&mut self) {
        self.data = None;
    }
}

/// The analysis of `params` with its comparison to the baseline.
pub fn compute_run(
    lm: &LoadedModel,
    params: &RunParams,
    cache: &mut BaselineCache,
    cancel: &AtomicBool,
) -> Result<RunResult> {
    let t0 = Instant::now();
    let Baseline { run: base, shown } = cache.get(lm, params, cancel)?;
    let elapsed = || t0.elapsed().as_secs_f64() * 1e3;
    if !params.intervened() {
        let mut current = (**shown).clone();
        current.compute_ms = elapsed();
        let current = Arc::new(current);
        return Ok(RunResult {
            baseline: current.clone(),
            current,
        });
    }
    let target = base.analysis.target.as_ref().map(|t| t.id);
    let mut cur = run_and_analyze(&lm.model, &lm.tokenizer, params, target, true, cancel)?;
    cur.analysis.comparison = compare(base, &cur);
    cur.analysis.effect = Some(effect_between(
        &lm.model,
        &lm.tokenizer,
        params,
        base,
        &cur,
    )?);
    cur.analysis.compute_ms = elapsed();
    Ok(RunResult {
        baseline: shown.clone(),
        current: Arc::new(cur.analysis),
    })
}

/// Head and layer importance of the run of `params` that answered `answer`.
pub fn compute_importance(
    lm: &LoadedModel,
    params: &RunParams,
    answer: &[u32],
    method: ImportanceMethod,
    progress: &mut dyn FnMut(usize, usize),
    cancel: &AtomicBool,
) -> Result<Importance> {
    let mut ctl = SweepControl {
        progress,
        cancel: Some(cancel),
    };
    importance_of_answer(&lm.model, &lm.tokenizer, params, answer, method, &mut ctl)
}

/// The patching sweep of `params` from its second prompt.
pub fn compute_patch(
    lm: &LoadedModel,
    params: &RunParams,
    progress: &mut dyn FnMut(usize, usize),
    cancel: &AtomicBool,
) -> Result<PatchSweep> {
    let Some(source) = params.thought_edits.patch_prompt.as_deref() else {
        anyhow::bail!("no second prompt: P sets it");
    };
    patch_sweep(
        &lm.model,
        &lm.tokenizer,
        params,
        source,
        progress,
        Some(cancel),
    )
}
