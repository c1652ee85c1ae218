//! Fuzz target: the DWARF reader (ELF file or raw sections) and the layout built from it.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| deferscope::fuzzing::dwarf(data));
