//! `config.json` parsing for the supported architectures.

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use serde_json::Value;

/// The architectures coconut-lens can run.
pub const SUPPORTED_MODEL_TYPES: &[&str] = &["gpt2", "llama"];

#[derive(Debug, Clone)]
pub enum ArchConfig {
    Gpt2(Gpt2Config),
    Llama(LlamaConfig),
}

#[derive(Debug, Clone, Deserialize)]
pub struct Gpt2Config {
    pub vocab_size: usize,
    pub n_positions: usize,
    pub n_embd: usize,
    pub n_layer: usize,
    pub n_head: usize,
    #[serde(default)]
    pub n_inner: Option<usize>,
    #[serde(default = "default_gpt2_eps")]
    pub layer_norm_epsilon: f64,
    #[serde(default = "default_gpt2_activation")]
    pub activation_function: String,
    #[serde(default)]
    pub scale_attn_by_inverse_layer_idx: bool,
    #[serde(default)]
    pub eos_token_id: Option<Value>,
    #[serde(default)]
    pub bos_token_id: Option<Value>,
}

fn default_gpt2_eps() -> f64 {
    1e-5
}

fn default_gpt2_activation() -> String {
    "gelu_new".to_string()
}

/// Llama 3 style rope scaling ("llama3"); other types are rejected at parse time.
#[derive(Debug, Clone, PartialEq)]
pub struct Llama3RopeScaling {
    pub factor: f64,
    pub low_freq_factor: f64,
    pub high_freq_factor: f64,
    pub original_max_position_embeddings: usize,
}

#[derive(Debug, Clone)]
pub struct LlamaConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    pub rope_scaling: Option<Llama3RopeScaling>,
    pub max_position_embeddings: usize,
    pub tie_word_embeddings: bool,
    pub attention_bias: bool,
    pub mlp_bias: bool,
    pub eos_token_id: Option<Value>,
    pub bos_token_id: Option<Value>,
}

/// The raw fields as they appear in Hugging Face `config.json` files.
#[derive(Debug, Deserialize)]
struct RawLlamaConfig {
    vocab_size: usize,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    #[serde(default)]
    num_key_value_heads: Option<usize>,
    #[serde(default)]
    head_dim: Option<usize>,
    #[serde(default = "default_llama_eps")]
    rms_norm_eps: f64,
    #[serde(default)]
    rope_theta: Option<f64>,
    #[serde(default)]
    rope_scaling: Option<Value>,
    #[serde(default)]
    rope_parameters: Option<Value>,
    #[serde(default = "default_llama_positions")]
    max_position_embeddings: usize,
    #[serde(default)]
    tie_word_embeddings: bool,
    #[serde(default)]
    attention_bias: bool,
    #[serde(default)]
    mlp_bias: bool,
    #[serde(default = "default_llama_act")]
    hidden_act: String,
    #[serde(default)]
    eos_token_id: Option<Value>,
    #[serde(default)]
    bos_token_id: Option<Value>,
}

fn default_llama_eps() -> f64 {
    1e-6
}
fn default_llama_positions() -> usize {
    2048
}
fn default_llama_act() -> String {
    "silu".to_string()
}

impl ArchConfig {
    /// Parses the text of a `config.json`.
    pub fn from_json(text: &str) -> Result<Self> {
        let value: Value = serde_json::from_str(text).context("config.json is not valid JSON")?;
        let model_type = value
            .get("model_type")
            .and_then(Value::as_str)
            .context("config.json has no \"model_type\" field")?;
        match model_type {
            "gpt2" => {
                let cfg: Gpt2Config = serde_json::from_value(value.clone())
                    .map_err(|e| anyhow::anyhow!("config.json (gpt2): {e}"))?;
                cfg.validate()?;
                Ok(Self::Gpt2(cfg))
            }
            "llama" => {
                let raw: RawLlamaConfig = serde_json::from_value(value.clone())
                    .map_err(|e| anyhow::anyhow!("config.json (llama): {e}"))?;
                Ok(Self::Llama(LlamaConfig::from_raw(raw)?))
            }
            other => bail!(
                "unsupported model_type \"{other}\" in config.json (supported: {})",
                SUPPORTED_MODEL_TYPES.join(", ")
            ),
        }
    }

