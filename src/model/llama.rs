//! Llama (Touvron et al. 2023; Llama 3) as in Hugging Face `modeling_llama.py`: RMSNorm,
//! SwiGLU, grouped-query attention, rotary embeddings in the rotate-half layout.

use candle_core::{DType, Device, Result, Tensor};
use candle_nn::{Linear, VarBuilder};

use super::attention::{LayerCache, OpMode, RmsNorm, attend, linear};
use super::config::{Llama3RopeScaling, LlamaConfig};

fn load_linear(vb: VarBuilder, d_in: usize, d_out: usize, bias: bool) -> Result<Linear> {
    let w = vb.get((d_out, d_in), "weight")?;
    let b = if bias {
        Some(vb.get(d_out, "bias")?)
    } else {
        None
    };
    Ok(Linear::new(w, b))
}

/// Inverse frequencies, with Llama 3's frequency-dependent rescaling when configured.
fn inv_freq(head_dim: usize, theta: f64, scaling: Option<&Llama3RopeScaling>) -> Vec<f32> {
    let base: Vec<f32> = (0..head_dim / 2)
        .map(|i| (1.0 / theta.powf((2 * i) as f64 / head_dim as f64)) as f32)
        .collect();
    let Some(s) = scaling else { return base };
    let old_len = s.original_max_position_embeddings as f32;
    let low_wavelen = old_len / s.low_freq_factor as f32;
    let high_wavelen = old_len / s.high_freq_factor as f32;
    let factor = s.factor as f32;
    base.into_iter()
        .map(|f| {
            let wavelen = 2.0 * std::f32::consts::PI / f;
            if wavelen < high_wavelen {
                f
            } else if wavelen > low_wavelen {
                f / factor
            } else {
                let smooth = (old_len / wavelen - s.low_freq_factor as f32)
                    / (s.high_freq_factor as f32 - s.low_freq_factor as f32);
                (1.0 - smooth) * f / factor + smooth * f
            }
        })
        .collect()
}

/// Cos/sin tables `[max_pos, head_dim / 2]`.
struct Rotary {
    cos: Tensor,
    sin: Tensor,
}

impl Rotary {
    fn new(cfg: &LlamaConfig, dtype: DType, device: &Device) -> Result<Self> {
        let freqs = inv_freq(cfg.head_dim, cfg.rope_theta, cfg.rope_scaling.as_ref());
        let half = freqs.len();
        let angles: Vec<f32> = (0..cfg.max_position_embeddings)
            .flat_map(|p| freqs.iter().map(move |f| p as f32 * f))
            .collect();
        let angles = Tensor::from_vec(angles, (cfg.max_position_embeddings, half), device)?;
        Ok(Self {
            cos: angles.cos()?.to_dtype(dtype)?,
            sin: angles.sin()?.to_dtype(dtype)?,
        })
    }

    fn apply(&self, x: &Tensor, start: usize, mode: OpMode) -> Result<Tensor> {
        let t = x.dim(2)?;
        let cos = self.cos.narrow(0, start, t)?;
        let sin = self.sin.narrow(0, start, t)?;
        if mode.differentiable {
            super::fused::rope(x, &cos, &sin)
        } else {
            candle_nn::rotary_emb::rope(&x.contiguous()?, &cos.contiguous()?, &sin.contiguous()?)
        }
    }
}

struct Attention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    o_proj: Linear,
    n_head: usize,
    n_kv: usize,
    head_dim: usize,
}

