//! `cargo xtask bench`: placeholder until benchmarks exist.
use anyhow::Result;

use crate::cmd::step;

/// Says that there is nothing to run yet.
pub fn run() -> Result<()> {
    step("no benchmarks yet");
    Ok(())
}
