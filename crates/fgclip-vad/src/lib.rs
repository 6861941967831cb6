//! fgclip-vad: the application around `fgclip-core`: model folders and checkpoints,
//! inference commands, benchmarks and the `fgclip` binary's commands.

pub mod ablate;
pub mod bench;
pub mod checkpoint;
pub mod cli;
pub mod data;
pub mod demo;
pub mod detect;
pub mod device;
pub mod eval;
pub mod fuzzing;
pub mod inference;
pub mod io;
pub mod plot;
pub mod presets;
pub mod roi_check;
pub mod synth;
pub mod train;
pub mod trainee;
pub mod watch;
