//! Models: loading (local folder, hub id, Coconut or CODI checkpoint), and an instrumented forward pass
//! over input embeddings with named capture points and interventions.
//!
//! A [`Capture`] asks for the residual stream x^0..x^L at some rows (x^l enters block l, x^0 =
//! embeddings with positions, x^L leaves the last block before the final norm; TransformerLens
//! calls them `resid_pre.{l}` and `resid_final`) and for every layer's attention probabilities
//! (`attn.pattern.{l}`). [`Hooks`] carry the interventions: skipped blocks, and gates on each
//! head's output before the output projection (`head_out.{l}.{h}`).

pub mod attention;
pub mod codi;
pub mod config;
pub mod fused;
pub mod gpt2;
pub mod llama;
pub mod load;
pub mod meta;
pub mod source;
pub mod tokenizer;
pub mod weights;

use std::collections::BTreeSet;

use anyhow::{Result, bail};
use candle_core::{DType, Device, IndexOp, Tensor};
use serde::{Deserialize, Serialize};

pub use attention::{KvCache, OpMode};
pub use load::{DeviceSpec, LoadedModel, load_model, parse_dtype};
pub use source::ModelSource;
pub use tokenizer::{CoconutTokens, Tokenizer};

/// Fixes the CPU thread count for the whole process: sets `RAYON_NUM_THREADS` to the count
/// candle picks by default when it is unset (an explicit setting is kept). Candle otherwise
/// recomputes that default, reading `/proc/cpuinfo`, on every matrix product: about 2 ms of
/// each 15 ms single-token step of a 124M model on 2 cores.
///
/// # Safety
/// Call before the process starts any thread (it writes the environment).
pub unsafe fn pin_cpu_threads() {
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        let n = candle_core::utils::get_num_threads();
        // SAFETY: the caller guarantees no other thread is running yet.
        unsafe { std::env::set_var("RAYON_NUM_THREADS", n.to_string()) };
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    Gpt2,
    Llama,
}

impl Arch {
    /// The name people write: `GPT-2`, `Llama`.
    pub fn label(self) -> &'static str {
        match self {
            Self::Gpt2 => "GPT-2",
            Self::Llama => "Llama",
        }
    }
}

/// How a model's continuous thoughts are fed back.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// Coconut: the final hidden state itself (also every plain model folder).
    #[default]
    Coconut,
    /// CODI (Shen et al. 2025): the final hidden state through CODI's projection.
    Codi,
}

impl Family {
    pub fn label(self) -> &'static str {
        match self {
            Self::Coconut => "Coconut",
            Self::Codi => "CODI",
        }
    }
}

/// What the rest of the program needs to know about a model.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ModelInfo {
    pub arch: Arch,
    /// Absent in files written before CODI support: those are all Coconut.
    #[serde(default)]
    pub family: Family,
    pub layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub d_model: usize,
    pub vocab: usize,
    #[serde(skip)]
    pub context: usize,
    #[serde(skip)]
    pub eos_ids: Vec<u32>,
}

/// Interventions applied to every forward pass of a run. Layers and heads are 0-based.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interventions {
    /// `(layer, head)` pairs whose output is gated to zero before the output projection.
    pub ablated_heads: BTreeSet<(usize, usize)>,
    /// Layers whose block is replaced by the identity.
    pub skipped_layers: BTreeSet<usize>,
}

impl Interventions {
    pub fn is_empty(&self) -> bool {
        self.ablated_heads.is_empty() && self.skipped_layers.is_empty()
    }

