//! Interventions on continuous thoughts: what is fed back as the next input after thought k
//! ([`ThoughtOp`]), and residual-stream patches at thought positions ([`ResidPatch`], the
//! activation patching of TransformerLens, from a second prompt's run).
//!
//! Thoughts are numbered from 1 as in the JSON: thought k is the final hidden state at the
//! position before latent slot k, and its intervention changes what that slot receives. The
//! thought's own record (its lens) stays what was computed.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use anyhow::{Context, Result, bail};
use candle_core::{DType, Tensor};
use serde::{Deserialize, Serialize};

use super::{RunSpec, max_thoughts, prefix_ids, run};
use crate::data::rng::Rng;
use crate::model::{Hooks, Model, ModelInfo, ResidWrite, Tokenizer};

/// What thought k's slot receives instead of the thought.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum ThoughtOp {
    /// A zero vector.
    Zero,
    /// The mean thought at this index over a data set (`eval --save-means`), or without one
    /// the mean input embedding.
    Mean,
    /// The thought plus Gaussian noise of `s` times the thought's RMS per coordinate.
    Noise(f32),
    /// The noise alone.
    Random(f32),
    /// The thought times `f`.
    Scale(f32),
    /// Thought k of the second prompt's run (same settings).
    Patch,
}

impl ThoughtOp {
    pub const NAMES: &str = "zero, mean, noise:S, random:S, scale:F or patch";

    pub fn parse(text: &str) -> Result<ThoughtOp> {
        let (name, arg) = match text.split_once(':') {
            Some((n, a)) => (n.trim(), Some(a.trim())),
            None => (text.trim(), None),
        };
        let number = |what: &str| -> Result<f32> {
            let Some(a) = arg else {
                bail!("\"{name}\" needs a number: {name}:{what}");
            };
            match a.parse::<f32>() {
                Ok(v) if v.is_finite() => Ok(v),
                _ => bail!("\"{text}\": {a} is not a number"),
            }
        };
        let op = match name {
            "zero" => ThoughtOp::Zero,
            "mean" => ThoughtOp::Mean,
            "patch" => ThoughtOp::Patch,
            "noise" => ThoughtOp::Noise(number("S")?),
            "random" => ThoughtOp::Random(number("S")?),
            "scale" => ThoughtOp::Scale(number("F")?),
            _ => bail!(
                "unknown thought operation \"{text}\" (expected {})",
                Self::NAMES
            ),
        };
        if arg.is_some() && matches!(op, ThoughtOp::Zero | ThoughtOp::Mean | ThoughtOp::Patch) {
            bail!("\"{text}\": {name} takes no number");
        }
        if let ThoughtOp::Noise(s) | ThoughtOp::Random(s) = op
            && s < 0.0
        {
            bail!("\"{text}\": the noise scale must not be negative");
        }
        Ok(op)
    }
}

impl fmt::Display for ThoughtOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ThoughtOp::Zero => write!(f, "zero"),
            ThoughtOp::Mean => write!(f, "mean"),
            ThoughtOp::Noise(s) => write!(f, "noise:{s}"),
            ThoughtOp::Random(s) => write!(f, "random:{s}"),
            ThoughtOp::Scale(x) => write!(f, "scale:{x}"),
            ThoughtOp::Patch => write!(f, "patch"),
        }
    }
}

impl From<ThoughtOp> for String {
    fn from(op: ThoughtOp) -> String {
        op.to_string()
    }
}

impl TryFrom<String> for ThoughtOp {
    type Error = anyhow::Error;
    fn try_from(s: String) -> Result<Self> {
        ThoughtOp::parse(&s)
    }
}

/// Copy x^layer at thought `thought`'s position from the second prompt's run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ResidPatch {
    /// 0 = embeddings, l = after block l (the lens's numbering).
    pub layer: usize,
    pub thought: usize,
}

