//! Safetensors save and checked load.
//!
//! [`load_model`] (and [`load_checked`], for any named set of `F32` tensors) never trusts a file: it checks the size before reading (a model file can only
//! be slightly larger than its tensor data), parses the header, and checks every tensor's name,
//! dtype (`F32` only), shape and finiteness against the expected [`GptConfig`]. Every failure is
//! a [`LoadError`] that names the file and what is wrong.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};

use crate::model::{Gpt, GptConfig};
use crate::train::tmp_path;
use crate::{LmError, Result};

/// Room for the safetensors header (JSON with names, shapes, offsets and optional metadata) on
/// top of the tensor data.
pub const HEADER_ALLOWANCE: u64 = 1 << 20;

/// Why a model file was rejected.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadError {
    pub path: PathBuf,
    pub kind: LoadErrorKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum LoadErrorKind {
    NotFound,
    NotAFile,
    TooLarge {
        size: u64,
        max: u64,
    },
    Io(String),
    NotSafetensors(String),
    MissingTensors(Vec<String>),
    UnexpectedTensors(Vec<String>),
    WrongDtype {
        name: String,
        dtype: String,
    },
    WrongShape {
        name: String,
        got: Vec<usize>,
        want: Vec<usize>,
    },
    NonFinite {
        name: String,
        count: usize,
    },
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = self.path.display();
        fn list(v: &[String]) -> String {
            let mut s = v.iter().take(8).cloned().collect::<Vec<_>>().join(", ");
            if v.len() > 8 {
                s.push_str(&format!(" and {} more", v.len() - 8));
            }
            s
        }
        match &self.kind {
            LoadErrorKind::NotFound => write!(f, "{p}: file not found"),
            LoadErrorKind::NotAFile => write!(
                f,
                "{p}: not a regular file (symbolic links, FIFOs and devices are refused)"
            ),
            LoadErrorKind::TooLarge { size, max } => write!(
                f,
                "{p}: file is {size} bytes, but a model of this architecture takes at most {max} bytes; not read"
            ),
            LoadErrorKind::Io(e) => write!(f, "{p}: cannot read: {e}"),
            LoadErrorKind::NotSafetensors(e) => write!(f, "{p}: not a valid safetensors file: {e}"),
            LoadErrorKind::MissingTensors(v) => write!(f, "{p}: missing tensors: {}", list(v)),
            LoadErrorKind::UnexpectedTensors(v) => {
                write!(f, "{p}: unexpected tensors (not part of the architecture): {}", list(v))
            }
            LoadErrorKind::WrongDtype { name, dtype } => {
                write!(f, "{p}: tensor {name} has dtype {dtype}, expected F32")
            }
            LoadErrorKind::WrongShape { name, got, want } => {
                write!(f, "{p}: tensor {name} has shape {got:?}, expected {want:?}")
            }
            LoadErrorKind::NonFinite { name, count } => {
                write!(f, "{p}: tensor {name} has {count} NaN or infinite values")
            }
        }
    }
}

impl std::error::Error for LoadError {}

/// Saves `model` as safetensors at `path`, atomically (temporary file + rename).
pub fn save_model(model: &Gpt, path: &Path) -> Result<()> {
    save_tensors(&model.tensors(), path)
}

/// Saves named tensors as safetensors at `path`, atomically.
pub fn save_tensors(tensors: &BTreeMap<String, Tensor>, path: &Path) -> Result<()> {
    let map: HashMap<String, Tensor> = tensors
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let tmp = tmp_path(path);
    let res = candle_core::safetensors::save(&map, &tmp)
        .map_err(LmError::from)
        .and_then(|_| {
            std::fs::rename(&tmp, path).map_err(|e| LmError::Io(path.display().to_string(), e))
        });
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}

/// Loads a model of architecture `cfg` from `path`, checking everything (see the module docs).
pub fn load_model(path: &Path, cfg: &GptConfig) -> std::result::Result<Gpt, LoadError> {
    let tensors = load_checked(path, &cfg.param_shapes(), &Device::Cpu)?;
    Gpt::from_tensors(cfg.clone(), tensors).map_err(|e| LoadError {
        path: path.to_path_buf(),
        kind: LoadErrorKind::Io(e.to_string()),
    })
}

