//! `cargo +nightly fuzz run npy`: see `fgclip_vad::fuzzing::npy`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fgclip_vad::fuzzing::npy(data));
