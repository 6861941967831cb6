//! Everything that knows a file format of models and runs: HF model folders, safetensors
//! I/O, the exports of a run and its checkpoint store.

pub mod export;
pub mod fgclip2;
pub mod hf;
pub mod hf_tokenizer;
pub mod run_folder;
pub mod safetensors_io;
pub mod store;
