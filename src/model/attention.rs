//! Pieces shared by the GPT-2 and Llama blocks: norms, causal attention with head gates, the KV cache.

use candle_core::{DType, Device, Result, Tensor};

/// Options that hold for every op of a forward pass.
#[derive(Debug, Clone, Copy, Default)]
pub struct OpMode {
    /// Use the composed (differentiable) kernels: candle's fused softmax, norms and rope drop gradients.
    pub differentiable: bool,
    /// Weights are trained: compute their gradients too (otherwise, in differentiable mode,
    /// linear layers treat them as frozen and return input gradients only).
    pub train_weights: bool,
}

impl OpMode {
    /// Differentiable ops with frozen weights (gradients for inputs and gates only).
    pub const INPUT_GRADS: Self = Self {
        differentiable: true,
        train_weights: false,
    };
    /// Differentiable ops with weight gradients: training.
    pub const TRAIN: Self = Self {
        differentiable: true,
        train_weights: true,
    };

    fn frozen_weights(self) -> bool {
        self.differentiable && !self.train_weights
    }
}

pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f32,
}

impl LayerNorm {
    pub fn load(vb: candle_nn::VarBuilder, size: usize, eps: f64) -> Result<Self> {
        Ok(Self {
            weight: vb.get(size, "weight")?,
            bias: vb.get(size, "bias")?,
            eps: eps as f32,
        })
    }

    pub fn forward(&self, x: &Tensor, mode: OpMode) -> Result<Tensor> {
        if mode.differentiable {
            candle_nn::ops::layer_norm_slow(x, &self.weight, &self.bias, self.eps)
        } else {
            candle_nn::ops::layer_norm(x, &self.weight, &self.bias, self.eps)
        }
    }
}

pub struct RmsNorm {
    weight: Tensor,
    eps: f32,
}

impl RmsNorm {
    pub fn load(vb: candle_nn::VarBuilder, size: usize, eps: f64) -> Result<Self> {
        Ok(Self {
            weight: vb.get(size, "weight")?,
            eps: eps as f32,
        })
    }

    pub fn forward(&self, x: &Tensor, mode: OpMode) -> Result<Tensor> {
        if mode.differentiable {
            super::fused::rms_norm(x, &self.weight, self.eps)
        } else {
            candle_nn::ops::rms_norm(x, &self.weight, self.eps)
        }
    }
}

/// Keys and values of one layer for the positions seen so far, `[B, kv_heads, T, head_dim]`.
#[derive(Clone, Default)]
pub struct LayerCache {
    kv: Option<(Tensor, Tensor)>,
}

impl LayerCache {
    /// Appends this step's keys and values; returns those of all positions.
    pub fn append(&mut self, k: Tensor, v: Tensor) -> Result<(Tensor, Tensor)> {
        let (k, v) = match self.kv.take() {
            None => (k, v),
            Some((pk, pv)) => (Tensor::cat(&[&pk, &k], 2)?, Tensor::cat(&[&pv, &v], 2)?),
        };
        self.kv = Some((k.clone(), v.clone()));
        Ok((k, v))
    }
}

/// The KV cache of a whole model.
#[derive(Clone)]
pub struct KvCache {
    pub(crate) layers: Vec<LayerCache>,
    /// Number of positions processed.
    pub(crate) len: usize,
}

