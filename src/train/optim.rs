//! AdamW (Loshchilov & Hutter 2019) with global-norm gradient clipping.
//!
//! Written out rather than taken from `candle_nn::AdamW` because an exact resume needs the
//! moment estimates, which candle's optimizer keeps private.

use anyhow::Result;
use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};

#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct AdamWParams {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    /// Gradients are scaled so that their global L2 norm is at most this (0: no clipping).
    pub clip_norm: f64,
}

impl Default for AdamWParams {
    fn default() -> Self {
        Self {
            beta1: 0.9,
            beta2: 0.95,
            eps: 1e-8,
            weight_decay: 0.01,
            clip_norm: 1.0,
        }
    }
}

/// One trained tensor with its moment estimates.
pub struct Slot {
    pub name: String,
    pub var: Var,
    pub m: Tensor,
    pub v: Tensor,
    /// Weight decay applies to matrices only (not to biases and norm gains).
    pub decay: bool,
}

pub struct AdamW {
    pub slots: Vec<Slot>,
    /// Number of steps taken since the last reset.
    pub t: u64,
    pub params: AdamWParams,
}

impl AdamW {
    /// Fresh moments for `vars` (sorted by name for a stable order).
    pub fn new(mut vars: Vec<(String, Var)>, params: AdamWParams) -> Result<Self> {
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        let slots = vars
            .into_iter()
            .map(|(name, var)| {
                let zeros = var.as_tensor().zeros_like()?;
                Ok(Slot {
                    decay: var.as_tensor().rank() >= 2 && !super::params::is_norm(&name),
                    name,
                    m: zeros.clone(),
                    v: zeros,
                    var,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            slots,
            t: 0,
            params,
        })
    }

    /// Forgets the moments (the Coconut curriculum resets the optimizer at each stage).
    pub fn reset(&mut self) -> Result<()> {
        for s in &mut self.slots {
            s.m = s.m.zeros_like()?;
            s.v = s.v.zeros_like()?;
        }
        self.t = 0;
        Ok(())
    }

    /// One update at learning rate `lr`. Returns the gradient norm before clipping.
    pub fn step(&mut self, grads: &GradStore, lr: f64) -> Result<f64> {
        let p = self.params;
        let mut sq = 0f64;
        for s in &self.slots {
            if let Some(g) = grads.get(s.var.as_tensor()) {
                sq += f64::from(g.sqr()?.sum_all()?.to_scalar::<f32>()?);
            }
        }
        let norm = sq.sqrt();
        let scale = if p.clip_norm > 0.0 && norm > p.clip_norm {
            p.clip_norm / norm
        } else {
            1.0
        };
        self.t += 1;
        let t = self.t as i32;
        let (c1, c2) = (1.0 - p.beta1.powi(t), 1.0 - p.beta2.powi(t));
        for s in &mut self.slots {
            let Some(g) = grads.get(s.var.as_tensor()) else {
                continue;
            };
            let g = (g * scale)?;
            s.m = ((&s.m * p.beta1)? + (&g * (1.0 - p.beta1))?)?;
            s.v = ((&s.v * p.beta2)? + (g.sqr()? * (1.0 - p.beta2))?)?;
            let update = ((&s.m / c1)? / ((&s.v / c2)?.sqrt()? + p.eps)?)?;
            let w = s.var.as_tensor();
            let decayed = if s.decay {
                (w * (1.0 - lr * p.weight_decay))?
            } else {
                w.clone()
            };
            s.var.set(&(decayed - (update * lr)?)?)?;
        }
        Ok(norm)
    }
}
