//! Data-parallel training under `mpirun` (DESIGN.md §7): two ranks train as one process
//! does, resume bit for bit after SIGKILL, skip a damaged clip on every rank, and end the
//! whole job when one rank dies. Needs Open MPI's `mpirun` (scripts/install-deps installs
//! it); without it the tests say so and pass.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{assert_success, temp_dir};
use fgclip_vad::checkpoint::safetensors_io::{Array, read_arrays};

fn have_mpirun() -> bool {
    let found = Command::new("mpirun")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        // In CI (.ci/run installs Open MPI) a missing mpirun is a failure, never a pass.
        assert!(
            std::env::var("CI").is_err(),
            "no mpirun under CI=true: scripts/install-deps installs Open MPI"
        );
        eprintln!("skipped: no mpirun (install Open MPI: scripts/install-deps)");
    }
    found
}

/// A small synthetic dataset (with hard negatives) and a config: global batch 4,
/// shuffled, cosine schedule with warm-up.
fn setup(dir: &Path, steps: usize, every: usize) -> (PathBuf, PathBuf) {
    let out = Command::new(env!("CARGO_BIN_EXE_fgclip"))
        .args([
            "synth",
            "--quiet",
            "--videos",
            "8",
            "--seconds",
            "3",
            "--out",
        ])
        .arg(dir.join("data"))
        .output()
        .unwrap();
    assert_success(&out);
    let cfg = dir.join("cfg.json");
    std::fs::write(
        &cfg,
        serde_json::json!({"batch_size": 4, "frames": 2, "learning_rate": 0.001, "warmup_steps": 2,
                           "schedule": "cosine", "max_steps": steps, "epochs": 100, "shuffle": true,
                           "seed": 3, "loader_workers": 1, "checkpoint_every": every,
                           "keep_checkpoints": 10})
        .to_string(),
    )
    .unwrap();
    (dir.join("data"), cfg)
}

