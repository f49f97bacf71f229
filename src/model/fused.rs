//! CPU f32 kernels with their own backward, for differentiable mode. candle's fused softmax,
//! RMSNorm and RoPE drop gradients, and the composed ops that keep them are several tensors,
//! allocations and backward nodes each (a training step builds thousands). Each function here
//! takes the kernel for contiguous f32 CPU tensors and falls back to the composed op elsewhere
//! (other devices, other dtypes). The kernels run on the calling thread: training runs its
//! batch shards on threads of their own.

use candle_core::{
    CpuStorage, CustomOp1, CustomOp2, CustomOp3, D, DType, Layout, Result, Shape, Storage, Tensor,
    bail,
};

/// Whether every tensor is f32 on the CPU (where the kernels apply).
fn cpu_f32(ts: &[&Tensor]) -> bool {
    ts.iter()
        .all(|t| t.device().is_cpu() && t.dtype() == DType::F32)
}

/// The elements of a contiguous f32 storage.
fn data<'a>(s: &'a CpuStorage, l: &Layout, op: &str) -> Result<&'a [f32]> {
    let Some((a, b)) = l.contiguous_offsets() else {
        bail!("{op}: input must be contiguous");
    };
    Ok(&s.as_slice::<f32>()?[a..b])
}

/// Runs `f` on the elements of `t` (a CPU f32 tensor, made contiguous when it is not).
fn with_data<R>(t: &Tensor, op: &str, f: impl FnOnce(&[f32]) -> Result<R>) -> Result<R> {
    let t = t.contiguous()?;
    let (st, l) = t.storage_and_layout();
    match &*st {
        Storage::Cpu(s) => f(data(s, l, op)?),
        _ => bail!("{op}: expected a CPU tensor"),
    }
}

fn cpu_tensor(v: Vec<f32>, shape: &Shape) -> Result<Tensor> {
    Tensor::from_vec(v, shape.clone(), &candle_core::Device::Cpu)
}

/// Last dimension and rows of a shape.
/// The gradient of an input when it is tracked (`want`), else none.
fn gradient(want: bool, v: Vec<f32>, shape: &Shape) -> Result<Option<Tensor>> {
    want.then(|| cpu_tensor(v, shape)).transpose()
}

fn rows_of(shape: &Shape) -> Result<(usize, usize)> {
    let n = shape.dims().last().copied().unwrap_or(1);
    if n == 0 {
        bail!("fused op: empty last dimension in {shape:?}");
    }
    Ok((shape.elem_count() / n, n))
}

/// `softmax(scale · x)` over the last dimension; with `causal`, `x` is `[.., T, S]` for the
/// last `T` of `S` positions and query `i` sees keys `0..=S - T + i` (the others get 0).
struct Softmax {
    scale: f32,
    causal: bool,
}

impl Softmax {
    /// Keys that row `r` of a `[.., T, S]` input sees.
    fn visible(&self, r: usize, t: usize, s: usize) -> usize {
        if self.causal { s - t + r % t + 1 } else { s }
    }

    fn dims(&self, shape: &Shape) -> Result<(usize, usize)> {
        let dims = shape.dims();
        if dims.len() < 2 && self.causal {
            bail!("causal softmax: expected [.., T, S], got {dims:?}");
        }
        let t = if self.causal { dims[dims.len() - 2] } else { 1 };
        let (_, s) = rows_of(shape)?;
        if t > s {
            bail!("causal softmax: {t} queries over {s} keys");
        }
        Ok((t, s))
    }
}