    pub fn vocab_size(&self) -> usize {
        match self {
            Self::Gpt2(c) => c.vocab_size,
            Self::Llama(c) => c.vocab_size,
        }
    }

    pub fn set_vocab_size(&mut self, vocab: usize) {
        match self {
            Self::Gpt2(c) => c.vocab_size = vocab,
            Self::Llama(c) => c.vocab_size = vocab,
        }
    }

    /// End-of-sequence ids from the config (`eos_token_id` may be an int or a list).
    pub fn eos_ids(&self) -> Vec<u32> {
        let v = match self {
            Self::Gpt2(c) => &c.eos_token_id,
            Self::Llama(c) => &c.eos_token_id,
        };
        ids_of(v.as_ref())
    }
}

fn ids_of(v: Option<&Value>) -> Vec<u32> {
    match v {
        Some(Value::Number(n)) => n.as_u64().map(|n| vec![n as u32]).unwrap_or_default(),
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_u64)
            .map(|n| n as u32)
            .collect(),
        _ => vec![],
    }
}

impl Gpt2Config {
    pub fn inner_dim(&self) -> usize {
        self.n_inner.unwrap_or(4 * self.n_embd)
    }

    fn validate(&self) -> Result<()> {
        if self.n_layer == 0 || self.n_head == 0 || self.n_embd == 0 || self.vocab_size == 0 {
            bail!("config.json (gpt2): n_layer, n_head, n_embd and vocab_size must be positive");
        }
        if !self.n_embd.is_multiple_of(self.n_head) {
            bail!(
                "config.json (gpt2): n_embd {} is not divisible by n_head {}",
                self.n_embd,
                self.n_head
            );
        }
        if !matches!(
            self.activation_function.as_str(),
            "gelu_new" | "gelu_pytorch_tanh" | "gelu"
        ) {
            bail!(
                "config.json (gpt2): unsupported activation_function \"{}\" (supported: gelu_new, gelu_pytorch_tanh, gelu)",
                self.activation_function
            );
        }
        Ok(())
    }
}

impl LlamaConfig {
    fn from_raw(raw: RawLlamaConfig) -> Result<Self> {
        if raw.num_hidden_layers == 0 || raw.num_attention_heads == 0 || raw.hidden_size == 0 {
            bail!(
                "config.json (llama): num_hidden_layers, num_attention_heads and hidden_size must be positive"
            );
        }
        if raw.hidden_act != "silu" {
            bail!(
                "config.json (llama): unsupported hidden_act \"{}\" (supported: silu)",
                raw.hidden_act
            );
        }
        let kv_heads = raw.num_key_value_heads.unwrap_or(raw.num_attention_heads);
        if kv_heads == 0 || !raw.num_attention_heads.is_multiple_of(kv_heads) {
            bail!(
                "config.json (llama): num_attention_heads {} is not a multiple of num_key_value_heads {}",
                raw.num_attention_heads,
                kv_heads
            );
        }
        let head_dim = match raw.head_dim {
            Some(d) => d,
            None => {
                if !raw.hidden_size.is_multiple_of(raw.num_attention_heads) {
                    bail!(
                        "config.json (llama): hidden_size is not divisible by num_attention_heads"
                    );
                }
                raw.hidden_size / raw.num_attention_heads
            }
        };
        if !head_dim.is_multiple_of(2) {
            bail!("config.json (llama): head_dim {head_dim} must be even for rotary embeddings");
        }
        // Newer configs carry rope_theta and the scaling inside `rope_parameters`.
        let (theta, scaling) = match (&raw.rope_parameters, &raw.rope_scaling) {
            (Some(params), _) => {
                let theta = params
                    .get("rope_theta")
                    .and_then(Value::as_f64)
                    .or(raw.rope_theta);
                (theta, parse_rope_scaling(params)?)
            }
            (None, Some(scaling)) => (raw.rope_theta, parse_rope_scaling(scaling)?),
            (None, None) => (raw.rope_theta, None),
        };
        Ok(Self {
            vocab_size: raw.vocab_size,
            hidden_size: raw.hidden_size,
            intermediate_size: raw.intermediate_size,
            num_hidden_layers: raw.num_hidden_layers,
            num_attention_heads: raw.num_attention_heads,
            num_key_value_heads: kv_heads,
            head_dim,
            rms_norm_eps: raw.rms_norm_eps,
            rope_theta: theta.unwrap_or(10_000.0),
            rope_scaling: scaling,
            max_position_embeddings: raw.max_position_embeddings,
            tie_word_embeddings: raw.tie_word_embeddings,
            attention_bias: raw.attention_bias,
            mlp_bias: raw.mlp_bias,
            eos_token_id: raw.eos_token_id,
            bos_token_id: raw.bos_token_id,
        })
    }
}

