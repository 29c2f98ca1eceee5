//! Self-describing weight files: safetensors whose metadata holds the [`ModelSpec`] and any
//! extra facts the caller attaches (normalisation, class names, the training config).
//!
//! A file is written to a temporary name beside its target, synced and renamed, so a crash
//! leaves either the old file or the new one, never half of one. Reading validates the header
//! before any tensor is touched, so a truncated or foreign file is an error naming the file.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::prelude::*;
use burn::store::{ModuleSnapshot, SafetensorsStore};

use crate::graph::quant::QuantRecord;
use crate::graph::{GraphDef, GraphNet};
use crate::{build_model, KeenModel, ModelError, ModelSpec};

/// Metadata key under which the [`ModelSpec`] is stored, as JSON.
pub const SPEC_KEY: &str = "keen.model_spec";
/// Metadata key of a graph model's structure and quantization state ([`GraphFile`], JSON).
/// Present only for graph models; others are rebuilt from the registry.
pub const GRAPH_KEY: &str = "keen.graph";

/// Metadata key of a pruned ViT's or DeiT's block shapes (JSON list of
/// [`BlockShape`](crate::vit::BlockShape)); absent when every block has the registry's shape.
pub const BLOCKS_KEY: &str = "keen.transformer_blocks";

/// Metadata key of a ViT's or DeiT's quantization state ([`QuantRecord`], JSON): present only
/// when its linear layers are quantized ([`crate::linear_quant`]).
pub const LINEAR_QUANT_KEY: &str = "keen.linear_quant";

/// What a graph model's file stores besides its tensors.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct GraphFile {
    /// The structure.
    pub graph: GraphDef,
    /// Quantization settings and activation ranges.
    pub quant: QuantRecord,
}

/// A model read back from a weight file, with everything its file said about it.
pub struct LoadedModel {
    /// The model, on the device it was loaded to.
    pub model: KeenModel,
    /// Its architecture.
    pub spec: ModelSpec,
    /// The extra metadata written with it.
    pub metadata: BTreeMap<String, String>,
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> ModelError + '_ {
    move |source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn bad(path: &Path, reason: impl Into<String>) -> ModelError {
    ModelError::BadWeights {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Writes `bytes` to `path` atomically: a temporary file in the same folder, fsync, rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), std::io::Error> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&dir)?;
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{file_name}.{}.tmp", std::process::id()));
    {
        let mut file = fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    // Make the rename itself durable.
    if let Ok(dir) = fs::File::open(&dir) {
        let _ = dir.sync_all();
    }
    Ok(())
}

/// Serialises `model` with its `spec` and `metadata` to safetensors bytes.
pub fn to_bytes(
    model: &KeenModel,
    spec: &ModelSpec,
    metadata: &BTreeMap<String, String>,
) -> Result<Vec<u8>, String> {
    let spec_json = serde_json::to_string(spec).map_err(|e| e.to_string())?;
    let mut store = SafetensorsStore::from_bytes(None).metadata(SPEC_KEY, spec_json);
    if let KeenModel::Graph(graph) = model {
        let file = GraphFile {
            graph: graph.graph().clone(),
            quant: graph.quant_state().record(),
        };
        let json = serde_json::to_string(&file).map_err(|e| e.to_string())?;
        store = store.metadata(GRAPH_KEY, json);
    }
    if let Some(state) = model.linear_quant().filter(|s| s.config.enabled) {
        let json = serde_json::to_string(&state.record()).map_err(|e| e.to_string())?;
        store = store.metadata(LINEAR_QUANT_KEY, json);
    }
    if let Some(shapes) = model.pruned_block_shapes() {
        let json = serde_json::to_string(&shapes).map_err(|e| e.to_string())?;
        store = store.metadata(BLOCKS_KEY, json);
    }
    for (key, value) in metadata {
        store = store.metadata(key.clone(), value.clone());
    }
    model.save_into(&mut store).map_err(|e| e.to_string())?;
    store.get_bytes().map_err(|e| e.to_string())
}

/// Saves `model` to `path` atomically.
pub fn save(
    model: &KeenModel,
    spec: &ModelSpec,
    metadata: &BTreeMap<String, String>,
    path: &Path,
) -> Result<(), ModelError> {
    let bytes = to_bytes(model, spec, metadata).map_err(|reason| bad(path, reason))?;
    write_atomic(path, &bytes).map_err(io_error(path))
}

/// Reads only the metadata of a safetensors file, checking its header is whole and well-formed.
pub fn read_metadata(path: &Path) -> Result<BTreeMap<String, String>, ModelError> {
    let bytes = fs::read(path).map_err(io_error(path))?;
    parse_metadata(path, &bytes)
}

fn parse_metadata(path: &Path, bytes: &[u8]) -> Result<BTreeMap<String, String>, ModelError> {
    if bytes.len() < 8 {
        return Err(bad(
            path,
            format!(
                "file is {} bytes, too short for a safetensors header",
                bytes.len()
            ),
        ));
    }
    let mut len_bytes = [0u8; 8];
    len_bytes.copy_from_slice(&bytes[..8]);
    let header_len = u64::from_le_bytes(len_bytes) as usize;
    if header_len > bytes.len() - 8 {
        return Err(bad(
            path,
            format!(
                "header claims {header_len} bytes but only {} follow (truncated?)",
                bytes.len() - 8
            ),
        ));
    }
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + header_len])
        .map_err(|e| bad(path, format!("header is not JSON: {e}")))?;
    let mut end = 0usize;
    if let Some(object) = header.as_object() {
        for (name, info) in object {
            if name == "__metadata__" {
                continue;
            }
            let offset_end = info
                .get("data_offsets")
                .and_then(|o| o.get(1))
                .and_then(|v| v.as_u64())
                .ok_or_else(|| bad(path, format!("tensor '{name}' has no data_offsets")))?;
            end = end.max(offset_end as usize);
        }
    }
    let data_len = bytes.len() - 8 - header_len;
    if end > data_len {
        return Err(bad(
            path,
            format!("tensor data needs {end} bytes but the file holds {data_len} (truncated?)"),
        ));
    }
    let metadata = header
        .get("__metadata__")
        .and_then(|m| m.as_object())
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
                .collect()
        })
        .unwrap_or_default();
    Ok(metadata)
}

