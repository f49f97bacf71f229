//! A model folder's `coconut-lens.json`: the thought count and demo prompt the CLI and the
//! explorer default to, written by `train` (with its recipe and history) and completed by
//! `eval --record` (accuracy figures). Fields this version does not know are kept as they are.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::ModelSource;

/// The file's name inside a model folder.
pub const FILE_NAME: &str = "coconut-lens.json";

/// One evaluation's figures, as `eval --record` writes them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccuracyRecord {
    pub n: usize,
    pub correct: usize,
    pub accuracy: f64,
    pub thoughts: usize,
    pub wrong_candidate: usize,
    pub no_candidate: usize,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ModelMeta {
    /// Continuous thoughts the model was trained to use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thoughts: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub demo_prompt: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub demo_answer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipe: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub objective: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps_done: Option<u64>,
    /// The training configuration (the trainer's own schema).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history: Option<Value>,
    /// `accuracy.<data file stem>.<mode>`; an entry of another shape is kept as it is.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub accuracy: BTreeMap<String, Value>,
    /// Fields this version does not know (older files: `epochs_done`), kept on rewrite.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

impl ModelMeta {
    /// The metadata of a local model folder; `None` when it has none or it does not parse.
    pub fn of_source(source: &ModelSource) -> Option<ModelMeta> {
        let ModelSource::Local(dir) = source else {
            return None;
        };
        Self::read(&dir.join(FILE_NAME)).ok().flatten()
    }

    /// Reads `path`: `None` when the file does not exist.
    pub fn read(path: &Path) -> Result<Option<ModelMeta>> {
        match std::fs::read_to_string(path) {
            Ok(text) => serde_json::from_str(&text)
                .map(Some)
                .with_context(|| format!("{} is not valid model metadata", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    pub fn write(&self, path: &Path) -> Result<()> {
        crate::files::write_atomic(path, serde_json::to_string_pretty(self)?.as_bytes(), true)
    }

    /// The demo prompt, unless blank.
    pub fn demo(&self) -> Option<&str> {
        self.demo_prompt.as_deref().filter(|s| !s.trim().is_empty())
    }

    /// Sets `accuracy.<data>.<mode>`, replacing an entry for `data` that is not an object.
    pub fn record_accuracy(&mut self, data: &str, mode: &str, figures: AccuracyRecord) {
        let entry = self
            .accuracy
            .entry(data.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        if !entry.is_object() {
            *entry = Value::Object(Map::new());
        }
        let figures = serde_json::to_value(figures).expect("plain numbers serialise");
        entry
            .as_object_mut()
            .expect("made an object above")
            .insert(mode.to_string(), figures);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_survive_a_rewrite_and_accuracy_is_merged() {
        let text = r#"{"thoughts": 2, "epochs_done": 7, "accuracy": {"old": {"coconut": {"n": 1}}, "bad": 3}}"#;
        let mut meta: ModelMeta = serde_json::from_str(text).unwrap();
        assert_eq!(meta.thoughts, Some(2));
        let figures = AccuracyRecord {
            n: 4,
            correct: 3,
            accuracy: 0.75,
            thoughts: 2,
            wrong_candidate: 1,
            no_candidate: 0,
        };
        meta.record_accuracy("bad", "no-cot", figures);
        let v = serde_json::to_value(&meta).unwrap();
        assert_eq!(v["epochs_done"], 7);
        assert_eq!(v["accuracy"]["old"]["coconut"]["n"], 1);
        assert_eq!(v["accuracy"]["bad"]["no-cot"]["correct"], 3);
        assert!(serde_json::from_str::<ModelMeta>("[]").is_err());
    }
}
