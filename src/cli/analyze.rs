//! `coconut-lens analyze`: run a prompt and print its analysis.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use anyhow::{Result, bail};
use clap::Args;

use super::args::{BUNDLED_MODEL, CheckedRun, ModelArgs, PromptArgs, RunArgs, check_run};
use crate::analysis::document::{AnalysisDocument, HeadImportance};
use crate::analysis::effect::{effect_between, patch_sweep};
use crate::analysis::importance::{
    Importance, ImportanceMethod, SweepControl, ablation_importance, gradient_importance,
    scored_spec,
};
use crate::analysis::run::{RunParams, compare, run_and_analyze};
use crate::model::load_model;

#[derive(Args, Debug)]
pub struct AnalyzeArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub prompt: PromptArgs,
    #[command(flatten)]
    pub run: RunArgs,
    /// Tokens per layer in the logit lens.
    #[arg(long, default_value_t = 5)]
    pub top_k: usize,
    /// Compute attention-head importance: ablation or gradient.
    #[arg(long, value_name = "METHOD")]
    pub head_importance: Option<String>,
    /// Gradient target token (vocabulary string or single-token text). Default: the greedy
    /// answer token at --importance-step.
    #[arg(long, value_name = "TOKEN")]
    pub target: Option<String>,
    /// Which answer token head importance scores (0 = the first). The earlier answer tokens
    /// are forced to the run's own, so every ablation is compared at the same position.
    #[arg(long, value_name = "K", default_value_t = 0)]
    pub importance_step: usize,
    /// Activation patching at every (thought, layer) from --patch-prompt (the clean run) into
    /// the prompt's run, scored by the candidates' logit difference.
    #[arg(long)]
    pub patch_sweep: bool,
    /// Also save a session (the run and its no-ablation baseline) that the TUI reopens and
    /// `export` plots. An existing file is not replaced.
    #[arg(long, value_name = "FILE")]
    pub save_session: Option<PathBuf>,
}

/// A `--target` token: a vocabulary string (`Ġcat`) or a text that encodes to one token.
fn resolve_target(tokenizer: &crate::model::Tokenizer, token: &str) -> Result<u32> {
    if let Some(id) = tokenizer.token_id(token) {
        return Ok(id);
    }
    match tokenizer.encode_plain(token)?.as_slice() {
        [id] => Ok(*id),
        _ => bail!("target token \"{token}\" does not exist in the vocabulary"),
    }
}

