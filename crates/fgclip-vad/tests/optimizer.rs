//! Training steps against PyTorch (tests/fixtures/optimizer, from
//! tools/make_optimizer_fixture.py): torch.optim.AdamW over HF Trainer's weight-decay
//! groups (and a separate text-tower learning rate), clip_grad_norm_, transformers' cosine
//! schedule with warm-up (first step at rate 0) and open_clip's post-step clamp of the
//! logit scales, three steps on tests/fixtures/fgclip_batch; and `lr_at` against
//! transformers' schedule functions.

mod common;

use common::*;
use fgclip_vad::train::{Schedule, TrainConfig};

fn fixture() -> serde_json::Value {
    serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("optimizer/expected.json")).unwrap(),
    )
    .unwrap()
}

fn close(what: &str, got: f64, want: f64) {
    assert!(
        (got - want).abs() <= 1e-5 * want.abs().max(1e-12),
        "{what}: {got} vs {want}"
    );
}

#[test]
fn three_steps_match_pytorch_adamw_groups_schedule_and_clamp() {
    let f = fixture();
    let dir = temp_dir("optimizer");
    for (run, expected) in f["runs"].as_object().unwrap() {
        let mut config = f["config"].clone();
        config["text_model_lr"] = expected["text_model_lr"].clone();
        let cfg_path = dir.join(format!("{run}.json"));
        std::fs::write(&cfg_path, config.to_string()).unwrap();
        let model = match expected["logit_scale"].as_f64() {
            Some(s) => tiny_with_logit_scale(&dir, s as f32),
            None => fixtures().join("clip_tiny"),
        };
        let steps = expected["steps"].as_array().unwrap();
        let watch: Vec<&String> = steps[0]["params"].as_object().unwrap().keys().collect();
        let mut args = vec![
            "check-steps".to_string(),
            "--model".into(),
            model.display().to_string(),
            "--batch".into(),
            fixtures()
                .join("fgclip_batch/batch.safetensors")
                .display()
                .to_string(),
            "--config".into(),
            cfg_path.display().to_string(),
            "--steps".into(),
            steps.len().to_string(),
        ];
        for w in &watch {
            args.push("--watch".into());
            args.push(w.to_string());
        }
        let out = fgclip(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert_success(&out);
        let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let got = got.as_array().unwrap();
        assert_eq!(got.len(), steps.len());
        for (g, w) in got.iter().zip(steps) {
            let at = format!("{run} step {}", w["step"]);
            assert_eq!(g["lr"].as_f64(), w["lr"].as_f64(), "{at}: lr");
            match w["text_lr"].as_f64() {
                Some(t) => close(&format!("{at}: text lr"), g["text_lr"].as_f64().unwrap(), t),
                None => assert!(g["text_lr"].is_null(), "{at}"),
            }
            for key in ["loss", "loss_global", "loss_region", "grad_norm"] {
                close(
                    &format!("{at}: {key}"),
                    g[key].as_f64().unwrap(),
                    w[key].as_f64().unwrap(),
                );
            }
            // Parameters after the step: within 1e-5 of the parameter's own scale.
            for name in &watch {
                let want: Vec<f64> = w["params"][name.as_str()]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_f64().unwrap())
                    .collect();
                let ours = g["params"][name.as_str()].as_array().unwrap();
                assert!(ours.len() >= want.len(), "{at}: {name}");
                let scale = want.iter().fold(0f64, |m, v| m.max(v.abs()));
                for (k, (o, r)) in ours.iter().zip(&want).enumerate() {
                    let o = o.as_f64().unwrap();
                    assert!(
                        (o - r).abs() <= 1e-5 * scale,
                        "{at}: {name}[{k}] = {o}, PyTorch {r}"
                    );
                }
            }
        }
    }
    // OpenAI's 4.6052 is clamped to ln 100 by the first step (at learning rate 0).
    let high = &f["runs"]["high_scale"]["steps"][0]["params"]["logit_scale"][0];
    assert_eq!(high.as_f64(), Some(std::f64::consts::LN_10 * 2.0));
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn lr_at_follows_transformers_schedules() {
    let f = fixture();
    let table = |name: &str| -> Vec<f64> {
        f["schedules"][name]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect()
    };
    let cases = [
        ("constant_warmup3", Schedule::Constant, 3, 0.0),
        ("cosine_warmup2", Schedule::Cosine, 2, 0.0),
        ("cosine_warmup0", Schedule::Cosine, 0, 0.0),
        ("cosine_warmup2_min0.1", Schedule::Cosine, 2, 0.1),
    ];
    for (name, schedule, warmup_steps, min_lr_ratio) in cases {
        let cfg = TrainConfig {
            learning_rate: 2.0,
            schedule,
            warmup_steps,
            min_lr_ratio,
            ..TrainConfig::default()
        };
        for (step, want) in table(name).into_iter().enumerate() {
            let got = cfg.lr_at(step, 10);
            assert!(
                (got - want).abs() <= 1e-12,
                "{name} step {step}: {got} vs {want}"
            );
        }
    }
    // open_clip's warm-up counts the step itself: (s + 1) / warmup.
    let cfg = TrainConfig {
        learning_rate: 2.0,
        warmup_steps: 4,
        warmup_rule: fgclip_vad::train::WarmupRule::OpenClip,
        ..TrainConfig::default()
    };
    assert_eq!(
        (0..4).map(|s| cfg.lr_at(s, 10)).collect::<Vec<_>>(),
        [0.5, 1.0, 1.5, 2.0]
    );
}