impl KvCache {
    pub fn new(layers: usize) -> Self {
        Self {
            layers: vec![LayerCache::default(); layers],
            len: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The same positions for `b` variants: layers below `keep_below` repeat this (batch 1)
    /// cache, layers from `keep_below` on start empty.
    pub fn expand_below(&self, keep_below: usize, b: usize) -> Result<Self> {
        let layers = self
            .layers
            .iter()
            .enumerate()
            .map(|(l, c)| {
                let kv = match (&c.kv, l < keep_below) {
                    (Some((k, v)), true) => Some((repeat_batch(k, b)?, repeat_batch(v, b)?)),
                    _ => None,
                };
                Ok(LayerCache { kv })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            layers,
            len: self.len,
        })
    }
}

fn repeat_batch(x: &Tensor, b: usize) -> Result<Tensor> {
    if b == 1 {
        return Ok(x.clone());
    }
    let mut dims = x.dims().to_vec();
    dims[0] = b;
    x.expand(dims)?.contiguous()
}

/// Additive causal mask `[T, start + T]` for queries at positions `start..start + T`.
fn causal_mask(t: usize, start: usize, dtype: DType, device: &Device) -> Result<Tensor> {
    let total = start + t;
    let mask: Vec<f32> = (0..t)
        .flat_map(|i| {
            (0..total).map(move |j| {
                if j > start + i {
                    f32::NEG_INFINITY
                } else {
                    0.0
                }
            })
        })
        .collect();
    Tensor::from_vec(mask, (t, total), device)?.to_dtype(dtype)
}

/// Repeats grouped key/value heads so that every query head has its own, `[1, H, T, d]`.
fn repeat_kv(x: Tensor, n_rep: usize) -> Result<Tensor> {
    if n_rep == 1 {
        return Ok(x);
    }
    let (b, kv, t, d) = x.dims4()?;
    x.unsqueeze(2)?
        .expand((b, kv, n_rep, t, d))?
        .reshape((b, kv * n_rep, t, d))
}

/// Scaled dot-product causal attention.
/// `q`: `[B, H, T, d]`; `k`, `v`: `[B, KV, start + T, d]`; `gate`: `[H]` or `[B, H]` multiplies
/// each head's output before heads are merged. Returns the merged output `[B, T, H*d]` and, when
/// asked, the attention probabilities `[B, H, T, start + T]`.
pub fn attend(
    q: &Tensor,
    k: Tensor,
    v: Tensor,
    start: usize,
    gate: Option<&Tensor>,
    want_probs: bool,
    mode: OpMode,
) -> Result<(Tensor, Option<Tensor>)> {
    let (b, h, t, d) = q.dims4()?;
    let n_rep = h / k.dim(1)?;
    let k = repeat_kv(k, n_rep)?.contiguous()?;
    let v = repeat_kv(v, n_rep)?.contiguous()?;
    let scores = q.contiguous()?.matmul(&k.t()?)?;
    let scale = 1.0 / (d as f64).sqrt();
    // Softmax in f32 whatever the model dtype.
    let in_dtype = scores.dtype();
    let probs = if mode.differentiable {
        // Scale, mask and softmax in one kernel with its own backward.
        super::fused::causal_softmax(&scores.to_dtype(DType::F32)?, scale)?
    } else {
        let scores = (scores * scale)?;
        // A single query (every cached step) may see every key: no mask to build and upload.
        let scores = if t > 1 {
            let mask = causal_mask(t, start, scores.dtype(), scores.device())?;
            scores.broadcast_add(&mask)?
        } else {
            scores
        };
        candle_nn::ops::softmax_last_dim(&scores.to_dtype(DType::F32)?)?
    };
    let kept = if want_probs {
        Some(probs.clone())
    } else {
        None
    };
    let probs = probs.to_dtype(in_dtype)?;
    let mut out = probs.matmul(&v)?; // [1, H, T, d]
    if let Some(gate) = gate {
        let gb = gate.elem_count() / h;
        out = out.broadcast_mul(&gate.to_dtype(out.dtype())?.reshape((gb, h, 1, 1))?)?;
    }
    let merged = out.transpose(1, 2)?.reshape((b, t, h * d))?;
    Ok((merged, kept))
}

/// `x · Wᵀ` whose backward pass returns the input gradient only. candle's matmul backward always
/// computes the weight gradient too, which for frozen weights is pure waste: on the CPU it
/// dominated gradient importance (weight-sized buffers allocated and summed at every step), and
/// on a GPU it costs a weight-sized GEMM, allocation and sum per linear layer per step.
struct FrozenMatmul(Tensor);

/// The forward of [`FrozenMatmul`] on any backend: `x` (`[.., K]`, contiguous) as an `[M, K]`
/// matrix times the weight `[N, K]` transposed, through the backend's own matmul (the gemm
/// crate on the CPU, cuBLAS on CUDA) with no copy of either operand.
fn frozen_matmul_fwd<S: candle_core::backend::BackendStorage>(
    x: &S,
    x_layout: &candle_core::Layout,
    w: &S,
    w_layout: &candle_core::Layout,
) -> Result<(S, candle_core::Shape)> {
    let Some((start, _)) = x_layout.contiguous_offsets() else {
        candle_core::bail!("frozen-matmul: input must be contiguous");
    };
    let dims = x_layout.dims();
    let (n, k) = match w_layout.dims() {
        &[n, k] => (n, k),
        d => candle_core::bail!("frozen-matmul: weight must be a matrix, got {d:?}"),
    };
    if dims.last() != Some(&k) {
        candle_core::bail!("frozen-matmul: input {dims:?} does not end in the weight's {k}");
    }
    let m = x_layout.shape().elem_count() / k;
    let lhs = candle_core::Layout::contiguous_with_offset((m, k), start);
    let rhs = w_layout.transpose(0, 1)?; // [K, N] view of the [N, K] weight
    let out = x.matmul(w, (1, m, n, k), &lhs, &rhs)?;
    let mut out_dims = dims.to_vec();
    *out_dims.last_mut().expect("rank >= 1") = n;
    Ok((out, out_dims.into()))
}

impl candle_core::CustomOp1 for FrozenMatmul {
    fn name(&self) -> &'static str {
        "frozen-matmul"
    }

    fn cpu_fwd(
        &self,
        storage: &candle_core::CpuStorage,
        layout: &candle_core::Layout,
    ) -> Result<(candle_core::CpuStorage, candle_core::Shape)> {
        let (w, w_layout) = self.0.storage_and_layout();
        match &*w {
            candle_core::Storage::Cpu(w) => frozen_matmul_fwd(storage, layout, w, w_layout),
            _ => candle_core::bail!("frozen-matmul: input on the CPU, weight elsewhere"),
        }
    }

    fn cuda_fwd(
        &self,
        storage: &candle_core::CudaStorage,
        layout: &candle_core::Layout,
    ) -> Result<(candle_core::CudaStorage, candle_core::Shape)> {
        let (w, w_layout) = self.0.storage_and_layout();
        match &*w {
            candle_core::Storage::Cuda(w) => frozen_matmul_fwd(storage, layout, w, w_layout),
            _ => candle_core::bail!("frozen-matmul: input on CUDA, weight elsewhere"),
        }
    }

    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(grad.broadcast_matmul(&self.0)?))
    }
}

/// Whether [`FrozenMatmul`] runs on this device (CPU and CUDA; Metal takes candle's matmul).
fn frozen_on(device: &Device) -> bool {
    device.is_cpu() || device.is_cuda()
}

/// A linear layer; in differentiable mode with frozen weights only the input gradient is computed.
pub fn linear(layer: &candle_nn::Linear, x: &Tensor, mode: OpMode) -> Result<Tensor> {
    use candle_core::Module;
    if mode.frozen_weights() && frozen_on(x.device()) {
        let y = x
            .contiguous()?
            .apply_op1(FrozenMatmul(layer.weight().clone()))?;
        match layer.bias() {
            Some(b) => y.broadcast_add(b),
            None => Ok(y),
        }
    } else {
        layer.forward(x)
    }
}

/// `hidden · W_Uᵀ` with the same frozen-weight treatment.
pub fn unembed(hidden: &Tensor, w: &Tensor, mode: OpMode) -> Result<Tensor> {
    if mode.frozen_weights() && frozen_on(hidden.device()) {
        hidden.contiguous()?.apply_op1(FrozenMatmul(w.clone()))
    } else {
        hidden.matmul(&w.t()?)
    }
}