fn train_args(data: &Path, cfg: &Path, out: &Path, annotations: &str) -> Vec<String> {
    [
        "train",
        "--quiet",
        "--annotations",
        data.join(annotations).to_str().unwrap(),
        "--videos",
        data.to_str().unwrap(),
        "--preset",
        "tiny",
        "--tokenizer",
        "builtin",
        "--out",
        out.to_str().unwrap(),
        "--config",
        cfg.to_str().unwrap(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn one_process(args: &[String]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fgclip"))
        .args(args)
        .output()
        .unwrap()
}

/// `mpirun -np 2 fgclip …`.
fn mpirun(args: &[String]) -> Command {
    let mut c = Command::new("mpirun");
    c.args(["--oversubscribe", "-np", "2", env!("CARGO_BIN_EXE_fgclip")])
        .args(args)
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1");
    c
}

fn rows(run: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The largest difference of two tensors' values, relative to the first's largest value.
fn relative_difference(p: &[f32], q: &[f32]) -> f32 {
    let scale = p.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
    p.iter()
        .zip(q)
        .map(|(u, v)| (u - v).abs())
        .fold(0f32, f32::max)
        / scale
}

fn f32s(a: &Array) -> &[f32] {
    match a {
        Array::F32 { data, .. } => data,
        other => panic!("{other:?}"),
    }
}

#[test]
fn two_ranks_train_as_one_process() {
    if !have_mpirun() {
        return;
    }
    let dir = temp_dir("mpi-equiv");
    let (data, cfg) = setup(&dir, 6, 100);
    assert_success(&one_process(&train_args(
        &data,
        &cfg,
        &dir.join("one"),
        "train.json",
    )));
    let out = mpirun(&train_args(&data, &cfg, &dir.join("two"), "train.json"))
        .output()
        .unwrap();
    assert_success(&out);
    // One summary (rank 0's), saying two ranks.
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["world_size"], 2);
    assert_eq!(summary["steps"], 6);

    let (a, b) = (rows(&dir.join("one")), rows(&dir.join("two")));
    assert_eq!(a.len(), 6);
    assert_eq!(b.len(), 6);
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(y["world_size"], 2);
        assert_eq!(x["clips"], y["clips"]);
        assert_eq!(x["num_regions"], y["num_regions"]);
        assert_eq!(x["num_hard_regions"], y["num_hard_regions"]);
        for key in [
            "loss",
            "loss_global",
            "loss_region",
            "loss_hard_negative",
            "grad_norm",
        ] {
            let (p, q) = (x[key].as_f64().unwrap(), y[key].as_f64().unwrap());
            assert!(
                (p - q).abs() <= 1e-5 * p.abs().max(1.0),
                "step {}: {key} {p} vs {q}",
                x["step"]
            );
        }
    }
    assert!(
        a.iter()
            .any(|r| r["loss_hard_negative"].as_f64().unwrap() > 0.0)
    );

    // The weights: within 1e-5 of each tensor's scale. Key biases are excluded: their
    // gradient is zero analytically (softmax ignores a shift shared by every key), so it
    // is float noise that AdamW turns into ±lr steps in both runs; both stay that small.
    let w1 = read_arrays(&dir.join("one/final/model.safetensors")).unwrap();
    let w2 = read_arrays(&dir.join("two/final/model.safetensors")).unwrap();
    assert_eq!(w1.keys().collect::<Vec<_>>(), w2.keys().collect::<Vec<_>>());
    let mut worst = (0f32, String::new());
    for (name, x) in &w1 {
        let (p, q) = (f32s(x), f32s(&w2[name]));
        if name.ends_with("k_proj.bias") {
            let bound = 6.0 * 0.001 * 1.01;
            assert!(p.iter().chain(q).all(|v| v.abs() <= bound), "{name}");
            continue;
        }
        let diff = relative_difference(p, q);
        if diff > worst.0 {
            worst = (diff, name.clone());
        }
    }
    eprintln!(
        "largest relative weight difference, 2 ranks vs 1: {:.2e} ({})",
        worst.0, worst.1
    );
    assert!(worst.0 < 1e-5, "{worst:?}");
}

/// SIGKILL of the whole 2-rank job after its second checkpoint, its newest checkpoint
/// damaged, then `--resume` with 2 ranks: rank 0 passes over the damaged one, every rank
/// loads the same older one, and the weights end byte-identical to an uninterrupted
/// 2-rank run.
#[test]
fn two_rank_sigkill_and_resume_is_byte_identical() {
    if !have_mpirun() {
        return;
    }
    let dir = temp_dir("mpi-resume");
    let (data, cfg) = setup(&dir, 12, 2);
    let whole = dir.join("whole");
    assert_success(
        &mpirun(&train_args(&data, &cfg, &whole, "train.json"))
            .output()
            .unwrap(),
    );
    let killed = dir.join("killed");
    let mut child = mpirun(&train_args(&data, &cfg, &killed, "train.json"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let second = killed.join("checkpoints/step-00000004/state.json");
    let start = Instant::now();
    while !second.exists() && child.try_wait().unwrap().is_none() {
        assert!(start.elapsed() < Duration::from_secs(600));
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "the run ended before it could be killed"
    );
    // The whole job: mpirun and both ranks.
    kill_job(child.id());
    child.wait().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert!(!killed.join("final").exists(), "the job ran to its end");
    // Damage the newest checkpoint.
    let mut steps: Vec<PathBuf> = std::fs::read_dir(killed.join("checkpoints"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("step-"))
        })
        .collect();
    steps.sort();
    let newest = steps.last().unwrap().clone();
    let older: u64 = steps[steps.len() - 2]
        .file_name()
        .unwrap()
        .to_string_lossy()
        .trim_start_matches("step-")
        .parse()
        .unwrap();
    let weights = newest.join("model.safetensors");
    let mut bytes = std::fs::read(&weights).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&weights, bytes).unwrap();
    let mut args = train_args(&data, &cfg, &killed, "train.json");
    args.push("--resume".into());
    let out = mpirun(&args).output().unwrap();
    assert_success(&out);
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // Rank 0 passed over the damaged newest checkpoint; every rank loaded the older one.
    assert_eq!(summary["resumed_from"].as_u64(), Some(older), "{summary}");
    assert!(older >= 2);
    assert_eq!(
        std::fs::read(whole.join("final/model.safetensors")).unwrap(),
        std::fs::read(killed.join("final/model.safetensors")).unwrap()
    );
}

/// The processes whose parent is `pid` (from /proc: no procps needed).
fn children(pid: u32) -> Vec<String> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            // pid (comm) state ppid …: comm may hold spaces, so split after its ')'.
            let rest = &stat[stat.rfind(')')? + 2..];
            let ppid = rest.split_whitespace().nth(1)?;
            (ppid == pid.to_string()).then(|| e.file_name().to_string_lossy().into_owned())
        })
        .collect()
}

