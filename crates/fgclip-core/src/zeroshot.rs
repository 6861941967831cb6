//! Zero-shot anomaly scoring (DESIGN.md §5): a normal class and anomaly classes, each the
//! normalised mean of its normalised template embeddings. CLIP models score frames by
//! `p = softmax(s · [cos(e, normal), cos(e, class_1..C)])`, anomaly score `1 − p_normal`;
//! sigmoid models (FG-CLIP 2, SigLIP's rule) by `p_c = σ(s · cos(e, c) + b)` for each class
//! alone, anomaly score the largest `p_c` over the anomaly classes.

use burn::tensor::Tensor;
use burn::tensor::activation::{sigmoid, softmax};

use crate::model::normalize;

/// A class embedding from its templates' text embeddings (n_templates, P): the
/// normalised mean of the normalised rows, (P).
pub fn class_embedding(templates: Tensor<2>) -> Tensor<1> {
    let [_, p] = templates.dims();
    normalize(normalize(templates).mean_dim(0)).reshape([p])
}

/// How class probabilities come from the scaled cosines.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ZeroShotRule {
    /// A softmax across the classes (CLIP).
    Softmax,
    /// Each class on its own, `σ(s · cos + bias)` (FG-CLIP 2's `logit_bias`).
    Sigmoid { bias: f64 },
}

/// Class embeddings (1 + C, P), row 0 the normal class, the logit scale and the rule.
pub struct ZeroShotHead {
    pub classes: Tensor<2>,
    pub scale: f64,
    pub rule: ZeroShotRule,
}

impl ZeroShotHead {
    pub fn new(class_embeddings: Vec<Tensor<1>>, scale: f64) -> Self {
        let rows: Vec<Tensor<2>> = class_embeddings
            .into_iter()
            .map(|c| {
                let [p] = c.dims();
                c.reshape([1, p])
            })
            .collect();
        Self {
            classes: normalize(Tensor::cat(rows, 0)),
            scale,
            rule: ZeroShotRule::Softmax,
        }
    }

    /// The same head under another rule.
    pub fn with_rule(self, rule: ZeroShotRule) -> Self {
        Self { rule, ..self }
    }

    /// Class probabilities (n, 1 + C) of frame embeddings (n, P) (normalised here).
    pub fn probabilities(&self, frames: Tensor<2>) -> Tensor<2> {
        let logits =
            crate::gemm::matmul(normalize(frames), self.classes.clone().transpose()) * self.scale;
        match self.rule {
            ZeroShotRule::Softmax => softmax(logits, 1),
            ZeroShotRule::Sigmoid { bias } => sigmoid(logits.add_scalar(bias)),
        }
    }

    /// Anomaly score and predicted class of one row of probabilities: under softmax,
    /// `1 − p_normal` and the arg-max over the anomaly classes; under sigmoid, the largest
    /// anomaly class's `p_c` and the arg-max over all classes (0: normal).
    pub fn score_and_class(&self, probs: &[f32]) -> (f32, usize) {
        match self.rule {
            ZeroShotRule::Softmax => score_and_class(probs),
            ZeroShotRule::Sigmoid { .. } => {
                let score = probs.iter().skip(1).copied().fold(0.0f32, f32::max);
                let class = probs
                    .iter()
                    .enumerate()
                    .max_by(|a, b| a.1.total_cmp(b.1))
                    .map_or(0, |(i, _)| i);
                (score, class)
            }
        }
    }

    /// Cosine similarity of each cell of dense grids (n, g, g, P) to class `class`,
    /// (n, g, g): where in the frame the class is seen.
    pub fn class_map(&self, grids: Tensor<4>, class: usize) -> Tensor<3> {
        let [n, g, g2, p] = grids.dims();
        let c = self
            .classes
            .clone()
            .slice([class..class + 1, 0..p])
            .reshape([p, 1]);
        crate::gemm::matmul(normalize(grids).reshape([n * g * g2, p]), c).reshape([n, g, g2])
    }
}

