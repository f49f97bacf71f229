//! A second, independent reference besides PyTorch: our instrumented Llama forward against
//! candle-transformers' own Llama (`candle_transformers::models::llama`) on the same weights,
//! next-token logits at every position within 1e-4.
//!
//! What candle-transformers 0.11.1 can check, and what not:
//! - its Llama derives `head_dim` as hidden / heads, so the `llama-tiny-gqa` fixture (and
//!   `llama-tiny-base`; explicit `head_dim` 16 with hidden 32 and 4 heads) cannot be built by
//!   it. Checked instead: `llama-tiny-tied` (llama3 RoPE from `rope_parameters`, tied head), the
//!   bundled model, and a random model with what that fixture covers (grouped-query
//!   attention, llama3 RoPE, an untied head) at `head_dim` = hidden / heads;
//! - it has no GPT-2 model. Its GPT-BigCode (`models::bigcode`), GPT-2's closest relative,
//!   reshapes the fused QKV of multi-head (not multi-query) attention by the model width
//!   instead of the head count, so it cannot run a GPT-2 either.

mod common;

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::llama as reference;
use coconut_lens::model::{Interventions, KvCache, LoadedModel, ModelSource, load_model};
use common::*;
use serde_json::Value;

/// candle-transformers' config of a Hugging Face Llama `config.json`, read here from the JSON
/// (both rope styles: `rope_scaling` + `rope_theta`, or `rope_parameters`).
fn reference_config(dir: &Path) -> reference::Config {
    let c: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    let n = |k: &str| c[k].as_u64().unwrap_or_else(|| panic!("{k}")) as usize;
    let heads = n("num_attention_heads");
    if let Some(hd) = c["head_dim"].as_u64() {
        assert_eq!(
            hd as usize,
            n("hidden_size") / heads,
            "candle derives head_dim"
        );
    }
    let rope = c.get("rope_parameters").unwrap_or(&c["rope_scaling"]);
    let theta = c["rope_theta"]
        .as_f64()
        .or_else(|| rope["rope_theta"].as_f64())
        .unwrap_or(10_000.0);
    let scaling = (rope["rope_type"] == "llama3").then(|| reference::Llama3RopeConfig {
        factor: rope["factor"].as_f64().unwrap() as f32,
        low_freq_factor: rope["low_freq_factor"].as_f64().unwrap() as f32,
        high_freq_factor: rope["high_freq_factor"].as_f64().unwrap() as f32,
        original_max_position_embeddings: rope["original_max_position_embeddings"].as_u64().unwrap()
            as usize,
        rope_type: reference::Llama3RopeType::Llama3,
    });
    reference::Config {
        hidden_size: n("hidden_size"),
        intermediate_size: n("intermediate_size"),
        vocab_size: n("vocab_size"),
        num_hidden_layers: n("num_hidden_layers"),
        num_attention_heads: heads,
        num_key_value_heads: c["num_key_value_heads"]
            .as_u64()
            .map_or(heads, |k| k as usize),
        use_flash_attn: false,
        rms_norm_eps: c["rms_norm_eps"].as_f64().unwrap(),
        rope_theta: theta as f32,
        bos_token_id: None,
        eos_token_id: None,
        rope_scaling: scaling,
        max_position_embeddings: n("max_position_embeddings"),
        tie_word_embeddings: c["tie_word_embeddings"].as_bool().unwrap_or(false),
    }
}

/// Our logits `[T, V]` for `ids` in one cached forward over the whole sequence.
fn our_logits(m: &LoadedModel, ids: &[u32]) -> Tensor {
    let hooks = m.model.hooks(&Interventions::default()).unwrap();
    let capture = coconut_lens::model::Capture {
        resid_rows: vec![0],
        attention: false,
    };
    let mut cache = KvCache::new(m.model.info.layers);
    let out = m
        .model
        .forward(
            &m.model.embed_ids(ids).unwrap(),
            &mut cache,
            &capture,
            &hooks,
        )
        .unwrap();
    m.model.unembed(&out.hidden).unwrap()
}

/// candle-transformers' logits `[T, V]`: the prompt's first half in one call, then one token
/// at a time with its KV cache (its forward returns the last position's logits).
fn reference_logits(dir: &Path, ids: &[u32]) -> Tensor {
    let cfg = reference_config(dir);
    let dev = Device::Cpu;
    // SAFETY: the fixture file is not modified while mapped.
    let vb = unsafe {
        VarBuilder::from_mmaped_safetensors(&[dir.join("model.safetensors")], DType::F32, &dev)
    }
    .unwrap();
    let llama = reference::Llama::load(vb, &cfg).unwrap();
    let mut cache = reference::Cache::new(true, DType::F32, &cfg, &dev).unwrap();
    let half = ids.len() / 2;
    let mut rows = Vec::new();
    let prefix = Tensor::new(&ids[..half], &dev)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let prefix_last = llama.forward(&prefix, 0, &mut cache).unwrap();
    // The prefix call yields only its last row; the rows before come from prefixes alone.
    for t in 1..half {
        let mut fresh = reference::Cache::new(false, DType::F32, &cfg, &dev).unwrap();
        let x = Tensor::new(&ids[..t], &dev).unwrap().unsqueeze(0).unwrap();
        rows.push(llama.forward(&x, 0, &mut fresh).unwrap());
    }
    rows.push(prefix_last);
    for (pos, &id) in ids.iter().enumerate().skip(half) {
        let x = Tensor::new(&[id], &dev).unwrap().unsqueeze(0).unwrap();
        rows.push(llama.forward(&x, pos, &mut cache).unwrap());
    }
    Tensor::cat(&rows, 0).unwrap()
}

