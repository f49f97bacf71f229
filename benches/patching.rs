//! The activation-patching sweep (every (thought, layer) of the residual stream copied from a
//! second prompt) and the data-set intervention sweep's cost per problem, on the bundled
//! model, as ratios against one plain run measured in the same process.
//!
//! `cargo bench --bench patching`. The target: the patching sweep in under 2 s on the
//! project's 2-core machine.

use std::sync::atomic::AtomicBool;

use coconut_lens::analysis::effect::patch_sweep;
use coconut_lens::analysis::run::{RunParams, run_and_analyze};
use coconut_lens::cli::args::bundled_model_path;
use coconut_lens::data::facts;
use coconut_lens::model::meta::ModelMeta;
use coconut_lens::model::{Interventions, ModelSource, load_model};
use coconut_lens::thought::{ThoughtCount, ThoughtMode};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The demo prompt with its person's first fact pointing at the other candidate: the same
/// length, another answer (a clean/corrupted pair).
fn counterfactual(prompt: &str) -> String {
    let g = facts::parse(prompt).expect("the demo prompt states a problem");
    let root = &g.nodes[g.root];
    let other = &g.nodes[g.candidates[1]];
    let fact = format!("{root} is a ");
    let at = prompt.find(&fact).expect("a fact about the person") + fact.len();
    let end = at + prompt[at..].find('.').expect("a full stop");
    format!("{}{other}{}", &prompt[..at], &prompt[end..])
}

fn main() {
    let dir = bundled_model_path();
    let source = ModelSource::Local(dir.clone());
    let m = load_model(&source, &candle_core::Device::Cpu, candle_core::DType::F32).unwrap();
    let meta = ModelMeta::of_source(&source).expect("the bundled model's metadata");
    let prompt = meta.demo().expect("a demo prompt").to_string();
    let thoughts = meta.thoughts.unwrap_or(6);
    let params = RunParams {
        prompt: prompt.clone(),
        thoughts: ThoughtCount::Fixed { n: thoughts },
        mode: ThoughtMode::Coconut,
        max_new_tokens: 16,
        top_k: 5,
        context_tokens: 0,
        interventions: Interventions::default(),
        thought_edits: Default::default(),
        sampling: Default::default(),
    };
    let clean = counterfactual(&prompt);
    let never = AtomicBool::new(false);
    let time = |f: &mut dyn FnMut()| -> f64 {
        let t = std::time::Instant::now();
        f();
        t.elapsed().as_secs_f64() * 1e3
    };
    // Warm-up, then medians.
    let mut one_run = || {
        run_and_analyze(&m.model, &m.tokenizer, &params, None, false, &never).unwrap();
    };
    one_run();
    let run_ms = median((0..7).map(|_| time(&mut one_run)).collect());
    let mut cells = 0;
    let mut sweep = || {
        let s = patch_sweep(
            &m.model,
            &m.tokenizer,
            &params,
            &clean,
            &mut |_, _| {},
            None,
        )
        .unwrap();
        cells = s.logit_diff.iter().map(Vec::len).sum();
    };
    sweep();
    let sweep_ms = median((0..5).map(|_| time(&mut sweep)).collect());
    println!(
        "bundled model ({}), {thoughts} thoughts, prompt of {} tokens",
        dir.display(),
        m.tokenizer.encode_prompt(&prompt).unwrap().len()
    );
    println!("one analysed run:          {run_ms:8.1} ms");
    println!(
        "patching sweep ({cells} cells): {sweep_ms:8.1} ms = {:.1}x one run (target: under 2000 ms)",
        sweep_ms / run_ms
    );
}
