use anyhow::Result;
use clap::Parser;
use fgclip_vad::cli::{BenchCommand, Cli, Command};
use fgclip_vad::data::{frames, video};
use fgclip_vad::{bench, device, inference, presets};

fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    let device = device::parse_device(&cli.device)?;
    match cli.command {
        Command::Embed(a) => {
            let summary = inference::run_embed(
                &inference::EmbedRequest {
                    model: a.model,
                    pixels: a.pixels,
                    texts: a.texts,
                    tokenizer: a.tokenizer,
                    out: a.out,
                    batch_size: a.batch_size,
                    progress: !cli.quiet,
                },
                &device,
            )?;
            println!("{}", serde_json::to_string(&summary)?);
        }
        Command::Bench(BenchCommand::Embed(a)) => {
            let config = presets::resolve(&a.preset)?;
            let timings = bench::bench_embed(&config, a.batch, a.warmup, a.iters, &device)?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&timings)?);
            } else {
                println!(
                    "preset {} on {} (batch {}, {} iters)",
                    a.preset, cli.device, a.batch, a.iters
                );
                for t in &timings {
                    println!(
                        "{:<28} median {:>9.1} ms  (min {:.1}, max {:.1})  {:>8.1} items/s",
                        t.name, t.median_ms, t.min_ms, t.max_ms, t.items_per_s
                    );
                }
            }
        }
        Command::Probe(a) => {
            let info = video::probe(&a.video, a.count_packets)?;
            println!("{}", serde_json::to_string_pretty(&info)?);
        }
        Command::Frames(a) => {
            let ts = a.timestamps.map(|t| (t[0], t[1]));
            let report = frames::extract_frames(&a.video, ts, a.sample, a.size, &a.out)?;
            println!("{}", serde_json::to_string(&report)?);
        }
        Command::Presets => {
            for (name, _) in presets::PRESETS {
                let c = presets::resolve(name)?;
                let v = &c.vision_config;
                println!(
                    "{name:<14} image {}px patch {} width {} layers {} | text width {} layers {} | embed {}",
                    v.image_size,
                    v.patch_size,
                    v.hidden_size,
                    v.num_hidden_layers,
                    c.text_config.hidden_size,
                    c.text_config.num_hidden_layers,
                    c.projection_dim
                );
            }
        }
    }
    Ok(())
}