/// SIGKILL to mpirun and its ranks at once (Open MPI gives each rank a process group of
/// its own, so killing mpirun's group would leave them running).
fn kill_job(pid: u32) {
    let mut targets = children(pid);
    assert!(!targets.is_empty(), "no rank processes under mpirun {pid}");
    targets.push(pid.to_string());
    let status = Command::new("kill")
        .arg("-KILL")
        .args(&targets)
        .status()
        .unwrap();
    assert!(status.success());
}

/// A clip that only rank 1 reads is damaged: every rank skips it, and the training is the
/// one process's on the same data (which skips it too). Then both of rank 1's clips of the
/// first batch: rank 1 has no row in that step but still takes part, and the step is the
/// one process's on rank 0's two clips.
#[test]
fn a_damaged_clip_is_skipped_on_every_rank() {
    if !have_mpirun() {
        return;
    }
    let dir = temp_dir("mpi-skip");
    let (data, cfg) = setup(&dir, 3, 100);
    let clips: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(data.join("train.json")).unwrap()).unwrap();
    std::fs::write(data.join("videos/damaged.mp4"), b"not a video at all").unwrap();
    let mut c: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&cfg).unwrap()).unwrap();
    // Without shuffling, the first global batch is clips 0–3: 0, 1 on rank 0; 2, 3 on rank 1.
    c["shuffle"] = serde_json::json!(false);
    std::fs::write(&cfg, c.to_string()).unwrap();
    for (name, damaged, first_clips) in [("one", vec![3], 3), ("both", vec![2, 3], 2)] {
        let mut copy = clips.clone();
        for &k in &damaged {
            copy[k]["video"] = serde_json::json!("videos/damaged.mp4");
        }
        let ann = format!("damaged-{name}.json");
        std::fs::write(data.join(&ann), serde_json::to_string(&copy).unwrap()).unwrap();
        let (single, ranks) = (dir.join(format!("{name}-1")), dir.join(format!("{name}-2")));
        assert_success(&one_process(&train_args(&data, &cfg, &single, &ann)));
        let out = mpirun(&train_args(&data, &cfg, &ranks, &ann))
            .output()
            .unwrap();
        assert_success(&out);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("rank 1: skipping clip 3"), "{err}");
        let (a, b) = (rows(&single), rows(&ranks));
        assert_eq!(a.len(), 3, "{name}");
        assert_eq!(b.len(), 3, "{name}");
        assert_eq!(a[0]["clips"], first_clips);
        assert_eq!(b[0]["clips"], first_clips);
        assert_eq!(b[0]["skipped"], damaged.len());
        for (x, y) in a.iter().zip(&b) {
            for key in ["loss", "grad_norm"] {
                let (p, q) = (x[key].as_f64().unwrap(), y[key].as_f64().unwrap());
                assert!(
                    (p - q).abs() <= 1e-5 * p.abs(),
                    "{name} step {}: {key} {p} vs {q}",
                    x["step"]
                );
            }
        }
    }
}