    /// Parses `L.H,L.H` (an empty string is no ablation).
    pub fn parse_heads(spec: &str) -> Result<BTreeSet<(usize, usize)>> {
        let mut out = BTreeSet::new();
        for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let parsed = item
                .split_once('.')
                .and_then(|(l, h)| Some((l.trim().parse().ok()?, h.trim().parse().ok()?)));
            match parsed {
                Some(lh) => {
                    out.insert(lh);
                }
                None => bail!(
                    "malformed head \"{item}\" in --ablate-heads: expected LAYER.HEAD, e.g. 3.7"
                ),
            }
        }
        Ok(out)
    }

    /// Parses `L,L`.
    pub fn parse_layers(spec: &str) -> Result<BTreeSet<usize>> {
        spec.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|item| {
                item.parse::<usize>().map_err(|_| {
                    anyhow::anyhow!("malformed layer \"{item}\" in --ablate-layers: expected a layer number, e.g. 3")
                })
            })
            .collect()
    }

    pub fn validate(&self, info: &ModelInfo) -> Result<()> {
        for &(l, h) in &self.ablated_heads {
            if l >= info.layers || h >= info.heads {
                bail!(
                    "head {l}.{h} is out of range: the model has {} layers (0..{}) and {} heads per layer (0..{})",
                    info.layers,
                    info.layers - 1,
                    info.heads,
                    info.heads - 1
                );
            }
        }
        for &l in &self.skipped_layers {
            if l >= info.layers {
                bail!(
                    "layer {l} is out of range: the model has {} layers (0..{})",
                    info.layers,
                    info.layers - 1
                );
            }
        }
        Ok(())
    }
}

/// Interventions in the form a forward pass uses them.
#[derive(Clone)]
pub struct Hooks {
    pub skip: Vec<bool>,
    /// `[layers, heads]` gate on every head output, or `[B, layers, heads]` for a batch of
    /// variants; `None` means all ones.
    pub gates: Option<Tensor>,
    /// Values written into the residual stream (activation patching).
    pub writes: Vec<ResidWrite>,
    pub mode: OpMode,
}

impl Hooks {
    pub fn none(layers: usize) -> Self {
        Self {
            skip: vec![false; layers],
            gates: None,
            writes: Vec::new(),
            mode: OpMode::default(),
        }
    }
}

/// x^layer at absolute position `position` is replaced by `value` (`[D]`, every batch
/// variant) wherever a forward pass computes it: `resid_pre.{layer}` (`resid_final` for the
/// last) in TransformerLens's names.
#[derive(Clone, Debug)]
pub struct ResidWrite {
    pub layer: usize,
    pub position: usize,
    pub value: Tensor,
}

/// Applies the writes of `layer` that fall in positions `start..start + T` of `x` `[B, T, D]`.
fn write_resid(x: Tensor, writes: &[ResidWrite], layer: usize, start: usize) -> Result<Tensor> {
    let (b, t, d) = x.dims3()?;
    let mut x = x;
    for w in writes.iter().filter(|w| w.layer == layer) {
        if w.position < start || w.position >= start + t {
            continue;
        }
        let r = w.position - start;
        let v = w
            .value
            .to_dtype(x.dtype())?
            .reshape((1, 1, d))?
            .broadcast_as((b, 1, d))?
            .contiguous()?;
        x = x.slice_assign(&[0..b, r..r + 1, 0..d], &v)?;
    }
    Ok(x)
}

/// What to record during a forward pass. Rows index the positions of this call.
#[derive(Debug, Clone, Default)]
pub struct Capture {
    /// Rows at which to record x^0..x^L.
    pub resid_rows: Vec<usize>,
    /// Record attention probabilities of every layer.
    pub attention: bool,
}

pub struct StepOutput {
    /// `[L+1, rows, D]` residual stream at the captured rows (batch element 0).
    pub resid: Option<Tensor>,
    /// Per layer `[H, T, start + T]` (`None` for skipped layers) when asked, else empty (batch
    /// element 0).
    pub attention: Vec<Option<Tensor>>,
    /// `[T, D]` final hidden state after the final norm: what the LM head sees (batch element 0).
    pub hidden: Tensor,
}

enum Net {
    Gpt2(gpt2::Gpt2),
    Llama(llama::Llama),
}

pub struct Model {
    pub info: ModelInfo,
    net: Net,
    device: Device,
    dtype: DType,
    /// CODI's projection of a thought before it is fed back.
    projection: Option<codi::Projection>,
}

impl Model {
    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// What recycled final hidden states `[N, D]` feed as the next inputs: themselves
    /// (Coconut), or their CODI projection.
    pub fn thought_input(&self, hidden: &Tensor) -> Result<Tensor> {
        Ok(match &self.projection {
            Some(p) => p.forward(hidden)?,
            None => hidden.clone(),
        })
    }

    /// Hooks for a set of interventions (validated against the model).
    pub fn hooks(&self, iv: &Interventions) -> Result<Hooks> {
        iv.validate(&self.info)?;
        let mut skip = vec![false; self.info.layers];
        for &l in &iv.skipped_layers {
            skip[l] = true;
        }
        let gates = if iv.ablated_heads.is_empty() {
            None
        } else {
            Some(self.gate_tensor(iv)?)
        };
        Ok(Hooks {
            skip,
            gates,
            writes: Vec::new(),
            mode: OpMode::default(),
        })
    }

