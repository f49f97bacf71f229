//! Analyses of a run: logit lens, angular distances (Gromov et al. 2024), and the analysis
//! document (`coconut-lens.analysis.v1`). Everything here returns plain owned data.

pub mod document;
pub mod effect;
pub mod graph;
pub mod importance;
pub mod run;

use anyhow::Result;
use candle_core::{DType, Storage, Tensor};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::model::{Model, OpMode};
use crate::numeric::{LogitSummary, summarize_logits_picking};
use crate::thought::StepRecord;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenProb {
    pub id: u32,
    /// The vocabulary string in the analysis document; the display text in a [`run::RunAnalysis`].
    pub text: String,
    #[serde(with = "run::finite")]
    pub prob: f32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LensLayer {
    pub layer: usize,
    pub top: Vec<TokenProb>,
}

/// Everything the analysis reports for one position.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepAnalysis {
    pub position: usize,
    /// Entropy (nats) of the model's own next-token distribution here.
    pub entropy: f32,
    /// Layers 0..=L: softmax(W_U · final_norm(x^l)); layer L is the model's own distribution.
    pub lens: Vec<LensLayer>,
    /// d(x^l, x^{l+1}) for l = 0..L-1.
    pub angular: Vec<f32>,
}

/// Logit-lens logits `[steps × L, V]` (f32, on the model's device) of x^0..x^{L-1} of
/// `steps`, step-major: W_U · final_norm(x^l). Layer L is left out: its logits are the step's
/// own. `None` for no steps.
fn lens_logits_below_top(model: &Model, steps: &[&StepRecord]) -> Result<Option<Tensor>> {
    if steps.is_empty() {
        return Ok(None);
    }
    let layers = model.info.layers;
    let below: Vec<Tensor> = steps
        .iter()
        .map(|s| s.resid.narrow(0, 0, layers))
        .collect::<candle_core::Result<_>>()?;
    let flat = Tensor::cat(&below, 0)?;
    let normed = model.final_norm(&flat, OpMode::default())?;
    Ok(Some(model.unembed(&normed)?.to_dtype(DType::F32)?))
}

/// Calls `f` with the elements of an f32 tensor, in row-major order: borrowed in place when it
/// is contiguous in CPU memory, else copied to the host first.
fn with_host_f32<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    {
        let (storage, layout) = t.storage_and_layout();
        if let (Storage::Cpu(cpu), Some((from, to))) = (&*storage, layout.contiguous_offsets())
            && t.dtype() == DType::F32
        {
            return Ok(f(&cpu.as_slice::<f32>()?[from..to]));
        }
    }
    Ok(f(&t
        .flatten_all()?
        .to_dtype(DType::F32)?
        .to_vec1::<f32>()?))
}