/// Loads exactly the `F32` tensors `expected` (name, shape) from the safetensors file at
/// `path` onto `device`, checking size, names, dtypes, shapes and finiteness: any other file is
/// a [`LoadError`] naming it and the first thing wrong.
pub fn load_checked(
    path: &Path,
    expected: &[(String, Vec<usize>)],
    device: &Device,
) -> std::result::Result<BTreeMap<String, Tensor>, LoadError> {
    let err = |kind| LoadError {
        path: path.to_path_buf(),
        kind,
    };
    let data_bytes: u64 = expected
        .iter()
        .map(|(_, s)| s.iter().product::<usize>() as u64 * 4)
        .sum();
    let bytes = read_bounded(path, data_bytes + HEADER_ALLOWANCE)?;
    let st = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| err(LoadErrorKind::NotSafetensors(e.to_string())))?;
    let present: std::collections::BTreeSet<String> =
        st.names().into_iter().map(|s| s.to_string()).collect();
    let missing: Vec<String> = expected
        .iter()
        .filter(|(n, _)| !present.contains(n))
        .map(|(n, _)| n.clone())
        .collect();
    if !missing.is_empty() {
        return Err(err(LoadErrorKind::MissingTensors(missing)));
    }
    let wanted: std::collections::BTreeSet<&String> = expected.iter().map(|(n, _)| n).collect();
    let extra: Vec<String> = present
        .iter()
        .filter(|n| !wanted.contains(n))
        .cloned()
        .collect();
    if !extra.is_empty() {
        return Err(err(LoadErrorKind::UnexpectedTensors(extra)));
    }
    let mut tensors = BTreeMap::new();
    for (name, shape) in expected {
        let view = st
            .tensor(name)
            .map_err(|e| err(LoadErrorKind::NotSafetensors(e.to_string())))?;
        let t = checked_tensor(path, name, &view, shape, device)?;
        tensors.insert(name.clone(), t);
    }
    Ok(tensors)
}

/// The bytes of the untrusted file at `path`, read only if it is a regular file of at most
/// `max` bytes.
pub(crate) fn read_bounded(path: &Path, max: u64) -> std::result::Result<Vec<u8>, LoadError> {
    use rdbench_core::fsutil::{read_untrusted, UntrustedReadError as E};
    read_untrusted(path, max).map_err(|e| LoadError {
        path: path.to_path_buf(),
        kind: match e {
            E::NotFound => LoadErrorKind::NotFound,
            E::NotARegularFile(_) => LoadErrorKind::NotAFile,
            E::TooLarge { size, max } => LoadErrorKind::TooLarge { size, max },
            E::Io(e) => LoadErrorKind::Io(e),
        },
    })
}

