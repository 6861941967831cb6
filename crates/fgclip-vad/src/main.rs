use anyhow::Result;
use clap::Parser;
use fgclip_vad::cli::{BenchCommand, CheckCommand, Cli, Command};
use fgclip_vad::device;

// In the binary crate, not the library: the linker always keeps a binary's own objects,
// so these definitions are there when cubecl-llvm's references are resolved.
#[cfg(feature = "cuda")]
mod cuda_link;

/// `say!` prints a line to stdout (see [`commands::emit`]); defined before `commands` so
/// its modules see it.
macro_rules! say {
    ($($arg:tt)*) => { $crate::commands::emit(&format!("{}\n", format_args!($($arg)*))) };
}

mod commands;
mod malloc_tuning;

fn main() {
    let started = std::time::Instant::now();
    malloc_tuning::tune_for_tensors();
    let cli = Cli::parse();
    match run(cli, started) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(1);
        }
    }
}

/// Runs a command; returns the exit status.
fn run(cli: Cli, started: std::time::Instant) -> Result<i32> {
    let device = device::open_device(
        &cli.device,
        &device::DeviceOptions {
            kernel_cache: cli.kernel_cache.clone(),
            no_kernel_cache: cli.no_kernel_cache,
            autotune: cli.autotune.clone(),
        },
    )?;
    // Given: replaces the training config's precision; otherwise f32.
    let precision_flag = cli
        .precision
        .as_deref()
        .map(fgclip_core::Precision::parse)
        .transpose()?;
    let precision = precision_flag.unwrap_or_default();
    precision.check_device(&device)?;
    fgclip_core::gemm::set_matmul_kernels(fgclip_core::gemm::MatmulKernels::parse(&cli.matmul)?);
    // The global options again, for the processes a command starts (`warmup`).
    let mut global = vec![
        "--device".to_string(),
        cli.device.clone(),
        "--matmul".to_string(),
        cli.matmul.clone(),
    ];
    if let Some(p) = &cli.kernel_cache {
        global.extend(["--kernel-cache".to_string(), p.display().to_string()]);
    }
    if cli.no_kernel_cache {
        global.push("--no-kernel-cache".into());
    }
    if let Some(a) = &cli.autotune {
        global.extend(["--autotune".to_string(), a.clone()]);
    }
    let ctx = commands::Context {
        global,
        device,
        device_name: cli.device.clone(),
        precision,
        precision_flag,
        quiet: cli.quiet,
        started,
    };
    match cli.command {
        Command::Demo(a) => commands::demo::demo(a, &ctx),
        Command::Synth(a) => commands::demo::synth(a, &ctx),
        Command::Embed(a) => commands::embed::embed(a, &ctx),
        Command::Bench(BenchCommand::Embed(a)) => commands::bench::embed(a, &ctx),
        Command::Validate(a) => commands::data::validate(a, &ctx),
        Command::Train(a) => commands::train::train(a, &ctx),
        Command::Ablate(a) => commands::train::ablate(a, &ctx),
        Command::Detect(a) => commands::detect::detect(a, &ctx),
        Command::Extract(a) => commands::detect::extract(a, &ctx),
        Command::Watch(a) => commands::watch::watch(a, &ctx),
        Command::Warmup(a) => commands::warmup::warmup(a, &ctx),
        Command::Eval(a) => commands::detect::eval(a),
        Command::Check(CheckCommand::Loss(a)) | Command::CheckLoss(a) => {
            commands::train::check_loss(a, &ctx)
        }
        Command::Check(CheckCommand::Steps(a)) | Command::CheckSteps(a) => {
            commands::train::check_steps(a, &ctx)
        }
        Command::Check(CheckCommand::Roi(a)) | Command::CheckRoi(a) => {
            commands::train::check_roi(a, &ctx)
        }
        Command::Probe(a) => commands::data::probe(a),
        Command::Frames(a) => commands::data::frames(a, &ctx),
        Command::Bench(BenchCommand::Collective(a)) => commands::bench::collective(a, &ctx),
        Command::Bench(BenchCommand::Checkpoint(a)) => commands::bench::checkpoint(a, &ctx),
        Command::Bench(BenchCommand::Watch(a)) => commands::bench::watch(a, &ctx),
        Command::Bench(BenchCommand::Train(a)) => commands::bench::train(a, &ctx),
        Command::Bench(BenchCommand::Detect(a)) => commands::bench::detect(a, &ctx),
        Command::Bench(BenchCommand::Decode(a)) => commands::bench::decode(a),
        Command::Presets => commands::bench::presets(),
    }
}
