//! Sampled decoding (`--temperature`, `--top-p`, `--seed`, candle-transformers'
//! `LogitsProcessor`): reproducible by seed, greedy at temperature 0, and drawing from
//! softmax(logits / T) restricted to the top-p nucleus.

mod common;

use coconut_lens::model::Interventions;
use coconut_lens::thought::{Feeds, RunSpec, Sampling, ThoughtCount, ThoughtMode, run};
use common::*;
use serde_json::{Value, json};

const PROMPT: &str = "Every wumpus is a yumpus. Alex is a wumpus. Is Alex a yumpus?";

/// `analyze` on the GPT-2 fixture; the document without its timings.
fn analyze(extra: &[&str]) -> Value {
    let gpt2 = model_dir("gpt2-tiny");
    let out = coconut_lens(
        &[
            "analyze",
            "--model",
            gpt2.to_str().unwrap(),
            "--prompt",
            PROMPT,
            "--thoughts",
            "2",
        ],
        extra,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    doc.as_object_mut().unwrap().remove("timings");
    doc
}

#[test]
fn the_same_seed_gives_the_same_answer_and_the_settings_are_recorded() {
    let sampled = |seed: &str| analyze(&["--temperature", "2", "--top-p", "0.95", "--seed", seed]);
    let (a, b) = (sampled("5"), sampled("5"));
    assert_eq!(a, b, "same seed, same document");
    assert_eq!(
        a["sampling"],
        json!({"method": "sample", "temperature": 2.0, "top_p": 0.95, "seed": 5})
    );
    // Sampling is really on: other seeds give other answers.
    let answers: std::collections::BTreeSet<String> = (0..6)
        .map(|s| sampled(&s.to_string())["answer"]["ids"].to_string())
        .collect();
    assert!(answers.len() > 1, "six seeds, one answer: {answers:?}");
}

#[test]
fn temperature_zero_is_greedy_exactly() {
    let greedy = analyze(&[]);
    assert_eq!(greedy["sampling"], json!({"method": "greedy"}));
    let zero = analyze(&["--temperature", "0", "--top-p", "0.5", "--seed", "9"]);
    assert_eq!(zero, greedy);
}

#[test]
fn bad_sampling_options_are_one_line_errors() {
    let gpt2 = model_dir("gpt2-tiny");
    let base = [
        "analyze",
        "--model",
        gpt2.to_str().unwrap(),
        "--prompt",
        PROMPT,
    ];
    let out = coconut_lens(&base, &["--temperature", "-1"]);
    assert_one_line_error(&out, "--temperature must be a number >= 0");
    let out = coconut_lens(&base, &["--temperature", "1", "--top-p", "0"]);
    assert_one_line_error(&out, "--top-p must be in (0, 1]");
}

/// The toy model's distribution of the first answer token (`[V]` logits), and the run's
/// first answer token when it is sampled with `sampling`.
fn first_answer(sampling: Sampling) -> (Vec<f32>, u32, candle_core::Tensor) {
    let lm = load_dir("gpt2-tiny");
    let ids = lm.tokenizer.encode_prompt(PROMPT).unwrap();
    let spec = RunSpec {
        thoughts: ThoughtCount::Fixed { n: 2 },
        mode: ThoughtMode::Coconut,
        max_new_tokens: 1,
        context_rows: 1,
        attention: false,
        forced_answer: Vec::new(),
        feeds: Feeds::none(),
        sampling,
    };
    let hooks = lm.model.hooks(&Interventions::default()).unwrap();
    let r = run(&lm.model, &lm.tokenizer, &ids, &spec, &hooks).unwrap();
    let logits = r.answer[0].logits.clone();
    (logits.to_vec1().unwrap(), r.answer_ids[0], logits)
}

/// softmax(logits / T) in f64, restricted as LogitsProcessor does: tokens by decreasing
/// probability are kept while the mass before them is below `p` (all of them when p = 1);
/// then renormalised.
fn nucleus(logits: &[f32], t: f64, p: f64) -> (Vec<f64>, f64) {
    let max = logits.iter().fold(f32::MIN, |m, &x| m.max(x)) as f64;
    let e: Vec<f64> = logits
        .iter()
        .map(|&x| ((x as f64 - max) / t).exp())
        .collect();
    let z: f64 = e.iter().sum();
    let q: Vec<f64> = e.iter().map(|x| x / z).collect();
    let mut order: Vec<usize> = (0..q.len()).collect();
    order.sort_by(|&i, &j| q[j].total_cmp(&q[i]));
    let (mut kept, mut mass) = (vec![0.0; q.len()], 0.0);
    // The distance of the cut from p: the test needs it clear of f32 rounding.
    let mut margin = f64::INFINITY;
    for &i in &order {
        if p < 1.0 {
            margin = margin.min((mass - p).abs());
        }
        if mass >= p {
            break;
        }
        kept[i] = q[i];
        mass += q[i];
    }
    (kept.iter().map(|k| k / mass).collect(), margin)
}

/// Each token's empirical frequency against the expected probability: within 5 standard
/// deviations of a binomial count, sqrt(q (1 - q) / n), plus one count for rounding. With
/// ~360 tokens per check a correct sampler fails one bound with probability about 360 × 6e-7;
/// the draws are seeded, so the outcome is fixed. Tokens outside the nucleus are never drawn.
fn assert_frequencies(counts: &[usize], want: &[f64], what: &str) {
    let n: usize = counts.iter().sum();
    for (id, (&c, &q)) in counts.iter().zip(want).enumerate() {
        let freq = c as f64 / n as f64;
        if q == 0.0 {
            assert_eq!(
                c, 0,
                "{what}: token {id} is outside the nucleus but drawn {c} times"
            );
            continue;
        }
        let tol = 5.0 * (q * (1.0 - q) / n as f64).sqrt() + 1.0 / n as f64;
        assert!(
            (freq - q).abs() <= tol,
            "{what}: token {id} drawn with frequency {freq:.5}, expected {q:.5} ± {tol:.5}"
        );
    }
}

#[test]
fn sampled_tokens_follow_the_tempered_nucleus_distribution() {
    let (logits, _, tensor) = first_answer(Sampling::Greedy);
    const DRAWS: usize = 20_000;
    for (t, p) in [(1.0, 1.0), (2.0, 0.9), (0.7, 0.5)] {
        let (want, margin) = nucleus(&logits, t, p);
        assert!(
            margin > 1e-4,
            "T={t} p={p}: the nucleus cut is too close to call"
        );
        let kept = want.iter().filter(|&&q| q > 0.0).count();
        assert!(kept >= 3, "T={t} p={p}: only {kept} tokens, a weak test");
        let what = format!("T={t} p={p}");
        // One generator drawing many times (the tokens of one long answer).
        let mut sampler = Sampling::new(t, p, 11).unwrap().sampler();
        let mut counts = vec![0usize; logits.len()];
        for _ in 0..DRAWS {
            counts[sampler.next(&tensor).unwrap() as usize] += 1;
        }
        assert_frequencies(&counts, &want, &format!("{what}, one seed"));
        // The first draw of many seeds (the first tokens of runs with --seed 0, 1, ...).
        let mut counts = vec![0usize; logits.len()];
        for seed in 0..DRAWS as u64 / 4 {
            let mut sampler = Sampling::new(t, p, seed).unwrap().sampler();
            counts[sampler.next(&tensor).unwrap() as usize] += 1;
        }
        assert_frequencies(&counts, &want, &format!("{what}, first draw per seed"));
    }
}

/// The runner draws its answer with the sampler of its settings, from the model's logits.
#[test]
fn the_run_samples_its_answer_with_its_seed() {
    for seed in 0..8 {
        let sampling = Sampling::new(1.5, 0.9, seed).unwrap();
        let (_, drawn, logits) = first_answer(sampling);
        assert_eq!(
            drawn,
            sampling.sampler().next(&logits).unwrap(),
            "seed {seed}"
        );
    }
}

/// `eval` of the bundled model on `data`; the printed report.
fn eval(data: &str, extra: &[&str]) -> Value {
    let out = coconut_lens(&["eval", "--data", data], extra);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn eval_samples_every_answer_with_its_seed() {
    use coconut_lens::data::prosqa;
    let dir = scratch("eval-sampling");
    let path = dir.join("problems.json");
    let shape = coconut_lens::train::DataShape::Prosqa.gen_config();
    prosqa::write_problems(&path, &prosqa::generate(&shape, 12, 5, "test").unwrap()).unwrap();
    let d = path.display().to_string();
    let greedy = eval(&d, &[]);
    assert_eq!(greedy["sampling"], json!({"method": "greedy"}));
    assert_eq!(eval(&d, &["--temperature", "0", "--seed", "9"]), greedy);
    let hot = ["--temperature", "3", "--seed", "3"];
    let sampled = eval(&d, &hot);
    assert_eq!(eval(&d, &hot), sampled, "same seed, same figures");
    assert_eq!(
        sampled["sampling"],
        json!({"method": "sample", "temperature": 3.0, "top_p": 1.0, "seed": 3})
    );
    // The bundled model answers these greedily; drawn at temperature 3 its answers go wrong.
    let (g, s) = (greedy["correct"].as_u64(), sampled["correct"].as_u64());
    assert!(s < g, "greedy {g:?} correct, sampled {s:?}");
    assert_one_line_error(
        &coconut_lens(&["eval", "--data", &d, "--record"], &hot),
        "--record keeps the model's greedy figures",
    );
    assert_one_line_error(
        &coconut_lens(&["eval", "--data", &d, "--intervention-sweep"], &hot),
        "--intervention-sweep compares greedy answers",
    );
    assert_one_line_error(
        &coconut_lens(&["eval", "--data", &d, "--temperature", "-1"], &[]),
        "--temperature must be",
    );
}
