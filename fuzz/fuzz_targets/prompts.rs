//! `cargo +nightly fuzz run prompts`: see `fgclip_vad::fuzzing::prompts`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fgclip_vad::fuzzing::prompts(data));