/// Every lens distribution of `steps` (`[steps][L+1]`, layer L = the step's own logits),
/// summarised on the host, rows in parallel. Only the logits come back from the device.
pub fn lens_summaries(
    model: &Model,
    steps: &[&StepRecord],
    k: usize,
    tracked: Option<u32>,
    picked: &[u32],
) -> Result<Vec<Vec<LogitSummary>>> {
    let Some(below) = lens_logits_below_top(model, steps)? else {
        return Ok(vec![]);
    };
    let vocab = below.dim(1)?;
    let summarize = |rows: &[f32]| -> Vec<LogitSummary> {
        rows.par_chunks(vocab)
            .map(|row| summarize_logits_picking(row, k, tracked, picked))
            .collect()
    };
    let below = with_host_f32(&below, summarize)?;
    let top = steps
        .iter()
        .map(|s| {
            with_host_f32(&s.logits, |row| {
                summarize_logits_picking(row, k, tracked, picked)
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let layers = model.info.layers;
    Ok(below
        .chunks(layers)
        .zip(top)
        .map(|(below, top)| below.iter().cloned().chain([top]).collect())
        .collect())
}

/// arccos(cos(a, b)) / π in f64, the cosine clamped to [-1, 1].
pub fn angular_distance(a: &[f32], b: &[f32]) -> f64 {
    let (mut dot, mut na, mut nb) = (0f64, 0f64, 0f64);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (x as f64, y as f64);
        dot += x * y;
        na += x * x;
        nb += y * y;
    }
    let denom = (na * nb).sqrt();
    if denom == 0.0 {
        return 0.0;
    }
    (dot / denom).clamp(-1.0, 1.0).acos() / std::f64::consts::PI
}

/// The residual stream of a step on the host, `[L+1][D]`.
pub fn resid_host(step: &StepRecord) -> Result<Vec<Vec<f32>>> {
    Ok(step.resid.to_dtype(DType::F32)?.to_vec2()?)
}

/// d(x^l, x^{l+1}) for l = 0..L-1.
pub fn angular_profile(resid: &[Vec<f32>]) -> Vec<f32> {
    resid
        .windows(2)
        .map(|w| angular_distance(&w[0], &w[1]) as f32)
        .collect()
}

/// Gromov et al.'s pruning rule for one block size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BlockChoice {
    /// Block size n.
    pub n: usize,
    /// The start layer l* minimising the mean d(x^l, x^{l+n}) over the positions.
    pub start: usize,
    pub distance: f32,
}

/// For n = 1..L-1, the block of n layers whose removal changes the residual stream least,
/// averaged over the given positions (`[positions][L+1][D]`).
pub fn prune_blocks(resids: &[Vec<Vec<f32>>]) -> Vec<BlockChoice> {
    let Some(first) = resids.first() else {
        return vec![];
    };
    let layers = first.len() - 1;
    (1..layers)
        .map(|n| {
            let (start, distance) = (0..=layers - n)
                .map(|l| {
                    let mean = resids
                        .iter()
                        .map(|r| angular_distance(&r[l], &r[l + n]))
                        .sum::<f64>()
                        / resids.len() as f64;
                    (l, mean)
                })
                .min_by(|a, b| a.1.total_cmp(&b.1))
                .expect("at least one start layer");
            BlockChoice {
                n,
                start,
                distance: distance as f32,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_rows_are_the_same_borrowed_or_copied() {
        let t = Tensor::arange(0f32, 12.0, &candle_core::Device::Cpu)
            .unwrap()
            .reshape((3, 4))
            .unwrap();
        let borrowed = with_host_f32(&t, <[f32]>::to_vec).unwrap();
        assert_eq!(borrowed, t.flatten_all().unwrap().to_vec1::<f32>().unwrap());
        // A strided view (not contiguous) is copied in row-major order.
        let tt = t.t().unwrap();
        let copied = with_host_f32(&tt, <[f32]>::to_vec).unwrap();
        assert_eq!(copied[..4], [0.0, 4.0, 8.0, 1.0]);
        // A narrowed view starts at its own offset.
        let row = t.narrow(0, 1, 1).unwrap();
        assert_eq!(
            with_host_f32(&row, <[f32]>::to_vec).unwrap(),
            [4.0, 5.0, 6.0, 7.0]
        );
    }

    #[test]
    fn angular_distance_of_known_vectors() {
        assert!(angular_distance(&[1.0, 0.0], &[1.0, 0.0]).abs() < 1e-12);
        assert!((angular_distance(&[1.0, 0.0], &[0.0, 2.0]) - 0.5).abs() < 1e-12);
        assert!((angular_distance(&[1.0, 0.0], &[-3.0, 0.0]) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn prune_blocks_picks_the_flattest_block() {
        // Layers 1..3 barely move the stream; the 2-block starting at 1 is the candidate.
        let r = vec![
            vec![1.0, 0.0],
            vec![0.0, 1.0],
            vec![0.01, 1.0],
            vec![0.02, 1.0],
            vec![-1.0, 0.0],
        ];
        let blocks = prune_blocks(&[r]);
        assert_eq!(blocks.len(), 3);
        assert_eq!((blocks[1].n, blocks[1].start), (2, 1));
    }
}
