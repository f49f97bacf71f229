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

/// `w.t().contiguous()` of a matrix: on the CPU a cache-blocked transpose (candle's strided
/// copy, element by element, took 40% of loading GPT-2 for its `[in, out]` Conv1D weights).
pub fn transposed(w: &Tensor) -> candle_core::Result<Tensor> {
    use candle_core::{CpuStorage, Storage, WithDType};
    fn flip<T: WithDType + Default>(
        src: &[T],
        (rows, cols): (usize, usize),
        device: &Device,
    ) -> candle_core::Result<Tensor> {
        let mut out = vec![T::default(); src.len()];
        transpose::transpose(src, &mut out, cols, rows);
        Tensor::from_vec(out, (cols, rows), device)
    }
    let dims = w.dims2()?;
    let (storage, layout) = w.storage_and_layout();
    let (Storage::Cpu(cpu), Some((start, end))) = (&*storage, layout.contiguous_offsets()) else {
        drop(storage);
        return w.t()?.contiguous();
    };
    match cpu {
        CpuStorage::F32(v) => flip(&v[start..end], dims, w.device()),
        CpuStorage::F16(v) => flip(&v[start..end], dims, w.device()),
        CpuStorage::BF16(v) => flip(&v[start..end], dims, w.device()),
        _ => {
            drop(storage);
            w.t()?.contiguous()
        }
    }
}

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

pub(crate) fn check_shape(name: &str, t: &Tensor, expected: &Shape) -> candle_core::Result<()> {
    if t.shape() != expected {
        return Err(candle_core::Error::Msg(format!(
            "tensor {name} has shape {:?}, expected {:?}",
            t.dims(),
            expected.dims()
        )));
    }
    Ok(())
}

/// Classes a `torch.save` state dict names in its pickle (besides the `torch.*Storage` types).
const STATE_DICT_GLOBALS: &[(&str, &str)] = &[
    ("collections", "OrderedDict"),
    ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_parameter"),
    ("torch._tensor", "_rebuild_from_type_v2"),
];

fn is_state_dict_global(module: &str, class: &str) -> bool {
    STATE_DICT_GLOBALS.contains(&(module, class))
        || (module == "torch" && class.ends_with("Storage"))
}

/// The first class or function a pickle names that a state dict never does (`posix.system`,
/// `builtins.eval`, ...), found in the object tree candle's reader builds (nothing is called).
fn foreign_global(obj: &candle_core::pickle::Object) -> Option<String> {
    use candle_core::pickle::Object;
    match obj {
        Object::Class {
            module_name,
            class_name,
        } => (!is_state_dict_global(module_name, class_name))
            .then(|| format!("{module_name}.{class_name}")),
        Object::Tuple(items) | Object::List(items) => items.iter().find_map(foreign_global),
        Object::Dict(pairs) => pairs
            .iter()
            .find_map(|(k, v)| foreign_global(k).or_else(|| foreign_global(v))),
        Object::Reduce { callable, args } | Object::Build { callable, args } => {
            foreign_global(callable).or_else(|| foreign_global(args))
        }
        Object::PersistentLoad(inner) => foreign_global(inner),
        _ => None,
    }
}

/// Refuses a checkpoint whose pickle names anything but a state dict's classes: unpickled by
/// Python such a file would run code. The pickle is only read (candle's reader executes nothing).
fn check_pickle(path: &Path) -> Result<()> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut zip = zip::ZipArchive::new(std::io::BufReader::new(file)).map_err(|e| {
        anyhow::anyhow!(
            "{} is not a readable PyTorch checkpoint (not a torch.save zip: {e})",
            path.display()
        )
    })?;
    let pickles: Vec<String> = zip
        .file_names()
        .filter_map(|n| n.ok())
        .filter(|n| n.ends_with("data.pkl"))
        .map(|n| n.into_owned())
        .collect();
    for name in pickles {
        let entry = zip
            .by_name(&name)
            .with_context(|| format!("cannot read {name} in {}", path.display()))?;
        let mut stack = candle_core::pickle::Stack::empty();
        stack
            .read_loop(&mut std::io::BufReader::new(entry))
            .and_then(|()| stack.finalize())
            .map_err(|e| {
                anyhow::anyhow!(
                    "{} is not a readable PyTorch checkpoint ({name}: {e})",
                    path.display()
                )
            })
            .and_then(|obj| match foreign_global(&obj) {
                Some(call) => bail!(
                    "{}: refused, its pickle calls {call}, which no state dict does (loading it in Python would run code; nothing was run)",
                    path.display()
                ),
                None => Ok(()),
            })?;
    }
    Ok(())
}

/// Where a tensor's values live in a checkpoint: tensors with the same key share storage (tied
/// weights, `embedding.weight` beside `base_causallm.*.wte.weight`).
#[derive(Clone, PartialEq, Eq, Hash)]
struct StorageView {
    storage: String,
    start: usize,
    dims: Vec<usize>,
    stride: Vec<usize>,
}

impl StorageView {
    fn of(info: &candle_core::pickle::TensorInfo) -> Self {
        Self {
            storage: info.path.clone(),
            start: info.layout.start_offset(),
            dims: info.layout.dims().to_vec(),
            stride: info.layout.stride().to_vec(),
        }
    }
}