impl CustomOp1 for Softmax {
    fn name(&self) -> &'static str {
        "fused-softmax"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = data(storage, layout, self.name())?;
        let (t, s) = self.dims(layout.shape())?;
        let mut y = vec![0f32; x.len()];
        for (r, (x, y)) in x.chunks_exact(s).zip(y.chunks_exact_mut(s)).enumerate() {
            let n = self.visible(r, t, s);
            let (x, y) = (&x[..n], &mut y[..n]);
            let max = x.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v)) * self.scale;
            let mut sum = 0f32;
            for (y, &x) in y.iter_mut().zip(x) {
                *y = (x * self.scale - max).exp();
                sum += *y;
            }
            let inv = 1.0 / sum;
            y.iter_mut().for_each(|y| *y *= inv);
        }
        Ok((CpuStorage::F32(y), layout.shape().clone()))
    }

    /// `dx = scale · y ⊙ (dy − Σ dy ⊙ y)` per row.
    fn bwd(&self, _x: &Tensor, y: &Tensor, dy: &Tensor) -> Result<Option<Tensor>> {
        let (t, s) = self.dims(y.shape())?;
        let dx = with_data(y, self.name(), |y| {
            with_data(dy, self.name(), |dy| {
                let mut dx = vec![0f32; y.len()];
                let rows = y.chunks_exact(s).zip(dy.chunks_exact(s));
                for (r, ((y, dy), dx)) in rows.zip(dx.chunks_exact_mut(s)).enumerate() {
                    let n = self.visible(r, t, s);
                    let dot: f32 = y[..n].iter().zip(&dy[..n]).map(|(y, g)| y * g).sum();
                    for ((dx, &y), &g) in dx[..n].iter_mut().zip(&y[..n]).zip(&dy[..n]) {
                        *dx = self.scale * y * (g - dot);
                    }
                }
                Ok(dx)
            })
        })?;
        Ok(Some(cpu_tensor(dx, y.shape())?))
    }
}

/// Softmax over the last dimension, differentiable.
pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    if cpu_f32(&[x]) {
        x.contiguous()?.apply_op1(Softmax {
            scale: 1.0,
            causal: false,
        })
    } else {
        candle_nn::ops::softmax(x, D::Minus1)
    }
}

/// Attention probabilities `softmax(scale · scores + causal mask)` of `scores`
/// `[.., T, S]` for queries at the last `T` of `S` positions, differentiable. The fallback
/// builds the additive mask; the kernel skips the masked keys.
pub fn causal_softmax(scores: &Tensor, scale: f64) -> Result<Tensor> {
    if cpu_f32(&[scores]) {
        return scores.contiguous()?.apply_op1(Softmax {
            scale: scale as f32,
            causal: true,
        });
    }
    let (t, s) = scores
        .dims()
        .split_last()
        .map_or((0, 0), |(&s, rest)| (rest.last().copied().unwrap_or(1), s));
    let scores = (scores * scale)?;
    let scores = if t > 1 {
        let start = s - t;
        let mask: Vec<f32> = (0..t)
            .flat_map(|i| {
                (0..s).map(move |j| {
                    if j > start + i {
                        f32::NEG_INFINITY
                    } else {
                        0.0
                    }
                })
            })
            .collect();
        let mask = Tensor::from_vec(mask, (t, s), scores.device())?.to_dtype(scores.dtype())?;
        scores.broadcast_add(&mask)?
    } else {
        scores
    };
    candle_nn::ops::softmax(&scores, D::Minus1)
}

/// `log softmax(x)` over the last dimension.
struct LogSoftmax;

impl CustomOp1 for LogSoftmax {
    fn name(&self) -> &'static str {
        "fused-log-softmax"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = data(storage, layout, self.name())?;
        let (_, n) = rows_of(layout.shape())?;
        let mut y = vec![0f32; x.len()];
        for (x, y) in x.chunks_exact(n).zip(y.chunks_exact_mut(n)) {
            let max = x.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
            let sum: f32 = x.iter().map(|&v| (v - max).exp()).sum();
            let shift = max + sum.ln();
            for (y, &x) in y.iter_mut().zip(x) {
                *y = x - shift;
            }
        }
        Ok((CpuStorage::F32(y), layout.shape().clone()))
    }

    /// `dx = dy − exp(y) · Σ dy` per row.
    fn bwd(&self, _x: &Tensor, y: &Tensor, dy: &Tensor) -> Result<Option<Tensor>> {
        let (_, n) = rows_of(y.shape())?;
        let dx = with_data(y, self.name(), |y| {
            with_data(dy, self.name(), |dy| {
                let mut dx = vec![0f32; y.len()];
                let rows = y.chunks_exact(n).zip(dy.chunks_exact(n));
                for ((y, dy), dx) in rows.zip(dx.chunks_exact_mut(n)) {
                    let sum: f32 = dy.iter().sum();
                    for ((dx, &y), &g) in dx.iter_mut().zip(y).zip(dy) {
                        *dx = g - y.exp() * sum;
                    }
                }
                Ok(dx)
            })
        })?;
        Ok(Some(cpu_tensor(dx, y.shape())?))
    }
}

