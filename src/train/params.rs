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

fn is_final_norm(name: &str) -> bool {
    name == "model.norm.weight" || name == "transformer.ln_f.weight"
}

fn is_embedding(name: &str) -> bool {
    name == "model.embed_tokens.weight" || name == "transformer.wte.weight"
}

/// Whether a parameter is a norm gain (initialised to one, never decayed).
pub fn is_norm(name: &str) -> bool {
    name.contains("ln_") || name.contains("norm")
}

/// GPT-2's initialisation, also used for Llama: N(0, 0.02) matrices, the projections back into
/// the residual stream scaled by 1/√(2L), zero biases, unit norm gains; the token embedding
/// and the final norm's gain as `cfg.init` says. Drawn from the project's own generator, in
/// name order.
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
            } else if is_final_norm(&name) {
                vec![cfg.init.final_norm_gain as f32; n]
            } else if is_norm(&name) {
                vec![1.0; n]
            } else if is_embedding(&name) {
                (0..n)
                    .map(|_| (rng.normal() * cfg.init.embedding_std) as f32)
                    .collect()
            } else {
                let residual_out = ["c_proj.weight", "o_proj.weight", "down_proj.weight"]
                    .iter()
                    .any(|s| name.ends_with(s));
                let std = if residual_out {
                    0.02 / (2.0 * cfg.layers as f64).sqrt()
                } else {
                    0.02
                };
                (0..n).map(|_| (rng.normal() * std) as f32).collect()
            };
            let t = Tensor::from_vec(values, shape, dev)?;
            data.insert(name, Var::from_tensor(&t)?);
        }
    }
    Ok(varmap)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::{InitScales, Recipe};

    fn std_of(v: &[f32]) -> f64 {
        let n = v.len() as f64;
        let mean = v.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
        (v.iter()
            .map(|&x| (f64::from(x) - mean).powi(2))
            .sum::<f64>()
            / n)
            .sqrt()
    }

    #[test]
    fn the_embedding_and_the_final_norm_start_at_the_configured_scales() {
        let cfg = TrainConfig {
            layers: 1,
            d_model: 64,
            heads: 2,
            init: InitScales {
                embedding_std: 0.2,
                final_norm_gain: 0.25,
            },
            ..TrainConfig::bundled(Recipe::Coconut)
        };
        let varmap = init(&cfg, 71, &Device::Cpu).unwrap();
        let data = varmap.data().lock().unwrap();
        let values = |name: &str| -> Vec<f32> {
            data[name]
                .as_tensor()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap()
        };
        assert!(values("model.norm.weight").iter().all(|&g| g == 0.25));
        assert!(
            values("model.layers.0.input_layernorm.weight")
                .iter()
                .all(|&g| g == 1.0)
        );
        let e = std_of(&values("model.embed_tokens.weight"));
        assert!((e - 0.2).abs() < 0.01, "embedding std {e}");
        let q = std_of(&values("model.layers.0.self_attn.q_proj.weight"));
        assert!((q - 0.02).abs() < 0.002, "q_proj std {q}");
    }
}
