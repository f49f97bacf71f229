//! How answer tokens are chosen: greedily, or drawn from the model's distribution with
//! candle-transformers' `LogitsProcessor` (temperature, nucleus top-p, a seeded generator).

use anyhow::{Result, bail};
use candle_core::{D, Tensor};
use candle_transformers::generation::{LogitsProcessor, Sampling as Strategy};
use serde::{Deserialize, Serialize};

/// The decoding rule of a run's answer (`--temperature`, `--top-p`, `--seed`).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "lowercase")]
pub enum Sampling {
    /// The most likely token (`--temperature 0`, the default).
    #[default]
    Greedy,
    /// A draw from softmax(logits / temperature), restricted to the smallest set of most likely
    /// tokens whose probability reaches `top_p` (all tokens when `top_p` is 1) and renormalised.
    /// Each run draws from a generator seeded with `seed`, so a run and its variants (ablations,
    /// interventions) share their random numbers.
    Sample {
        temperature: f64,
        top_p: f64,
        seed: u64,
    },
}

impl Sampling {
    /// The rule for `--temperature T --top-p P --seed S`; a temperature of 0 is greedy.
    pub fn new(temperature: f64, top_p: f64, seed: u64) -> Result<Self> {
        if !temperature.is_finite() || temperature < 0.0 {
            bail!("--temperature must be a number >= 0 (0: greedy), got {temperature}");
        }
        if !(top_p > 0.0 && top_p <= 1.0) {
            bail!("--top-p must be in (0, 1], got {top_p}");
        }
        if temperature == 0.0 {
            return Ok(Self::Greedy);
        }
        Ok(Self::Sample {
            temperature,
            top_p,
            seed,
        })
    }

    /// The same rule drawing from `seed` (greedy stays greedy).
    pub fn reseeded(self, seed: u64) -> Self {
        match self {
            Self::Greedy => Self::Greedy,
            Self::Sample {
                temperature, top_p, ..
            } => Self::Sample {
                temperature,
                top_p,
                seed,
            },
        }
    }

    pub fn is_greedy(&self) -> bool {
        matches!(self, Self::Greedy)
    }

    /// A fresh decoder of this rule (its generator at the seed's start).
    pub fn sampler(&self) -> Sampler {
        Sampler(match *self {
            Self::Greedy => None,
            Self::Sample {
                temperature,
                top_p,
                seed,
            } => Some(LogitsProcessor::from_sampling(
                seed,
                Strategy::TopP {
                    p: top_p,
                    temperature,
                },
            )),
        })
    }

    /// A short label: `greedy`, or `T=0.8 p=0.9 seed 3`.
    pub fn label(&self) -> String {
        match self {
            Self::Greedy => "greedy".to_string(),
            Self::Sample {
                temperature,
                top_p,
                seed,
            } => format!("T={temperature} p={top_p} seed {seed}"),
        }
    }
}

/// Chooses one token after another for one run.
pub struct Sampler(Option<LogitsProcessor>);

impl Sampler {
    /// The next token for `logits` (`[V]`).
    pub fn next(&mut self, logits: &Tensor) -> Result<u32> {
        Ok(match &mut self.0 {
            None => logits.argmax(D::Minus1)?.to_scalar::<u32>()?,
            Some(p) => p.sample(logits)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_settings_are_refused_and_zero_is_greedy() {
        assert_eq!(Sampling::new(0.0, 0.5, 7).unwrap(), Sampling::Greedy);
        assert!(Sampling::new(-1.0, 1.0, 0).is_err());
        assert!(Sampling::new(f64::NAN, 1.0, 0).is_err());
        assert!(Sampling::new(1.0, 0.0, 0).is_err());
        assert!(Sampling::new(1.0, 1.5, 0).is_err());
        let json = serde_json::to_value(Sampling::new(0.5, 0.9, 3).unwrap()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"method": "sample", "temperature": 0.5, "top_p": 0.9, "seed": 3})
        );
        let json = serde_json::to_value(Sampling::Greedy).unwrap();
        assert_eq!(json, serde_json::json!({"method": "greedy"}));
    }
}