/// Log-softmax over the last dimension, differentiable.
pub fn log_softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    if cpu_f32(&[x]) {
        x.contiguous()?.apply_op1(LogSoftmax)
    } else {
        candle_nn::ops::log_softmax(x, D::Minus1)
    }
}

/// `x / sqrt(mean(x²) + eps) · w` over the last dimension.
struct RmsNorm {
    eps: f32,
}

impl RmsNorm {
    /// `1 / sqrt(mean(x²) + eps)` of a row.
    fn inv_rms(&self, x: &[f32]) -> f32 {
        let ms = x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32;
        1.0 / (ms + self.eps).sqrt()
    }
}

impl CustomOp2 for RmsNorm {
    fn name(&self) -> &'static str {
        "fused-rms-norm"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = data(xs, xl, self.name())?;
        let w = data(ws, wl, self.name())?;
        let (_, n) = rows_of(xl.shape())?;
        if w.len() != n {
            bail!("rms-norm: weight of {} for rows of {n}", w.len());
        }
        let mut y = vec![0f32; x.len()];
        for (x, y) in x.chunks_exact(n).zip(y.chunks_exact_mut(n)) {
            let r = self.inv_rms(x);
            for ((y, &x), &w) in y.iter_mut().zip(x).zip(w) {
                *y = x * r * w;
            }
        }
        Ok((CpuStorage::F32(y), xl.shape().clone()))
    }

    /// With `g = dy ⊙ w` and `r = 1 / rms(x)`: `dx = r · (g − x · r² · mean(g ⊙ x))`,
    /// `dw = Σ_rows dy ⊙ x · r`. Each only when its input takes part in backprop.
    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (want_dx, want_dw) = (x.track_op(), w.track_op());
        let (_, n) = rows_of(x.shape())?;
        let name = self.name();
        let (dx, dw) = with_data(x, name, |xd| {
            with_data(w, name, |wd| {
                with_data(dy, name, |dyd| {
                    let mut dx = vec![0f32; if want_dx { xd.len() } else { 0 }];
                    let mut dw = vec![0f32; if want_dw { n } else { 0 }];
                    for (i, (x, dy)) in xd.chunks_exact(n).zip(dyd.chunks_exact(n)).enumerate() {
                        let r = self.inv_rms(x);
                        if want_dx {
                            let gx: f32 =
                                x.iter().zip(dy).zip(wd).map(|((x, g), w)| x * g * w).sum();
                            let c = r * r * gx / n as f32;
                            let dx = &mut dx[i * n..(i + 1) * n];
                            for (((dx, &x), &g), &w) in dx.iter_mut().zip(x).zip(dy).zip(wd) {
                                *dx = r * (g * w - x * c);
                            }
                        }
                        if want_dw {
                            for ((dw, &x), &g) in dw.iter_mut().zip(x).zip(dy) {
                                *dw += g * x * r;
                            }
                        }
                    }
                    Ok((dx, dw))
                })
            })
        })?;
        let dx = gradient(want_dx, dx, x.shape())?;
        let dw = gradient(want_dw, dw, w.shape())?;
        Ok((dx, dw))
    }
}

