//! Building a [`Model`] and its [`Tokenizer`] from a [`ModelSource`].

use std::str::FromStr;

use anyhow::{Context, Result, bail};
use candle_core::{DType, Device};
use candle_nn::VarBuilder;

use super::config::ArchConfig;
use super::source::{ModelSource, WeightFiles};
use super::tokenizer::Tokenizer;
use super::weights::{MmapSafetensors, PthCheckpoint};
use super::{Arch, Family, Model, ModelInfo, Net, codi, gpt2, llama};

/// Key prefix of the model inside checkpoints of the official Coconut code.
pub const COCONUT_PREFIX: &str = "base_causallm.";

/// `--device auto|cpu|cuda[:N]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceSpec {
    Auto,
    Cpu,
    Cuda(usize),
}

impl FromStr for DeviceSpec {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            "cuda" => Ok(Self::Cuda(0)),
            _ => match s.strip_prefix("cuda:").map(str::parse::<usize>) {
                Some(Ok(n)) => Ok(Self::Cuda(n)),
                _ => bail!("unknown device \"{s}\" (expected auto, cpu, cuda or cuda:N)"),
            },
        }
    }
}

impl DeviceSpec {
    /// The device; `auto` picks the GPU when this binary has CUDA and a device exists.
    pub fn open(self) -> Result<Device> {
        match self {
            Self::Cpu => Ok(Device::Cpu),
            Self::Auto => {
                if cfg!(feature = "cuda")
                    && candle_core::utils::cuda_is_available()
                    && let Ok(d) = Device::new_cuda(0)
                {
                    return Ok(d);
                }
                Ok(Device::Cpu)
            }
            Self::Cuda(n) => {
                if !cfg!(feature = "cuda") {
                    bail!(
                        "this binary was built without CUDA support: rebuild with `cargo build --release --features cuda`"
                    );
                }
                Device::new_cuda(n).map_err(without_backtrace).with_context(|| {
                    format!("cannot open CUDA device {n} (is there an NVIDIA GPU and driver, R580 or newer for a CUDA 13 build?)")
                })
            }
        }
    }
}

/// The error without the backtrace candle attaches when `RUST_BACKTRACE` is set: the command
/// line reports errors in one line.
fn without_backtrace(e: candle_core::Error) -> candle_core::Error {
    match e {
        candle_core::Error::WithBacktrace { inner, .. } => *inner,
        e => e,
    }
}

/// `--dtype f32|f16|bf16`.
pub fn parse_dtype(s: &str) -> Result<DType> {
    match s {
        "f32" => Ok(DType::F32),
        "f16" => Ok(DType::F16),
        "bf16" => Ok(DType::BF16),
        _ => bail!("unknown dtype \"{s}\" (expected f32, f16 or bf16)"),
    }
}

/// Default dtype: f32 on CPU, bf16 on CUDA.
pub fn default_dtype(device: &Device) -> DType {
    if device.is_cuda() {
        DType::BF16
    } else {
        DType::F32
    }
}

/// `cpu`, `cuda:N` or `metal:N`.
pub fn device_label(device: &Device) -> String {
    match device.location() {
        candle_core::DeviceLocation::Cpu => "cpu".to_string(),
        candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
        candle_core::DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
    }
}

pub fn dtype_label(dtype: DType) -> &'static str {
    match dtype {
        DType::F32 => "f32",
        DType::F16 => "f16",
        DType::BF16 => "bf16",
        _ => "other",
    }
}

pub struct LoadedModel {
    pub model: Model,
    pub tokenizer: Tokenizer,
    pub source: ModelSource,
}

