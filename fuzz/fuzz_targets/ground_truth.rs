//! `cargo +nightly fuzz run ground_truth`: see `fgclip_vad::fuzzing::ground_truth`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fgclip_vad::fuzzing::ground_truth(data));
