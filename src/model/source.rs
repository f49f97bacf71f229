//! Where a model comes from: a local Hugging Face folder, a hub id, or a Coconut or CODI
//! checkpoint.

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use hf_hub::{Repo, RepoType};

use super::codi::{CodiCheckpoint, CodiFiles, is_codi_checkpoint};

/// The parsed `--model` (and `--base`) arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    /// A folder with `config.json`, `tokenizer.json` and safetensors weights.
    Local(PathBuf),
    /// `owner/name[@revision]` on the Hugging Face hub.
    Hub {
        repo: String,
        revision: Option<String>,
    },
    /// A `torch.save` state dict from the official Coconut code (`base_causallm.*` keys), with the
    /// source that provides `config.json` and `tokenizer.json`.
    Coconut {
        checkpoint: PathBuf,
        base: Box<ModelSource>,
    },
    /// A CODI checkpoint (`codi.*` and `prj.*` keys; a file, a folder or a hub repo), with the
    /// source that provides `config.json` and `tokenizer.json`.
    Codi {
        checkpoint: CodiCheckpoint,
        base: Box<ModelSource>,
    },
}

/// The files a model is built from.
#[derive(Debug, Clone)]
pub struct ModelFiles {
    pub config: PathBuf,
    pub tokenizer: PathBuf,
    pub weights: WeightFiles,
}

#[derive(Debug, Clone)]
pub enum WeightFiles {
    Safetensors(Vec<PathBuf>),
    CoconutCheckpoint(PathBuf),
    Codi(CodiFiles),
}

impl fmt::Display for ModelSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Local(p) => write!(f, "{}", p.display()),
            Self::Hub {
                repo,
                revision: Some(r),
            } => write!(f, "{repo}@{r}"),
            Self::Hub {
                repo,
                revision: None,
            } => write!(f, "{repo}"),
            Self::Coconut { checkpoint, base } => {
                write!(f, "{} (base {base})", checkpoint.display())
            }
            Self::Codi { checkpoint, base } => write!(f, "{checkpoint} (CODI, base {base})"),
        }
    }
}

fn is_hub_id(s: &str) -> bool {
    let id = s.split_once('@').map_or(s, |(id, _)| id);
    let valid = |part: &str| {
        !part.is_empty()
            && !part.starts_with('.')
            && part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    };
    matches!(id.split_once('/'), Some((owner, name)) if valid(owner) && valid(name))
}

impl ModelSource {
    /// Interprets `--model SRC` and `--base SRC`.
    pub fn parse(model: &str, base: Option<&str>) -> Result<Self> {
        let path = Path::new(model);
        if path.is_file() {
            let Some(base) = base else {
                bail!(
                    "{model} is a file: a Coconut or CODI checkpoint needs --base SRC (the folder or hub id with config.json and tokenizer.json)"
                );
            };
            let base = Self::parse_base(base)?;
            if is_codi_checkpoint(path) {
                return Ok(Self::Codi {
                    checkpoint: CodiCheckpoint::File(path.to_path_buf()),
                    base,
                });
            }
            return Ok(Self::Coconut {
                checkpoint: path.to_path_buf(),
                base,
            });
        }
        if let Some(base) = base {
            // A folder or hub repo with a base: a CODI checkpoint.
            let checkpoint = if path.is_dir() {
                CodiCheckpoint::Folder(path.to_path_buf())
            } else if let Self::Hub { repo, revision } = Self::parse(model, None)? {
                CodiCheckpoint::Hub { repo, revision }
            } else {
                bail!(
                    "--base is only used with a checkpoint as --model: a Coconut or CODI checkpoint file, or a CODI checkpoint folder or hub repo"
                );
            };
            return Ok(Self::Codi {
                checkpoint,
                base: Self::parse_base(base)?,
            });
        }
        if path.is_dir() {
            return Ok(Self::Local(path.to_path_buf()));
        }
        if is_hub_id(model) && !model.starts_with("./") {
            let (repo, revision) = match model.split_once('@') {
                Some((r, rev)) if !rev.is_empty() => (r.to_string(), Some(rev.to_string())),
                Some(_) => bail!("empty revision in \"{model}\""),
                None => (model.to_string(), None),
            };
            return Ok(Self::Hub { repo, revision });
        }
        bail!("{model}: no such folder or file (and not a hub id of the form owner/name)")
    }

    /// `--base`: a model folder or hub id.
    fn parse_base(base: &str) -> Result<Box<Self>> {
        let base = Self::parse(base, None).context("--base")?;
        if matches!(base, Self::Coconut { .. } | Self::Codi { .. }) {
            bail!("--base must be a model folder or hub id, not a checkpoint file");
        }
        Ok(Box::new(base))
    }