/// RMSNorm of the last dimension with weight `w`, differentiable in `x` and `w`.
pub fn rms_norm(x: &Tensor, w: &Tensor, eps: f32) -> Result<Tensor> {
    if cpu_f32(&[x, w]) && w.rank() == 1 {
        x.contiguous()?.apply_op2(&w.contiguous()?, RmsNorm { eps })
    } else {
        candle_nn::ops::rms_norm_slow(x, w, eps)
    }
}

/// Rotary embedding in the rotate-half layout: `x` `[B, H, T, d]`, `cos`, `sin` `[T, d/2]`;
/// `(x₁, x₂) ↦ (x₁ cos − x₂ sin, x₂ cos + x₁ sin)` for the two halves of each row.
struct Rope;

impl Rope {
    /// Rotates each row of `x` by the angles of its position (`sign` −1: the inverse).
    fn rotate(x: &[f32], cos: &[f32], sin: &[f32], t: usize, d: usize, sign: f32) -> Vec<f32> {
        let half = d / 2;
        let mut y = vec![0f32; x.len()];
        for (r, (x, y)) in x.chunks_exact(d).zip(y.chunks_exact_mut(d)).enumerate() {
            let p = (r % t) * half;
            let (c, s) = (&cos[p..p + half], &sin[p..p + half]);
            let (x1, x2) = x.split_at(half);
            let (y1, y2) = y.split_at_mut(half);
            for i in 0..half {
                let s = sign * s[i];
                y1[i] = x1[i] * c[i] - x2[i] * s;
                y2[i] = x2[i] * c[i] + x1[i] * s;
            }
        }
        y
    }

    fn dims(shape: &Shape, table: usize) -> Result<(usize, usize)> {
        let (_, _, t, d) = shape.dims4()?;
        if d % 2 != 0 || table != t * (d / 2) {
            bail!("rope: {shape:?} against cos/sin of {table} elements");
        }
        Ok((t, d))
    }
}

impl CustomOp3 for Rope {
    fn name(&self) -> &'static str {
        "fused-rope"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        cs: &CpuStorage,
        cl: &Layout,
        ss: &CpuStorage,
        sl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = data(xs, xl, self.name())?;
        let cos = data(cs, cl, self.name())?;
        let sin = data(ss, sl, self.name())?;
        if sin.len() != cos.len() {
            bail!("rope: cos and sin differ in size");
        }
        let (t, d) = Self::dims(xl.shape(), cos.len())?;
        let y = Self::rotate(x, cos, sin, t, d, 1.0);
        Ok((CpuStorage::F32(y), xl.shape().clone()))
    }

    /// The inverse rotation of `dy`; the tables get no gradient.
    fn bwd(
        &self,
        _x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let name = self.name();
        let (t, d) = Self::dims(y.shape(), cos.elem_count())?;
        let dx = with_data(cos, name, |c| {
            with_data(sin, name, |s| {
                with_data(dy, name, |g| Ok(Self::rotate(g, c, s, t, d, -1.0)))
            })
        })?;
        Ok((Some(cpu_tensor(dx, y.shape())?), None, None))
    }
}

/// Rotary embedding of `x` `[B, H, T, d]` with `cos`, `sin` `[T, d/2]` (rotate-half layout),
/// differentiable in `x`.
pub fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    if cpu_f32(&[x, cos, sin]) && x.dim(D::Minus1)? % 2 == 0 {
        x.contiguous()?
            .apply_op3(&cos.contiguous()?, &sin.contiguous()?, Rope)
    } else {
        candle_nn::rotary_emb::rope_slow(x, cos, sin)
    }
}

/// SwiGLU's gating `silu(g) ⊙ u`, elementwise over equal shapes.
struct SwiGlu;

/// `σ(g)`.
fn sigmoid(g: f32) -> f32 {
    1.0 / (1.0 + (-g).exp())
}