/// Reads a `rope_scaling` / `rope_parameters` object. `null`, "default" and absent types mean no scaling.
fn parse_rope_scaling(v: &Value) -> Result<Option<Llama3RopeScaling>> {
    if v.is_null() {
        return Ok(None);
    }
    let kind = v
        .get("rope_type")
        .or_else(|| v.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("default");
    match kind {
        "default" => Ok(None),
        "llama3" => {
            let num = |key: &str| {
                v.get(key).and_then(Value::as_f64).with_context(|| {
                    format!("config.json (llama): llama3 rope scaling needs \"{key}\"")
                })
            };
            Ok(Some(Llama3RopeScaling {
                factor: num("factor")?,
                low_freq_factor: num("low_freq_factor")?,
                high_freq_factor: num("high_freq_factor")?,
                original_max_position_embeddings: num("original_max_position_embeddings")? as usize,
            }))
        }
        other => bail!(
            "config.json (llama): unsupported rope scaling type \"{other}\" (supported: default, llama3)"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LLAMA_BASE: &str = r#""model_type":"llama","vocab_size":10,"hidden_size":8,"intermediate_size":16,
        "num_hidden_layers":1,"num_attention_heads":2"#;

    #[test]
    fn old_and_new_rope_styles_agree() {
        let old = format!(
            r#"{{{LLAMA_BASE},"rope_theta":500000.0,"rope_scaling":{{"rope_type":"llama3","factor":8.0,
            "low_freq_factor":1.0,"high_freq_factor":4.0,"original_max_position_embeddings":16}}}}"#
        );
        let new = format!(
            r#"{{{LLAMA_BASE},"rope_parameters":{{"rope_type":"llama3","rope_theta":500000.0,"factor":8.0,
            "low_freq_factor":1.0,"high_freq_factor":4.0,"original_max_position_embeddings":16}}}}"#
        );
        let (ArchConfig::Llama(a), ArchConfig::Llama(b)) = (
            ArchConfig::from_json(&old).unwrap(),
            ArchConfig::from_json(&new).unwrap(),
        ) else {
            panic!("expected llama configs");
        };
        assert_eq!(a.rope_theta, 500000.0);
        assert_eq!(a.rope_theta, b.rope_theta);
        assert_eq!(a.rope_scaling, b.rope_scaling);
        assert!(a.rope_scaling.is_some());
        assert_eq!(a.head_dim, 4);
        assert_eq!(a.num_key_value_heads, 2);
    }

    #[test]
    fn unsupported_model_type_names_supported_ones() {
        let err = ArchConfig::from_json(r#"{"model_type":"bert"}"#)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("bert") && err.contains("gpt2") && err.contains("llama"),
            "{err}"
        );
    }

    #[test]
    fn missing_field_is_named() {
        let err = ArchConfig::from_json(r#"{"model_type":"gpt2","vocab_size":5}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing field"), "{err}");
    }

    #[test]
    fn eos_may_be_a_list() {
        let cfg = format!(r#"{{{LLAMA_BASE},"eos_token_id":[3,4]}}"#);
        assert_eq!(ArchConfig::from_json(&cfg).unwrap().eos_ids(), vec![3, 4]);
    }
}
