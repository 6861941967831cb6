//! `cargo +nightly fuzz run train_config`: see `fgclip_vad::fuzzing::train_config`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fgclip_vad::fuzzing::train_config(data));
