//! Comparing a run's output tensors (safetensors files) with the reference program's.
//!
//! The **distance** is `D = Σ_tensors ‖A_t − B_t‖_F`: for each tensor the Frobenius norm (the
//! square root of the sum of squared element differences), summed over tensors, computed in
//! f64 from the stored values. It is what the only complete weight-comparison code of
//! RE-Bench's "Optimize LLM Foundry" computes (its score.py calls it an "L1 norm"; it is a sum
//! of per-tensor L2 norms). The largest single difference (`max_abs`) is reported beside it.
//!
//! Before any arithmetic the two files must have the same tensor names, each with the same
//! shape and dtype, and every value finite: anything else is a [`Mismatch`], which a task
//! reports as a malformed artifact. The `safetensors` crate parses the header with its own caps
//! (offsets checked, header at most 100 MB); the caller bounds the file's size before reading.

use std::collections::BTreeMap;

use safetensors::{Dtype, SafeTensors};
use serde::Serialize;

/// How far one set of tensors is from another.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Distance {
    /// `Σ_t ‖A_t − B_t‖_F`.
    pub sum_frobenius: f64,
    /// `max |A − B|` over every element of every tensor.
    pub max_abs: f64,
    /// Each tensor's Frobenius norm of the difference.
    pub per_tensor: BTreeMap<String, f64>,
}

/// Why two tensor files cannot be compared.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Mismatch {
    #[error("not a valid safetensors file: {0}")]
    NotSafetensors(String),
    #[error("missing tensors: {}", .0.join(", "))]
    Missing(Vec<String>),
    #[error("unexpected tensors: {}", .0.join(", "))]
    Unexpected(Vec<String>),
    #[error("tensor {name} is {got}, the reference's is {want}")]
    Layout {
        name: String,
        got: String,
        want: String,
    },
    #[error("tensor {name} has dtype {dtype}, which is not compared (F64, F32, F16, BF16 are)")]
    Dtype { name: String, dtype: String },
    #[error("tensor {name} has {count} NaN or infinite values")]
    NonFinite { name: String, count: usize },
}

/// Tensors read from a safetensors file, widened to f64.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensors {
    pub tensors: BTreeMap<String, Tensor>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub dtype: String,
    pub shape: Vec<usize>,
    pub values: Vec<f64>,
}

impl Tensor {
    fn layout(&self) -> String {
        format!("{} {:?}", self.dtype, self.shape)
    }
}

fn widen(name: &str, dtype: Dtype, data: &[u8]) -> Result<Vec<f64>, Mismatch> {
    let chunks = |n: usize| data.chunks_exact(n);
    Ok(match dtype {
        Dtype::F64 => chunks(8)
            .map(|c| f64::from_le_bytes(c.try_into().unwrap_or_default()))
            .collect(),
        Dtype::F32 => chunks(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap_or_default()) as f64)
            .collect(),
        Dtype::BF16 => chunks(2)
            .map(|c| f32::from_bits((u16::from_le_bytes([c[0], c[1]]) as u32) << 16) as f64)
            .collect(),
        Dtype::F16 => chunks(2)
            .map(|c| f16_to_f64(u16::from_le_bytes([c[0], c[1]])))
            .collect(),
        other => {
            return Err(Mismatch::Dtype {
                name: name.into(),
                dtype: format!("{other:?}"),
            })
        }
    })
}

fn f16_to_f64(h: u16) -> f64 {
    let sign = if h & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exp = ((h >> 10) & 0x1f) as i32;
    let frac = (h & 0x3ff) as f64;
    match exp {
        0 => sign * frac * 2f64.powi(-24),
        31 if frac == 0.0 => sign * f64::INFINITY,
        31 => f64::NAN,
        e => sign * (1.0 + frac / 1024.0) * 2f64.powi(e - 15),
    }
}

impl Tensors {
    /// Parses a safetensors file's bytes; every value must be finite.
    pub fn parse(bytes: &[u8]) -> Result<Tensors, Mismatch> {
        let st =
            SafeTensors::deserialize(bytes).map_err(|e| Mismatch::NotSafetensors(e.to_string()))?;
        let mut tensors = BTreeMap::new();
        for (name, view) in st.tensors() {
            let values = widen(&name, view.dtype(), view.data())?;
            let bad = values.iter().filter(|v| !v.is_finite()).count();
            if bad > 0 {
                return Err(Mismatch::NonFinite { name, count: bad });
            }
            tensors.insert(
                name,
                Tensor {
                    dtype: format!("{:?}", view.dtype()),
                    shape: view.shape().to_vec(),
                    values,
                },
            );
        }
        Ok(Tensors { tensors })
    }