pub fn analyze(args: &AnalyzeArgs) -> Result<()> {
    // Validate everything cheap before loading weights.
    let CheckedRun {
        source,
        prompt,
        mode,
        thoughts,
        interventions,
        thought_edits,
        sampling,
    } = check_run(&args.model, &args.prompt, &args.run, args.top_k)?;
    if args.patch_sweep && args.run.patch_prompt.is_none() {
        bail!("--patch-sweep needs the clean prompt to patch from: pass --patch-prompt \"...\"");
    }
    let method = args
        .head_importance
        .as_deref()
        .map(str::parse::<ImportanceMethod>)
        .transpose()?;
    if args.target.is_some() && method != Some(ImportanceMethod::Gradient) {
        bail!("--target only applies with --head-importance gradient");
    }
    if args.importance_step > 0 && method.is_none() {
        bail!("--importance-step only applies with --head-importance");
    }
    if let Some(path) = &args.save_session
        && path.exists()
    {
        bail!("{} already exists (not overwritten)", path.display());
    }
    let (device, dtype) = args.model.device_and_dtype()?;

    let t0 = Instant::now();
    let loaded = load_model(&source, &device, dtype)?;
    let load_ms = t0.elapsed().as_secs_f64() * 1e3;

    let t1 = Instant::now();
    let params = RunParams {
        prompt: prompt.clone(),
        thoughts,
        mode,
        max_new_tokens: args.run.max_new_tokens,
        top_k: args.top_k,
        context_tokens: 0,
        interventions: interventions.clone(),
        thought_edits: thought_edits.clone(),
        sampling,
    };
    let spec = params.spec(false);
    let (model, tokenizer) = (&loaded.model, &loaded.tokenizer);
    let target = args
        .target
        .as_deref()
        .map(|t| resolve_target(tokenizer, t))
        .transpose()?;
    let never = AtomicBool::new(false);
    let mut current = run_and_analyze(model, tokenizer, &params, None, false, &never)?;
    let mut doc = AnalysisDocument::of_run(&current.analysis, tokenizer);
    // The run without interventions: the effect's reference and the session's baseline.
    let mut baseline = if params.intervened() {
        let base = run_and_analyze(model, tokenizer, &params.baseline(), None, false, &never)?;
        doc.effect = Some(effect_between(model, tokenizer, &params, &base, &current)?);
        Some(base)
    } else {
        None
    };
    if args.patch_sweep {
        let source = args.run.patch_prompt.as_deref().unwrap_or_default();
        let bar = crate::cli::progress_bar("patching sweep");
        let sweep = patch_sweep(
            model,
            tokenizer,
            &params,
            source,
            &mut |done, total| {
                bar.set_length(total as u64);
                bar.set_position(done as u64);
            },
            None,
        )?;
        bar.finish_and_clear();
        doc.patch_sweep = Some(sweep);
    }
    let mut importance = None;
    if let Some(method) = method {
        let ids = tokenizer.encode_prompt(&prompt)?;
        let mut progress = |done: usize, total: usize| {
            eprint!("\rhead importance: {done}/{total}");
            if done == total {
                eprintln!();
            }
        };
        let mut ctl = SweepControl {
            progress: &mut progress,
            cancel: None,
        };
        let (scored, greedy) = scored_spec(
            model,
            tokenizer,
            &ids,
            &spec,
            &interventions,
            args.importance_step,
        )?;
        let sweep = ablation_importance(
            model,
            tokenizer,
            &ids,
            &scored,
            &interventions,
            method == ImportanceMethod::Ablation,
            &mut ctl,
        )?;
        let (target, values) = match method {
            ImportanceMethod::Ablation => (greedy, sweep.heads),
            ImportanceMethod::Gradient => {
                let target = target.unwrap_or(greedy);
                let g =
                    gradient_importance(model, tokenizer, &ids, &scored, &interventions, target)?;
                (target, g)
            }
        };
        doc.head_importance = Some(HeadImportance {
            method: method.name().to_string(),
            answer_step: args.importance_step,
            target,
            values: values.clone(),
        });
        doc.layer_importance = Some(sweep.layers.clone());
        importance = Some(Importance {
            method,
            step: args.importance_step,
            target: tokenizer.display(target),
            target_id: target,
            heads: values,
            layers: sweep.layers,
            compute_ms: 0.0,
        });
    }
    doc.timings.load_ms = load_ms;
    doc.timings.compute_ms = t1.elapsed().as_secs_f64() * 1e3;
    doc.timings.peak_rss_mib = crate::analysis::document::peak_rss_mib();
    if let Some(path) = &args.save_session {
        let comparison = compare(baseline.as_ref().unwrap_or(&current), &current);
        current.analysis.comparison = comparison;
        current.analysis.effect = doc.effect.clone();
        current.analysis.compute_ms = doc.timings.compute_ms;
        let baseline = match baseline.take() {
            Some(mut b) => {
                b.analysis.comparison = compare(&b, &b);
                b.analysis
            }
            None => current.analysis.clone(),
        };
        let inputs = crate::session::SessionInputs {
            model: args
                .model
                .model
                .clone()
                .unwrap_or_else(|| BUNDLED_MODEL.to_string()),
            base: args.model.base.clone(),
            revision: None,
            device: crate::model::load::device_label(&device),
            dtype: crate::model::load::dtype_label(dtype).to_string(),
            importance_method: method,
        };
        let view = crate::session::ViewState {
            tab: "lens".to_string(),
            ..Default::default()
        };
        crate::session::Session::new(inputs, view, baseline, current.analysis, importance)
            .save(path, false)?;
        eprintln!("session saved to {}", path.display());
    }
    println!("{}", serde_json::to_string_pretty(&doc)?);
    Ok(())
}
