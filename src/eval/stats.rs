//! Statistics of accuracies: Wilson's score interval for a proportion, and McNemar's exact
//! test for two models (or modes) answering the same problems.

/// The 97.5th percentile of the standard normal: a 95% two-sided interval.
pub const Z95: f64 = 1.959_963_984_540_054;

/// Wilson's score interval for `k` successes in `n` trials at normal quantile `z`; `(0, 1)`
/// for no trials.
pub fn wilson(k: usize, n: usize, z: f64) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let (k, n) = (k as f64, n as f64);
    let p = k / n;
    let d = 1.0 + z * z / n;
    let centre = (p + z * z / (2.0 * n)) / d;
    let half = z * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt() / d;
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

/// McNemar's exact two-sided p-value from the discordant pairs: `b` problems only the first
/// answers right, `c` only the second. Under the null each discordant pair is a fair coin:
/// p = min(1, 2 · P(X ≤ min(b, c))), X ~ Binomial(b + c, 1/2).
pub fn mcnemar_exact(b: usize, c: usize) -> f64 {
    let n = b + c;
    if n == 0 {
        return 1.0;
    }
    // Log-space binomial terms: exact enough for n in the thousands.
    let ln_choose =
        |n: usize, k: usize| -> f64 { (1..=k).map(|i| ((n - k + i) as f64 / i as f64).ln()).sum() };
    let ln_half_n = n as f64 * 0.5f64.ln();
    let tail: f64 = (0..=b.min(c))
        .map(|i| (ln_choose(n, i) + ln_half_n).exp())
        .sum();
    (2.0 * tail).min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-12, "{a} != {b}");
    }

    #[test]
    fn wilson_intervals_match_known_values() {
        let (lo, hi) = wilson(90, 100, Z95);
        close(lo, 0.825_634_338_495_086_5);
        close(hi, 0.944_770_862_939_324_9);
        let (lo, hi) = wilson(0, 10, Z95);
        close(lo, 0.0);
        close(hi, 0.277_532_799_862_889_2);
        let (lo, hi) = wilson(270, 300, Z95);
        close(lo, 0.860_833_537_615_378_5);
        close(hi, 0.929_052_085_404_984_7);
        assert_eq!(wilson(3, 0, Z95), (0.0, 1.0));
    }

    #[test]
    fn mcnemar_matches_the_binomial_tail() {
        // 2 · (1 + 12 + 66) / 4096.
        close(mcnemar_exact(10, 2), 158.0 / 4096.0);
        close(mcnemar_exact(2, 10), 158.0 / 4096.0);
        close(mcnemar_exact(30, 12), 0.007_915_897_334_896_727);
        assert_eq!(mcnemar_exact(5, 5), 1.0);
        assert_eq!(mcnemar_exact(0, 0), 1.0);
        assert_eq!(mcnemar_exact(1, 0), 1.0);
        // Far in the tail it stays finite and tiny.
        let p = mcnemar_exact(200, 0);
        assert!(p > 0.0 && p < 1e-59, "{p}");
    }
}