impl CustomOp2 for SwiGlu {
    fn name(&self) -> &'static str {
        "fused-swiglu"
    }

    fn cpu_fwd(
        &self,
        gs: &CpuStorage,
        gl: &Layout,
        us: &CpuStorage,
        ul: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = data(gs, gl, self.name())?;
        let u = data(us, ul, self.name())?;
        if gl.shape() != ul.shape() {
            bail!("swiglu: {:?} against {:?}", gl.shape(), ul.shape());
        }
        let y = g.iter().zip(u).map(|(&g, &u)| g * sigmoid(g) * u).collect();
        Ok((CpuStorage::F32(y), gl.shape().clone()))
    }

    /// `dg = dy ⊙ u ⊙ σ(g) (1 + g (1 − σ(g)))`, `du = dy ⊙ silu(g)`, each when its input
    /// takes part in backprop.
    fn bwd(
        &self,
        g: &Tensor,
        u: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (want_dg, want_du) = (g.track_op(), u.track_op());
        let name = self.name();
        let (dg, du) = with_data(g, name, |gd| {
            with_data(u, name, |ud| {
                with_data(dy, name, |dyd| {
                    let n = gd.len();
                    let mut dg = Vec::with_capacity(if want_dg { n } else { 0 });
                    let mut du = Vec::with_capacity(if want_du { n } else { 0 });
                    for ((&g, &u), &d) in gd.iter().zip(ud).zip(dyd) {
                        let s = sigmoid(g);
                        if want_dg {
                            dg.push(d * u * s * (1.0 + g * (1.0 - s)));
                        }
                        if want_du {
                            du.push(d * g * s);
                        }
                    }
                    Ok((dg, du))
                })
            })
        })?;
        let dg = gradient(want_dg, dg, g.shape())?;
        let du = gradient(want_du, du, u.shape())?;
        Ok((dg, du))
    }
}

