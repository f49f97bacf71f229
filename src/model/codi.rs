//! CODI checkpoints (Shen et al. 2025, "CODI: Compressing Chain-of-Thought into Continuous
//! Space via Self-Distillation", github.com/zhenyi4/codi).
//!
//! CODI fine-tunes a GPT-2 or Llama base with LoRA adapters and passes every continuous thought
//! through a projection before feeding it back. Its trainer saves the whole wrapper's state dict
//! (`pytorch_model.bin`, or `model.safetensors`):
//! - the base under `codi.base_model.model.` (peft's names; `codi.` without LoRA): a LoRA
//!   target `X` keeps its weight as `X.base_layer.weight` beside `X.lora_A.default.weight`
//!   `[r, in]` and `X.lora_B.default.weight` `[out, r]`;
//! - the projection under `prj.`: `prj.1` Linear d → p, GELU (exact), `prj.3` Linear p → d,
//!   then `prj.ln` LayerNorm unless it was trained with `prj_no_ln` (`prj.0` is a dropout);
//! - embeddings with three rows more than the base config: pad, bot and eot, in that order.
//!
//! Loading merges every adapter into its weight, W + (lora_alpha / r) · B·A (transposed for
//! GPT-2's `[in, out]` Conv1D weights), so the forward pass is the base architecture's own.
//! The checkpoint does not record lora_alpha: it comes from peft's `adapter_config.json` next
//! to the checkpoint when there is one, else it is 32, the value of CODI's published scripts.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Linear, VarBuilder};

use super::attention::{LayerNorm, OpMode};
use super::config::ArchConfig;
use super::load::LoadedModel;
use super::source::ModelSource;
use super::tokenizer::{CoconutTokens, PromptFormat, Tokenizer};
use super::weights::{MmapSafetensors, PthCheckpoint};
use super::{Arch, Family, Model};

/// lora_alpha when no `adapter_config.json` says otherwise: CODI's published scripts (GPT-2
/// and Llama 3.2 1B) train with `--lora_r 128 --lora_alpha 32`.
pub const DEFAULT_LORA_ALPHA: f64 = 32.0;

/// Names given to the three rows CODI adds (CODI itself names only the pad token).
pub const PAD: &str = "[PAD]";
pub const BOT: &str = "<bot>";
pub const EOT: &str = "<eot>";

const PEFT_PREFIX: &str = "codi.base_model.model.";
const PLAIN_PREFIX: &str = "codi.";
const ADAPTER_CONFIG: &str = "adapter_config.json";
/// The weight files of a checkpoint folder, in the order CODI's `test.py` tries them.
const FOLDER_FILES: [&str; 2] = ["model.safetensors", "pytorch_model.bin"];
/// The same for a hub repo, the published checkpoints' file first.
const HUB_FILES: [&str; 2] = ["pytorch_model.bin", "model.safetensors"];
/// `nn.LayerNorm`'s default.
const LN_EPS: f64 = 1e-5;

/// Where a CODI checkpoint is (`--model`, with `--base` naming the base model).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodiCheckpoint {
    File(PathBuf),
    /// A folder with `model.safetensors` or `pytorch_model.bin` (and maybe `adapter_config.json`).
    Folder(PathBuf),
    /// A hub repo laid out like a folder (`zen-E/CODI-gpt2`).
    Hub {
        repo: String,
        revision: Option<String>,
    },
}

/// The files of a CODI checkpoint.
#[derive(Debug, Clone)]
pub struct CodiFiles {
    pub weights: PathBuf,
    pub adapter_config: Option<PathBuf>,
}

impl fmt::Display for CodiCheckpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(p) | Self::Folder(p) => write!(f, "{}", p.display()),
            Self::Hub {
                repo,
                revision: Some(r),
            } => write!(f, "{repo}@{r}"),
            Self::Hub {
                repo,
                revision: None,
            } => write!(f, "{repo}"),
        }
    }
}

impl CodiCheckpoint {
    /// A short name: the file or folder name, or the hub repo.
    pub fn short_name(&self) -> String {
        match self {
            Self::File(p) | Self::Folder(p) => p.file_name().map_or_else(
                || p.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            ),
            Self::Hub { repo, .. } => repo.clone(),
        }
    }