/// The thought interventions of a run, as given.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ThoughtEdits {
    /// Thought (1-based) to operation.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ops: BTreeMap<usize, ThoughtOp>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resid: Vec<ResidPatch>,
    /// The prompt that `patch` and `--patch-resid` copy from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patch_prompt: Option<String>,
    /// The file `mean` reads (`eval --save-means`); without one, the mean input embedding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub means_file: Option<String>,
    /// Seeds `noise` and `random`.
    #[serde(default)]
    pub seed: u64,
}

/// `T3` → 3.
fn thought_index(text: &str, whole: &str) -> Result<usize> {
    let t = text.trim();
    match t
        .strip_prefix(['T', 't'])
        .and_then(|n| n.parse::<usize>().ok())
    {
        Some(k) if k >= 1 => Ok(k),
        _ => bail!(
            "malformed thought \"{t}\" in \"{whole}\": expected T1, T2, ... (numbered from 1)"
        ),
    }
}

impl ThoughtEdits {
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty() && self.resid.is_empty()
    }

    /// Parses `T2=zero,T4=noise:0.5,T1=patch` (empty: none).
    pub fn parse_ops(spec: &str) -> Result<BTreeMap<usize, ThoughtOp>> {
        let mut ops = BTreeMap::new();
        for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let Some((t, op)) = item.split_once('=') else {
                bail!(
                    "malformed intervention \"{item}\" in --intervene: expected Tk=OP, e.g. T2=zero"
                );
            };
            let k = thought_index(t, item)?;
            let op = ThoughtOp::parse(op).with_context(|| format!("in --intervene \"{item}\""))?;
            if ops.insert(k, op).is_some() {
                bail!("thought T{k} is given two interventions in --intervene");
            }
        }
        Ok(ops)
    }

    /// Parses `L@T3,0@T1` (empty: none).
    pub fn parse_resid(spec: &str) -> Result<Vec<ResidPatch>> {
        let mut out = Vec::new();
        for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let parsed = item.split_once('@').and_then(|(l, t)| {
                Some((
                    l.trim().parse::<usize>().ok()?,
                    thought_index(t, item).ok()?,
                ))
            });
            let Some((layer, thought)) = parsed else {
                bail!("malformed patch \"{item}\" in --patch-resid: expected LAYER@Tk, e.g. 2@T3");
            };
            out.push(ResidPatch { layer, thought });
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// Whether a second prompt's run is needed.
    pub fn needs_source(&self) -> bool {
        !self.resid.is_empty() || self.ops.values().any(|op| *op == ThoughtOp::Patch)
    }

    /// Checks the edits against a run of `thoughts` thoughts of a model.
    pub fn validate(&self, thoughts: usize, info: &ModelInfo) -> Result<()> {
        self.check(Some(thoughts))?;
        for p in &self.resid {
            if p.layer > info.layers {
                bail!(
                    "layer {} in --patch-resid is out of range: the residual stream has layers 0..={} (0 = embeddings)",
                    p.layer,
                    info.layers
                );
            }
        }
        Ok(())
    }

    /// What can be checked without the model: every thought named is within the run's
    /// `thoughts` (when the count is known before running), and patching has its prompt.
    pub fn check(&self, thoughts: Option<usize>) -> Result<()> {
        let named = self.ops.keys().copied();
        if let Some(n) = thoughts
            && let Some(k) = named.chain(self.resid.iter().map(|p| p.thought)).max()
            && k > n
        {
            bail!(
                "thought T{k} is past the run's {n} thought{}",
                if n == 1 { "" } else { "s" }
            );
        }
        if self.needs_source() && self.patch_prompt.is_none() {
            bail!("patch and --patch-resid need a second prompt: pass --patch-prompt \"...\"");
        }
        Ok(())
    }
}

/// The mean thought per index over a data set, as `eval --save-means` writes it.
#[derive(Debug, Clone, PartialEq)]
pub struct ThoughtMeans {
    /// `means[k - 1]` is thought k's mean, `[D]`.
    pub means: Vec<Vec<f32>>,
    /// Problems averaged.
    pub n: usize,
}

