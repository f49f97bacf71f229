//! Weight stores behind `candle_nn::VarBuilder`: memory-mapped safetensors (single or sharded)
//! and PyTorch `torch.save` checkpoints written by the Coconut training code.
//!
//! Safetensors are loaded lazily: a tensor is read only when the model asks for it, copied
//! from the mapping in chunks, and the mapped pages are released right after the copy, so the
//! process never holds the file's pages and the weights at the same time.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use memmap2::Mmap;

#[cfg(target_endian = "big")]
compile_error!(
    "coconut-lens reads little-endian weight files in place and needs a little-endian target"
);

/// Bytes copied between two releases of mapped pages.
const COPY_CHUNK: usize = 8 << 20;

struct Entry {
    file: usize,
    dtype: safetensors::Dtype,
    shape: Vec<usize>,
    /// Absolute byte range in the file.
    start: usize,
    end: usize,
}

/// One or more memory-mapped `.safetensors` files.
pub struct MmapSafetensors {
    maps: Vec<(PathBuf, Mmap)>,
    entries: HashMap<String, Entry>,
}

impl MmapSafetensors {
    /// Maps the given files and validates their headers (a truncated file is an error here).
    pub fn open(paths: &[PathBuf]) -> Result<Self> {
        let mut maps = Vec::with_capacity(paths.len());
        let mut entries = HashMap::new();
        for (file_idx, path) in paths.iter().enumerate() {
            let file =
                File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
            // SAFETY: the mapping is read-only; a weight file changed by another process while
            // we run is outside what any loader can guard against.
            let mmap = unsafe { Mmap::map(&file) }
                .with_context(|| format!("cannot map {}", path.display()))?;
            let (header_len, metadata) =
                safetensors::SafeTensors::read_metadata(&mmap).map_err(|e| {
                    anyhow::anyhow!("{} is not a valid safetensors file ({e:?})", path.display())
                })?;
            let data_start = 8 + header_len;
            for (name, info) in metadata.tensors() {
                entries.insert(
                    name,
                    Entry {
                        file: file_idx,
                        dtype: info.dtype,
                        shape: info.shape.clone(),
                        start: data_start + info.data_offsets.0,
                        end: data_start + info.data_offsets.1,
                    },
                );
            }
            maps.push((path.clone(), mmap));
        }
        Ok(Self { maps, entries })
    }

    /// Files of a sharded checkpoint, from `model.safetensors.index.json`.
    pub fn shard_paths(index: &Path) -> Result<Vec<PathBuf>> {
        let text = std::fs::read_to_string(index)
            .with_context(|| format!("cannot read {}", index.display()))?;
        let value: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not valid JSON", index.display()))?;
        let map = value
            .get("weight_map")
            .and_then(|m| m.as_object())
            .with_context(|| format!("{} has no \"weight_map\"", index.display()))?;
        let dir = index.parent().unwrap_or(Path::new("."));
        let mut files: Vec<PathBuf> = Vec::new();
        for file in map.values() {
            let file = file.as_str().with_context(|| {
                format!("{}: weight_map values must be file names", index.display())
            })?;
            let path = dir.join(file);
            if !files.contains(&path) {
                files.push(path);
            }
        }
        if files.is_empty() {
            bail!("{} lists no weight files", index.display());
        }
        Ok(files)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    pub fn shape(&self, name: &str) -> Option<Vec<usize>> {
        self.entries.get(name).map(|e| e.shape.clone())
    }

    fn load(&self, name: &str) -> Result<Tensor> {
        let entry = self
            .entries
            .get(name)
            .with_context(|| format!("tensor {name} not found in the weights"))?;
        let mmap = &self.maps[entry.file].1;
        let shape = Shape::from(entry.shape.clone());
        let bytes = entry.end - entry.start;
        let tensor = match entry.dtype {
            safetensors::Dtype::F32 => Tensor::from_vec(
                copy_released::<f32>(mmap, entry, bytes)?,
                shape,
                &Device::Cpu,
            )?,
            safetensors::Dtype::F16 => Tensor::from_vec(
                copy_released::<half::f16>(mmap, entry, bytes)?,
                shape,
                &Device::Cpu,
            )?,
            safetensors::Dtype::BF16 => Tensor::from_vec(
                copy_released::<half::bf16>(mmap, entry, bytes)?,
                shape,
                &Device::Cpu,
            )?,
            other => {
                bail!("tensor {name} has unsupported dtype {other:?} (supported: F32, F16, BF16)")
            }
        };
        Ok(tensor)
    }
}

/// Plain-old-data element types a weight file can hold.
trait WeightElem: Copy + Default {}
impl WeightElem for f32 {}
impl WeightElem for half::f16 {}
impl WeightElem for half::bf16 {}

/// Copies `bytes` bytes of `entry` into a typed vector, releasing the mapped pages chunk by chunk.
fn copy_released<T: WeightElem>(mmap: &Mmap, entry: &Entry, bytes: usize) -> Result<Vec<T>> {
    let size = std::mem::size_of::<T>();
    let n: usize = entry.shape.iter().product();
    if n * size != bytes {
        bail!(
            "tensor data size {bytes} does not match shape {:?}",
            entry.shape
        );
    }
    let mut out = vec![T::default(); n];
    // SAFETY: T is f32/f16/bf16, valid for every bit pattern, and the byte view covers exactly `out`.
    let dst = unsafe { std::slice::from_raw_parts_mut(out.as_mut_ptr().cast::<u8>(), bytes) };
    let mut done = 0;
    while done < bytes {
        let len = COPY_CHUNK.min(bytes - done);
        let from = entry.start + done;
        dst[done..done + len].copy_from_slice(&mmap[from..from + len]);
        // SAFETY: the range lies inside the mapping and nothing borrows it after the copy; the
        // read-only private mapping refaults from the file if it is ever touched again.
        #[cfg(unix)]
        unsafe {
            let _ = mmap.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, from, len);
        }
        done += len;
    }
    Ok(out)
}

