//! One module per part of the screen.
pub mod charts;
pub mod detail;
pub mod findings;
pub mod goroutines;
pub mod header;
pub mod help;
pub mod leaks;
pub mod processes;
pub mod sites;
