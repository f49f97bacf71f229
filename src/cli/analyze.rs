//! `coconut-lens analyze`: run a prompt and print its analysis.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Result, bail};
use clap::Args;

use super::args::{BUNDLED_MODEL, ModelArgs, PromptArgs, RunArgs, default_thoughts};
use crate::analysis::document::{HeadImportance, analyze_prompt};
use crate::analysis::importance::{
    ImportanceMethod, SweepControl, ablation_importance, gradient_importance, scored_spec,
};
use crate::model::{Interventions, load_model};
use crate::thought::{RunSpec, ThoughtMode};

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
    let source = args.model.source()?;
    let prompt = args.prompt.read_or_demo(&source)?;
    if prompt.trim().is_empty() {
        bail!("the prompt is empty");
    }
    let mode = args.run.mode()?;
    let thoughts = args.run.thought_count(default_thoughts(&source))?;
    let interventions = args.run.interventions()?;
    if args.top_k == 0 {
        bail!("--top-k must be at least 1");
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
    let hooks = loaded.model.hooks(&interventions)?;
    let spec = RunSpec {
        thoughts,
        mode,
        max_new_tokens: args.run.max_new_tokens,
        context_rows: 1,
        attention: false,
        forced_answer: Vec::new(),
    };
    let (model, tokenizer) = (&loaded.model, &loaded.tokenizer);
    let target = args
        .target
        .as_deref()
        .map(|t| resolve_target(tokenizer, t))
        .transpose()?;
    let (_, mut doc) = analyze_prompt(model, tokenizer, &prompt, &spec, &hooks, args.top_k)?;
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
            values,
        });
        doc.layer_importance = Some(sweep.layers);
    }
    doc.timings.load_ms = load_ms;
    doc.timings.compute_ms = t1.elapsed().as_secs_f64() * 1e3;
    doc.timings.peak_rss_mib = crate::analysis::document::peak_rss_mib();
    if let Some(path) = &args.save_session {
        let baseline = if interventions.is_empty() {
            doc.clone()
        } else {
            let hooks = model.hooks(&Interventions::default())?;
            analyze_prompt(model, tokenizer, &prompt, &spec, &hooks, args.top_k)?.1
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
            prompt: prompt.clone(),
            mode: mode.name().to_string(),
            thoughts: args
                .run
                .thoughts
                .clone()
                .unwrap_or_else(|| default_thoughts(&source).to_string()),
            entropy_stop: args.run.entropy_stop,
            ablations: interventions.clone(),
            importance_method: method.map(|m| m.name().to_string()),
            settings: Some(crate::session::RunSettings {
                max_new_tokens: Some(args.run.max_new_tokens),
                top_k: Some(args.top_k),
                context_tokens: None,
                soft_top_k: matches!(mode, ThoughtMode::Soft { .. }).then_some(args.run.soft_top_k),
                soft_top_p: matches!(mode, ThoughtMode::Soft { .. }).then_some(args.run.soft_top_p),
            }),
        };
        let view = crate::session::ViewState {
            tab: "lens".to_string(),
            ..Default::default()
        };
        crate::session::Session::new(inputs, view, baseline, doc.clone()).save(path, false)?;
        eprintln!("session saved to {}", path.display());
    }
    println!("{}", serde_json::to_string_pretty(&doc)?);
    Ok(())
}
