//! Numeric operations on distributions, shared by the thought runner and the analyses:
//! entropy, log-softmax, KL divergence, top-k. Depends on candle only.

use anyhow::Result;
use candle_core::{D, DType, Tensor};

/// Entropy in nats of softmax(logits).
pub fn entropy(logits: &Tensor) -> Result<f32> {
    let logp = log_probs(logits)?;
    let h = (logp.exp()? * &logp)?.sum_all()?.neg()?;
    Ok(h.to_scalar::<f32>()?)
}

/// Log-probabilities `[B, V]` (f32, on the logits' device).
pub fn log_probs(logits: &Tensor) -> Result<Tensor> {
    Ok(candle_nn::ops::log_softmax(
        &logits.to_dtype(DType::F32)?,
        D::Minus1,
    )?)
}

/// KL(p ‖ q) in nats from log-probabilities.
pub fn kl(log_p: &[f32], log_q: &[f32]) -> f32 {
    log_p
        .iter()
        .zip(log_q)
        .map(|(&lp, &lq)| {
            let p = (lp as f64).exp();
            if p == 0.0 {
                0.0
            } else {
                p * (lp as f64 - lq as f64)
            }
        })
        .sum::<f64>()
        .max(0.0) as f32
}

/// [`kl`] of `log_p` (`[1, V]`) against each row of `log_q` (`[B, V]`), in f64 on their
/// device: only the `B` divergences reach the host.
pub fn kl_rows(log_p: &Tensor, log_q: &Tensor) -> Result<Vec<f32>> {
    let lp = log_p.to_dtype(DType::F64)?;
    let lq = log_q.to_dtype(DType::F64)?;
    let p = lp.exp()?;
    let terms = p.broadcast_mul(&lp.broadcast_sub(&lq)?)?;
    // p = 0 contributes nothing (and would give 0 · ∞ = NaN where log p = -inf).
    let nonzero = p.gt(0.0)?.broadcast_as(terms.shape())?;
    let terms = nonzero.where_cond(&terms, &terms.zeros_like()?)?;
    let kl: Vec<f64> = terms.sum(D::Minus1)?.to_vec1()?;
    Ok(kl.into_iter().map(|k| k.max(0.0) as f32).collect())
}

