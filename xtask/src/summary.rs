//! A pass/fail table of the steps of a long task, printed at the end.
use std::time::Instant;

use anyhow::{Result, bail};

/// Records named steps with their outcome and duration.
#[derive(Default)]
pub struct Summary {
    steps: Vec<(String, Result<(), String>, f64)>,
}

impl Summary {
    /// Runs `f` as step `name` and records how it went; returns whether it passed.
    pub fn record(&mut self, name: &str, f: impl FnOnce() -> Result<()>) -> bool {
        let start = Instant::now();
        let outcome = f().map_err(|e| format!("{e:#}"));
        let ok = outcome.is_ok();
        if let Err(e) = &outcome {
            eprintln!("error: {name}: {e}");
        }
        self.steps.push((name.to_owned(), outcome, start.elapsed().as_secs_f64()));
        ok
    }

    /// Prints the table; fails if any step failed.
    pub fn finish(self) -> Result<()> {
        println!();
        println!("==> summary");
        for (name, outcome, secs) in &self.steps {
            let (mark, detail) = match outcome {
                Ok(()) => ("ok    ", String::new()),
                Err(e) => ("FAILED", format!(": {}", e.lines().next().unwrap_or_default())),
            };
            println!("    {mark} {name} ({secs:.1}s){detail}");
        }
        let failed: Vec<&str> = self.steps.iter().filter(|s| s.1.is_err()).map(|s| s.0.as_str()).collect();
        if failed.is_empty() {
            println!("==> all {} steps passed", self.steps.len());
            Ok(())
        } else {
            bail!("{} of {} steps failed: {}", failed.len(), self.steps.len(), failed.join(", "))
        }
    }
}