/// A `torch.save` state dict (zip format), with a key prefix stripped
/// (`base_causallm.` for checkpoints of the official Coconut code).
///
/// Tensors are read one at a time straight from the file into their buffer (candle's
/// `PthTensors`: no copy of the file or of the pickle is held). A view that several keys share
/// (a tied head) is read once and handed out again, not read twice.
pub struct PthCheckpoint {
    inner: candle_core::pickle::PthTensors,
    prefix: String,
    /// Views used by more than one key under the prefix.
    shared_views: std::collections::HashSet<StorageView>,
    /// Those of them already read, by view and dtype.
    loaded: std::sync::Mutex<HashMap<(StorageView, DType), Tensor>>,
}

impl PthCheckpoint {
    pub fn open(path: &Path, prefix: &str) -> Result<Self> {
        check_pickle(path)?;
        let inner = candle_core::pickle::PthTensors::new(path, None).map_err(|e| {
            anyhow::anyhow!(
                "{} is not a readable PyTorch checkpoint ({e})",
                path.display()
            )
        })?;
        let mut uses: HashMap<StorageView, usize> = HashMap::new();
        for (name, info) in inner.tensor_infos() {
            if name.starts_with(prefix) {
                *uses.entry(StorageView::of(info)).or_default() += 1;
            }
        }
        let ckpt = Self {
            inner,
            prefix: prefix.to_string(),
            shared_views: uses
                .into_iter()
                .filter(|&(_, n)| n > 1)
                .map(|(v, _)| v)
                .collect(),
            loaded: std::sync::Mutex::new(HashMap::new()),
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

    fn read(&self, full: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        match self.inner.get(full)? {
            Some(t) => t.to_dtype(dtype)?.to_device(dev),
            None => Err(candle_core::Error::Msg(format!(
                "tensor {full} not found in the checkpoint"
            ))),
        }
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
        let view = self
            .inner
            .tensor_infos()
            .get(&full)
            .map(StorageView::of)
            .filter(|v| self.shared_views.contains(v));
        let Some(view) = view else {
            return self.read(&full, dtype, dev);
        };
        let mut loaded = self
            .loaded
            .lock()
            .map_err(|_| candle_core::Error::Msg("checkpoint reader poisoned".into()))?;
        if let Some(t) = loaded.get(&(view.clone(), dtype)) {
            return Ok(t.clone());
        }
        let t = self.read(&full, dtype, dev)?;
        loaded.insert((view, dtype), t.clone());
        Ok(t)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.inner
            .tensor_infos()
            .contains_key(&format!("{}{name}", self.prefix))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(path: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/models")
            .join(path)
    }

    #[test]
    fn the_blocked_transpose_equals_candles_in_every_float_type() {
        let w = Tensor::arange(0f32, 7. * 130., &Device::Cpu)
            .unwrap()
            .reshape((7, 130))
            .unwrap();
        // A matrix that does not start at its storage's first element.
        let offset = Tensor::arange(0f32, 8. * 130., &Device::Cpu)
            .unwrap()
            .reshape((8, 130))
            .unwrap()
            .narrow(0, 1, 7)
            .unwrap();
        for m in [w.clone(), offset, w.t().unwrap()] {
            for dtype in [DType::F32, DType::F16, DType::BF16, DType::F64] {
                let m = m.to_dtype(dtype).unwrap();
                let ours = transposed(&m).unwrap();
                let theirs = m.t().unwrap().contiguous().unwrap();
                assert_eq!(ours.dims(), theirs.dims());
                assert!(ours.is_contiguous());
                let values = |t: &Tensor| t.to_dtype(DType::F32).unwrap().to_vec2::<f32>().unwrap();
                assert_eq!(values(&ours), values(&theirs), "{dtype:?} {:?}", m.dims());
            }
        }
    }

    #[test]
    fn a_tied_head_is_read_once_and_shared() {
        let ckpt = PthCheckpoint::open(
            &fixture("gpt2-tiny-coconut-ckpt/checkpoint_2"),
            "base_causallm.",
        )
        .unwrap();
        let get = |name: &str| ckpt.get_unchecked(name, DType::F32, &Device::Cpu).unwrap();
        let (wte, head) = (get("transformer.wte.weight"), get("lm_head.weight"));
        assert_eq!(wte.id(), head.id(), "one tensor, not two copies");
        let (ln, ln_again) = (
            get("transformer.ln_f.weight"),
            get("transformer.ln_f.weight"),
        );
        assert_ne!(ln.id(), ln_again.id(), "unshared tensors are not kept");
        assert_eq!(
            ln.to_vec1::<f32>().unwrap(),
            ln_again.to_vec1::<f32>().unwrap()
        );
    }

    #[test]
    fn a_pickle_that_calls_anything_else_is_refused() {
        let path = fixture("malicious-ckpt/checkpoint_1");
        let err = PthCheckpoint::open(&path, "base_causallm.")
            .err()
            .expect("refused")
            .to_string();
        assert!(err.contains("calls posix.system"), "{err}");
        assert!(!err.contains('\n'), "{err}");
    }
}