    /// Finds (for a hub repo, downloads when needed) the weights and the adapter config.
    pub fn resolve(&self) -> Result<CodiFiles> {
        let beside = |dir: &Path| Some(dir.join(ADAPTER_CONFIG)).filter(|p| p.is_file());
        match self {
            Self::File(p) => Ok(CodiFiles {
                weights: p.clone(),
                adapter_config: p.parent().and_then(beside),
            }),
            Self::Folder(dir) => {
                let Some(weights) = FOLDER_FILES
                    .iter()
                    .map(|f| dir.join(f))
                    .find(|p| p.is_file())
                else {
                    bail!(
                        "{}: no CODI checkpoint here (expected {} or {})",
                        dir.display(),
                        FOLDER_FILES[0],
                        FOLDER_FILES[1]
                    );
                };
                Ok(CodiFiles {
                    weights,
                    adapter_config: beside(dir),
                })
            }
            Self::Hub { repo, revision } => Ok(CodiFiles {
                weights: super::source::hub_first_of(repo, revision.as_deref(), &HUB_FILES)?,
                adapter_config: super::source::hub_optional(
                    repo,
                    revision.as_deref(),
                    ADAPTER_CONFIG,
                ),
            }),
        }
    }
}

/// Whether `path` is a weight file holding CODI's keys (`codi.*`), by its key names alone.
pub fn is_codi_checkpoint(path: &Path) -> bool {
    match Store::open(path) {
        Ok(store) => store.names().iter().any(|k| k.starts_with(PLAIN_PREFIX)),
        Err(_) => false,
    }
}

/// A safetensors file or a `torch.save` state dict, with every key as saved.
enum Store {
    Safetensors(MmapSafetensors),
    Pth(PthCheckpoint),
}

impl Store {
    fn open(path: &Path) -> Result<Self> {
        if let Ok(st) = MmapSafetensors::open(&[path.to_path_buf()]) {
            return Ok(Self::Safetensors(st));
        }
        PthCheckpoint::open(path, "").map(Self::Pth).map_err(|_| {
            anyhow::anyhow!(
                "{} is neither a safetensors file nor a readable PyTorch checkpoint",
                path.display()
            )
        })
    }

    fn backend(&self) -> &dyn SimpleBackend {
        match self {
            Self::Safetensors(s) => s,
            Self::Pth(p) => p,
        }
    }

    fn names(&self) -> Vec<String> {
        match self {
            Self::Safetensors(s) => s.names().map(str::to_string).collect(),
            Self::Pth(p) => p.names().map(str::to_string).collect(),
        }
    }

    fn shape(&self, key: &str) -> Option<Vec<usize>> {
        match self {
            Self::Safetensors(s) => s.shape(key),
            Self::Pth(p) => p.shape(key),
        }
    }

    fn contains(&self, key: &str) -> bool {
        self.backend().contains_tensor(key)
    }

    fn f32(&self, key: &str) -> candle_core::Result<Tensor> {
        self.backend().get_unchecked(key, DType::F32, &Device::Cpu)
    }
}

/// One LoRA adapter: `lora_A` `[r, in]` and `lora_B` `[out, r]` keys, and its scale.
struct Adapter {
    a: String,
    b: String,
    scale: f64,
}

/// What peft's `adapter_config.json` says that matters here.
struct AdapterConfig {
    r: Option<usize>,
    alpha: Option<f64>,
    rslora: bool,
}

fn read_adapter_config(path: &Path) -> Result<AdapterConfig> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not valid JSON", path.display()))?;
    let set = |k: &str| match v.get(k) {
        Some(serde_json::Value::Bool(b)) => *b,
        Some(serde_json::Value::Object(m)) => !m.is_empty(),
        _ => false,
    };
    for k in ["use_dora", "rank_pattern", "alpha_pattern"] {
        if set(k) {
            bail!(
                "{}: {k} is set; only plain LoRA with one rank and alpha can be merged",
                path.display()
            );
        }
    }
    Ok(AdapterConfig {
        r: v.get("r").and_then(|r| r.as_u64()).map(|r| r as usize),
        alpha: v.get("lora_alpha").and_then(|a| a.as_f64()),
        rslora: v
            .get("use_rslora")
            .and_then(|b| b.as_bool())
            .unwrap_or(false),
    })
}