    /// `[layers, heads]` f32 gates: 0 for ablated heads, 1 elsewhere.
    pub fn gate_tensor(&self, iv: &Interventions) -> Result<Tensor> {
        let (l, h) = (self.info.layers, self.info.heads);
        let mut g = vec![1f32; l * h];
        for &(li, hi) in &iv.ablated_heads {
            g[li * h + hi] = 0.0;
        }
        Ok(Tensor::from_vec(g, (l, h), &self.device)?)
    }

    fn check_context(&self, positions: usize) -> Result<()> {
        if positions > self.info.context {
            bail!(
                "the sequence needs {positions} positions but the model's context is {}",
                self.info.context
            );
        }
        Ok(())
    }

    /// Token embeddings `[T, D]` (no positions).
    /// The L2 norm of every token's input embedding, in id order.
    pub fn embedding_norms(&self) -> Result<Vec<f32>> {
        let w = match &self.net {
            Net::Gpt2(m) => m.wte(),
            Net::Llama(m) => m.embed_tokens(),
        };
        Ok(w.to_dtype(DType::F32)?.sqr()?.sum(1)?.sqrt()?.to_vec1()?)
    }

    /// The mean input embedding over the vocabulary, `[D]` f32.
    pub fn mean_embedding(&self) -> Result<Tensor> {
        let w = match &self.net {
            Net::Gpt2(m) => m.wte(),
            Net::Llama(m) => m.embed_tokens(),
        };
        Ok(w.to_dtype(DType::F32)?.mean(0)?)
    }

    pub fn embed_ids(&self, ids: &[u32]) -> Result<Tensor> {
        let ids = Tensor::new(ids, &self.device)?;
        Ok(match &self.net {
            Net::Gpt2(m) => m.embed(&ids)?,
            Net::Llama(m) => m.embed(&ids)?,
        })
    }

    /// Runs `embeds` (`[T, D]` input embeddings, positions not yet added) at the next positions
    /// of `cache`, recording what `capture` asks for.
    pub fn forward(
        &self,
        embeds: &Tensor,
        cache: &mut KvCache,
        capture: &Capture,
        hooks: &Hooks,
    ) -> Result<StepOutput> {
        let start = cache.len;
        let t = embeds.dim(0)?;
        self.check_context(start + t)?;
        let x = embeds.to_dtype(self.dtype)?.contiguous()?.unsqueeze(0)?;
        let x0 = match &self.net {
            Net::Gpt2(m) => m.add_positions(&x, start)?,
            Net::Llama(_) => x,
        };
        let out = self.run_blocks(0, x0, start, cache, capture, hooks)?;
        cache.len = start + t;
        Ok(out)
    }

    /// Runs a batch of variants, `embeds` `[B, T, D]`, at the next positions of `cache` (whose
    /// layers hold `B` variants), returning the final hidden states `[B, T, D]`.
    pub fn forward_batch(
        &self,
        embeds: &Tensor,
        cache: &mut KvCache,
        hooks: &Hooks,
    ) -> Result<Tensor> {
        let start = cache.len;
        let t = embeds.dim(1)?;
        self.check_context(start + t)?;
        let x = embeds.to_dtype(self.dtype)?.contiguous()?;
        let x0 = match &self.net {
            Net::Gpt2(m) => m.add_positions(&x, start)?,
            Net::Llama(_) => x,
        };
        let x = self
            .blocks(0, x0, start, cache, hooks, &mut |_, _| Ok(()), false)?
            .0;
        cache.len = start + t;
        self.final_norm(&x, hooks.mode)
    }

    /// Reruns blocks `from..L` for a batch of variants over the positions already in `cache`:
    /// `x` `[B, T, D]` is x^from there, `cache` holds layers below `from` (see
    /// [`KvCache::expand_below`]). Returns the final hidden states `[B, T, D]`.
    pub fn rerun_from_layer(
        &self,
        from: usize,
        x: &Tensor,
        cache: &mut KvCache,
        hooks: &Hooks,
    ) -> Result<Tensor> {
        let t = x.dim(1)?;
        if t != cache.len {
            bail!(
                "rerun_from_layer: {t} positions given, the cache holds {}",
                cache.len
            );
        }
        let x = self
            .blocks(from, x.clone(), 0, cache, hooks, &mut |_, _| Ok(()), false)?
            .0;
        self.final_norm(&x, hooks.mode)
    }

