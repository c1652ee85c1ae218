//! Fuzz target: the goroutine scanner (allgs, each g, defer chains, frame-pointer
//! stacks) over an arbitrary memory image, with a built-in runtime layout
//! picked by the first byte.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| deferscope::fuzzing::memory_scan(data));