impl SimpleBackend for MmapSafetensors {
    fn get(
        &self,
        s: Shape,
        name: &str,
        _h: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let t = self.get_unchecked(name, dtype, dev)?;
        check_shape(name, &t, &s)?;
        Ok(t)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        let t = self
            .load(name)
            .map_err(|e| candle_core::Error::Msg(format!("{e:#}")))?;
        t.to_dtype(dtype)?.to_device(dev)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }
}

fn check_shape(name: &str, t: &Tensor, expected: &Shape) -> candle_core::Result<()> {
    if t.shape() != expected {
        return Err(candle_core::Error::Msg(format!(
            "tensor {name} has shape {:?}, expected {:?}",
            t.dims(),
            expected.dims()
        )));
    }
    Ok(())
}

/// A `torch.save` state dict (zip format), with a key prefix stripped
/// (`base_causallm.` for checkpoints of the official Coconut code).
pub struct PthCheckpoint {
    inner: candle_core::pickle::PthTensors,
    prefix: String,
}

impl PthCheckpoint {
    pub fn open(path: &Path, prefix: &str) -> Result<Self> {
        let inner = candle_core::pickle::PthTensors::new(path, None).map_err(|e| {
            anyhow::anyhow!(
                "{} is not a readable PyTorch checkpoint ({e})",
                path.display()
            )
        })?;
        let ckpt = Self {
            inner,
            prefix: prefix.to_string(),
        };
        if ckpt.names().next().is_none() {
            bail!(
                "{} holds no tensors under the prefix \"{prefix}\" (is it a Coconut checkpoint?)",
                path.display()
            );
        }
        Ok(ckpt)
    }

    /// Tensor names with the prefix removed; keys outside the prefix are ignored.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.inner
            .tensor_infos()
            .keys()
            .filter_map(|k| k.strip_prefix(self.prefix.as_str()))
    }

    pub fn shape(&self, name: &str) -> Option<Vec<usize>> {
        let info = self
            .inner
            .tensor_infos()
            .get(&format!("{}{name}", self.prefix))?;
        Some(info.layout.dims().to_vec())
    }
}

impl SimpleBackend for PthCheckpoint {
    fn get(
        &self,
        s: Shape,
        name: &str,
        _h: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let t = self.get_unchecked(name, dtype, dev)?;
        check_shape(name, &t, &s)?;
        Ok(t)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        let full = format!("{}{name}", self.prefix);
        match self.inner.get(&full)? {
            Some(t) => t.to_dtype(dtype)?.to_device(dev),
            None => Err(candle_core::Error::Msg(format!(
                "tensor {full} not found in the checkpoint"
            ))),
        }
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.inner
            .tensor_infos()
            .contains_key(&format!("{}{name}", self.prefix))
    }
}
