//! Golden tests: the engine against Hugging Face transformers in f32 on tiny random models
//! (fixtures and references from `scripts/make_fixtures.py`), and the bf16 path against the
//! same references with the bf16 tolerances the GPU check uses.

mod common;

use candle_core::{DType, Device};
use common::check::{Tol, check_model, fixture_models, load_checkpoint_on};
use common::*;

#[test]
fn gpt2_matches_transformers() {
    check_model(&load_dir("gpt2-tiny"), "gpt2-tiny", &Tol::F32, None);
}

#[test]
fn gpt2_without_transformer_prefix_matches_transformers() {
    check_model(
        &load_dir("gpt2-tiny-noprefix"),
        "gpt2-tiny",
        &Tol::F32,
        None,
    );
}

#[test]
fn llama_gqa_llama3_rope_untied_matches_transformers() {
    check_model(
        &load_dir("llama-tiny-gqa"),
        "llama-tiny-gqa",
        &Tol::F32,
        None,
    );
}

#[test]
fn llama_tied_rope_parameters_matches_transformers() {
    check_model(
        &load_dir("llama-tiny-tied"),
        "llama-tiny-tied",
        &Tol::F32,
        None,
    );
}

#[test]
fn coconut_gpt2_checkpoint_matches_its_folder() {
    let loaded = load_checkpoint_on(
        "gpt2-tiny-coconut-ckpt/checkpoint_2",
        "gpt2-tiny-base",
        &Device::Cpu,
        DType::F32,
    );
    assert!(loaded.tokenizer.coconut.is_some(), "Coconut tokens added");
    check_model(&loaded, "gpt2-tiny", &Tol::F32, None);
}

#[test]
fn coconut_llama_checkpoint_matches_its_folder() {
    let loaded = load_checkpoint_on(
        "llama-tiny-coconut-ckpt/checkpoint_1",
        "llama-tiny-base",
        &Device::Cpu,
        DType::F32,
    );
    check_model(&loaded, "llama-tiny-gqa", &Tol::F32, None);
}

#[test]
fn coconut_gpt2_checkpoint_without_embedding_key_matches_its_folder() {
    let loaded = load_checkpoint_on(
        "gpt2-tiny-coconut-noemb/checkpoint_2",
        "gpt2-tiny-base",
        &Device::Cpu,
        DType::F32,
    );
    check_model(&loaded, "gpt2-tiny", &Tol::F32, None);
}

/// Llama 3.2 style: tied embeddings, llama3 RoPE, a base of config.json and a tokenizer that
/// lacks the three Coconut tokens, no `embedding.weight` key.
#[test]
fn coconut_tied_llama_checkpoint_on_a_config_only_base_matches_its_folder() {
    let base = model_dir("llama-tiny-tied-coconut/base");
    assert!(!base.join("model.safetensors").exists());
    let base_tok = coconut_lens::model::Tokenizer::from_file(&base.join("tokenizer.json")).unwrap();
    assert!(
        base_tok.coconut.is_none(),
        "the base tokenizer lacks the Coconut tokens"
    );
    let loaded = load_checkpoint_on(
        "llama-tiny-tied-coconut/checkpoint_1",
        "llama-tiny-tied-coconut/base",
        &Device::Cpu,
        DType::F32,
    );
    assert_eq!(loaded.model.info.vocab, base_tok.vocab_size() + 3);
    check_model(&loaded, "llama-tiny-tied", &Tol::F32, None);
}

/// bf16 end to end (weights, activations, KV cache; softmax, lens and KL in f32) keeps the
/// greedy answers and stays within the bf16 tolerances: the CPU half of the GPU check's bf16 claim.
#[test]
fn bf16_matches_transformers_within_bf16_tolerance() {
    let reference = fixture_models(&Device::Cpu, DType::F32);
    for ((label, loaded, golden_name), (_, f32_model, _)) in
        fixture_models(&Device::Cpu, DType::BF16)
            .into_iter()
            .zip(&reference)
    {
        assert_eq!(loaded.model.dtype(), DType::BF16, "{label}");
        check_model(&loaded, golden_name, &Tol::BF16, Some(f32_model));
    }
}

/// `scale_attn_by_inverse_layer_idx` (transformers: block l divides its attention scores by
/// l + 1): block 0 is unchanged, and block 1, whose input is then the same, attends with
/// softmax(s / 2) = normalise(sqrt(p)) where the unscaled model attends with p = softmax(s).
#[test]
fn gpt2_scale_attn_by_inverse_layer_idx_divides_the_scores_of_block_l_by_l_plus_one() {
    use coconut_lens::model::{Interventions, ModelSource, load_model};
    use coconut_lens::thought::{RunSpec, ThoughtCount, ThoughtMode, run};

    let plain_dir = model_dir("gpt2-tiny");
    let scaled_dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("gpt2-tiny-scaled");
    std::fs::create_dir_all(&scaled_dir).unwrap();
    for f in std::fs::read_dir(&plain_dir).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, scaled_dir.join(f.file_name().unwrap())).unwrap();
    }
    let config = scaled_dir.join("config.json");
    let mut c: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    c["scale_attn_by_inverse_layer_idx"] = true.into();
    std::fs::write(&config, c.to_string()).unwrap();

    let spec = RunSpec {
        thoughts: ThoughtCount::Fixed { n: 0 },
        mode: ThoughtMode::Coconut,
        max_new_tokens: 1,
        context_rows: 1,
        attention: true,
        forced_answer: Vec::new(),
        feeds: coconut_lens::thought::Feeds::none(),
        sampling: Default::default(),
    };
    let attention = |dir: &std::path::Path| {
        let lm = load_model(&ModelSource::Local(dir.into()), &Device::Cpu, DType::F32).unwrap();
        let ids = lm
            .tokenizer
            .encode_prompt("Alex is a wumpus. Is Alex a yumpus?")
            .unwrap();
        let hooks = lm.model.hooks(&Interventions::default()).unwrap();
        let r = run(&lm.model, &lm.tokenizer, &ids, &spec, &hooks).unwrap();
        let layers = r.prompt_steps[0].attention.clone().unwrap();
        layers
            .into_iter()
            .map(|a| a.unwrap().to_vec2::<f32>().unwrap())
            .collect::<Vec<_>>()
    };
    let (plain, scaled) = (attention(&plain_dir), attention(&scaled_dir));
    assert!(plain.len() >= 2);
    for (h, (p, s)) in plain[0].iter().zip(&scaled[0]).enumerate() {
        for (a, b) in p.iter().zip(s) {
            assert!((a - b).abs() < 1e-6, "block 0 head {h}: {a} vs {b}");
        }
    }
    let mut moved = 0f32;
    for (h, (p, s)) in plain[1].iter().zip(&scaled[1]).enumerate() {
        let z: f32 = p.iter().map(|x| x.sqrt()).sum();
        for (a, b) in p.iter().zip(s) {
            let want = a.sqrt() / z;
            assert!((want - b).abs() < 1e-5, "block 1 head {h}: {want} vs {b}");
            moved = moved.max((a - b).abs());
        }
    }
    assert!(moved > 1e-3, "the flag changes block 1's attention");
}
