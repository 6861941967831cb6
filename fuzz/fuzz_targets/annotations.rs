//! `cargo +nightly fuzz run annotations`: see `fgclip_vad::fuzzing::annotations`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fgclip_vad::fuzzing::annotations(data));