/// `silu(g) ⊙ u` (SwiGLU's gating), differentiable in both.
pub fn swiglu(g: &Tensor, u: &Tensor) -> Result<Tensor> {
    if cpu_f32(&[g, u]) && g.shape() == u.shape() {
        g.contiguous()?.apply_op2(&u.contiguous()?, SwiGlu)
    } else {
        g.silu()? * u
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    /// Deterministic values in about [-2, 2).
    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0
            })
            .collect()
    }

    fn var(dims: &[usize], seed: u64) -> Var {
        let n = dims.iter().product();
        Var::from_vec(values(n, seed), dims, &Device::Cpu).unwrap()
    }

    fn assert_close(a: &Tensor, b: &Tensor, what: &str) {
        assert_eq!(a.dims(), b.dims(), "{what}: shapes");
        let a: Vec<f32> = a.flatten_all().unwrap().to_vec1().unwrap();
        let b: Vec<f32> = b.flatten_all().unwrap().to_vec1().unwrap();
        let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
        for (i, (x, y)) in a.iter().zip(&b).enumerate() {
            assert!(
                (x - y).abs() <= 1e-5 * scale.max(y.abs()),
                "{what}[{i}]: fused {x} vs composed {y} (scale {scale})"
            );
        }
    }

    /// Forward values and the gradients of a weighted sum of the output (random weights, so
    /// every output element matters) equal the composed op's, for every input in `inputs`.
    fn check(
        inputs: &[&Var],
        fused: impl Fn() -> Tensor,
        composed: impl Fn() -> Tensor,
        what: &str,
    ) {
        let (f, c) = (fused(), composed());
        assert_close(&f, &c, &format!("{what} forward"));
        let w = Tensor::from_vec(values(c.elem_count(), 99), c.shape(), &Device::Cpu).unwrap();
        let gf = (&f * &w).unwrap().sum_all().unwrap().backward().unwrap();
        let gc = (&c * &w).unwrap().sum_all().unwrap().backward().unwrap();
        for (k, v) in inputs.iter().enumerate() {
            let (a, b) = (
                gf.get(v).expect("fused grad"),
                gc.get(v).expect("composed grad"),
            );
            assert_close(a, b, &format!("{what} grad of input {k}"));
        }
    }

    #[test]
    fn softmax_matches_composed() {
        let x = var(&[3, 2, 5, 7], 1);
        check(
            &[&x],
            || softmax_last_dim(&x).unwrap(),
            || candle_nn::ops::softmax(&x, D::Minus1).unwrap(),
            "softmax",
        );
    }

    #[test]
    fn causal_softmax_matches_scaled_masked_softmax() {
        // 3 queries at the last positions of 5 (a cached prefix of 2), and a single query.
        for (t, s) in [(3, 5), (4, 4), (1, 6)] {
            let x = var(&[2, 3, t, s], 2);
            let scale = 1.0 / 8f64.sqrt();
            let composed = || {
                let start = s - t;
                let mask: Vec<f32> = (0..t)
                    .flat_map(|i| {
                        (0..s).map(move |j| {
                            if j > start + i {
                                f32::NEG_INFINITY
                            } else {
                                0.0
                            }
                        })
                    })
                    .collect();
                let mask = Tensor::from_vec(mask, (t, s), &Device::Cpu).unwrap();
                let scaled = (x.as_tensor() / 8f64.sqrt()).unwrap();
                candle_nn::ops::softmax(&scaled.broadcast_add(&mask).unwrap(), D::Minus1).unwrap()
            };
            check(
                &[&x],
                || causal_softmax(&x, scale).unwrap(),
                composed,
                &format!("causal softmax {t}x{s}"),
            );
        }
    }

    #[test]
    fn log_softmax_matches_composed() {
        let x = var(&[6, 11], 3);
        check(
            &[&x],
            || log_softmax_last_dim(&x).unwrap(),
            || candle_nn::ops::log_softmax(&x, D::Minus1).unwrap(),
            "log-softmax",
        );
    }

    #[test]
    fn rms_norm_matches_composed() {
        let x = var(&[2, 3, 16], 4);
        let w = var(&[16], 5);
        check(
            &[&x, &w],
            || rms_norm(&x, &w, 1e-5).unwrap(),
            || candle_nn::ops::rms_norm_slow(&x, &w, 1e-5).unwrap(),
            "rms-norm",
        );
    }

    #[test]
    fn rms_norm_skips_a_frozen_weight() {
        let x = var(&[4, 8], 6);
        let w = Tensor::from_vec(values(8, 7), 8, &Device::Cpu).unwrap();
        let g = rms_norm(&x, &w, 1e-5)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        assert!(g.get(&x).is_some() && g.get(&w).is_none());
    }

    #[test]
    fn rope_matches_composed() {
        let x = var(&[2, 3, 5, 8], 8);
        // Tables as the model narrows them: rows `start..start + T` of a longer table.
        let angles = Tensor::from_vec(values(9 * 4, 9), (9, 4), &Device::Cpu).unwrap();
        let cos = angles.cos().unwrap().narrow(0, 2, 5).unwrap();
        let sin = angles.sin().unwrap().narrow(0, 2, 5).unwrap();
        check(
            &[&x],
            || rope(&x, &cos, &sin).unwrap(),
            || candle_nn::rotary_emb::rope_slow(&x, &cos, &sin).unwrap(),
            "rope",
        );
    }

    #[test]
    fn swiglu_matches_composed() {
        let g = var(&[3, 4, 9], 11);
        let u = var(&[3, 4, 9], 12);
        check(
            &[&g, &u],
            || swiglu(&g, &u).unwrap(),
            || (g.silu().unwrap() * u.as_tensor()).unwrap(),
            "swiglu",
        );
    }

    #[test]
    fn non_contiguous_input_is_made_contiguous() {
        let x = var(&[4, 6], 10);
        let xt = x.as_tensor().t().unwrap();
        assert_close(
            &softmax_last_dim(&xt).unwrap(),
            &candle_nn::ops::softmax(&xt, D::Minus1).unwrap(),
            "transposed softmax",
        );
    }
}
