//! Fuzz target: the ELF layer and the readers that search a whole file (build info,
//! pclntab header, moduledata, DWARF).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| deferscope::fuzzing::elf(data));
