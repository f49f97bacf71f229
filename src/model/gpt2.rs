//! GPT-2 (Radford et al. 2019) as in Hugging Face `modeling_gpt2.py`: learned positions,
//! pre-norm blocks, fused QKV, `gelu_new` MLP, tied LM head.

use candle_core::{Result, Tensor};
use candle_nn::{Linear, VarBuilder};

use super::attention::{LayerCache, LayerNorm, OpMode, attend, linear};
use super::config::Gpt2Config;

/// Hugging Face `Conv1D` stores `[in, out]`; transpose once into a `[out, in]` linear layer.
fn conv1d(vb: VarBuilder, d_in: usize, d_out: usize) -> Result<Linear> {
    let w = super::weights::transposed(&vb.get((d_in, d_out), "weight")?)?;
    let b = vb.get(d_out, "bias")?;
    Ok(Linear::new(w, Some(b)))
}

struct Attention {
    c_attn: Linear,
    c_proj: Linear,
    n_head: usize,
    head_dim: usize,
    /// `scale_attn_by_inverse_layer_idx`: the scores of block l are further divided by l + 1,
    /// applied to the queries (the same product).
    query_scale: Option<f64>,
}

impl Attention {
    fn load(vb: VarBuilder, cfg: &Gpt2Config, layer: usize) -> Result<Self> {
        let d = cfg.n_embd;
        Ok(Self {
            c_attn: conv1d(vb.pp("c_attn"), d, 3 * d)?,
            c_proj: conv1d(vb.pp("c_proj"), d, d)?,
            n_head: cfg.n_head,
            head_dim: d / cfg.n_head,
            query_scale: cfg
                .scale_attn_by_inverse_layer_idx
                .then(|| 1.0 / (layer + 1) as f64),
        })
    }

    fn forward(
        &self,
        x: &Tensor,
        start: usize,
        cache: &mut LayerCache,
        gate: Option<&Tensor>,
        want_probs: bool,
        mode: OpMode,
    ) -> Result<(Tensor, Option<Tensor>)> {
        let (b, t, d) = x.dims3()?;
        let qkv = linear(&self.c_attn, x, mode)?;
        let heads = |i: usize| -> Result<Tensor> {
            qkv.narrow(2, i * d, d)?
                .reshape((b, t, self.n_head, self.head_dim))?
                .transpose(1, 2)?
                .contiguous()
        };
        let (q, k, v) = (heads(0)?, heads(1)?, heads(2)?);
        let q = match self.query_scale {
            Some(s) => (q * s)?,
            None => q,
        };
        let (k, v) = cache.append(k, v)?;
        let (merged, probs) = attend(&q, k, v, start, gate, want_probs, mode)?;
        Ok((linear(&self.c_proj, &merged, mode)?, probs))
    }
}

struct Mlp {
    c_fc: Linear,
    c_proj: Linear,
    exact_gelu: bool,
}

impl Mlp {
    fn load(vb: VarBuilder, cfg: &Gpt2Config) -> Result<Self> {
        Ok(Self {
            c_fc: conv1d(vb.pp("c_fc"), cfg.n_embd, cfg.inner_dim())?,
            c_proj: conv1d(vb.pp("c_proj"), cfg.inner_dim(), cfg.n_embd)?,
            exact_gelu: cfg.activation_function == "gelu",
        })
    }

    fn forward(&self, x: &Tensor, mode: OpMode) -> Result<Tensor> {
        let h = linear(&self.c_fc, x, mode)?;
        // gelu_new and gelu_pytorch_tanh are the tanh approximation.
        let h = if self.exact_gelu {
            h.gelu_erf()?
        } else {
            h.gelu()?
        };
        linear(&self.c_proj, &h, mode)
    }
}

struct Block {
    ln_1: LayerNorm,
    attn: Attention,
    ln_2: LayerNorm,
    mlp: Mlp,
}

pub struct Gpt2 {
    wte: Tensor,
    wpe: Tensor,
    blocks: Vec<Block>,
    ln_f: LayerNorm,
    lm_head: Tensor,
}

impl Gpt2 {
    /// `vb` is the root of the weights; the `transformer.` prefix is optional.
    /// `vocab` is the embedding size (a Coconut checkpoint may have more rows than the config).
    pub fn load(vb: VarBuilder, cfg: &Gpt2Config, vocab: usize, untied_head: bool) -> Result<Self> {
        let root = vb.clone();
        let vb = if vb.contains_tensor("transformer.wte.weight") {
            vb.pp("transformer")
        } else {
            vb
        };
        let d = cfg.n_embd;
        let wte = vb.get((vocab, d), "wte.weight")?;
        let wpe = vb.get((cfg.n_positions, d), "wpe.weight")?;
        let blocks = (0..cfg.n_layer)
            .map(|i| {
                let vb = vb.pp(format!("h.{i}"));
                Ok(Block {
                    ln_1: LayerNorm::load(vb.pp("ln_1"), d, cfg.layer_norm_epsilon)?,
                    attn: Attention::load(vb.pp("attn"), cfg, i)?,
                    ln_2: LayerNorm::load(vb.pp("ln_2"), d, cfg.layer_norm_epsilon)?,
                    mlp: Mlp::load(vb.pp("mlp"), cfg)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let ln_f = LayerNorm::load(vb.pp("ln_f"), d, cfg.layer_norm_epsilon)?;
        let lm_head = if untied_head && root.contains_tensor("lm_head.weight") {
            root.get((vocab, d), "lm_head.weight")?
        } else {
            wte.clone()
        };
        Ok(Self {
            wte,
            wpe,
            blocks,
            ln_f,
            lm_head,
        })
    }

    pub fn embed(&self, ids: &Tensor) -> Result<Tensor> {
        self.wte.embedding(ids)
    }

    /// Adds learned position embeddings to `[1, T, D]` inputs at positions `start..start + T`.
    pub fn add_positions(&self, x: &Tensor, start: usize) -> Result<Tensor> {
        let t = x.dim(1)?;
        let pos = self.wpe.narrow(0, start, t)?.to_dtype(x.dtype())?;
        x.broadcast_add(&pos.unsqueeze(0)?)
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
        let b = &self.blocks[l];
        let (a, probs) = b.attn.forward(
            &b.ln_1.forward(x, mode)?,
            start,
            cache,
            gate,
            want_probs,
            mode,
        )?;
        let x = (x + a)?;
        let m = b.mlp.forward(&b.ln_2.forward(&x, mode)?, mode)?;
        Ok(((x + m)?, probs))
    }

    pub fn final_norm(&self, x: &Tensor, mode: OpMode) -> Result<Tensor> {
        self.ln_f.forward(x, mode)
    }

    pub fn lm_head(&self) -> &Tensor {
        &self.lm_head
    }

    /// The token embedding matrix `[V, D]`.
    pub fn wte(&self) -> &Tensor {
        &self.wte
    }
}
