//! Saved sessions, schema `coconut-lens.session.v2`: where the model came from and ran, the
//! head-importance method, where the user was looking, and the two analysed runs shown
//! (baseline and current, each a [`RunAnalysis`] holding its own settings) with the head
//! importance computed for the current one, so a session reopens without the model showing
//! what the live run showed. Files of schema v1 still open (see [`v1`]).
//!
//! Files are written atomically (see [`crate::files`]) and never replace an existing file
//! unless asked. Loading never panics: damaged files, unknown schema versions and files of
//! another kind are errors that say which.

pub mod cli;
pub mod v1;

use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::analysis::importance::{Importance, ImportanceMethod};
use crate::analysis::run::{RunAnalysis, RunParams};

pub const SCHEMA: &str = "coconut-lens.session.v2";
const SCHEMA_PREFIX: &str = "coconut-lens.session.";

/// Where the model came from and where it ran; with the current run's settings, everything
/// needed to recompute the session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionInputs {
    /// `--model` as given (folder, hub id `owner/name[@revision]`, or checkpoint file).
    pub model: String,
    /// `--base` for a Coconut checkpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
    /// The resolved hub revision, when the model came from the hub.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    pub device: String,
    pub dtype: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub importance_method: Option<ImportanceMethod>,
}

/// Where the user was looking.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ViewState {
    /// lens, layers, heads, attention or compare.
    pub tab: String,
    /// Selected step (column of the timeline).
    pub step: usize,
    /// Selected layer.
    pub layer: usize,
    /// Head under the cursor.
    pub head: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    pub schema: String,
    /// Seconds since the Unix epoch.
    pub saved_at: u64,
    pub inputs: SessionInputs,
    #[serde(default)]
    pub view: ViewState,
    /// The run without interventions.
    pub baseline: RunAnalysis,
    /// The run with the session's interventions (its settings are the session's).
    pub current: RunAnalysis,
    /// Head importance of the current run, when it was computed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub importance: Option<Importance>,
}

impl Session {
    pub fn new(
        inputs: SessionInputs,
        view: ViewState,
        baseline: RunAnalysis,
        current: RunAnalysis,
        importance: Option<Importance>,
    ) -> Self {
        Self {
            schema: SCHEMA.to_string(),
            saved_at: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            inputs,
            view,
            baseline,
            current,
            importance,
        }
    }

    /// The settings of the run shown.
    pub fn params(&self) -> &RunParams {
        &self.current.params
    }

    /// A default file name: `<timestamp>-<slug of the prompt>.json`.
    pub fn default_file_name(&self) -> String {
        format!(
            "{}-{}.json",
            timestamp(self.saved_at),
            slug(&self.params().prompt)
        )
    }

    pub fn to_json(&self) -> Result<Vec<u8>> {
        Ok(serde_json::to_vec_pretty(self)?)
    }

    /// Parses a session, checking the schema before the content; a v1 file is upgraded.
    pub fn from_json(bytes: &[u8]) -> Result<Self> {
        let value: serde_json::Value = serde_json::from_slice(bytes)
            .map_err(|e| anyhow::anyhow!("not a session file: damaged JSON ({e})"))?;
        let schema = value.get("schema").and_then(|s| s.as_str());
        let damaged = |e: serde_json::Error| anyhow::anyhow!("damaged session file: {e}");
        match schema {
            Some(SCHEMA) => serde_json::from_value(value).map_err(damaged),
            Some(v1::SCHEMA) => v1::upgrade(serde_json::from_value(value).map_err(damaged)?),
            Some(s) if s.starts_with(SCHEMA_PREFIX) => bail!(
                "session schema {s} is not supported by this version (it reads {SCHEMA} and {})",
                v1::SCHEMA
            ),
            Some(s) => bail!("not a session file (schema {s})"),
            None => bail!("not a session file (no schema field)"),
        }
    }

    pub fn load(path: &Path) -> Result<Self> {
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        Self::from_json(&bytes).with_context(|| path.display().to_string())
    }

    /// Writes the session to `path` atomically. An existing file is replaced only with
    /// `overwrite`.
    pub fn save(&self, path: &Path, overwrite: bool) -> Result<()> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        crate::files::write_atomic(path, &self.to_json()?, overwrite)
    }

    /// Whether two sessions hold the same run and results as written to a file: the view, the
    /// time, the compute times and what the file does not keep (the model's context length
    /// and end tokens) aside.
    pub fn same_results(&self, other: &Session) -> bool {
        let saved = |s: &Session| {
            let mut s = s.clone();
            s.baseline.compute_ms = 0.0;
            s.current.compute_ms = 0.0;
            if let Some(i) = &mut s.importance {
                i.compute_ms = 0.0;
            }
            serde_json::to_value((&s.inputs, &s.baseline, &s.current, &s.importance)).ok()
        };
        let a = saved(self);
        a.is_some() && a == saved(other)
    }
}

/// `YYYYmmdd-HHMMSS` (UTC) of Unix seconds.
pub fn timestamp(secs: u64) -> String {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}-{:02}{:02}{:02}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Up to six lower-case words of `text`, joined by `-`.
pub fn slug(text: &str) -> String {
    let words: Vec<String> = text
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .take(6)
        .map(str::to_ascii_lowercase)
        .collect();
    if words.is_empty() {
        "session".to_string()
    } else {
        words.join("-")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_civil_utc() {
        assert_eq!(timestamp(0), "19700101-000000");
        assert_eq!(timestamp(1_795_305_600), "20261122-000000");
        assert_eq!(timestamp(951_782_400 + 3661), "20000229-010101");
    }

    #[test]
    fn slugs_are_short_and_safe() {
        assert_eq!(
            slug("Is Tom a lempus or scrompus?"),
            "is-tom-a-lempus-or-scrompus"
        );
        assert_eq!(slug("  ¿?  "), "session");
        assert_eq!(slug("a/b\\c ../d"), "a-b-c-d");
    }
}