/// One rank killed mid-run: the job ends within seconds, exit ≠ 0, and every checkpoint
/// folder left verifies (none is half-written).
#[test]
fn a_killed_rank_ends_the_job() {
    if !have_mpirun() {
        return;
    }
    let dir = temp_dir("mpi-kill");
    let (data, cfg) = setup(&dir, 400, 2);
    let run = dir.join("run");
    let mut child = mpirun(&train_args(&data, &cfg, &run, "train.json"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let first = run.join("checkpoints/step-00000002/state.json");
    let start = Instant::now();
    while !first.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(600),
            "no checkpoint appeared"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    // The ranks are mpirun's children; kill one.
    let mut pids = children(child.id());
    pids.sort();
    assert!(!pids.is_empty(), "no rank processes found");
    let victim = pids.last().unwrap().clone();
    let killed_at = Instant::now();
    assert!(
        Command::new("kill")
            .args(["-KILL", &victim])
            .status()
            .unwrap()
            .success()
    );
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if killed_at.elapsed() > Duration::from_secs(60) {
            kill_job(child.id());
            panic!("the job did not end within 60 s of a rank's death");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(!status.success());
    eprintln!(
        "job ended {:.1} s after the rank was killed",
        killed_at.elapsed().as_secs_f64()
    );
    for entry in std::fs::read_dir(run.join("checkpoints"))
        .unwrap()
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("step-") {
            assert!(
                entry.path().join("state.json").is_file(),
                "{name} is incomplete"
            );
        }
    }
}

/// A rank that fails ends the job with its error (MPI abort), never a hang: here every
/// rank rejects a global batch that 2 ranks cannot split.
#[test]
fn a_failing_rank_ends_the_job_with_its_error() {
    if !have_mpirun() {
        return;
    }
    let dir = temp_dir("mpi-error");
    let (data, cfg) = setup(&dir, 2, 100);
    let mut c: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&cfg).unwrap()).unwrap();
    c["batch_size"] = serde_json::json!(3);
    std::fs::write(&cfg, c.to_string()).unwrap();
    let start = Instant::now();
    let out = mpirun(&train_args(&data, &cfg, &dir.join("run"), "train.json"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(start.elapsed() < Duration::from_secs(120));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a multiple of the 2 ranks"), "{err}");
    assert!(err.contains("error: rank"), "{err}");
}

/// FG-CLIP 2's loss on two ranks (two clips each of a global batch of four) equals one
/// process on the whole batch: every term is over the gathered rows, the cross-modal rank
/// threshold the same on every rank. The step-1 gradient norms agree to 1.5e-7; AdamW then
/// turns the float noise of near-zero gradients into steps that scale with the learning
/// rate (at 1e-3 the weights drift 1.8e-5 apart by step 6, at 5e-4 half that): lr 5e-4.
#[test]
fn two_ranks_train_fgclip2_as_one_process() {
    if !have_mpirun() {
        return;
    }
    let dir = temp_dir("mpi-fgclip2");
    let ann = common::fgclip2_clips(&dir);
    let cfg = dir.join("cfg.json");
    std::fs::write(
        &cfg,
        serde_json::json!({"batch_size": 4, "frames": 2, "learning_rate": 0.0005,
                           "schedule": "constant", "max_steps": 6, "epochs": 100,
                           "shuffle": true, "seed": 3, "loader_workers": 1,
                           "checkpoint_every": 100, "max_num_patches": 12})
        .to_string(),
    )
    .unwrap();
    let args = |out: &str| -> Vec<String> {
        [
            "train",
            "--quiet",
            "--annotations",
            ann.to_str().unwrap(),
            "--videos",
            dir.to_str().unwrap(),
            "--model",
            common::fixtures()
                .join("fgclip2_tiny/model")
                .to_str()
                .unwrap(),
            "--out",
            dir.join(out).to_str().unwrap(),
            "--config",
            cfg.to_str().unwrap(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    assert_success(&one_process(&args("one")));
    assert_success(&mpirun(&args("two")).output().unwrap());
    let (a, b) = (rows(&dir.join("one")), rows(&dir.join("two")));
    assert_eq!((a.len(), b.len()), (6, 6));
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(y["world_size"], 2);
        assert_eq!(x["num_regions"], y["num_regions"]);
        assert_eq!(x["num_hard_regions"], y["num_hard_regions"]);
        for key in [
            "loss",
            "loss_global",
            "loss_global_long",
            "loss_region",
            "loss_region_text",
            "loss_hard_negative",
            "cmr_threshold",
        ] {
            let (p, q) = (x[key].as_f64().unwrap(), y[key].as_f64().unwrap());
            assert!(
                (p - q).abs() <= 1e-5 * p.abs().max(1.0),
                "step {}: {key} {p} vs {q}",
                x["step"]
            );
        }
    }
    // Weights within 1e-5 of each tensor's scale; the key biases' gradient is zero
    // analytically (see above): the k part of the pooling heads' packed in_proj_bias too.
    let w1 = read_arrays(&dir.join("one/final/model.safetensors")).unwrap();
    let w2 = read_arrays(&dir.join("two/final/model.safetensors")).unwrap();
    assert_eq!(w1.keys().collect::<Vec<_>>(), w2.keys().collect::<Vec<_>>());
    let mut worst = (0f32, String::new());
    for (name, x) in &w1 {
        let (mut p, mut q) = (f32s(x).to_vec(), f32s(&w2[name]).to_vec());
        if name.ends_with("k_proj.bias") {
            continue;
        }
        if name.ends_with("in_proj_bias") {
            let d = p.len() / 3;
            p.drain(d..2 * d);
            q.drain(d..2 * d);
        }
        let diff = relative_difference(&p, &q);
        if diff > worst.0 {
            worst = (diff, name.clone());
        }
    }
    eprintln!(
        "FG-CLIP 2: largest relative weight difference, 2 ranks vs 1: {:.2e} ({})",
        worst.0, worst.1
    );
    assert!(worst.0 < 1e-5, "{worst:?}");
}
