//! Fuzz target: the .gopclntab reader: function table, names, lines, files, inline trees.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| deferscope::fuzzing::pclntab(data));