impl Attention {
    fn load(vb: VarBuilder, cfg: &LlamaConfig) -> Result<Self> {
        let (d, hd, bias) = (cfg.hidden_size, cfg.head_dim, cfg.attention_bias);
        Ok(Self {
            q_proj: load_linear(vb.pp("q_proj"), d, cfg.num_attention_heads * hd, bias)?,
            k_proj: load_linear(vb.pp("k_proj"), d, cfg.num_key_value_heads * hd, bias)?,
            v_proj: load_linear(vb.pp("v_proj"), d, cfg.num_key_value_heads * hd, bias)?,
            o_proj: load_linear(vb.pp("o_proj"), cfg.num_attention_heads * hd, d, bias)?,
            n_head: cfg.num_attention_heads,
            n_kv: cfg.num_key_value_heads,
            head_dim: hd,
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn forward(
        &self,
        x: &Tensor,
        start: usize,
        rotary: &Rotary,
        cache: &mut LayerCache,
        gate: Option<&Tensor>,
        want_probs: bool,
        mode: OpMode,
    ) -> Result<(Tensor, Option<Tensor>)> {
        let (b, t, _) = x.dims3()?;
        let split = |y: Tensor, heads: usize| -> Result<Tensor> {
            y.reshape((b, t, heads, self.head_dim))?
                .transpose(1, 2)?
                .contiguous()
        };
        let q = split(linear(&self.q_proj, x, mode)?, self.n_head)?;
        let k = split(linear(&self.k_proj, x, mode)?, self.n_kv)?;
        let v = split(linear(&self.v_proj, x, mode)?, self.n_kv)?;
        let q = rotary.apply(&q, start, mode)?;
        let k = rotary.apply(&k, start, mode)?;
        let (k, v) = cache.append(k, v)?;
        let (merged, probs) = attend(&q, k, v, start, gate, want_probs, mode)?;
        Ok((linear(&self.o_proj, &merged, mode)?, probs))
    }
}

struct Mlp {
    gate_proj: Linear,
    up_proj: Linear,
    down_proj: Linear,
}

impl Mlp {
    fn load(vb: VarBuilder, cfg: &LlamaConfig) -> Result<Self> {
        let (d, i, bias) = (cfg.hidden_size, cfg.intermediate_size, cfg.mlp_bias);
        Ok(Self {
            gate_proj: load_linear(vb.pp("gate_proj"), d, i, bias)?,
            up_proj: load_linear(vb.pp("up_proj"), d, i, bias)?,
            down_proj: load_linear(vb.pp("down_proj"), i, d, bias)?,
        })
    }

    fn forward(&self, x: &Tensor, mode: OpMode) -> Result<Tensor> {
        let (g, u) = (
            linear(&self.gate_proj, x, mode)?,
            linear(&self.up_proj, x, mode)?,
        );
        let gated = if mode.differentiable {
            super::fused::swiglu(&g, &u)?
        } else {
            (g.silu()? * u)?
        };
        linear(&self.down_proj, &gated, mode)
    }
}

struct Block {
    input_layernorm: RmsNorm,
    self_attn: Attention,
    post_attention_layernorm: RmsNorm,
    mlp: Mlp,
}

pub struct Llama {
    embed_tokens: Tensor,
    layers: Vec<Block>,
    norm: RmsNorm,
    lm_head: Tensor,
    rotary: Rotary,
}

impl Llama {
    /// `vocab` is the embedding size (a Coconut checkpoint may have more rows than the config).
    pub fn load(vb: VarBuilder, cfg: &LlamaConfig, vocab: usize) -> Result<Self> {
        let d = cfg.hidden_size;
        let m = vb.pp("model");
        let embed_tokens = m.get((vocab, d), "embed_tokens.weight")?;
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| {
                let vb = m.pp(format!("layers.{i}"));
                Ok(Block {
                    input_layernorm: RmsNorm::load(vb.pp("input_layernorm"), d, cfg.rms_norm_eps)?,
                    self_attn: Attention::load(vb.pp("self_attn"), cfg)?,
                    post_attention_layernorm: RmsNorm::load(
                        vb.pp("post_attention_layernorm"),
                        d,
                        cfg.rms_norm_eps,
                    )?,
                    mlp: Mlp::load(vb.pp("mlp"), cfg)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let norm = RmsNorm::load(m.pp("norm"), d, cfg.rms_norm_eps)?;
        // An untied head is used when present, else the embedding.
        let lm_head = if !cfg.tie_word_embeddings && vb.contains_tensor("lm_head.weight") {
            vb.get((vocab, d), "lm_head.weight")?
        } else {
            embed_tokens.clone()
        };
        let rotary = Rotary::new(cfg, vb.dtype(), vb.device())?;
        Ok(Self {
            embed_tokens,
            layers,
            norm,
            lm_head,
            rotary,
        })
    }

    pub fn embed(&self, ids: &Tensor) -> Result<Tensor> {
        self.embed_tokens.embedding(ids)
    }

    #[allow(clippy::too_many_arguments)]
    pub fn block(
        &self,
        l: usize,
        x: &Tensor,
        start: usize,
        cache: &mut LayerCache,
        gate: Option<&Tensor>,
        want_probs: bool,
        mode: OpMode,
    ) -> Result<(Tensor, Option<Tensor>)> {
        let b = &self.layers[l];
        let h = b.input_layernorm.forward(x, mode)?;
        let (a, probs) =
            b.self_attn
                .forward(&h, start, &self.rotary, cache, gate, want_probs, mode)?;
        let x = (x + a)?;
        let m = b
            .mlp
            .forward(&b.post_attention_layernorm.forward(&x, mode)?, mode)?;
        Ok(((x + m)?, probs))
    }

    pub fn final_norm(&self, x: &Tensor, mode: OpMode) -> Result<Tensor> {
        self.norm.forward(x, mode)
    }

    pub fn lm_head(&self) -> &Tensor {
        &self.lm_head
    }

    /// The token embedding matrix `[V, D]`.
    pub fn embed_tokens(&self) -> &Tensor {
        &self.embed_tokens
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llama3_scaling_keeps_high_and_divides_low_frequencies() {
        let s = Llama3RopeScaling {
            factor: 8.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_position_embeddings: 32,
        };
        let plain = inv_freq(16, 500_000.0, None);
        let scaled = inv_freq(16, 500_000.0, Some(&s));
        // Wavelength 2π < 32/4: unchanged. Lowest frequency (wavelength > 32): divided by the factor.
        assert_eq!(plain[0], scaled[0]);
        let last = plain.len() - 1;
        assert!((scaled[last] - plain[last] / 8.0).abs() < 1e-12);
        assert!(scaled.iter().zip(&plain).all(|(s, p)| s <= p));
    }
}
