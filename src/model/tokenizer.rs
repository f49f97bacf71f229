//! A `tokenizer.json` with the three Coconut tokens (or CODI's bot and eot ids).

use std::path::Path;

use anyhow::{Context, Result, bail};
use tokenizers::AddedToken;

pub const START_LATENT: &str = "<|start-latent|>";
pub const END_LATENT: &str = "<|end-latent|>";
pub const LATENT: &str = "<|latent|>";

/// Ids of the markers around the thoughts: Coconut's three tokens, or CODI's bot and eot
/// (CODI has no latent token: its thought slots carry no id).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoconutTokens {
    pub start: u32,
    pub end: u32,
    pub latent: Option<u32>,
}

/// How a question becomes the input text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PromptFormat {
    /// The Coconut code's `question + "\n"`.
    #[default]
    Coconut,
    /// CODI's `test.py`: `question.strip().replace("  ", " ")`, no newline.
    Codi,
}

#[derive(Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    pub coconut: Option<CoconutTokens>,
    pub prompt_format: PromptFormat,
}

impl Tokenizer {
    pub fn from_file(path: &Path) -> Result<Self> {
        let inner = tokenizers::Tokenizer::from_file(path)
            .map_err(|e| anyhow::anyhow!("cannot load tokenizer {}: {e}", path.display()))?;
        let mut tok = Self {
            inner,
            coconut: None,
            prompt_format: PromptFormat::default(),
        };
        tok.coconut = tok.find_coconut();
        Ok(tok)
    }

    fn find_coconut(&self) -> Option<CoconutTokens> {
        Some(CoconutTokens {
            start: self.token_id(START_LATENT)?,
            end: self.token_id(END_LATENT)?,
            latent: Some(self.token_id(LATENT)?),
        })
    }

    /// Adds `<|start-latent|>`, `<|end-latent|>`, `<|latent|>` in that order when missing,
    /// as the Coconut training code does before resizing the embeddings.
    pub fn add_coconut_tokens(&mut self) -> Result<()> {
        for t in [START_LATENT, END_LATENT, LATENT] {
            if self.token_id(t).is_none() {
                self.inner
                    .add_special_tokens([AddedToken::from(t, true)])
                    .map_err(|e| anyhow::anyhow!("cannot add {t} to the tokenizer: {e}"))?;
            }
        }
        self.coconut = self.find_coconut();
        Ok(())
    }

    /// Adds special tokens that are missing, in order (each takes the next id).
    pub fn add_special_tokens(&mut self, tokens: &[&str]) -> Result<()> {
        for &t in tokens {
            if self.token_id(t).is_none() {
                self.inner
                    .add_special_tokens([AddedToken::from(t, true)])
                    .map_err(|e| anyhow::anyhow!("cannot add {t} to the tokenizer: {e}"))?;
            }
        }
        Ok(())
    }

    /// The Hugging Face tokenizer itself.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }

    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Number of ids, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// `encode(prompt + "\n", add_special_tokens = true)`, or CODI's text of the prompt (see
    /// [`PromptFormat`]).
    pub fn encode_prompt(&self, prompt: &str) -> Result<Vec<u32>> {
        if prompt.trim().is_empty() {
            bail!("the prompt is empty");
        }
        let text = match self.prompt_format {
            PromptFormat::Coconut => format!("{prompt}\n"),
            PromptFormat::Codi => prompt.trim().replace("  ", " "),
        };
        let enc = self
            .inner
            .encode(text, true)
            .map_err(|e| anyhow::anyhow!("cannot tokenize the prompt: {e}"))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Ids of a text without special tokens (used for `--target` and data).
    pub fn encode_plain(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode(text, false)
            .map_err(|e| anyhow::anyhow!("cannot tokenize \"{text}\": {e}"))?;
        Ok(enc.get_ids().to_vec())
    }

    /// The vocabulary string of an id (e.g. `Ġcat` for byte-level BPE).
    pub fn token_text(&self, id: u32) -> String {
        self.inner
            .id_to_token(id)
            .unwrap_or_else(|| format!("<{id}>"))
    }

    /// A token as shown on screen and in plots: decoded, trimmed, newlines as `⏎`, tabs as
    /// `⇥`, whitespace-only tokens as `␣`, special tokens by name. Byte-level pieces of a
    /// character (which decode to U+FFFD) show as their vocabulary string; a token with
    /// nothing visible as `<id>`.
    pub fn display(&self, id: u32) -> String {
        let text = self.decode(&[id]).unwrap_or_default();
        let shown = if text.contains('\u{FFFD}') {
            self.token_text(id)
        } else if text.trim().is_empty() {
            if text.contains('\n') {
                "⏎".to_string()
            } else if !text.is_empty() {
                "␣".to_string()
            } else {
                self.token_text(id)
            }
        } else {
            text.trim().replace('\n', "⏎").replace('\t', "⇥")
        };
        let visible: String = shown.chars().filter(|c| !c.is_control()).collect();
        if unicode_width::UnicodeWidthStr::width(visible.as_str()) == 0 {
            format!("<{id}>")
        } else {
            visible
        }
    }

    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner
            .decode(ids, true)
            .map_err(|e| anyhow::anyhow!("cannot decode ids: {e}"))
            .context("decoding the answer")
    }
}