/// Log-probabilities of one row of logits, on the host.
pub fn log_softmax_host(logits: &Tensor) -> Result<Vec<f32>> {
    Ok(log_probs(logits)?.to_vec1()?)
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

/// One distribution softmax(logits), summarised in one pass over its logits: the `k` most
/// probable tokens (largest first, ties to the lower id) with their probabilities, the entropy
/// in nats, and the rank (1 = most probable) and probability of a tracked token.
#[derive(Debug, Clone, PartialEq)]
pub struct LogitSummary {
    pub top: Vec<(u32, f32)>,
    pub entropy: f32,
    pub tracked: Option<(usize, f32)>,
    /// Probabilities of the `picked` ids, in their order (0 for an id past the vocabulary).
    pub picked: Vec<f32>,
}

/// Summarises softmax(`logits`) without materialising it (sums in f64).
pub fn summarize_logits(logits: &[f32], k: usize, tracked: Option<u32>) -> LogitSummary {
    summarize_logits_picking(logits, k, tracked, &[])
}

/// [`summarize_logits`], with the probabilities of the `picked` ids too.
pub fn summarize_logits_picking(
    logits: &[f32],
    k: usize,
    tracked: Option<u32>,
    picked: &[u32],
) -> LogitSummary {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if logits.is_empty() || !max.is_finite() {
        return LogitSummary {
            top: vec![],
            entropy: f32::NAN,
            tracked: None,
            picked: vec![f32::NAN; picked.len()],
        };
    }
    // The k largest logits, kept sorted (largest first); a later equal logit never displaces
    // an earlier one, so ties go to the lower id.
    let k = k.min(logits.len());
    let mut top: Vec<(u32, f32)> = Vec::with_capacity(k + 1);
    let tracked_logit = tracked.and_then(|t| logits.get(t as usize).copied());
    let (mut sum, mut weighted, mut above_tracked) = (0f64, 0f64, 0usize);
    for (i, &x) in logits.iter().enumerate() {
        let e = (x - max).exp() as f64;
        sum += e;
        weighted += e * (x - max) as f64;
        if tracked_logit.is_some_and(|xt| x > xt) {
            above_tracked += 1;
        }
        if k > 0 && (top.len() < k || x > top[k - 1].1) {
            let at = top.partition_point(|&(_, y)| y >= x);
            top.insert(at, (i as u32, x));
            top.truncate(k);
        }
    }
    // log Z = max + ln(sum); H = log Z - E[x].
    let log_z = max as f64 + sum.ln();
    let prob = |x: f32| (x as f64 - log_z).exp() as f32;
    let tracked = tracked_logit.map(|xt| (1 + above_tracked, prob(xt)));
    LogitSummary {
        top: top.into_iter().map(|(i, x)| (i, prob(x))).collect(),
        entropy: (sum.ln() - weighted / sum) as f32,
        tracked,
        picked: picked
            .iter()
            .map(|&id| logits.get(id as usize).map_or(0.0, |&x| prob(x)))
            .collect(),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_orders_and_breaks_ties_by_index() {
        let v = [0.1, 0.4, 0.2, 0.4, 0.05];
        assert_eq!(top_k_indices(&v, 3), vec![1, 3, 2]);
        assert_eq!(top_k_indices(&v, 10).len(), 5);
    }

    /// softmax in f64, the textbook way.
    fn softmax64(logits: &[f32]) -> Vec<f64> {
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
        let e: Vec<f64> = logits.iter().map(|&x| (x as f64 - max).exp()).collect();
        let z: f64 = e.iter().sum();
        e.iter().map(|x| x / z).collect()
    }

    #[test]
    fn logit_summary_matches_the_full_softmax() {
        let mut rng = crate::data::rng::Rng::new(7);
        let logits: Vec<f32> = (0..5000)
            .map(|_| (rng.next_f64() as f32 - 0.5) * 30.0)
            .collect();
        let p = softmax64(&logits);
        let want_entropy: f64 = -p
            .iter()
            .filter(|&&x| x > 0.0)
            .map(|x| x * x.ln())
            .sum::<f64>();
        let p32: Vec<f32> = p.iter().map(|&x| x as f32).collect();
        let tracked = 1234u32;
        let s = summarize_logits(&logits, 5, Some(tracked));
        let want_top = top_k_indices(&p32, 5);
        assert_eq!(
            s.top.iter().map(|&(i, _)| i as usize).collect::<Vec<_>>(),
            want_top
        );
        for &(i, prob) in &s.top {
            assert!(
                (prob as f64 - p[i as usize]).abs() < 1e-7,
                "{prob} vs {}",
                p[i as usize]
            );
        }
        assert!((s.entropy as f64 - want_entropy).abs() < 1e-5);
        let (rank, prob) = s.tracked.unwrap();
        let pt = p[tracked as usize];
        assert_eq!(rank, 1 + p.iter().filter(|&&x| x > pt).count());
        assert!((prob as f64 - pt).abs() < 1e-7);
    }

    #[test]
    fn logit_summary_breaks_ties_by_index_and_handles_edges() {
        let s = summarize_logits(&[1.0, 3.0, 2.0, 3.0, 0.5], 3, Some(3));
        assert_eq!(
            s.top.iter().map(|&(i, _)| i).collect::<Vec<_>>(),
            vec![1, 3, 2]
        );
        assert_eq!(
            s.tracked.map(|t| t.0),
            Some(1),
            "an equal logit does not outrank"
        );
        // A uniform distribution has entropy ln(n); k larger than the vocabulary is cut.
        let u = summarize_logits(&[0.25; 8], 20, None);
        assert_eq!(u.top.len(), 8);
        assert!((u.entropy - 8f32.ln()).abs() < 1e-6);
        assert!(u.top.iter().all(|&(_, p)| (p - 0.125).abs() < 1e-7));
        // Out-of-range tracked ids and empty rows give no answer rather than a panic.
        assert_eq!(summarize_logits(&[0.0, 1.0], 1, Some(9)).tracked, None);
        assert!(summarize_logits(&[], 3, Some(0)).top.is_empty());
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
    fn device_kl_equals_host_kl() {
        let dev = candle_core::Device::Cpu;
        let logits = Tensor::new(
            &[
                [1.0f32, 2.0, -1.0, 0.5],
                [1.1, 1.9, -1.2, 0.4],
                [-3.0, 4.0, 0.0, 0.0],
            ],
            &dev,
        )
        .unwrap();
        let lp = log_probs(&logits).unwrap();
        let rows: Vec<Vec<f32>> = lp.to_vec2().unwrap();
        let got = kl_rows(&lp.narrow(0, 0, 1).unwrap(), &lp).unwrap();
        for (row, g) in rows.iter().zip(&got) {
            let want = kl(&rows[0], row);
            assert!((g - want).abs() <= 1e-7 * want.max(1.0), "{g} vs {want}");
        }
        assert_eq!(got[0], 0.0);
        // p = 0 terms contribute nothing, even against log q = -inf.
        let p = Tensor::new(&[[0.0f32, f32::NEG_INFINITY]], &dev).unwrap();
        let q = Tensor::new(&[[0.0f32, -1.0], [f32::NEG_INFINITY, 0.0]], &dev).unwrap();
        let got = kl_rows(&p, &q).unwrap();
        assert_eq!(got[0], 0.0);
        assert!(got[1].is_infinite());
    }
}
