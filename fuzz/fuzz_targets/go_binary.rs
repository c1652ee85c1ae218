//! Fuzz target: the whole Go binary reader: parse, then probe points, symbolization,
//! allgs, the runtime layout and waitReasonStrings on the result.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| deferscope::fuzzing::go_binary(data));
