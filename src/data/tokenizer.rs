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
//!
//! The [`TextForm::Compact`] form adds a normalizer that drops the template words of a fact
//! (`Replace("Every ", "")`, then `Replace(" is a ", " ")`): `Every wumpus is a yumpus.`
//! becomes the three tokens `wumpus yumpus .` and a real validation prompt about half as many
//! tokens, with the text still the official one. The question's `Is Tom a X or Y?` has no
//! ` is a ` and stays whole. Encoding is then lossy (`decode` gives `wumpus yumpus.`), so ids
//! that must decode to the official text, such as a training answer `### Tom is a wumpus.`,
//! are built with [`verbatim_ids`], which skips the normalizer.

use std::path::Path;

use anyhow::{Context, Result, anyhow};
use tokenizers::decoders::DecoderWrapper;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::wordpiece::WordPiece;
use tokenizers::models::wordlevel::WordLevel;
use tokenizers::normalizers::replace::Replace;
use tokenizers::normalizers::{NormalizerWrapper, Sequence as NormalizerSequence};
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

/// How fact sentences are tokenized.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TextForm {
    /// Every word a token: `Every wumpus is a yumpus.` is 6 tokens.
    Words,
    /// Template words of facts dropped by the normalizer: `wumpus yumpus .`.
    Compact,
}

/// The normalizer replacements of the compact form, applied in order.
pub const COMPACT_REPLACEMENTS: [(&str, &str); 2] = [("Every ", ""), (" is a ", " ")];

/// Builds the tokenizer.
pub fn build(form: TextForm) -> Result<Tokenizer> {
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
    if form == TextForm::Compact {
        let steps = COMPACT_REPLACEMENTS
            .iter()
            .map(|&(pattern, content)| {
                Ok(NormalizerWrapper::Replace(
                    Replace::new(pattern, content).map_err(err)?,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        tok.with_normalizer(Some(NormalizerWrapper::Sequence(NormalizerSequence::new(
            steps,
        ))))
        .map_err(err)?;
    }

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

/// The ids of `text` without the normalizer: each whitespace-separated word, with its
/// punctuation split off, looked up in the vocabulary (an unknown word is an error). With the
/// compact form these ids decode to `text` where `encode` would drop template words.
pub fn verbatim_ids(tok: &Tokenizer, text: &str) -> Result<Vec<u32>> {
    let id = |piece: &str| {
        tok.token_to_id(piece)
            .with_context(|| format!("\"{piece}\" is not in the vocabulary"))
    };
    let mut ids = Vec::new();
    for word in text.split_whitespace() {
        // Whole words first: `###` and the added tokens.
        if let Some(i) = tok.token_to_id(word) {
            ids.push(i);
            continue;
        }
        let mut start = 0;
        for (i, c) in word.char_indices() {
            if c.is_ascii_punctuation() {
                if start < i {
                    ids.push(id(&word[start..i])?);
                }
                ids.push(id(&word[i..i + 1])?);
                start = i + 1;
            }
        }
        if start < word.len() {
            ids.push(id(&word[start..])?);
        }
    }
    Ok(ids)
}

/// The tokenizer as pretty-printed `tokenizer.json` text.
pub fn to_json(form: TextForm) -> Result<String> {
    build(form)?.to_string(true).map_err(err)
}

/// Writes `tokenizer.json` to `path` atomically.
pub fn write(path: &Path, form: TextForm) -> Result<()> {
    crate::files::write_atomic(path, to_json(form)?.as_bytes(), true)
}

/// `tokenizer_config.json`, so that transformers' `AutoTokenizer` loads the folder as a
/// `PreTrainedTokenizerFast` with its end-of-text and unknown tokens.
pub fn config_json() -> String {
    let cfg = serde_json::json!({
        "tokenizer_class": "PreTrainedTokenizerFast",
        "eos_token": EOS,
        "bos_token": EOS,
        "unk_token": UNK,
        "pad_token": EOS,
        "clean_up_tokenization_spaces": false,
        "model_max_length": 1024,
    });
    serde_json::to_string_pretty(&cfg).expect("a JSON value serialises")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_follow_the_vocabulary() {
        let tok = build(TextForm::Words).unwrap();
        for (i, w) in vocabulary().iter().enumerate() {
            assert_eq!(tok.token_to_id(w), Some(i as u32), "{w:?}");
        }
        assert_eq!(tok.get_vocab_size(true), vocabulary().len());
    }

    #[test]
    fn splits_words_and_punctuation() {
        let tok = build(TextForm::Words).unwrap();
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
        let tok = build(TextForm::Words).unwrap();
        let enc = tok.encode("Every blorpus is a lempus.", false).unwrap();
        assert_eq!(enc.get_ids()[1], tok.token_to_id(UNK).unwrap());
    }

    #[test]
    fn the_compact_form_drops_template_words_of_facts_only() {
        let tok = build(TextForm::Compact).unwrap();
        let text = "Every lempus is a yumpus. Tom is a lempus. Is Tom a lempus or yumpus?\n";
        let enc = tok.encode(text, false).unwrap();
        assert_eq!(
            enc.get_tokens(),
            [
                "lempus", "yumpus", ".", "Tom", "lempus", ".", "Is", "Tom", "a", "lempus", "or",
                "yumpus", "?", "\n"
            ]
        );
    }

    #[test]
    fn verbatim_ids_decode_to_the_official_answer() {
        let tok = build(TextForm::Compact).unwrap();
        let answer = "### Tom is a yumpus.";
        let ids = verbatim_ids(&tok, answer).unwrap();
        let words: Vec<String> = ids.iter().map(|&i| tok.id_to_token(i).unwrap()).collect();
        assert_eq!(words, ["###", "Tom", "is", "a", "yumpus", "."]);
        assert_eq!(tok.decode(&ids, true).unwrap(), answer);
        // The normalizer would have dropped "is a".
        assert_eq!(tok.encode(answer, false).unwrap().get_ids().len(), 4);
        assert!(verbatim_ids(&tok, "Tom is a blorpus.").is_err());
    }
}
