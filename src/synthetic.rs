//! Random models with the shapes of real ones, written as standard Hugging Face folders, for
//! benchmarks and memory measurements (no download needed).

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde_json::json;

use crate::model::Arch;
use crate::model::tokenizer::{END_LATENT, LATENT, START_LATENT};

/// The shape of a random model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    pub arch: Arch,
    pub layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub d_model: usize,
    pub ffn: usize,
    /// Vocabulary before the three Coconut tokens are appended.
    pub base_vocab: usize,
    pub context: usize,
}

impl Shape {
    /// GPT-2 small (124M parameters) with the Coconut tokens, as the Coconut paper's model.
    pub const GPT2_124M: Shape = Shape {
        arch: Arch::Gpt2,
        layers: 12,
        heads: 12,
        kv_heads: 12,
        d_model: 768,
        ffn: 3072,
        base_vocab: 50257,
        context: 1024,
    };

    /// Llama 3.2 1B.
    pub const LLAMA_1B: Shape = Shape {
        arch: Arch::Llama,
        layers: 16,
        heads: 32,
        kv_heads: 8,
        d_model: 2048,
        ffn: 8192,
        base_vocab: 128256,
        context: 4096,
    };

    pub fn by_name(name: &str) -> Result<Shape> {
        match name {
            "gpt2-124m" => Ok(Self::GPT2_124M),
            "llama-1b" => Ok(Self::LLAMA_1B),
            _ => bail!("unknown shape \"{name}\" (expected gpt2-124m or llama-1b)"),
        }
    }

    pub fn vocab(&self) -> usize {
        self.base_vocab + 3
    }
}

/// SplitMix64 with Box–Muller: reproducible normal samples without a dependency.
struct Normal(u64);

impl Normal {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn uniform(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32 + 0.5) / (1u64 << 24) as f32
    }

    fn fill(&mut self, n: usize, std: f32) -> Vec<f32> {
        let mut v = Vec::with_capacity(n + 1);
        while v.len() < n {
            let (u1, u2) = (self.uniform(), self.uniform());
            let r = (-2.0 * u1.ln()).sqrt() * std;
            let a = 2.0 * std::f32::consts::PI * u2;
            v.push(r * a.cos());
            v.push(r * a.sin());
        }
        v.truncate(n);
        v
    }
}

/// The tensors of a random model: (name, shape, data).
fn tensors(shape: &Shape, seed: u64) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let mut rng = Normal(seed);
    let mut out = Vec::new();
    let mut w = |name: String, dims: Vec<usize>, std: f32| {
        let n = dims.iter().product();
        out.push((name, dims, rng.fill(n, std)));
    };
    let (d, f, v) = (shape.d_model, shape.ffn, shape.vocab());
    let ones = |n: usize| vec![1f32; n];
    let mut fixed: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::new();
    match shape.arch {
        Arch::Gpt2 => {
            w("transformer.wte.weight".into(), vec![v, d], 0.02);
            w(
                "transformer.wpe.weight".into(),
                vec![shape.context, d],
                0.01,
            );
            for l in 0..shape.layers {
                let p = format!("transformer.h.{l}");
                for (name, dims) in [
                    ("attn.c_attn", (d, 3 * d)),
                    ("attn.c_proj", (d, d)),
                    ("mlp.c_fc", (d, f)),
                    ("mlp.c_proj", (f, d)),
                ] {
                    w(format!("{p}.{name}.weight"), vec![dims.0, dims.1], 0.02);
                    w(format!("{p}.{name}.bias"), vec![dims.1], 0.01);
                }
                for ln in ["ln_1", "ln_2"] {
                    fixed.push((format!("{p}.{ln}.weight"), vec![d], ones(d)));
                    fixed.push((format!("{p}.{ln}.bias"), vec![d], vec![0.0; d]));
                }
            }
            fixed.push(("transformer.ln_f.weight".into(), vec![d], ones(d)));
            fixed.push(("transformer.ln_f.bias".into(), vec![d], vec![0.0; d]));
        }
        Arch::Llama => {
            let hd = d / shape.heads;
            w("model.embed_tokens.weight".into(), vec![v, d], 0.02);
            for l in 0..shape.layers {
                let p = format!("model.layers.{l}");
                w(
                    format!("{p}.self_attn.q_proj.weight"),
                    vec![shape.heads * hd, d],
                    0.02,
                );
                w(
                    format!("{p}.self_attn.k_proj.weight"),
                    vec![shape.kv_heads * hd, d],
                    0.02,
                );
                w(
                    format!("{p}.self_attn.v_proj.weight"),
                    vec![shape.kv_heads * hd, d],
                    0.02,
                );
                w(
                    format!("{p}.self_attn.o_proj.weight"),
                    vec![d, shape.heads * hd],
                    0.02,
                );
                w(format!("{p}.mlp.gate_proj.weight"), vec![f, d], 0.02);
                w(format!("{p}.mlp.up_proj.weight"), vec![f, d], 0.02);
                w(format!("{p}.mlp.down_proj.weight"), vec![d, f], 0.02);
                fixed.push((format!("{p}.input_layernorm.weight"), vec![d], ones(d)));
                fixed.push((
                    format!("{p}.post_attention_layernorm.weight"),
                    vec![d],
                    ones(d),
                ));
            }
            fixed.push(("model.norm.weight".into(), vec![d], ones(d)));
        }
    }
    out.extend(fixed);
    out
}