/// The checkpoint's tensors under the names the base architecture asks for (`prj.*` as
/// saved), every LoRA adapter merged into its weight.
struct CodiWeights {
    store: Store,
    prefix: &'static str,
    /// By module path without the prefix (`transformer.h.0.attn.c_attn`).
    adapters: BTreeMap<String, Adapter>,
    /// GPT-2's Conv1D weights are `[in, out]`: the update B·A is transposed.
    conv1d: bool,
    label: String,
}

impl CodiWeights {
    fn open(files: &CodiFiles, arch: Arch) -> Result<Self> {
        let label = files.weights.display().to_string();
        let store = Store::open(&files.weights)?;
        let names = store.names();
        let prefix = if names.iter().any(|k| k.starts_with(PEFT_PREFIX)) {
            PEFT_PREFIX
        } else if names.iter().any(|k| k.starts_with(PLAIN_PREFIX)) {
            PLAIN_PREFIX
        } else {
            bail!("{label}: no CODI tensors (keys under \"codi.\") in this file");
        };
        let config = match &files.adapter_config {
            Some(p) => Some(read_adapter_config(p)?),
            None => None,
        };
        let alpha = config
            .as_ref()
            .and_then(|c| c.alpha)
            .unwrap_or(DEFAULT_LORA_ALPHA);
        let rslora = config.as_ref().is_some_and(|c| c.rslora);

        // Adapters by module: `<module>.lora_A.<adapter>.weight` (or `.lora_A.weight`).
        let mut halves: BTreeMap<String, (Option<String>, Option<String>)> = BTreeMap::new();
        let mut adapter_names = BTreeSet::new();
        for key in &names {
            let Some(rest) = key.strip_prefix(prefix) else {
                continue;
            };
            for (marker, is_a) in [(".lora_A.", true), (".lora_B.", false)] {
                if let Some((module, tail)) = rest.split_once(marker) {
                    adapter_names.insert(tail.strip_suffix(".weight").unwrap_or("").to_string());
                    let entry = halves.entry(module.to_string()).or_default();
                    if is_a {
                        entry.0 = Some(key.clone());
                    } else {
                        entry.1 = Some(key.clone());
                    }
                }
            }
        }
        if adapter_names.len() > 1 {
            bail!(
                "{label}: several LoRA adapters ({}); CODI trains one",
                adapter_names.into_iter().collect::<Vec<_>>().join(", ")
            );
        }
        let mut adapters = BTreeMap::new();
        for (module, (a, b)) in halves {
            let (Some(a), Some(b)) = (a, b) else {
                bail!("{label}: the LoRA adapter of {module} lacks its lora_A or lora_B weight");
            };
            let (sa, sb) = (store.shape(&a), store.shape(&b));
            let (Some([ra, _]), Some([_, rb])) = (sa.as_deref(), sb.as_deref()) else {
                bail!("{label}: the LoRA weights of {module} are not matrices");
            };
            let (ra, rb) = (*ra, *rb);
            if ra != rb || ra == 0 {
                bail!(
                    "{label}: LoRA rank mismatch at {module}: lora_A has rank {ra}, lora_B rank {rb}"
                );
            }
            if let Some(r) = config.as_ref().and_then(|c| c.r)
                && r != ra
            {
                bail!(
                    "{label}: LoRA rank mismatch at {module}: {ADAPTER_CONFIG} says r = {r}, the adapter has rank {ra}"
                );
            }
            let base = format!("{prefix}{module}.base_layer.weight");
            if !store.contains(&base) && !store.contains(&format!("{prefix}{module}.weight")) {
                bail!("{label}: the LoRA adapter of {module} has no base weight");
            }
            let r = ra as f64;
            let scale = if rslora { alpha / r.sqrt() } else { alpha / r };
            adapters.insert(module, Adapter { a, b, scale });
        }
        Ok(Self {
            store,
            prefix,
            adapters,
            conv1d: arch == Arch::Gpt2,
            label,
        })
    }