/// The tensor `name` of the file at `path` as an `F32` tensor of `shape` on `device`, or why
/// not (another dtype or shape, a NaN or infinity).
pub(crate) fn checked_tensor(
    path: &Path,
    name: &str,
    view: &safetensors::tensor::TensorView<'_>,
    shape: &[usize],
    device: &Device,
) -> std::result::Result<Tensor, LoadError> {
    let err = |kind| LoadError {
        path: path.to_path_buf(),
        kind,
    };
    if view.dtype() != safetensors::Dtype::F32 {
        return Err(err(LoadErrorKind::WrongDtype {
            name: name.to_string(),
            dtype: format!("{:?}", view.dtype()),
        }));
    }
    if view.shape() != shape {
        return Err(err(LoadErrorKind::WrongShape {
            name: name.to_string(),
            got: view.shape().to_vec(),
            want: shape.to_vec(),
        }));
    }
    let data: Vec<f32> = view
        .data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let bad = data.iter().filter(|x| !x.is_finite()).count();
    if bad > 0 {
        return Err(err(LoadErrorKind::NonFinite {
            name: name.to_string(),
            count: bad,
        }));
    }
    Tensor::from_vec(data, shape, device).map_err(|e| err(LoadErrorKind::Io(e.to_string())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> GptConfig {
        GptConfig {
            vocab: 10,
            ctx: 4,
            d_model: 8,
            n_layer: 1,
            n_head: 2,
            d_ff: 16,
            ln_eps: 1e-5,
        }
    }

    fn kind(r: std::result::Result<Gpt, LoadError>) -> LoadErrorKind {
        r.expect_err("load should fail").kind
    }

    #[test]
    fn roundtrip_is_exact() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.safetensors");
        let m = Gpt::new(cfg(), 9).unwrap();
        save_model(&m, &p).unwrap();
        let l = load_model(&p, &cfg()).unwrap();
        for (k, v) in m.tensors() {
            assert_eq!(
                v.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                l.tensors()[&k]
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap()
            );
        }
        assert!(std::fs::metadata(&p).unwrap().len() <= cfg().data_bytes() + HEADER_ALLOWANCE);
    }

    #[test]
    fn every_bad_file_is_rejected_with_its_reason() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.safetensors");
        let m = Gpt::new(cfg(), 9).unwrap();

        assert_eq!(kind(load_model(&p, &cfg())), LoadErrorKind::NotFound);
        assert_eq!(
            kind(load_model(dir.path(), &cfg())),
            LoadErrorKind::NotAFile
        );

        std::fs::write(&p, b"this is not a safetensors file at all").unwrap();
        assert!(matches!(
            kind(load_model(&p, &cfg())),
            LoadErrorKind::NotSafetensors(_)
        ));

        let mut t = m.tensors();
        let w = t.remove("wpe").unwrap();
        t.insert("pos_embedding".into(), w.clone());
        save_tensors(&t, &p).unwrap();
        assert_eq!(
            kind(load_model(&p, &cfg())),
            LoadErrorKind::MissingTensors(vec!["wpe".into()])
        );
        t.insert("wpe".into(), w);
        save_tensors(&t, &p).unwrap();
        assert_eq!(
            kind(load_model(&p, &cfg())),
            LoadErrorKind::UnexpectedTensors(vec!["pos_embedding".into()])
        );

        let mut t = m.tensors();
        t.insert(
            "ln_f.bias".into(),
            Tensor::zeros(9, candle_core::DType::F32, &Device::Cpu).unwrap(),
        );
        save_tensors(&t, &p).unwrap();
        assert!(
            matches!(kind(load_model(&p, &cfg())), LoadErrorKind::WrongShape { name, .. } if name == "ln_f.bias")
        );

        let mut t = m.tensors();
        t.insert(
            "wte".into(),
            t["wte"].to_dtype(candle_core::DType::F16).unwrap(),
        );
        save_tensors(&t, &p).unwrap();
        assert!(
            matches!(kind(load_model(&p, &cfg())), LoadErrorKind::WrongDtype { name, .. } if name == "wte")
        );

        for bad in [f32::NAN, f32::INFINITY] {
            let mut t = m.tensors();
            let mut v = t["wte"].flatten_all().unwrap().to_vec1::<f32>().unwrap();
            v[3] = bad;
            t.insert(
                "wte".into(),
                Tensor::from_vec(v, (10, 8), &Device::Cpu).unwrap(),
            );
            save_tensors(&t, &p).unwrap();
            assert_eq!(
                kind(load_model(&p, &cfg())),
                LoadErrorKind::NonFinite {
                    name: "wte".into(),
                    count: 1
                }
            );
        }

        // A huge (sparse) file is refused from its size, without reading it.
        let f = std::fs::File::create(&p).unwrap();
        f.set_len(8 << 30).unwrap();
        let e = load_model(&p, &cfg()).err().unwrap();
        assert!(matches!(e.kind, LoadErrorKind::TooLarge { .. }));
        assert!(e.to_string().contains("m.safetensors"), "{e}");
    }
}