    /// Finds (and for hub ids, downloads when needed) the files of the model.
    pub fn resolve(&self) -> Result<ModelFiles> {
        match self {
            Self::Local(dir) => resolve_local(dir),
            Self::Hub { repo, revision } => resolve_hub(repo, revision.as_deref()),
            Self::Coconut { checkpoint, base } => {
                // The checkpoint carries the weights: of the base only its config and
                // tokenizer are read (a hub base downloads no weights).
                let (config, tokenizer) = base.config_and_tokenizer()?;
                Ok(ModelFiles {
                    config,
                    tokenizer,
                    weights: WeightFiles::CoconutCheckpoint(checkpoint.clone()),
                })
            }
            Self::Codi { checkpoint, base } => {
                let (config, tokenizer) = base.config_and_tokenizer()?;
                Ok(ModelFiles {
                    config,
                    tokenizer,
                    weights: WeightFiles::Codi(checkpoint.resolve()?),
                })
            }
        }
    }

    /// `config.json` and `tokenizer.json` of a folder or hub id (downloaded when needed).
    fn config_and_tokenizer(&self) -> Result<(PathBuf, PathBuf)> {
        match self {
            Self::Local(dir) => local_config_and_tokenizer(dir),
            Self::Hub { repo, revision } => {
                let mut repo = HubRepo::new(repo, revision.as_deref());
                Ok((repo.get("config.json")?, repo.get("tokenizer.json")?))
            }
            Self::Coconut { .. } | Self::Codi { .. } => {
                bail!("--base must be a model folder or hub id")
            }
        }
    }
}

fn local_config_and_tokenizer(dir: &Path) -> Result<(PathBuf, PathBuf)> {
    let need = |name: &str| -> Result<PathBuf> {
        let p = dir.join(name);
        if !p.is_file() {
            bail!("{}: missing {name}", dir.display());
        }
        Ok(p)
    };
    Ok((need("config.json")?, need("tokenizer.json")?))
}

fn resolve_local(dir: &Path) -> Result<ModelFiles> {
    let (config, tokenizer) = local_config_and_tokenizer(dir)?;
    let single = dir.join("model.safetensors");
    let index = dir.join("model.safetensors.index.json");
    let weights = if single.is_file() {
        vec![single]
    } else if index.is_file() {
        super::weights::MmapSafetensors::shard_paths(&index)?
    } else {
        bail!(
            "{}: missing model.safetensors (or model.safetensors.index.json)",
            dir.display()
        );
    };
    Ok(ModelFiles {
        config,
        tokenizer,
        weights: WeightFiles::Safetensors(weights),
    })
}

/// The hub cache: `HF_HUB_CACHE`, else `HF_HOME/hub`, else `~/.cache/huggingface/hub`.
pub fn hub_cache() -> hf_hub::Cache {
    match std::env::var_os("HF_HUB_CACHE") {
        Some(p) if !p.is_empty() => hf_hub::Cache::new(PathBuf::from(p)),
        _ => hf_hub::Cache::from_env(),
    }
}

