//! Fuzz target: the .go.buildinfo blob and the Go version string in it.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| deferscope::fuzzing::buildinfo(data));
