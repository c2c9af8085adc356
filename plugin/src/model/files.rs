//! Model files from the user's disk, read as untrusted input.
//!
//! A model folder holds ONNX files and the `manifest.json` that describes
//! them, as Wren's own `models/` folder and the pipeline's output folders
//! do. Reading a model from it checks, before any byte reaches the decoder:
//! that the manifest names the file and records its SHA-256, which must
//! match; that the manifest and the file are plain files under their size
//! limits (a FIFO or a device is never opened); and that weights kept in an
//! external data file lie inside the folder (no absolute path, no `..`, no
//! symbolic link out of it) and within the size limit, after which they are
//! moved into the model itself. The step-model contract (names, shapes,
//! types, operators, operator set) is checked by [`super::onnx::import`].
//!
//! Allocates and does file I/O: never call it on a real-time thread.

use std::io::Read;
use std::path::{Component, Path, PathBuf};

use prost::Message;
use sha2::{Digest, Sha256};
use tract_onnx::pb;

use super::manifest::{Manifest, ModelEntry};
use super::onnx::MAX_MODEL_BYTES;

/// Largest manifest Wren reads.
pub const MAX_MANIFEST_BYTES: u64 = 4 << 20;

/// The manifest's name inside a model folder.
pub const MANIFEST: &str = "manifest.json";

/// Why a model file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The path does not exist.
    #[error("{0} does not exist")]
    Missing(String),
    /// The path exists but is not a plain file.
    #[error("{0} is not a plain file")]
    NotAFile(String),
    /// Reading failed.
    #[error("cannot read {path}: {message}")]
    Unreadable {
        /// The file.
        path: String,
        /// What the system said.
        message: String,
    },
    /// The file is over its size limit.
    #[error("{path} is over the limit of {limit} bytes")]
    TooLarge {
        /// The file.
        path: String,
        /// The limit.
        limit: u64,
    },
    /// The manifest is not valid.
    #[error("the manifest {path} is not valid: {message}")]
    Manifest {
        /// The manifest.
        path: String,
        /// What is wrong with it.
        message: String,
    },
    /// The manifest does not describe the file.
    #[error("the manifest beside {0} has no entry for it, so its SHA-256 cannot be checked")]
    NoEntry(String),
    /// The file's SHA-256 differs from the manifest's.
    #[error("{path} has SHA-256 {actual}, the manifest says {expected}")]
    Checksum {
        /// The file.
        path: String,
        /// What the manifest records.
        expected: String,
        /// What the file hashes to.
        actual: String,
    },
    /// An external data reference is unsafe or broken.
    #[error("external data of {tensor}: {message}")]
    ExternalData {
        /// The tensor whose values live elsewhere.
        tensor: String,
        /// What is wrong.
        message: String,
    },
}

/// A model file read from a folder, checked against its manifest entry.
#[derive(Debug)]
pub struct ModelFile {
    /// The manifest's entry for the file.
    pub entry: ModelEntry,
    /// The ONNX bytes, external data moved inside.
    pub bytes: Vec<u8>,
}

/// Reads the model at `path` and checks it against the manifest in its
/// folder. Allocates; does file I/O.
pub fn read_model(path: &Path) -> Result<ModelFile, FileError> {
    let shown = path.display().to_string();
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| FileError::NotAFile(shown.clone()))?;
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    plain_file(path)?;
    let manifest_path = folder.join(MANIFEST);
    let text = read_capped(&manifest_path, MAX_MANIFEST_BYTES)?;
    let manifest = std::str::from_utf8(&text)
        .map_err(|e| e.to_string())
        .and_then(|t| Manifest::from_json(t).map_err(|e| e.to_string()))
        .map_err(|message| FileError::Manifest {
            path: manifest_path.display().to_string(),
            message,
        })?;
    let entry = manifest
        .models
        .iter()
        .find(|m| m.file == name)
        .cloned()
        .ok_or_else(|| FileError::NoEntry(shown.clone()))?;
    let bytes = read_capped(path, MAX_MODEL_BYTES as u64)?;
    let actual = sha256_hex(&bytes);
    if !actual.eq_ignore_ascii_case(&entry.sha256) {
        return Err(FileError::Checksum {
            path: shown,
            expected: entry.sha256.clone(),
            actual,
        });
    }
    let bytes = inline_external_data(bytes, &folder)?;
    Ok(ModelFile { entry, bytes })
}