fn assert_matches_reference(dir: &Path, ids: &[u32]) {
    let m = load_model(&ModelSource::Local(dir.into()), &Device::Cpu, DType::F32).unwrap();
    let (ours, theirs) = (our_logits(&m, ids), reference_logits(dir, ids));
    assert_eq!(ours.dims(), theirs.dims());
    let diff = max_abs_diff(&ours, &theirs);
    let spread = max_abs_diff(&ours, &ours.zeros_like().unwrap());
    eprintln!(
        "{}: {} positions, max |logit difference| {diff:.2e}, largest |logit| {spread:.2}",
        dir.display(),
        ids.len()
    );
    assert!(
        diff < 1e-4,
        "{}: logits differ by {diff} (largest logit {spread})",
        dir.display()
    );
    assert!(
        spread > 0.5,
        "{}: logits too flat to compare",
        dir.display()
    );
}

#[test]
fn llama_tied_with_llama3_rope_parameters_matches_candle_transformers() {
    let m = load_dir("llama-tiny-tied");
    let mut ids = m
        .tokenizer
        .encode_prompt("Every wumpus is a yumpus. Alex is a wumpus. Is Alex a yumpus?")
        .unwrap();
    let c = m.tokenizer.coconut.unwrap();
    ids.extend([
        c.start,
        c.latent.expect("a Coconut model has <|latent|>"),
        c.end,
    ]);
    assert_matches_reference(&model_dir("llama-tiny-tied"), &ids);
}

#[test]
fn the_bundled_model_matches_candle_transformers() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/coconut-prosqa");
    let m = load_model(&ModelSource::Local(dir.clone()), &Device::Cpu, DType::F32).unwrap();
    let prompt = coconut_lens::cli::args::demo_prompt(&ModelSource::Local(dir.clone())).unwrap();
    let ids = m.tokenizer.encode_prompt(&prompt).unwrap();
    assert!(ids.len() > 50);
    assert_matches_reference(&dir, &ids);
}

/// Grouped-query attention, llama3 RoPE and an untied head (what `llama-tiny-gqa` covers) at a
/// head_dim candle-transformers can build: a random model, its matrices scaled to the fixtures'
/// spread and an untied head added.
#[test]
fn llama_gqa_llama3_rope_untied_matches_candle_transformers() {
    use coconut_lens::model::Arch;
    use coconut_lens::synthetic::{Shape, write_random_model};
    let dir = scratch("candle-reference-gqa");
    let shape = Shape {
        arch: Arch::Llama,
        layers: 3,
        heads: 4,
        kv_heads: 2,
        d_model: 64,
        ffn: 96,
        base_vocab: 200,
        context: 128,
    };
    write_random_model(&dir, &shape, 7).unwrap();
    let weights = dir.join("model.safetensors");
    let dev = Device::Cpu;
    let mut tensors = candle_core::safetensors::load(&weights, &dev).unwrap();
    // A fixed pattern in [-1, 1] of a tensor's shape.
    let pattern = |dims: &[usize], phase: f64| {
        let n: usize = dims.iter().product();
        Tensor::arange(0u32, n as u32, &dev)
            .unwrap()
            .to_dtype(DType::F32)
            .unwrap()
            .affine(0.7, phase)
            .unwrap()
            .sin()
            .unwrap()
            .reshape(dims)
            .unwrap()
    };
    for (name, t) in tensors.iter_mut() {
        *t = if t.rank() == 2 {
            (&*t * 18.0).unwrap() // std 0.02 -> 0.36, as the fixtures' 0.37
        } else {
            (&*t + (pattern(t.dims(), name.len() as f64) * 0.1).unwrap()).unwrap()
        };
    }
    let (v, d) = (shape.vocab(), shape.d_model);
    tensors.insert(
        "lm_head.weight".into(),
        (pattern(&[v, d], 0.3) * 0.5).unwrap(),
    );
    candle_core::safetensors::save(&tensors, &weights).unwrap();
    let config = dir.join("config.json");
    let mut c: Value = serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    c["tie_word_embeddings"] = false.into();
    c["rope_scaling"]["original_max_position_embeddings"] = 16.into();
    c["rope_scaling"]["factor"] = 8.0.into();
    std::fs::write(&config, c.to_string()).unwrap();

    let ids: Vec<u32> = (0..40).map(|i| (i * 37 + 11) % v as u32).collect();
    assert_matches_reference(&dir, &ids);
    // The head really is untied: with the embedding as head the logits would differ.
    let m = load_model(&ModelSource::Local(dir.clone()), &dev, DType::F32).unwrap();
    let hidden = m.model.embed_ids(&ids[..1]).unwrap();
    let tied = hidden.matmul(&tensors["model.embed_tokens.weight"].t().unwrap());
    assert!(max_abs_diff(&m.model.unembed(&hidden).unwrap(), &tied.unwrap()) > 0.1);
}
