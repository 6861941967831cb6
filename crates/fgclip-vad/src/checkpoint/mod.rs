//! Everything that knows a model file format: HF model folders and safetensors I/O.

pub mod hf;
pub mod safetensors_io;
