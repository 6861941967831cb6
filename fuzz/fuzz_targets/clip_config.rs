//! `cargo +nightly fuzz run clip_config`: see `fgclip_vad::fuzzing::clip_config`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fgclip_vad::fuzzing::clip_config(data));