fn offline() -> bool {
    std::env::var("HF_HUB_OFFLINE")
        .map(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"))
        .unwrap_or(false)
}

struct HubRepo {
    cache: hf_hub::Cache,
    repo: Repo,
    label: String,
    api: Option<hf_hub::api::sync::ApiRepo>,
}

impl HubRepo {
    fn new(id: &str, revision: Option<&str>) -> Self {
        let rev = revision.unwrap_or("main").to_string();
        Self {
            cache: hub_cache(),
            repo: Repo::with_revision(id.to_string(), RepoType::Model, rev),
            label: match revision {
                Some(r) => format!("{id}@{r}"),
                None => id.to_string(),
            },
            api: None,
        }
    }

    /// A file already in the cache, by branch/tag ref or by commit hash.
    fn cached(&self, file: &str) -> Option<PathBuf> {
        if let Some(p) = self.cache.repo(self.repo.clone()).get(file) {
            return Some(p);
        }
        let rev = self.repo.revision();
        if rev.len() == 40 && rev.chars().all(|c| c.is_ascii_hexdigit()) {
            let p = self
                .cache
                .path()
                .join(self.repo.folder_name())
                .join("snapshots")
                .join(rev)
                .join(file);
            if p.is_file() {
                return Some(p);
            }
        }
        None
    }

    fn api(&mut self) -> Result<&hf_hub::api::sync::ApiRepo> {
        if self.api.is_none() {
            let token = std::env::var("HF_TOKEN")
                .ok()
                .filter(|t| !t.is_empty())
                .or_else(|| self.cache.token());
            let api = hf_hub::api::sync::ApiBuilder::from_cache(self.cache.clone())
                .with_progress(false)
                .with_token(token)
                .build()
                .context("cannot set up the Hugging Face hub client")?;
            self.api = Some(api.repo(self.repo.clone()));
        }
        Ok(self.api.as_ref().expect("just set"))
    }

    fn get(&mut self, file: &str) -> Result<PathBuf> {
        if let Some(p) = self.cached(file) {
            return Ok(p);
        }
        if offline() {
            bail!(
                "{}: {file} is not in the Hugging Face cache ({}) and HF_HUB_OFFLINE is set",
                self.label,
                self.cache.path().display()
            );
        }
        eprintln!("downloading {file} from {} ...", self.label);
        let label = self.label.clone();
        let cache_dir = self.cache.path().display().to_string();
        self.api()?.get(file).map_err(|e| {
            anyhow::anyhow!(
                "{label}: {file} is not in the Hugging Face cache ({cache_dir}) and the download failed: {e}"
            )
        })
    }
}

fn resolve_hub(id: &str, revision: Option<&str>) -> Result<ModelFiles> {
    let mut repo = HubRepo::new(id, revision);
    let (config, tokenizer) = (repo.get("config.json")?, repo.get("tokenizer.json")?);
    let weights = if let Some(p) = repo.cached("model.safetensors") {
        vec![p]
    } else if let Some(index) = repo.cached("model.safetensors.index.json") {
        shards_from_hub(&mut repo, &index)?
    } else {
        match repo.get("model.safetensors") {
            Ok(p) => vec![p],
            Err(single_err) => match repo.get("model.safetensors.index.json") {
                Ok(index) => shards_from_hub(&mut repo, &index)?,
                Err(_) => return Err(single_err),
            },
        }
    };
    Ok(ModelFiles {
        config,
        tokenizer,
        weights: WeightFiles::Safetensors(weights),
    })
}

/// The first of `names` that hub repo `id` has: cached, else downloaded in that order.
pub(super) fn hub_first_of(id: &str, revision: Option<&str>, names: &[&str]) -> Result<PathBuf> {
    let mut repo = HubRepo::new(id, revision);
    if let Some(p) = names.iter().find_map(|n| repo.cached(n)) {
        return Ok(p);
    }
    let mut first_err = None;
    for name in names {
        match repo.get(name) {
            Ok(p) => return Ok(p),
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    Err(first_err.unwrap_or_else(|| anyhow::anyhow!("{id}: no file asked for")))
}

/// An optional file of hub repo `id`: cached, else downloaded; `None` when it cannot be had.
pub(super) fn hub_optional(id: &str, revision: Option<&str>, name: &str) -> Option<PathBuf> {
    let mut repo = HubRepo::new(id, revision);
    if let Some(p) = repo.cached(name) {
        return Some(p);
    }
    if offline() {
        return None;
    }
    repo.api().ok()?.get(name).ok()
}

fn shards_from_hub(repo: &mut HubRepo, index: &Path) -> Result<Vec<PathBuf>> {
    let listed = super::weights::MmapSafetensors::shard_paths(index)?;
    listed
        .iter()
        .map(|p| {
            let name = p
                .file_name()
                .and_then(|n| n.to_str())
                .context("bad shard name")?;
            repo.get(name)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_ids_are_recognised() {
        assert!(is_hub_id("openai-community/gpt2"));
        assert!(is_hub_id("meta-llama/Llama-3.2-1B@main"));
        assert!(!is_hub_id("gpt2"));
        assert!(!is_hub_id("a/b/c"));
        assert!(!is_hub_id("/abs/path"));
        assert!(!is_hub_id("../x"));
    }

    #[test]
    fn parse_distinguishes_sources() {
        let src = ModelSource::parse("owner/name@v1", None).unwrap();
        assert_eq!(
            src,
            ModelSource::Hub {
                repo: "owner/name".into(),
                revision: Some("v1".into())
            }
        );
        let err = ModelSource::parse("/definitely/not/here", None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("no such folder"), "{err}");
        // A hub id with a base is a CODI checkpoint repo; a missing path with a base is an error.
        assert!(matches!(
            ModelSource::parse("owner/name", Some("x/y")).unwrap(),
            ModelSource::Codi {
                checkpoint: CodiCheckpoint::Hub { .. },
                ..
            }
        ));
        assert!(ModelSource::parse("./not/here", Some("x/y")).is_err());
    }
}