/// Loads the model and tokenizer. Weights are read lazily from memory-mapped files.
pub fn load_model(source: &ModelSource, device: &Device, dtype: DType) -> Result<LoadedModel> {
    let files = source.resolve()?;
    let config_text = std::fs::read_to_string(&files.config)
        .with_context(|| format!("cannot read {}", files.config.display()))?;
    let mut cfg =
        ArchConfig::from_json(&config_text).with_context(|| files.config.display().to_string())?;
    let mut tokenizer = Tokenizer::from_file(&files.tokenizer)?;
    if let WeightFiles::Codi(codi_files) = &files.weights {
        return codi::load(codi_files, cfg, tokenizer, source, device, dtype);
    }

    let backend: Box<dyn candle_nn::var_builder::SimpleBackend> = match &files.weights {
        WeightFiles::Safetensors(paths) => Box::new(MmapSafetensors::open(paths)?),
        WeightFiles::Codi(_) => unreachable!("loaded above"),
        WeightFiles::CoconutCheckpoint(path) => {
            let ckpt = PthCheckpoint::open(path, COCONUT_PREFIX)?;
            // The Coconut code adds its three tokens and resizes the embeddings to match.
            let emb_key = match cfg {
                ArchConfig::Gpt2(_) => ["transformer.wte.weight", "wte.weight"],
                ArchConfig::Llama(_) => ["model.embed_tokens.weight", "model.embed_tokens.weight"],
            };
            let rows = emb_key
                .iter()
                .find_map(|k| ckpt.shape(k))
                .and_then(|s| s.first().copied())
                .with_context(|| format!("{}: no token embedding found", path.display()))?;
            cfg.set_vocab_size(rows);
            tokenizer.add_coconut_tokens()?;
            if tokenizer.vocab_size() > rows {
                bail!(
                    "{}: the tokenizer has {} ids (Coconut tokens included) but the checkpoint's embedding has {rows} rows",
                    path.display(),
                    tokenizer.vocab_size()
                );
            }
            Box::new(ckpt)
        }
    };
    let vb = VarBuilder::from_backend(backend, dtype, device.clone());
    let untied = matches!(files.weights, WeightFiles::CoconutCheckpoint(_));
    let model = Model::build(&cfg, vb, untied)?;
    if tokenizer.vocab_size() > model.info.vocab {
        bail!(
            "the tokenizer has {} ids but the model's vocabulary has {}",
            tokenizer.vocab_size(),
            model.info.vocab
        );
    }
    Ok(LoadedModel {
        model,
        tokenizer,
        source: source.clone(),
    })
}

impl Model {
    /// Builds the network from weights under `vb` (whose device and dtype it takes). `untied`:
    /// use `lm_head.weight` when present (Coconut checkpoints keep an untied head).
    pub fn build(cfg: &ArchConfig, vb: VarBuilder, untied: bool) -> Result<Self> {
        let (device, dtype) = (vb.device().clone(), vb.dtype());
        let vocab = cfg.vocab_size();
        let (net, info) = match cfg {
            ArchConfig::Gpt2(c) => {
                let net = gpt2::Gpt2::load(vb, c, vocab, untied)
                    .map_err(|e| anyhow::anyhow!("loading GPT-2 weights: {e}"))?;
                let info = ModelInfo {
                    arch: Arch::Gpt2,
                    family: Family::Coconut,
                    layers: c.n_layer,
                    heads: c.n_head,
                    kv_heads: c.n_head,
                    d_model: c.n_embd,
                    vocab,
                    context: c.n_positions,
                    eos_ids: cfg.eos_ids(),
                };
                (Net::Gpt2(net), info)
            }
            ArchConfig::Llama(c) => {
                let net = llama::Llama::load(vb, c, vocab)
                    .map_err(|e| anyhow::anyhow!("loading Llama weights: {e}"))?;
                let info = ModelInfo {
                    arch: Arch::Llama,
                    family: Family::Coconut,
                    layers: c.num_hidden_layers,
                    heads: c.num_attention_heads,
                    kv_heads: c.num_key_value_heads,
                    d_model: c.hidden_size,
                    vocab,
                    context: c.max_position_embeddings,
                    eos_ids: cfg.eos_ids(),
                };
                (Net::Llama(net), info)
            }
        };
        Ok(Self {
            info,
            net,
            device,
            dtype,
            projection: None,
        })
    }
}
