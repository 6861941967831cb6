//! The temporal fusion (`fusion: transformer`) against a float64 reference built from
//! transformers' own `CLIPEncoder` (tests/fixtures/fusion, `tools/make_fusion_fixture.py`):
//! fused and normalised video embeddings and three gradients, with every part of the
//! module non-zero; and a fresh module equals mean pooling bit for bit.

mod common;

use burn::tensor::{Device, Tensor, TensorData};
use common::*;
use fgclip_core::Weights;
use fgclip_core::fgclip::fuse_frames;
use fgclip_core::fusion::{FusionConfig, TemporalFusion};
use fgclip_core::model::normalize;
use fgclip_vad::checkpoint::hf::SafetensorsWeights;
use fgclip_vad::checkpoint::safetensors_io::read_arrays;
use fgclip_vad::device::host_f32;

fn fixture_config() -> FusionConfig {
    let text = std::fs::read_to_string(fixtures().join("fusion/config.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn load(device: &Device) -> TemporalFusion {
    let w =
        SafetensorsWeights::open_files(&[fixtures().join("fusion/fusion.safetensors")]).unwrap();
    let f = TemporalFusion::load(&Weights::new(&w, device), fixture_config()).unwrap();
    assert!(w.unused().is_empty(), "unread: {:?}", w.unused());
    f
}

#[test]
fn fusion_matches_the_clip_encoder_reference() {
    let device = Device::flex().autodiff();
    let fusion = load(&device);
    let exp = read_arrays(&fixtures().join("fusion/expected.safetensors")).unwrap();
    let (shape, frames) = f32s(&exp, "frames");
    let frames = Tensor::<3>::from_data(
        TensorData::new(frames, [shape[0], shape[1], shape[2]]),
        &device,
    );
    let fused = fuse_frames(Some(&fusion), frames);
    assert_close(
        "fused",
        &host_f32(fused.clone()).unwrap(),
        &f32s(&exp, "fused").1,
        1e-5,
    );
    let video = normalize(fused);
    assert_close(
        "video",
        &host_f32(video.clone()).unwrap(),
        &f32s(&exp, "video").1,
        1e-5,
    );

    let (pshape, probe) = f32s(&exp, "probe");
    let probe = Tensor::<2>::from_data(TensorData::new(probe, [pshape[0], pshape[1]]), &device);
    let grads = (video * probe).sum().backward();
    let grad = |p: &burn::module::Param<Tensor<2>>| host_f32(p.grad(&grads).unwrap()).unwrap();
    assert_close(
        "grad frame_position_embeddings",
        &grad(&fusion.frame_position_embeddings),
        &f32s(&exp, "grad.frame_position_embeddings").1,
        1e-5,
    );
    // burn holds linear weights transposed: [d_in, d_out].
    let transpose = |v: Vec<f32>, rows: usize, cols: usize| {
        let mut t = vec![0f32; v.len()];
        for r in 0..rows {
            for c in 0..cols {
                t[c * rows + r] = v[r * cols + c];
            }
        }
        t
    };
    let p = fixture_config().hidden_size;
    assert_close(
        "grad q_proj",
        &transpose(
            grad(&fusion.encoder.layers[0].self_attn.q_proj.weight),
            p,
            p,
        ),
        &f32s(&exp, "grad.layers.0.self_attn.q_proj.weight").1,
        1e-5,
    );
    assert_close(
        "grad output",
        &transpose(grad(&fusion.output.weight), p, p),
        &f32s(&exp, "grad.output.weight").1,
        1e-5,
    );
}

#[test]
fn fresh_fusion_is_mean_pooling_exactly_and_learns_from_the_first_step() {
    let device = Device::flex().autodiff();
    let config = FusionConfig::new(32, 2, 8);
    let fusion = TemporalFusion::init(config, 7, &device).unwrap();
    let exp = read_arrays(&fixtures().join("fusion/expected.safetensors")).unwrap();
    let (shape, frames) = f32s(&exp, "frames");
    let frames = Tensor::<3>::from_data(
        TensorData::new(frames, [shape[0], shape[1], shape[2]]),
        &device,
    );
    let fused = host_f32(fuse_frames(Some(&fusion), frames.clone())).unwrap();
    let mean = host_f32(fuse_frames(None, frames.clone())).unwrap();
    assert_eq!(
        fused.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        mean.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        "a fresh fusion must equal mean pooling bit for bit"
    );
    // The zero output projection still gets a gradient, so training moves it.
    let grads = normalize(fuse_frames(Some(&fusion), frames))
        .slice([0..1, 0..1])
        .sum()
        .backward();
    let g = host_f32(fusion.output.weight.grad(&grads).unwrap()).unwrap();
    assert!(
        g.iter().any(|v| *v != 0.0),
        "the output projection gets no gradient"
    );
    // The same seed gives the same module; another seed another.
    let again = TemporalFusion::init(config, 7, &device).unwrap();
    let other = TemporalFusion::init(config, 8, &device).unwrap();
    let q =
        |f: &TemporalFusion| host_f32(f.encoder.layers[0].self_attn.q_proj.weight.val()).unwrap();
    assert_eq!(q(&fusion), q(&again));
    assert_ne!(q(&again), q(&other));
}

#[test]
fn bad_fusion_configs_are_refused() {
    let device = Device::flex();
    for (config, field) in [
        (
            FusionConfig {
                num_layers: 0,
                ..FusionConfig::new(32, 1, 8)
            },
            "fusion.num_layers",
        ),
        (
            FusionConfig {
                num_heads: 3,
                ..FusionConfig::new(32, 1, 8)
            },
            "fusion.num_heads",
        ),
        (FusionConfig::new(32, 1, 0), "fusion.max_frames"),
    ] {
        let e = TemporalFusion::init(config, 0, &device)
            .unwrap_err()
            .to_string();
        assert!(e.contains(field), "{e}");
    }
}

fn train(dir: &std::path::Path, ann: &std::path::Path, run: &std::path::Path, resume: bool) {
    let cfg = dir.join("cfg.json");
    std::fs::write(
        &cfg,
        serde_json::json!({
            "batch_size": 2, "frames": 3, "learning_rate": 0.001, "weight_decay": 0.0,
            "schedule": "constant", "epochs": 100, "max_steps": 6, "shuffle": true,
            "checkpoint_every": 3, "keep_checkpoints": 2, "seed": 5,
            "fusion": "transformer", "fusion_layers": 1
        })
        .to_string(),
    )
    .unwrap();
    let mut c = train_tiny(ann, dir, run, &cfg);
    if resume {
        c.arg("--resume");
    }
    assert_success(&c.output().unwrap());
}

fn extract(
    dir: &std::path::Path,
    model: &std::path::Path,
    out: &str,
    extra: &[&str],
) -> std::process::Output {
    let list = dir.join("list.txt");
    std::fs::write(&list, "v0.mp4\nv2.mp4\n").unwrap();
    let mut args = vec![
        "extract".to_string(),
        "--model".into(),
        model.display().to_string(),
        "--videos".into(),
        dir.display().to_string(),
        "--list".into(),
        list.display().to_string(),
        "--out".into(),
        dir.join(out).display().to_string(),
        "--stride".into(),
        "8".into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    fgclip(&args)
}

/// `fusion: transformer` end to end: trained with the model, checkpointed and resumed
/// exactly, exported as HF folder + `fusion.safetensors`, and used by `extract`/`detect`
/// (a snippet of T frames through the transformer).
#[test]
fn transformer_fusion_trains_resumes_exports_and_detects() {
    use fgclip_vad::checkpoint::safetensors_io::read_arrays;
    let dir = temp_dir("fusion");
    let ann = moving_blocks(&dir);
    let run = dir.join("run");
    train(&dir, &ann, &run, false);

    // Checkpoints hold the transformer beside the model and say so in fgclip.json.
    let ckpt = run.join("checkpoints/step-00000003");
    let weights = read_arrays(&ckpt.join("model.safetensors")).unwrap();
    assert!(weights.contains_key("temporal_fusion.output.weight"));
    let extra: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(ckpt.join("fgclip.json")).unwrap()).unwrap();
    assert_eq!(extra["fusion"]["max_frames"], 3);
    assert_eq!(extra["fusion"]["num_layers"], 1);

    // The export: a plain HF CLIP model.safetensors, the transformer in its own file.
    let fin = run.join("final");
    let hf = read_arrays(&fin.join("model.safetensors")).unwrap();
    assert!(!hf.keys().any(|k| k.starts_with("temporal_fusion")));
    let fusion = read_arrays(&fin.join("fusion.safetensors")).unwrap();
    let (_, out_w) = f32s(&fusion, "temporal_fusion.output.weight");
    assert!(
        out_w.iter().any(|v| *v != 0.0),
        "the output projection did not train"
    );
    let extra: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fin.join("fgclip.json")).unwrap()).unwrap();
    assert_eq!(extra["frames"], 3);

    // Resume from step 3 ends with the same bytes as the straight run.
    let resumed = dir.join("resumed");
    copy_dir(&run, &resumed);
    std::fs::remove_dir_all(resumed.join("final")).unwrap();
    std::fs::remove_dir_all(resumed.join("checkpoints/step-00000006")).unwrap();
    train(&dir, &ann, &resumed, true);
    for f in ["model.safetensors", "fusion.safetensors"] {
        assert!(
            std::fs::read(resumed.join("final").join(f)).unwrap()
                == std::fs::read(fin.join(f)).unwrap(),
            "{f} differs after resume"
        );
    }

    // extract: T = 3 frames per snippet by default, fused by the transformer.
    let fused = extract(&dir, &fin, "fused", &[]);
    assert_success(&fused);
    let (shape, a) = fgclip_vad::data::npy::read_f32(&dir.join("fused/v2.npy")).unwrap();
    assert_eq!(shape, [3, 32]);
    // The same model without its transformer (mean of the same 3 frames) differs.
    let plain = dir.join("plain");
    copy_dir(&fin, &plain);
    std::fs::remove_file(plain.join("fusion.safetensors")).unwrap();
    std::fs::write(plain.join("fgclip.json"), "{}").unwrap();
    assert_success(&extract(
        &dir,
        &plain,
        "mean",
        &["--frames-per-snippet", "3"],
    ));
    let (_, b) = fgclip_vad::data::npy::read_f32(&dir.join("mean/v2.npy")).unwrap();
    let d = max_abs_diff(&a, &b);
    assert!(d > 1e-4, "the transformer changed nothing ({d})");
    for row in a.chunks(32) {
        let n: f32 = row.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!((n - 1.0).abs() < 1e-4, "{n}");
    }
    // More frames than its position table: a clear error.
    let too_many = extract(&dir, &fin, "bad", &["--frames-per-snippet", "4"]);
    assert!(!too_many.status.success());
    let err = String::from_utf8_lossy(&too_many.stderr);
    assert!(err.contains("at most 3"), "{err}");

    // detect uses it too.
    let det = fgclip(&[
        "detect",
        "--model",
        &fin.display().to_string(),
        "--out",
        &dir.join("det").display().to_string(),
        &dir.join("v1.mp4").display().to_string(),
    ]);
    assert_success(&det);
    assert!(dir.join("det/v1.json").is_file());
    std::fs::remove_dir_all(dir).ok();
}
