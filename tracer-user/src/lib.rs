//! deferscope: live defer-chain and goroutine tracing of running Go programs.
//!
//! Data flows one way: `gobin` (the traced executable) and `goruntime` (what
//! its runtime's structures mean) let `probes` (eBPF events) and `process`
//! (goroutine scans of its memory) feed the `aggregate` state; the session
//! publishes its snapshots on the `feed`, which `output` (JSON, text), the
//! `tui` and the `exporters` render.
pub(crate) mod aggregate;
pub mod cli;
pub(crate) mod exporters;
pub(crate) mod feed;
/// Entry points for the fuzz targets (`fuzz/`); not an API.
#[doc(hidden)]
pub mod fuzzing;
pub mod gobin;
pub mod goruntime;
pub mod governor;
pub(crate) mod output;
pub(crate) mod own_memory;
pub(crate) mod probes;
pub(crate) mod process;
pub mod session;
pub(crate) mod symbols;
#[cfg(test)]
mod test_support;
pub(crate) mod tui;