impl ThoughtMeans {
    /// Reads a safetensors file with tensor `means` `[N, D]` and metadata `n`.
    pub fn read(path: &Path) -> Result<ThoughtMeans> {
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let st = safetensors::SafeTensors::deserialize(&bytes)
            .map_err(|e| anyhow::anyhow!("{} is not a safetensors file: {e}", path.display()))?;
        let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let n = meta
            .metadata()
            .as_ref()
            .and_then(|m| m.get("n"))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        let view = st
            .tensor("means")
            .map_err(|_| anyhow::anyhow!("{} holds no \"means\" tensor", path.display()))?;
        let shape = view.shape();
        if shape.len() != 2 || view.dtype() != safetensors::Dtype::F32 {
            bail!(
                "{}: \"means\" must be an f32 [thoughts, d] tensor",
                path.display()
            );
        }
        let d = shape[1];
        let values: Vec<f32> = view
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        Ok(ThoughtMeans {
            means: values.chunks(d.max(1)).map(<[f32]>::to_vec).collect(),
            n,
        })
    }

    /// The file's bytes (see [`ThoughtMeans::read`]).
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let d = self.means.first().map_or(0, Vec::len);
        let flat: Vec<u8> = self
            .means
            .iter()
            .flatten()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let view = safetensors::tensor::TensorView::new(
            safetensors::Dtype::F32,
            vec![self.means.len(), d],
            &flat,
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        let meta = std::collections::HashMap::from([("n".to_string(), self.n.to_string())]);
        safetensors::serialize([("means", view)], Some(meta)).map_err(|e| anyhow::anyhow!("{e}"))
    }
}

/// An edit resolved to tensors, as the runner applies it.
#[derive(Clone, Debug)]
enum Feed {
    Replace(Tensor),
    Noise { scale: f32, keep: bool },
    Scale(f32),
}

/// The resolved thought interventions: per thought, what its slot receives.
#[derive(Clone, Debug, Default)]
pub struct Feeds {
    ops: BTreeMap<usize, Feed>,
    seed: u64,
}

impl Feeds {
    pub fn none() -> Feeds {
        Feeds::default()
    }

    /// Resolves `edits` for `model`: `mean` from `means` (else the mean input embedding),
    /// `patch` from `source_fed` (the second prompt's fed thoughts, `[D]` each).
    pub fn resolve(
        model: &Model,
        edits: &ThoughtEdits,
        means: Option<&ThoughtMeans>,
        source_fed: &[Tensor],
    ) -> Result<Feeds> {
        let mut ops = BTreeMap::new();
        let d = model.info.d_model;
        for (&k, op) in &edits.ops {
            let feed = match *op {
                ThoughtOp::Zero => Feed::Replace(Tensor::zeros(d, DType::F32, model.device())?),
                ThoughtOp::Mean => {
                    let v = match means {
                        Some(m) => {
                            let Some(v) = m.means.get(k - 1) else {
                                bail!(
                                    "the means file has {} thoughts; T{k} has no mean",
                                    m.means.len()
                                );
                            };
                            if v.len() != d {
                                bail!(
                                    "the means file's thoughts have {} dimensions, the model {d}",
                                    v.len()
                                );
                            }
                            Tensor::new(v.as_slice(), model.device())?
                        }
                        None => model.mean_embedding()?,
                    };
                    Feed::Replace(v)
                }
                ThoughtOp::Noise(s) => Feed::Noise {
                    scale: s,
                    keep: true,
                },
                ThoughtOp::Random(s) => Feed::Noise {
                    scale: s,
                    keep: false,
                },
                ThoughtOp::Scale(f) => Feed::Scale(f),
                ThoughtOp::Patch => match source_fed.get(k - 1) {
                    Some(t) => Feed::Replace(t.to_dtype(DType::F32)?),
                    None => bail!(
                        "the second prompt's run has {} thoughts; T{k} cannot be patched",
                        source_fed.len()
                    ),
                },
            };
            ops.insert(k, feed);
        }
        Ok(Feeds {
            ops,
            seed: edits.seed,
        })
    }

