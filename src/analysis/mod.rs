//! Analyses of a run: logit lens, angular distances (Gromov et al. 2024), and the analysis
//! document (`coconut-lens.analysis.v1`). Everything here returns plain owned data.

pub mod document;
pub mod importance;

use anyhow::Result;
use candle_core::{DType, Tensor};
use serde::{Deserialize, Serialize};

use crate::model::{Model, OpMode, Tokenizer};
use crate::thought::{StepRecord, entropy};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenProb {
    pub id: u32,
    pub text: String,
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

/// Indices of the `k` largest values, largest first (ties: lower index first).
pub fn top_k_indices(values: &[f32], k: usize) -> Vec<usize> {
    let k = k.min(values.len());
    let mut idx: Vec<usize> = (0..values.len()).collect();
    let cmp = |a: &usize, b: &usize| values[*b].total_cmp(&values[*a]).then(a.cmp(b));
    if k < idx.len() && k > 0 {
        idx.select_nth_unstable_by(k - 1, cmp);
        idx.truncate(k);
    }
    idx.sort_by(cmp);
    idx.truncate(k);
    idx
}

/// Logit-lens distributions `[steps × (L+1), V]` (f32, on the model's device) of the residual
/// streams of `steps`, step-major; `None` for no steps.
pub fn lens_probs_device(model: &Model, steps: &[&StepRecord]) -> Result<Option<Tensor>> {
    if steps.is_empty() {
        return Ok(None);
    }
    let layers = model.info.layers + 1;
    let resid = Tensor::stack(&steps.iter().map(|s| &s.resid).collect::<Vec<_>>(), 0)?;
    let flat = resid.reshape((steps.len() * layers, model.info.d_model))?;
    let normed = model.final_norm(&flat, OpMode::default())?;
    let logits = model.unembed(&normed)?.to_dtype(DType::F32)?;
    Ok(Some(candle_nn::ops::softmax_last_dim(&logits)?))
}

/// Logit-lens distributions `[steps][L+1][V]` of the residual streams of `steps`, on the host.
pub fn lens_probs(model: &Model, steps: &[&StepRecord]) -> Result<Vec<Vec<Vec<f32>>>> {
    let Some(probs) = lens_probs_device(model, steps)? else {
        return Ok(vec![]);
    };
    let layers = model.info.layers + 1;
    let rows: Vec<Vec<f32>> = probs.to_vec2()?;
    Ok(rows.chunks(layers).map(|c| c.to_vec()).collect())
}

/// The `k` largest values of each row of `values` (`[N, V]`) with their column indices, largest
/// first, computed on the tensor's device: only `N × k` ids and values reach the host. Ties go to
/// whichever index the device's argmax returns.
pub fn top_k_rows(values: &Tensor, k: usize) -> Result<Vec<Vec<(u32, f32)>>> {
    let (n, v) = values.dims2()?;
    let k = k.min(v);
    if n == 0 || k == 0 {
        return Ok(vec![vec![]; n]);
    }
    let dev = values.device();
    let columns = Tensor::arange(0u32, v as u32, dev)?.unsqueeze(0)?;
    let floor = Tensor::new(f32::NEG_INFINITY, dev)?.broadcast_as((n, v))?;
    let mut rest = values.to_dtype(DType::F32)?;
    let (mut ids, mut vals) = (Vec::with_capacity(k), Vec::with_capacity(k));
    for i in 0..k {
        let best = rest.argmax_keepdim(1)?; // [N, 1]
        vals.push(rest.gather(&best, 1)?);
        if i + 1 < k {
            rest = columns.broadcast_eq(&best)?.where_cond(&floor, &rest)?;
        }
        ids.push(best);
    }
    let ids: Vec<Vec<u32>> = Tensor::cat(&ids, 1)?.to_vec2()?;
    let vals: Vec<Vec<f32>> = Tensor::cat(&vals, 1)?.to_vec2()?;
    Ok(ids
        .into_iter()
        .zip(vals)
        .map(|(i, v)| i.into_iter().zip(v).collect())
        .collect())
}

/// Top-k logit lens of each step, all layers. On the CPU the full distributions are ranked on
/// the host; on a GPU the top-k is taken on the device and only `k` ids and probabilities per
/// layer come back.
pub fn lens_top_k(
    model: &Model,
    tokenizer: &Tokenizer,
    steps: &[&StepRecord],
    k: usize,
) -> Result<Vec<Vec<LensLayer>>> {
    let layers = model.info.layers + 1;
    let tops: Vec<Vec<(u32, f32)>> = if model.device().is_cpu() {
        lens_probs(model, steps)?
            .iter()
            .flatten()
            .map(|p| {
                top_k_indices(p, k)
                    .into_iter()
                    .map(|i| (i as u32, p[i]))
                    .collect()
            })
            .collect()
    } else {
        match lens_probs_device(model, steps)? {
            Some(probs) => top_k_rows(&probs, k)?,
            None => vec![],
        }
    };
    Ok(tops
        .chunks(layers)
        .map(|step| {
            step.iter()
                .enumerate()
                .map(|(layer, top)| LensLayer {
                    layer,
                    top: top
                        .iter()
                        .map(|&(id, prob)| TokenProb {
                            id,
                            text: tokenizer.token_text(id),
                            prob,
                        })
                        .collect(),
                })
                .collect()
        })
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

/// Lens, entropy and angular distances for each step.
pub fn analyze_steps(
    model: &Model,
    tokenizer: &Tokenizer,
    steps: &[&StepRecord],
    top_k: usize,
) -> Result<Vec<StepAnalysis>> {
    let lens = lens_top_k(model, tokenizer, steps, top_k)?;
    steps
        .iter()
        .zip(lens)
        .map(|(s, lens)| {
            Ok(StepAnalysis {
                position: s.position,
                entropy: entropy(&s.logits)?,
                lens,
                angular: angular_profile(&resid_host(s)?),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_orders_and_breaks_ties_by_index() {
        let v = [0.1, 0.4, 0.2, 0.4, 0.05];
        assert_eq!(top_k_indices(&v, 3), vec![1, 3, 2]);
        assert_eq!(top_k_indices(&v, 10).len(), 5);
    }

    #[test]
    fn device_top_k_matches_the_host_ranking() {
        let rows = vec![
            vec![0.1f32, 0.4, 0.2, 0.35, 0.05, 0.0],
            vec![0.0, 0.0, 0.9, 0.01, 0.02, 0.07],
        ];
        let t = Tensor::new(rows.clone(), &candle_core::Device::Cpu).unwrap();
        let got = top_k_rows(&t, 4).unwrap();
        for (row, top) in rows.iter().zip(&got) {
            let want: Vec<(u32, f32)> = top_k_indices(row, 4)
                .into_iter()
                .map(|i| (i as u32, row[i]))
                .collect();
            assert_eq!(top, &want);
        }
        assert_eq!(top_k_rows(&t, 10).unwrap()[0].len(), 6);
        assert!(top_k_rows(&t, 0).unwrap().iter().all(Vec::is_empty));
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
