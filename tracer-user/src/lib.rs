//! deferscope: live defer-chain and goroutine tracing of running Go programs.
//!
//! Data flows one way: `gobin` (the target's executable) and `target` (its
//! memory) feed `probes` (eBPF events) and the `aggregate` state, which the
//! `output` sinks, the `tui` and the `exporters` render.
pub mod aggregate;
pub mod cli;
pub mod exporters;
pub mod gobin;
pub mod output;
pub mod probes;
pub mod session;
pub mod symbols;
pub mod target;
pub mod tui;
