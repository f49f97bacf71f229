//! A word-level Hugging Face `tokenizer.json` for ProsQA.
//!
//! One id per word: the inventory names, the template words, punctuation, `###` (the answer
//! marker of the Coconut format), a newline token, `<|endoftext|>` (end of text), `[UNK]`, and
//! the Coconut tokens `<|start-latent|>`, `<|end-latent|>`, `<|latent|>` as added special
//! tokens. The pre-tokenizer splits on whitespace, then isolates punctuation, so `lempus.` is
//! `lempus`, `.`; `###` and `\n` are added tokens, matched before pre-tokenisation (the
//! whitespace split would otherwise drop the newline and the punctuation split would cut
//! `###` in three). The decoder joins words with spaces, then removes the space before
//! punctuation and around newlines, so `decode(encode(text)) == text` for ProsQA text.

use std::path::Path;

use anyhow::{Context, Result, anyhow};
use tokenizers::decoders::DecoderWrapper;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::wordpiece::WordPiece;
use tokenizers::models::wordlevel::WordLevel;
use tokenizers::normalizers::replace::Replace;
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::pre_tokenizers::punctuation::Punctuation;
use tokenizers::pre_tokenizers::sequence::Sequence as PreSequence;
use tokenizers::pre_tokenizers::whitespace::WhitespaceSplit;
use tokenizers::{AddedToken, SplitDelimiterBehavior, Tokenizer};

use super::prosqa::{CONCEPTS, PEOPLE, TEMPLATE_WORDS};
use crate::model::tokenizer::{END_LATENT, LATENT, START_LATENT};

pub const EOS: &str = "<|endoftext|>";
pub const UNK: &str = "[UNK]";
pub const NEWLINE: &str = "\n";
pub const ANSWER_MARK: &str = "###";
/// Punctuation with a token of its own (`#` covers stray hashes such as `####`).
pub const PUNCTUATION: [&str; 4] = [".", ",", "?", "#"];

/// The vocabulary in id order.
pub fn vocabulary() -> Vec<&'static str> {
    let mut v = vec![EOS, UNK, NEWLINE, ANSWER_MARK];
    v.extend(PUNCTUATION);
    v.extend(TEMPLATE_WORDS);
    v.extend(PEOPLE);
    v.extend(CONCEPTS);
    v.extend([START_LATENT, END_LATENT, LATENT]);
    v
}

fn err(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("{e}")
}

/// Builds the tokenizer.
pub fn build() -> Result<Tokenizer> {
    let vocab: serde_json::Map<String, serde_json::Value> = vocabulary()
        .into_iter()
        .enumerate()
        .map(|(i, w)| (w.to_string(), i.into()))
        .collect();
    // WordLevel's builder takes an ahash map; its serde form takes any JSON object (from
    // text: its deserialiser borrows strings).
    let spec = serde_json::json!({
        "type": "WordLevel",
        "vocab": vocab,
        "unk_token": UNK,
    });
    let model: WordLevel =
        serde_json::from_str(&spec.to_string()).context("building the word-level model")?;
    let mut tok = Tokenizer::new(model);

    let pre = PreSequence::new(vec![
        PreTokenizerWrapper::WhitespaceSplit(WhitespaceSplit),
        PreTokenizerWrapper::Punctuation(Punctuation::new(SplitDelimiterBehavior::Isolated)),
    ]);
    tok.with_pre_tokenizer(Some(PreTokenizerWrapper::Sequence(pre)));

    // A WordPiece decoder whose continuation prefix is a space never strips anything (no
    // token holds a space), so it puts one space before every token but the first.
    let mut decoders = vec![
        DecoderWrapper::WordPiece(WordPiece::new(" ".into(), false)),
        DecoderWrapper::Fuse(Fuse::new()),
    ];
    for (pattern, content) in [
        (" .", "."),
        (" ,", ","),
        (" ?", "?"),
        (" \n", "\n"),
        ("\n ", "\n"),
    ] {
        decoders.push(DecoderWrapper::Replace(
            Replace::new(pattern, content).map_err(err)?,
        ));
    }
    tok.with_decoder(Some(DecoderWrapper::Sequence(DecoderSequence::new(
        decoders,
    ))));

    tok.add_special_tokens(
        [EOS, UNK, START_LATENT, END_LATENT, LATENT].map(|t| AddedToken::from(t, true)),
    )
    .map_err(err)?;
    tok.add_tokens([
        AddedToken::from(NEWLINE, false).normalized(false),
        AddedToken::from(ANSWER_MARK, false).normalized(false),
    ])
    .map_err(err)?;
    Ok(tok)
}

/// The tokenizer as pretty-printed `tokenizer.json` text.
pub fn to_json() -> Result<String> {
    build()?.to_string(true).map_err(err)
}

/// Writes `tokenizer.json` to `path` atomically.
pub fn write(path: &Path) -> Result<()> {
    super::write_atomic(path, to_json()?.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_follow_the_vocabulary() {
        let tok = build().unwrap();
        for (i, w) in vocabulary().iter().enumerate() {
            assert_eq!(tok.token_to_id(w), Some(i as u32), "{w:?}");
        }
        assert_eq!(tok.get_vocab_size(true), vocabulary().len());
    }

    #[test]
    fn splits_words_and_punctuation() {
        let tok = build().unwrap();
        let text = "Every lempus is a yumpus. Is Tom a lempus or yumpus?\n### Tom is a yumpus.";
        let enc = tok.encode(text, false).unwrap();
        assert_eq!(
            enc.get_tokens(),
            [
                "Every", "lempus", "is", "a", "yumpus", ".", "Is", "Tom", "a", "lempus", "or",
                "yumpus", "?", "\n", "###", "Tom", "is", "a", "yumpus", "."
            ]
        );
        assert_eq!(tok.decode(enc.get_ids(), true).unwrap(), text);
    }

    #[test]
    fn unknown_words_map_to_unk() {
        let tok = build().unwrap();
        let enc = tok.encode("Every blorpus is a lempus.", false).unwrap();
        assert_eq!(enc.get_ids()[1], tok.token_to_id(UNK).unwrap());
    }
}