    /// The saved key of a model tensor name: `prj.*` as is, a LoRA target's base weight under
    /// `base_layer`, everything else under the prefix. A missing embedding falls back to the
    /// tied head it shares storage with (safetensors writers keep one of the two).
    fn key(&self, name: &str) -> Option<String> {
        if name.starts_with("prj.") {
            return Some(name.to_string()).filter(|k| self.store.contains(k));
        }
        let direct = format!("{}{name}", self.prefix);
        if self.store.contains(&direct) {
            return Some(direct);
        }
        if let Some((module, kind)) = name.rsplit_once('.') {
            let based = format!("{}{module}.base_layer.{kind}", self.prefix);
            if self.store.contains(&based) {
                return Some(based);
            }
        }
        if name.ends_with("wte.weight") || name.ends_with("embed_tokens.weight") {
            let head = format!("{}lm_head.weight", self.prefix);
            if self.store.contains(&head) {
                return Some(head);
            }
        }
        None
    }

    fn shape(&self, name: &str) -> Option<Vec<usize>> {
        self.store.shape(&self.key(name)?)
    }

    /// The merged tensor, f32 on the CPU.
    fn merged(&self, name: &str) -> candle_core::Result<Tensor> {
        let key = self.key(name).ok_or_else(|| {
            candle_core::Error::Msg(format!("tensor {name} not found in {}", self.label))
        })?;
        let w = self.store.f32(&key)?;
        let Some(adapter) = name
            .strip_suffix(".weight")
            .and_then(|m| self.adapters.get(m))
        else {
            return Ok(w);
        };
        let (a, b) = (self.store.f32(&adapter.a)?, self.store.f32(&adapter.b)?);
        let delta = (b.matmul(&a)? * adapter.scale)?;
        let delta = if self.conv1d {
            super::weights::transposed(&delta)?
        } else {
            delta
        };
        if delta.dims() != w.dims() {
            return Err(candle_core::Error::Msg(format!(
                "{}: the LoRA update of {name} has shape {:?}, its weight {:?}",
                self.label,
                delta.dims(),
                w.dims()
            )));
        }
        w + delta
    }
}

impl SimpleBackend for CodiWeights {
    fn get(
        &self,
        s: Shape,
        name: &str,
        _h: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let t = self.get_unchecked(name, dtype, dev)?;
        super::weights::check_shape(name, &t, &s)?;
        Ok(t)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        self.merged(name)?.to_dtype(dtype)?.to_device(dev)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.key(name).is_some()
    }
}

/// CODI's projection of a thought: Linear, GELU, Linear, optional LayerNorm (the leading
/// dropout is the identity at inference).
pub struct Projection {
    fc1: Linear,
    fc2: Linear,
    ln: Option<LayerNorm>,
}

impl Projection {
    fn load(vb: VarBuilder, d: usize, inner: usize, ln: bool) -> candle_core::Result<Self> {
        let linear = |vb: VarBuilder, d_in: usize, d_out: usize| -> candle_core::Result<Linear> {
            Ok(Linear::new(
                vb.get((d_out, d_in), "weight")?,
                Some(vb.get(d_out, "bias")?),
            ))
        };
        Ok(Self {
            fc1: linear(vb.pp("1"), d, inner)?,
            fc2: linear(vb.pp("3"), inner, d)?,
            ln: if ln {
                Some(LayerNorm::load(vb.pp("ln"), d, LN_EPS)?)
            } else {
                None
            },
        })
    }

    /// `[N, D]` final hidden states to `[N, D]` thought inputs. Composed ops only, so gradients
    /// flow through (gradient head importance).
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        use candle_core::Module;
        let dtype = self.fc1.weight().dtype();
        let h = self.fc1.forward(&x.to_dtype(dtype)?)?.gelu_erf()?;
        let y = self.fc2.forward(&h)?;
        match &self.ln {
            Some(ln) => ln.forward(&y, OpMode::INPUT_GRADS),
            None => Ok(y),
        }
    }
}

