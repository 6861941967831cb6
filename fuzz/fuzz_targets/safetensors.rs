//! `cargo +nightly fuzz run safetensors`: see `fgclip_vad::fuzzing::safetensors`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fgclip_vad::fuzzing::safetensors(data));