    /// The distance from `reference`, or why the two cannot be compared.
    pub fn distance(&self, reference: &Tensors) -> Result<Distance, Mismatch> {
        let missing: Vec<String> = reference
            .tensors
            .keys()
            .filter(|k| !self.tensors.contains_key(*k))
            .cloned()
            .collect();
        if !missing.is_empty() {
            return Err(Mismatch::Missing(missing));
        }
        let unexpected: Vec<String> = self
            .tensors
            .keys()
            .filter(|k| !reference.tensors.contains_key(*k))
            .cloned()
            .collect();
        if !unexpected.is_empty() {
            return Err(Mismatch::Unexpected(unexpected));
        }
        let mut d = Distance {
            sum_frobenius: 0.0,
            max_abs: 0.0,
            per_tensor: BTreeMap::new(),
        };
        for (name, want) in &reference.tensors {
            let got = &self.tensors[name];
            if got.dtype != want.dtype || got.shape != want.shape {
                return Err(Mismatch::Layout {
                    name: name.clone(),
                    got: got.layout(),
                    want: want.layout(),
                });
            }
            let mut sq = 0.0;
            for (a, b) in got.values.iter().zip(&want.values) {
                let diff = (a - b).abs();
                sq += diff * diff;
                d.max_abs = d.max_abs.max(diff);
            }
            let norm = sq.sqrt();
            d.sum_frobenius += norm;
            d.per_tensor.insert(name.clone(), norm);
        }
        Ok(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use safetensors::tensor::TensorView;

    fn file(tensors: &[(&str, Dtype, Vec<usize>, Vec<u8>)]) -> Vec<u8> {
        let views: Vec<(String, TensorView)> = tensors
            .iter()
            .map(|(n, d, s, b)| (n.to_string(), TensorView::new(*d, s.clone(), b).unwrap()))
            .collect();
        safetensors::serialize(views, None).unwrap()
    }

    fn f32s(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    #[test]
    fn the_distance_is_a_sum_of_per_tensor_frobenius_norms() {
        let a = file(&[
            ("w", Dtype::F32, vec![2], f32s(&[0.0, 0.0])),
            ("b", Dtype::F32, vec![1], f32s(&[1.0])),
        ]);
        let b = file(&[
            ("w", Dtype::F32, vec![2], f32s(&[3.0, 4.0])),
            ("b", Dtype::F32, vec![1], f32s(&[-1.0])),
        ]);
        let (a, b) = (Tensors::parse(&a).unwrap(), Tensors::parse(&b).unwrap());
        let d = a.distance(&b).unwrap();
        // ‖(3, 4)‖ = 5, ‖(2)‖ = 2: 7, not the global norm √29 nor the L1 norm 9.
        assert_eq!(d.sum_frobenius, 7.0);
        assert_eq!(d.max_abs, 4.0);
        assert_eq!(d.per_tensor["w"], 5.0);
        assert_eq!(a.distance(&a).unwrap().sum_frobenius, 0.0);
    }

    #[test]
    fn names_shapes_dtypes_and_finiteness_must_match() {
        let r = Tensors::parse(&file(&[("w", Dtype::F32, vec![2], f32s(&[1.0, 2.0]))])).unwrap();
        let other_name =
            Tensors::parse(&file(&[("v", Dtype::F32, vec![2], f32s(&[1.0, 2.0]))])).unwrap();
        assert!(matches!(other_name.distance(&r), Err(Mismatch::Missing(_))));
        let extra = Tensors::parse(&file(&[
            ("w", Dtype::F32, vec![2], f32s(&[1.0, 2.0])),
            ("v", Dtype::F32, vec![1], f32s(&[1.0])),
        ]))
        .unwrap();
        assert!(matches!(extra.distance(&r), Err(Mismatch::Unexpected(_))));
        let shape =
            Tensors::parse(&file(&[("w", Dtype::F32, vec![1, 2], f32s(&[1.0, 2.0]))])).unwrap();
        assert!(matches!(shape.distance(&r), Err(Mismatch::Layout { .. })));
        let bf16 = Tensors::parse(&file(&[(
            "w",
            Dtype::BF16,
            vec![2],
            vec![0x80, 0x3f, 0x00, 0x40],
        )]))
        .unwrap();
        assert_eq!(bf16.tensors["w"].values, [1.0, 2.0]);
        assert!(matches!(bf16.distance(&r), Err(Mismatch::Layout { .. })));
        assert!(matches!(
            Tensors::parse(&file(&[("w", Dtype::F32, vec![1], f32s(&[f32::NAN]))])),
            Err(Mismatch::NonFinite { count: 1, .. })
        ));
        assert!(matches!(
            Tensors::parse(&file(&[("w", Dtype::I32, vec![1], vec![0; 4])])),
            Err(Mismatch::Dtype { .. })
        ));
        assert!(matches!(
            Tensors::parse(b"not a file"),
            Err(Mismatch::NotSafetensors(_))
        ));
        // A header length of 2^60 is refused without allocating it.
        let mut huge = (1u64 << 60).to_le_bytes().to_vec();
        huge.extend_from_slice(b"{}");
        assert!(matches!(
            Tensors::parse(&huge),
            Err(Mismatch::NotSafetensors(_))
        ));
    }

    #[test]
    fn half_precision_widens_exactly() {
        assert_eq!(f16_to_f64(0x3c00), 1.0);
        assert_eq!(f16_to_f64(0xc000), -2.0);
        assert_eq!(f16_to_f64(0x0001), 2f64.powi(-24));
        assert!(f16_to_f64(0x7e00).is_nan());
    }
}