/// Which projection keys the checkpoint has: `(inner size, LayerNorm)`.
fn projection_layout(w: &CodiWeights, d: usize) -> Result<(usize, bool)> {
    let label = &w.label;
    let has = |k: &str| w.store.contains(k);
    if !["prj.1.weight", "prj.1.bias", "prj.3.weight", "prj.3.bias"]
        .iter()
        .any(|k| has(k))
    {
        bail!(
            "{label}: no projection weights (prj.1.weight, prj.3.weight): only CODI checkpoints trained with use_prj are supported"
        );
    }
    for k in ["prj.1.weight", "prj.1.bias", "prj.3.weight", "prj.3.bias"] {
        if !has(k) {
            bail!("{label}: the projection lacks {k}");
        }
    }
    let ln = match (has("prj.ln.weight"), has("prj.ln.bias")) {
        (true, true) => true,
        (false, false) => false,
        _ => bail!("{label}: the projection's LayerNorm lacks its weight or its bias"),
    };
    match w.store.shape("prj.1.weight").as_deref() {
        Some(&[inner, d_in]) if d_in == d => Ok((inner, ln)),
        other => bail!(
            "{label}: prj.1.weight has shape {other:?}, expected [prj_dim, {d}] (the base's hidden size)"
        ),
    }
}

/// Loads a CODI checkpoint on the base's config and tokenizer.
pub fn load(
    files: &CodiFiles,
    mut cfg: ArchConfig,
    mut tokenizer: Tokenizer,
    source: &ModelSource,
    device: &Device,
    dtype: DType,
) -> Result<LoadedModel> {
    let arch = match cfg {
        ArchConfig::Gpt2(_) => Arch::Gpt2,
        ArchConfig::Llama(_) => Arch::Llama,
    };
    let weights = CodiWeights::open(files, arch)?;
    let label = weights.label.clone();
    let base_vocab = cfg.vocab_size();
    let emb = match arch {
        Arch::Gpt2 => "transformer.wte.weight",
        Arch::Llama => "model.embed_tokens.weight",
    };
    let rows = weights
        .shape(emb)
        .or_else(|| weights.shape("wte.weight"))
        .and_then(|s| s.first().copied())
        .with_context(|| format!("{label}: no token embedding found"))?;
    if rows != base_vocab + 3 {
        bail!(
            "{label}: the embedding has {rows} rows; a CODI checkpoint of this base has {} (its vocab_size {base_vocab} plus pad, bot and eot): is --base the model it was trained from?",
            base_vocab + 3
        );
    }
    cfg.set_vocab_size(rows);
    name_codi_tokens(&mut tokenizer, base_vocab)?;
    let d = match &cfg {
        ArchConfig::Gpt2(c) => c.n_embd,
        ArchConfig::Llama(c) => c.hidden_size,
    };
    let (inner, ln) = projection_layout(&weights, d)?;

    let vb = VarBuilder::from_backend(Box::new(weights), dtype, device.clone());
    let projection = Projection::load(vb.pp("prj"), d, inner, ln)
        .map_err(|e| anyhow::anyhow!("{label}: loading the projection: {e}"))?;
    // CODI ties the head to the (resized) embedding whenever the base config ties them.
    let mut model = Model::build(&cfg, vb, false)?;
    model.info.family = Family::Codi;
    model.projection = Some(projection);
    Ok(LoadedModel {
        model,
        tokenizer,
        source: source.clone(),
    })
}

/// Names ids `vocab`, `vocab + 1`, `vocab + 2` (pad, bot, eot) when the tokenizer has exactly
/// the base's `vocab` ids, marks bot and eot as the thought markers (CODI has no latent token)
/// and sets CODI's prompt format. With fewer ids the three stay unnamed.
fn name_codi_tokens(tokenizer: &mut Tokenizer, vocab: usize) -> Result<()> {
    let have = tokenizer.vocab_size();
    if have > vocab {
        bail!(
            "the base tokenizer has {have} ids, more than its config's vocab_size {vocab}: CODI's pad, bot and eot ids would collide with its tokens"
        );
    }
    if have == vocab {
        tokenizer.add_special_tokens(&[PAD, BOT, EOT])?;
        for (i, t) in [PAD, BOT, EOT].iter().enumerate() {
            if tokenizer.token_id(t) != Some((vocab + i) as u32) {
                bail!(
                    "the base tokenizer already has {t} at another id than CODI's {}",
                    vocab + i
                );
            }
        }
    }
    tokenizer.coconut = Some(CoconutTokens {
        start: (vocab + 1) as u32,
        end: (vocab + 2) as u32,
        latent: None,
    });
    tokenizer.prompt_format = PromptFormat::Codi;
    Ok(())
}
