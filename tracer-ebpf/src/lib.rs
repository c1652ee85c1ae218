// Empty on purpose: the probes live in the `tracer` bin (src/main.rs). This lib
// exists so that tracer-user can build-depend on this package, which makes
// cargo rebuild the eBPF object when the probes change.
#![no_std]