    /// Blocks `from..L` on `x` (`[B, T, D]`), calling `each` with (l, x^l) for l = from..=L.
    #[allow(clippy::too_many_arguments, clippy::type_complexity)]
    fn blocks(
        &self,
        from: usize,
        mut x: Tensor,
        start: usize,
        cache: &mut KvCache,
        hooks: &Hooks,
        each: &mut dyn FnMut(usize, &Tensor) -> Result<()>,
        want_probs: bool,
    ) -> Result<(Tensor, Vec<Option<Tensor>>)> {
        if !hooks.writes.is_empty() {
            x = write_resid(x, &hooks.writes, from, start)?;
        }
        each(from, &x)?;
        let mut attention = Vec::new();
        for l in from..self.info.layers {
            if hooks.skip[l] {
                attention.push(None);
            } else {
                let gate = match &hooks.gates {
                    Some(g) if g.rank() == 3 => Some(g.i((.., l))?),
                    Some(g) => Some(g.i(l)?),
                    None => None,
                };
                let lc = &mut cache.layers[l];
                let (y, probs) = match &self.net {
                    Net::Gpt2(m) => {
                        m.block(l, &x, start, lc, gate.as_ref(), want_probs, hooks.mode)?
                    }
                    Net::Llama(m) => {
                        m.block(l, &x, start, lc, gate.as_ref(), want_probs, hooks.mode)?
                    }
                };
                x = y;
                attention.push(probs);
            }
            if !hooks.writes.is_empty() {
                x = write_resid(x, &hooks.writes, l + 1, start)?;
            }
            each(l + 1, &x)?;
        }
        Ok((x, attention))
    }

    /// Runs blocks `from..L` on `x` = x^from (`[1, T, D]`) at positions `start..start + T`.
    fn run_blocks(
        &self,
        from: usize,
        x: Tensor,
        start: usize,
        cache: &mut KvCache,
        capture: &Capture,
        hooks: &Hooks,
    ) -> Result<StepOutput> {
        let rows = if capture.resid_rows.is_empty() {
            None
        } else {
            let r: Vec<u32> = capture.resid_rows.iter().map(|&r| r as u32).collect();
            Some(Tensor::new(r.as_slice(), &self.device)?)
        };
        let mut resid = Vec::new();
        let mut record = |_l: usize, x: &Tensor| -> Result<()> {
            if let Some(r) = &rows {
                resid.push(x.i(0)?.index_select(r, 0)?);
            }
            Ok(())
        };
        let (x, attention) =
            self.blocks(from, x, start, cache, hooks, &mut record, capture.attention)?;
        let attention = if capture.attention {
            attention
                .into_iter()
                .map(|a| a.map(|a| a.i(0)).transpose())
                .collect::<candle_core::Result<Vec<_>>>()?
        } else {
            Vec::new()
        };
        let hidden = self.final_norm(&x.i(0)?, hooks.mode)?;
        let resid = if resid.is_empty() {
            None
        } else {
            Some(Tensor::stack(&resid, 0)?)
        };
        Ok(StepOutput {
            resid,
            attention,
            hidden,
        })
    }

    pub fn final_norm(&self, x: &Tensor, mode: OpMode) -> Result<Tensor> {
        Ok(match &self.net {
            Net::Gpt2(m) => m.final_norm(x, mode)?,
            Net::Llama(m) => m.final_norm(x, mode)?,
        })
    }

    /// Logits `[N, V]` for final-normed hidden states `[N, D]`.
    pub fn unembed(&self, hidden: &Tensor) -> Result<Tensor> {
        self.unembed_with(hidden, OpMode::default())
    }

    /// [`Model::unembed`] in a given op mode (differentiable: the head weight stays frozen).
    pub fn unembed_with(&self, hidden: &Tensor, mode: OpMode) -> Result<Tensor> {
        let w = match &self.net {
            Net::Gpt2(m) => m.lm_head(),
            Net::Llama(m) => m.lm_head(),
        };
        Ok(attention::unembed(hidden, w, mode)?)
    }
}