/// Anomaly score (1 − p_normal) and predicted anomaly class (1-based index into the
/// head's rows) of one row of probabilities.
pub fn score_and_class(probs: &[f32]) -> (f32, usize) {
    let score = 1.0 - probs.first().copied().unwrap_or(1.0);
    let class = probs
        .iter()
        .enumerate()
        .skip(1)
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map_or(0, |(i, _)| i);
    (score, class)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

    fn t2(v: Vec<f32>, r: usize, c: usize) -> Tensor<2> {
        Tensor::from_data(TensorData::new(v, [r, c]), &Device::flex())
    }

    #[test]
    fn class_embedding_is_mean_of_normalised_templates() {
        // Templates (2,0) and (0,1): normalised (1,0),(0,1); mean (.5,.5); normalised.
        let c = class_embedding(t2(vec![2.0, 0.0, 0.0, 1.0], 2, 2));
        let v = c.into_data().try_into_vec_as::<f32>().unwrap();
        let h = std::f32::consts::FRAC_1_SQRT_2;
        assert!((v[0] - h).abs() < 1e-6 && (v[1] - h).abs() < 1e-6, "{v:?}");
    }

    #[test]
    fn probabilities_follow_the_softmax_of_scaled_cosines() {
        let dev = Device::flex();
        let head = ZeroShotHead::new(
            vec![
                Tensor::from_data(TensorData::new(vec![1.0f32, 0.0], [2]), &dev),
                Tensor::from_data(TensorData::new(vec![0.0f32, 1.0], [2]), &dev),
            ],
            10.0,
        );
        let p = head.probabilities(t2(vec![3.0, 0.0, 1.0, 1.0], 2, 2));
        let v = p.into_data().try_into_vec_as::<f32>().unwrap();
        // Row 0: cos = (1, 0) → softmax(10, 0).
        let e = (10f32).exp();
        assert!((v[0] - e / (e + 1.0)).abs() < 1e-5);
        // Row 1: equal cosines → 0.5 / 0.5.
        assert!((v[2] - 0.5).abs() < 1e-6 && (v[3] - 0.5).abs() < 1e-6);
        let (s, c) = score_and_class(&[0.2, 0.5, 0.3]);
        assert!((s - 0.8).abs() < 1e-6);
        assert_eq!(c, 1);
    }

    #[test]
    fn sigmoid_probabilities_score_each_class_alone() {
        let dev = Device::flex();
        let unit = |v: [f32; 2]| Tensor::from_data(TensorData::new(v.to_vec(), [2]), &dev);
        let head = ZeroShotHead::new(vec![unit([1.0, 0.0]), unit([0.0, 1.0])], 10.0)
            .with_rule(ZeroShotRule::Sigmoid { bias: -4.0 });
        let p = head.probabilities(t2(vec![3.0, 0.0, 1.0, 1.0], 2, 2));
        let v = p.into_data().try_into_vec_as::<f32>().unwrap();
        let sig = |x: f64| (1.0 / (1.0 + (-x).exp())) as f32;
        // Row 0: cos = (1, 0) → σ(10 − 4), σ(0 − 4); row 1: cos = (√½, √½) for both.
        let c = 10.0 * std::f64::consts::FRAC_1_SQRT_2 - 4.0;
        for (got, want) in v.iter().zip([sig(6.0), sig(-4.0), sig(c), sig(c)]) {
            assert!((got - want).abs() < 1e-6, "{v:?}");
        }
        // Not a distribution: the row sums to more than 1.
        assert!(v[2] + v[3] > 1.0);
        assert_eq!(head.score_and_class(&[0.9, 0.2, 0.4]), (0.4, 0));
        assert_eq!(head.score_and_class(&[0.1, 0.2, 0.4]), (0.4, 2));
    }
}