/// The metadata of a plain file (following links): a FIFO, a device or a
/// folder is refused before anything opens it.
fn plain_file(path: &Path) -> Result<std::fs::Metadata, FileError> {
    let shown = path.display().to_string();
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(FileError::Missing(shown)),
        Err(e) => Err(FileError::Unreadable {
            path: shown,
            message: e.to_string(),
        }),
        Ok(metadata) if !metadata.is_file() => Err(FileError::NotAFile(shown)),
        Ok(metadata) => Ok(metadata),
    }
}

/// Reads a plain file of at most `limit` bytes.
pub fn read_capped(path: &Path, limit: u64) -> Result<Vec<u8>, FileError> {
    let shown = || path.display().to_string();
    let unreadable = |e: std::io::Error| FileError::Unreadable {
        path: shown(),
        message: e.to_string(),
    };
    let metadata = plain_file(path)?;
    if metadata.len() > limit {
        return Err(FileError::TooLarge {
            path: shown(),
            limit,
        });
    }
    let file = std::fs::File::open(path).map_err(unreadable)?;
    let mut bytes = Vec::with_capacity(metadata.len() as usize);
    // A file that grows while it is read stops one byte past the limit.
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(unreadable)?;
    if bytes.len() as u64 > limit {
        return Err(FileError::TooLarge {
            path: shown(),
            limit,
        });
    }
    Ok(bytes)
}

/// Resolves an external data location inside `folder`: relative, without
/// `..`, and not leading out of the folder through a symbolic link.
pub fn confined(folder: &Path, location: &str) -> Result<PathBuf, String> {
    let relative = Path::new(location);
    if location.is_empty() {
        return Err("no location".into());
    }
    for component in relative.components() {
        match component {
            Component::Normal(_) | Component::CurDir => {}
            Component::ParentDir => return Err(format!("{location:?} leads out of the folder")),
            Component::RootDir | Component::Prefix(_) => {
                return Err(format!("{location:?} is an absolute path"))
            }
        }
    }
    let path = folder.join(relative);
    let root = folder
        .canonicalize()
        .map_err(|e| format!("the model's folder: {e}"))?;
    let real = path
        .canonicalize()
        .map_err(|e| format!("{location:?}: {e}"))?;
    if !real.starts_with(&root) {
        return Err(format!(
            "{location:?} is a link to {}, outside the model's folder",
            real.display()
        ));
    }
    Ok(path)
}

/// Moves the values of tensors stored in external data files into the
/// model, after checking every reference. Returns the bytes unchanged when
/// nothing is external.
fn inline_external_data(bytes: Vec<u8>, folder: &Path) -> Result<Vec<u8>, FileError> {
    // Bytes that do not decode are left for the importer to refuse.
    let Ok(mut model) = pb::ModelProto::decode(bytes.as_slice()) else {
        return Ok(bytes);
    };
    let Some(graph) = model.graph.as_mut() else {
        return Ok(bytes);
    };
    let external = pb::tensor_proto::DataLocation::External as i32;
    let mut budget = (MAX_MODEL_BYTES as u64).saturating_sub(bytes.len() as u64);
    let mut changed = false;
    for tensor in &mut graph.initializer {
        if tensor.data_location != Some(external) && tensor.external_data.is_empty() {
            continue;
        }
        let fail = |message: String| FileError::ExternalData {
            tensor: tensor.name.clone(),
            message,
        };
        let field = |key: &str| {
            tensor
                .external_data
                .iter()
                .find(|e| e.key == key)
                .map(|e| e.value.clone())
        };
        let number = |key: &str| -> Result<u64, FileError> {
            field(key).map_or(Ok(0), |v| {
                v.parse()
                    .map_err(|_| fail(format!("{key} {v:?} is not a byte count")))
            })
        };
        let location = field("location").unwrap_or_default();
        let path = confined(folder, &location).map_err(fail)?;
        let (offset, length) = (number("offset")?, number("length")?);
        let data =
            read_capped(&path, offset.saturating_add(budget)).map_err(|e| fail(e.to_string()))?;
        let available = (data.len() as u64).saturating_sub(offset);
        let length = if field("length").is_some() {
            length
        } else {
            available
        };
        if offset > data.len() as u64 || length > available {
            return Err(fail(format!(
                "{length} bytes at offset {offset} do not lie within {location:?} ({} bytes)",
                data.len()
            )));
        }
        if length > budget {
            return Err(fail(format!(
                "the model is over the limit of {MAX_MODEL_BYTES} bytes"
            )));
        }
        budget -= length;
        tensor.raw_data = data[offset as usize..(offset + length) as usize].to_vec();
        tensor.external_data.clear();
        tensor.data_location = None;
        changed = true;
    }
    Ok(if changed {
        model.encode_to_vec()
    } else {
        bytes
    })
}

/// The SHA-256 of some bytes, as the manifest records it.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}