    /// The input thought `k`'s slot receives, given the one its mode computed (`[B, D]`).
    pub fn apply(&self, k: usize, fed: &Tensor) -> Result<Tensor> {
        let Some(feed) = self.ops.get(&k) else {
            return Ok(fed.clone());
        };
        let (b, d) = fed.dims2()?;
        let dtype = fed.dtype();
        Ok(match feed {
            Feed::Replace(v) => v
                .to_dtype(dtype)?
                .unsqueeze(0)?
                .broadcast_as((b, d))?
                .contiguous()?,
            Feed::Scale(f) => (fed * f64::from(*f))?,
            Feed::Noise { scale, keep } => {
                let x = fed.to_dtype(DType::F32)?;
                let rms = x.sqr()?.mean_keepdim(1)?.sqrt()?;
                let mut rng = Rng::with_label(self.seed, &format!("thought {k}"));
                let z: Vec<f32> = (0..b * d).map(|_| rng.normal() as f32).collect();
                let z = Tensor::from_vec(z, (b, d), fed.device())?;
                let noise = z.broadcast_mul(&(rms * f64::from(*scale))?)?;
                let out = if *keep { (x + noise)? } else { noise };
                out.to_dtype(dtype)?
            }
        })
    }
}

/// Prepares a run of `prompt_ids` with `edits`: runs the second prompt when patching needs it
/// (same spec and hooks, no thought edits) and returns the spec and hooks that apply the
/// edits.
pub fn prepare(
    model: &Model,
    tokenizer: &Tokenizer,
    prompt_ids: &[u32],
    spec: &RunSpec,
    hooks: &Hooks,
    edits: &ThoughtEdits,
) -> Result<(RunSpec, Hooks)> {
    if edits.is_empty() {
        return Ok((spec.clone(), hooks.clone()));
    }
    edits.validate(max_thoughts(spec), &model.info)?;
    let means = edits
        .means_file
        .as_deref()
        .map(|f| ThoughtMeans::read(Path::new(f)))
        .transpose()?;
    let plain = RunSpec {
        feeds: Feeds::none(),
        attention: false,
        context_rows: 1,
        ..spec.clone()
    };
    let source = match (&edits.patch_prompt, edits.needs_source()) {
        (Some(prompt), true) => {
            let ids = tokenizer.encode_prompt(prompt)?;
            if !edits.resid.is_empty() && ids.len() != prompt_ids.len() {
                bail!(
                    "--patch-resid needs a second prompt of the same length: it has {} tokens, the prompt {}",
                    ids.len(),
                    prompt_ids.len()
                );
            }
            Some(run(model, tokenizer, &ids, &plain, hooks)?)
        }
        _ => None,
    };
    let source_fed = source.as_ref().map_or(&[][..], |r| r.fed.as_slice());
    let feeds = Feeds::resolve(model, edits, means.as_ref(), source_fed)?;
    let mut hooks = hooks.clone();
    if let Some(src) = &source {
        // Thought k sits at the position before latent slot k.
        let first = prefix_ids(model, tokenizer, prompt_ids, spec)?.len() - 1;
        for p in &edits.resid {
            let Some(t) = src.thoughts.get(p.thought - 1) else {
                bail!(
                    "the second prompt's run has {} thoughts; T{} cannot be patched",
                    src.thoughts.len(),
                    p.thought
                );
            };
            debug_assert_eq!(t.position, first + p.thought - 1);
            hooks.writes.push(ResidWrite {
                layer: p.layer,
                position: t.position,
                value: candle_core::IndexOp::i(&t.resid, p.layer)?,
            });
        }
    }
    Ok((
        RunSpec {
            feeds,
            ..spec.clone()
        },
        hooks,
    ))
}
