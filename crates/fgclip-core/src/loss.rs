//! Contrastive losses: the symmetric InfoNCE of CLIP (open_clip `ClipLoss`, FG-CLIP's
//! `pairwise_contrastive_loss`).

use burn::tensor::activation::log_softmax;
use burn::tensor::{Tensor, TensorData};

/// `(CE(s·A·Bᵀ, arange) + CE(s·B·Aᵀ, arange)) / 2` for L2-normalised rows of `a` and `b`
/// (n, d) and a positive scale `s` (shape [1]). Returns shape [1].
pub fn contrastive_loss(a: Tensor<2>, b: Tensor<2>, scale: Tensor<1>) -> Tensor<1> {
    let [n, _] = a.dims();
    let device = a.device();
    let logits = crate::gemm::matmul(a, b.transpose()) * scale.reshape([1, 1]);
    let eye_values: Vec<f32> = (0..n * n)
        .map(|i| if i % (n + 1) == 0 { 1.0 } else { 0.0 })
        .collect();
    let eye = Tensor::<2>::from_data(TensorData::new(eye_values, [n, n]), &device);
    let ce =
        |l: Tensor<2>| -> Tensor<1> { (log_softmax(l, 1) * eye.clone()).sum().neg() / n as f64 };
    (ce(logits.clone()) + ce(logits.transpose())) / 2.0
}
