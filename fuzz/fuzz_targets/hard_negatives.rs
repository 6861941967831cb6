//! `cargo +nightly fuzz run hard_negatives`: see `fgclip_vad::fuzzing::hard_negatives`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fgclip_vad::fuzzing::hard_negatives(data));
