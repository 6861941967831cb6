//! One module per group of commands, each command a function of its arguments and the
//! [`Context`] every command shares (device, precision, verbosity), as uv's `commands/`.

pub mod bench;
pub mod data;
pub mod demo;
pub mod detect;
pub mod embed;
pub mod train;
pub mod warmup;
pub mod watch;

/// What every command gets besides its own arguments.
pub struct Context {
    /// `--device`, `--kernel-cache`, `--no-kernel-cache`, `--autotune` as given, for the
    /// processes a command starts.
    pub global: Vec<String>,
    pub device: burn::tensor::Device,
    /// `--device` as given (for reports).
    pub device_name: String,
    /// `--precision`, or f32.
    pub precision: fgclip_core::Precision,
    /// `--precision` when given (it replaces a training config's).
    pub precision_flag: Option<fgclip_core::Precision>,
    pub quiet: bool,
    pub started: std::time::Instant,
}

pub fn progress(quiet: bool) -> indicatif::ProgressBar {
    if quiet {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg:>8} [{bar:30}] {pos}/{len} eta {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar
}

/// Writes to stdout; a closed pipe (`fgclip … | head`) ends the program quietly.
pub fn emit(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: writing to stdout: {e}");
        std::process::exit(1);
    }
}