/// No `eos_token_id`: generation always runs to its limit, so benchmarks do fixed work.
fn config(shape: &Shape) -> serde_json::Value {
    let eos = shape.base_vocab as u64 - 1;
    match shape.arch {
        Arch::Gpt2 => json!({
            "model_type": "gpt2", "architectures": ["GPT2LMHeadModel"],
            "vocab_size": shape.vocab(), "n_positions": shape.context, "n_embd": shape.d_model,
            "n_layer": shape.layers, "n_head": shape.heads, "n_inner": shape.ffn,
            "activation_function": "gelu_new", "layer_norm_epsilon": 1e-5,
            "bos_token_id": eos, "tie_word_embeddings": true
        }),
        Arch::Llama => json!({
            "model_type": "llama", "architectures": ["LlamaForCausalLM"],
            "vocab_size": shape.vocab(), "hidden_size": shape.d_model,
            "intermediate_size": shape.ffn, "num_hidden_layers": shape.layers,
            "num_attention_heads": shape.heads, "num_key_value_heads": shape.kv_heads,
            "head_dim": shape.d_model / shape.heads, "rms_norm_eps": 1e-5,
            "max_position_embeddings": shape.context, "tie_word_embeddings": true,
            "rope_theta": 500000.0,
            "rope_scaling": {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                             "high_freq_factor": 4.0, "original_max_position_embeddings": 8192},
            "bos_token_id": 0, "hidden_act": "silu"
        }),
    }
}

/// A word-level tokenizer `t0 … t{V-1}` plus the Coconut tokens.
fn write_tokenizer(shape: &Shape, path: &Path) -> Result<()> {
    use tokenizers::models::wordlevel::WordLevel;
    let vocab: HashMap<String, u32> = (0..shape.base_vocab as u32)
        .map(|i| (format!("t{i}"), i))
        .collect();
    let model = WordLevel::builder()
        .vocab(vocab.into_iter().collect())
        .unk_token("t0".into())
        .build()
        .map_err(|e| anyhow::anyhow!("tokenizer: {e}"))?;
    let mut tok = tokenizers::Tokenizer::new(model);
    tok.with_pre_tokenizer(Some(
        tokenizers::pre_tokenizers::whitespace::WhitespaceSplit,
    ));
    tok.add_special_tokens(
        [START_LATENT, END_LATENT, LATENT].map(|t| tokenizers::AddedToken::from(t, true)),
    )
    .map_err(|e| anyhow::anyhow!("tokenizer: {e}"))?;
    crate::files::replace_with(path, true, |tmp| {
        tok.save(tmp, false)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", tmp.display()))
    })
}

/// Writes `config.json`, `model.safetensors` and `tokenizer.json` of a random model to `dir`.
pub fn write_random_model(dir: &Path, shape: &Shape, seed: u64) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    crate::files::write_atomic(
        &dir.join("config.json"),
        serde_json::to_string_pretty(&config(shape))?.as_bytes(),
        true,
    )?;
    write_tokenizer(shape, &dir.join("tokenizer.json"))?;
    let tensors = tensors(shape, seed);
    let views = tensors
        .iter()
        .map(|(name, dims, data)| {
            // SAFETY: f32 slices are plain bytes on this little-endian target.
            let bytes =
                unsafe { std::slice::from_raw_parts(data.as_ptr().cast::<u8>(), data.len() * 4) };
            let view =
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, dims.clone(), bytes)
                    .map_err(|e| anyhow::anyhow!("{name}: {e:?}"))?;
            Ok((name.clone(), view))
        })
        .collect::<Result<Vec<_>>>()?;
    crate::files::replace_with(&dir.join("model.safetensors"), true, |tmp| {
        safetensors::serialize_to_file(views, None, tmp)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e:?}", tmp.display()))
    })
}

/// A fixed synthetic prompt of `n` ids below `vocab` (the benchmarks' input).
pub fn synthetic_prompt(n: usize, vocab: usize) -> Vec<u32> {
    (0..n)
        .map(|i| ((i * 7919 + 13) % vocab.min(50000)) as u32)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Interventions, ModelSource, load_model};

    #[test]
    fn random_models_load_and_run() {
        for arch in [Arch::Gpt2, Arch::Llama] {
            let shape = Shape {
                arch,
                layers: 2,
                heads: 4,
                kv_heads: 2,
                d_model: 16,
                ffn: 32,
                base_vocab: 40,
                context: 64,
            };
            let shape = Shape {
                kv_heads: if arch == Arch::Gpt2 { 4 } else { 2 },
                ..shape
            };
            let dir = std::env::temp_dir().join(format!(
                "coconut-lens-random-{arch:?}-{}",
                std::process::id()
            ));
            write_random_model(&dir, &shape, 1).unwrap();
            let m = load_model(
                &ModelSource::Local(dir.clone()),
                &candle_core::Device::Cpu,
                candle_core::DType::F32,
            )
            .unwrap();
            assert_eq!((m.model.info.layers, m.model.info.vocab), (2, 43));
            assert!(m.tokenizer.coconut.is_some());
            let ids = synthetic_prompt(10, 40);
            let spec = crate::thought::RunSpec {
                thoughts: crate::thought::ThoughtCount::Fixed { n: 2 },
                mode: crate::thought::ThoughtMode::Coconut,
                max_new_tokens: 3,
                context_rows: 1,
                attention: false,
                forced_answer: Vec::new(),
                feeds: crate::thought::Feeds::none(),
                sampling: Default::default(),
            };
            let r = crate::thought::run(
                &m.model,
                &m.tokenizer,
                &ids,
                &spec,
                &m.model.hooks(&Interventions::default()).unwrap(),
            )
            .unwrap();
            assert_eq!(
                (r.thoughts.len(), r.answer_ids.len()),
                (2, 3),
                "no eos: fixed work"
            );
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }
}
