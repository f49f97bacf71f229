//! The trained parameters under their Hugging Face names, and their initialisation.

use anyhow::Result;
use candle_core::{Device, Tensor, Var};
use candle_nn::VarMap;

use super::TrainConfig;
use crate::data::rng::Rng;
use crate::model::Arch;

/// Names and shapes of a Hugging Face `GPT2LMHeadModel` or `LlamaForCausalLM` with a tied head.
pub fn parameters(cfg: &TrainConfig, vocab: usize) -> Vec<(String, Vec<usize>)> {
    match cfg.arch {
        Arch::Gpt2 => gpt2_parameters(cfg, vocab),
        Arch::Llama => llama_parameters(cfg, vocab),
    }
}

fn gpt2_parameters(cfg: &TrainConfig, vocab: usize) -> Vec<(String, Vec<usize>)> {
    let d = cfg.d_model;
    let mut p = vec![
        ("transformer.wte.weight".to_string(), vec![vocab, d]),
        ("transformer.wpe.weight".to_string(), vec![cfg.context, d]),
        ("transformer.ln_f.weight".to_string(), vec![d]),
        ("transformer.ln_f.bias".to_string(), vec![d]),
    ];
    for l in 0..cfg.layers {
        let h = format!("transformer.h.{l}");
        for (name, shape) in [
            ("ln_1.weight", vec![d]),
            ("ln_1.bias", vec![d]),
            ("attn.c_attn.weight", vec![d, 3 * d]),
            ("attn.c_attn.bias", vec![3 * d]),
            ("attn.c_proj.weight", vec![d, d]),
            ("attn.c_proj.bias", vec![d]),
            ("ln_2.weight", vec![d]),
            ("ln_2.bias", vec![d]),
            ("mlp.c_fc.weight", vec![d, 4 * d]),
            ("mlp.c_fc.bias", vec![4 * d]),
            ("mlp.c_proj.weight", vec![4 * d, d]),
            ("mlp.c_proj.bias", vec![d]),
        ] {
            p.push((format!("{h}.{name}"), shape));
        }
    }
    p
}

fn llama_parameters(cfg: &TrainConfig, vocab: usize) -> Vec<(String, Vec<usize>)> {
    let (d, ff) = (cfg.d_model, cfg.intermediate_size());
    let mut p = vec![
        ("model.embed_tokens.weight".to_string(), vec![vocab, d]),
        ("model.norm.weight".to_string(), vec![d]),
    ];
    for l in 0..cfg.layers {
        let h = format!("model.layers.{l}");
        for (name, shape) in [
            ("input_layernorm.weight", vec![d]),
            ("self_attn.q_proj.weight", vec![d, d]),
            ("self_attn.k_proj.weight", vec![d, d]),
            ("self_attn.v_proj.weight", vec![d, d]),
            ("self_attn.o_proj.weight", vec![d, d]),
            ("post_attention_layernorm.weight", vec![d]),
            ("mlp.gate_proj.weight", vec![ff, d]),
            ("mlp.up_proj.weight", vec![ff, d]),
            ("mlp.down_proj.weight", vec![d, ff]),
        ] {
            p.push((format!("{h}.{name}"), shape));
        }
    }
    p
}

/// Whether a parameter is a norm gain (initialised to one, never decayed).
pub fn is_norm(name: &str) -> bool {
    name.contains("ln_") || name.contains("norm")
}

/// GPT-2's initialisation, also used for Llama: N(0, 0.02) matrices, the projections back into
/// the residual stream scaled by 1/√(2L), zero biases, unit norm gains. Drawn from the
/// project's own generator, in name order.
pub fn init(cfg: &TrainConfig, vocab: usize, dev: &Device) -> Result<VarMap> {
    let mut rng = Rng::with_label(cfg.seed, "init");
    let mut params = parameters(cfg, vocab);
    params.sort();
    let varmap = VarMap::new();
    {
        let mut data = varmap.data().lock().expect("fresh varmap");
        for (name, shape) in params {
            let n: usize = shape.iter().product();
            let values: Vec<f32> = if name.ends_with(".bias") {
                vec![0.0; n]
            } else if is_norm(&name) {
                vec![1.0; n]
            } else {
                let residual_out = ["c_proj.weight", "o_proj.weight", "down_proj.weight"]
                    .iter()
                    .any(|s| name.ends_with(s));
                let std = if residual_out {
                    0.02 / (2.0 * cfg.layers as f64).sqrt()
                } else {
                    0.02
                };
                (0..n).map(|_| (normal(&mut rng) * std) as f32).collect()
            };
            let t = Tensor::from_vec(values, shape, dev)?;
            data.insert(name, Var::from_tensor(&t)?);
        }
    }
    Ok(varmap)
}

/// A standard normal draw (Box–Muller).
fn normal(rng: &mut Rng) -> f64 {
    let u1 = rng.next_f64().max(f64::MIN_POSITIVE);
    let u2 = rng.next_f64();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}