/// Loads a model that keen saved, rebuilding its architecture from the stored [`ModelSpec`].
pub fn load(path: &Path, device: &Device) -> Result<LoadedModel, ModelError> {
    let bytes = fs::read(path).map_err(io_error(path))?;
    let mut metadata = parse_metadata(path, &bytes)?;
    let spec_json = metadata.remove(SPEC_KEY).ok_or_else(|| {
        bad(
            path,
            format!("no '{SPEC_KEY}' metadata: not written by keen"),
        )
    })?;
    let spec: ModelSpec = serde_json::from_str(&spec_json)
        .map_err(|e| bad(path, format!("'{SPEC_KEY}' is not a model spec: {e}")))?;
    let model = match metadata.remove(GRAPH_KEY) {
        Some(json) => {
            let file: GraphFile = serde_json::from_str(&json).map_err(|e| {
                bad(
                    path,
                    format!("'{GRAPH_KEY}' is not a graph description: {e}"),
                )
            })?;
            let graph = GraphNet::from_def(file.graph, Some(file.quant), device)
                .map_err(|e| bad(path, e.to_string()))?;
            KeenModel::Graph(graph)
        }
        None => build_model(&spec, device)?,
    };
    let model = match metadata.remove(BLOCKS_KEY) {
        Some(json) => {
            let shapes: Vec<crate::vit::BlockShape> = serde_json::from_str(&json).map_err(|e| {
                bad(
                    path,
                    format!("'{BLOCKS_KEY}' is not a list of block shapes: {e}"),
                )
            })?;
            model
                .with_block_shapes(&shapes, device)
                .map_err(|e| bad(path, e.to_string()))?
        }
        None => model,
    };
    let model = match metadata.remove(LINEAR_QUANT_KEY) {
        Some(json) => {
            let record: QuantRecord = serde_json::from_str(&json).map_err(|e| {
                bad(
                    path,
                    format!("'{LINEAR_QUANT_KEY}' is not a quantization record: {e}"),
                )
            })?;
            model
                .with_linear_quant(crate::graph::quant::QuantState::from_record(record))
                .map_err(|e| bad(path, e.to_string()))?
        }
        None => model,
    };
    let model = load_into(model, path, bytes)?;
    Ok(LoadedModel {
        model,
        spec,
        metadata,
    })
}

/// Loads weights from `bytes` (read from `path`) into an already-built `model`.
fn load_into(mut model: KeenModel, path: &Path, bytes: Vec<u8>) -> Result<KeenModel, ModelError> {
    let mut store = SafetensorsStore::from_bytes(Some(bytes));
    let result = model
        .load_from(&mut store)
        .map_err(|e| bad(path, e.to_string()))?;
    if !result.missing.is_empty() || !result.errors.is_empty() {
        return Err(bad(
            path,
            format!(
                "tensors do not match the architecture: missing {:?}, errors {:?}",
                result
                    .missing
                    .iter()
                    .map(|(name, _)| name)
                    .collect::<Vec<_>>(),
                result
                    .errors
                    .iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
            ),
        ));
    }
    // Half-precision exports load as 16-bit tensors; keen computes in f32.
    Ok(model.map(&mut ToF32))
}

/// Casts every floating-point parameter that is not f32 to f32.
struct ToF32;

impl burn::module::ModuleMapper for ToF32 {
    fn map_float<const D: usize>(
        &mut self,
        param: burn::module::Param<Tensor<D>>,
    ) -> burn::module::Param<Tensor<D>> {
        if param.val().dtype() == burn::tensor::DType::F32 {
            return param;
        }
        param.map(|t| t.cast(burn::tensor::DType::F32))
    }
}
