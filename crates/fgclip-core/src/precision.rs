//! Compute precision: PyTorch autocast's rule for bf16 (`torch.autocast(dtype=bfloat16)`),
//! as FG-CLIP trains.
//!
//! Parameters stay f32 (the master weights; the optimizer state follows them). Under
//! [`Precision::Bf16`] the matmul-heavy work (the patch embedding, every linear layer, the
//! attention) casts its input and weights to bf16 and runs there; layer norms, residual
//! sums, normalisation, ROI Align and the losses stay f32, because each bf16 block casts
//! its result back. Gradients flow through the casts into the f32 parameters.

use burn::nn::Linear;
use burn::tensor::{DType, Device, FloatDType, Tensor};
use serde::{Deserialize, Serialize};

use crate::error::ConfigError;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Everything in f32.
    #[default]
    F32,
    /// Linear layers, patch embedding and attention in bf16, the rest in f32.
    Bf16,
}

impl Precision {
    /// Parses `f32` or `bf16`.
    pub fn parse(s: &str) -> Result<Self, ConfigError> {
        match s {
            "f32" | "fp32" | "float32" => Ok(Self::F32),
            "bf16" | "bfloat16" => Ok(Self::Bf16),
            other => Err(ConfigError::Invalid {
                field: "precision",
                reason: format!("is `{other}`: use f32 or bf16"),
            }),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::Bf16 => "bf16",
        }
    }

    /// The dtype the bf16 blocks compute in.
    pub fn compute_dtype(self) -> FloatDType {
        match self {
            Self::F32 => FloatDType::F32,
            Self::Bf16 => FloatDType::BF16,
        }
    }

    /// An error naming the device when it cannot compute in this precision (a GPU without
    /// bf16 arithmetic gives garbage rather than failing, so ask first).
    pub fn check_device(self, device: &Device) -> Result<(), ConfigError> {
        self.check_supported(
            device.supports_dtype(self.compute_dtype()),
            &format!("{device:?}"),
        )
    }

    /// The error of [`Self::check_device`] for a device described as `device`.
    pub fn check_supported(self, supported: bool, device: &str) -> Result<(), ConfigError> {
        if supported {
            return Ok(());
        }
        Err(ConfigError::Invalid {
            field: "precision",
            reason: format!(
                "is `{}`, which the device {device} cannot compute in: use f32",
                self.name()
            ),
        })
    }

    /// `x` in the compute dtype (unchanged under f32).
    pub fn enter<const D: usize>(self, x: Tensor<D>) -> Tensor<D> {
        match self {
            Self::F32 => x,
            Self::Bf16 => x.cast(FloatDType::BF16),
        }
    }

    /// `x` back in f32 (unchanged under f32).
    pub fn leave<const D: usize>(self, x: Tensor<D>) -> Tensor<D> {
        match self {
            Self::F32 => x,
            Self::Bf16 => x.cast(FloatDType::F32),
        }
    }
}

/// `l(x)` computed in `x`'s dtype: the f32 weights are cast when `x` is in another one.
pub fn linear_in<const D: usize>(l: &Linear, x: Tensor<D>) -> Tensor<D> {
    let dtype = x.dtype();
    let weight = l.weight.val();
    if weight.dtype() == dtype {
        return crate::fused::linear(x, weight, l.bias.as_ref().map(|b| b.val()));
    }
    let to = float_dtype(dtype);
    crate::gemm::linear(
        x,
        weight.cast(to),
        l.bias.as_ref().map(|b| b.val().cast(to)),
    )
}

/// `a · b` with `b` cast to `a`'s dtype.
pub fn matmul_in<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> Tensor<D> {
    let dtype = a.dtype();
    if b.dtype() == dtype {
        crate::gemm::matmul(a, b)
    } else {
        crate::gemm::matmul(a, b.cast(float_dtype(dtype)))
    }
}

/// The float dtype a tensor of `dtype` casts to (f32 for anything but the other floats).
pub(crate) fn float_dtype(dtype: DType) -> FloatDType {
    match dtype {
        DType::BF16 => FloatDType::BF16,
        DType::F16 => FloatDType::F16,
        DType::F64 => FloatDType::F64,
        _ => FloatDType::F32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::TensorData;

    #[test]
    fn names_parse_and_round_trip() {
        for p in [Precision::F32, Precision::Bf16] {
            assert_eq!(Precision::parse(p.name()).ok(), Some(p));
            let json = serde_json::to_string(&p).unwrap_or_default();
            assert_eq!(json, format!("\"{}\"", p.name()));
        }
        let e = Precision::parse("f16").err().map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some("invalid config: `precision` is `f16`: use f32 or bf16")
        );
    }

    #[test]
    fn flex_computes_in_both_and_unsupported_devices_are_named() {
        let device = Device::flex();
        assert!(Precision::F32.check_device(&device).is_ok());
        assert!(Precision::Bf16.check_device(&device).is_ok());
        let e = Precision::Bf16
            .check_supported(false, "Cuda(0)")
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some(
                "invalid config: `precision` is `bf16`, which the device Cuda(0) cannot compute in: use f32"
            )
        );
    }

    #[test]
    fn bf16_linear_rounds_inputs_and_weights_to_bf16_and_returns_f32() {
        let device = Device::flex();
        // 1 + 2^-10 is not a bf16 value (8 mantissa bits): it rounds to 1.
        let x = Tensor::<2>::from_data(
            TensorData::new(vec![1.0f32 + 1.0 / 1024.0, 3.0], [1, 2]),
            &device,
        );
        let l = Linear {
            weight: burn::module::Param::from_tensor(Tensor::from_data(
                TensorData::new(vec![1.0f32, 1.0 + 1.0 / 1024.0], [2, 1]),
                &device,
            )),
            bias: None,
        };
        let f32_out = Precision::F32.leave(linear_in(&l, Precision::F32.enter(x.clone())));
        let bf_out = Precision::Bf16.leave(linear_in(&l, Precision::Bf16.enter(x)));
        assert_eq!(bf_out.dtype(), DType::F32);
        let f: Vec<f32> = f32_out.into_data().try_to_vec().unwrap_or_default();
        let b: Vec<f32> = bf_out.into_data().try_to_vec().unwrap_or_default();
        assert_eq!(f, vec![1.0 + 1.0 / 1024.0 + 3.0 * (1.0 + 1.0 / 1024.0)]);
        assert_eq!(b, vec![4.0]);
    }
}
