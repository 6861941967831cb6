//! fgclip-vad: the application around `fgclip-core`: model folders and checkpoints,
//! inference commands, benchmarks and the `fgclip` binary's commands.

pub mod bench;
pub mod checkpoint;
pub mod cli;
pub mod data;
pub mod device;
pub mod inference;
pub mod presets;
pub mod train;
