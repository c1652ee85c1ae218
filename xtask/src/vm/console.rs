//! Booting the VM and reading its serial console: every line goes to a log
//! file, scenario results are reported as they arrive, and the run is cut
//! off (qemu killed) at a deadline.
use std::{
    fs,
    io::{BufRead as _, BufReader, Write as _},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};

use super::guest::MARKER;
use crate::cmd;

/// How a scenario ended, as the guest reported it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Fail,
    Skip,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScenarioResult {
    pub name: String,
    pub verdict: Verdict,
    /// As the guest printed it, e.g. `41s exit=0`.
    pub detail: String,
}

/// Everything one boot produced.
#[derive(Debug, Default)]
pub struct Run {
    /// The guest's own description (`6.1.0-56-arm64 aarch64 cpus=2 ...`).
    pub guest: Option<String>,
    pub results: Vec<ScenarioResult>,
    /// The guest reached the end of its scenario list.
    pub done: bool,
    /// Every console line, `\r` removed.
    pub lines: Vec<String>,
    /// Why the run ended early, if it did (timeout, qemu failing).
    pub problem: Option<String>,
}

impl Run {
    /// The console lines of one scenario, from its `begin` to its `result`
    /// (or to the end of the log if it never finished).
    pub fn scenario_output(&self, name: &str) -> &[String] {
        let begin = format!("{MARKER} begin {name}");
        let Some(start) = self.lines.iter().position(|l| l.contains(&begin)) else { return &[] };
        let result = format!("{MARKER} result {name} ");
        let end = self.lines[start..].iter().position(|l| l.contains(&result)).map_or(self.lines.len(), |i| start + i);
        &self.lines[start + 1..end]
    }

    fn take(&mut self, line: String, on_result: &mut dyn FnMut(&ScenarioResult)) {
        if let Some(rest) = line.find(MARKER).map(|i| line[i + MARKER.len()..].trim().to_owned()) {
            if let Some(guest) = rest.strip_prefix("guest ") {
                self.guest = Some(guest.to_owned());
            } else if rest == "done" {
                self.done = true;
            } else if let Some(result) = parse_result(&rest) {
                on_result(&result);
                self.results.push(result);
            }
        }
        self.lines.push(line);
    }
}

/// `result NAME PASS|FAIL|SKIP DETAIL...`
fn parse_result(rest: &str) -> Option<ScenarioResult> {
    let mut parts = rest.strip_prefix("result ")?.splitn(3, ' ');
    let name = parts.next()?.to_owned();
    let verdict = match parts.next()? {
        "PASS" => Verdict::Pass,
        "FAIL" => Verdict::Fail,
        "SKIP" => Verdict::Skip,
        _ => return None,
    };
    Some(ScenarioResult { name, verdict, detail: parts.next().unwrap_or_default().to_owned() })
}

/// Runs `qemu` (a prepared command) to completion or until `timeout`,
/// writing the console to `log`; calls `on_result` for each scenario result.
pub fn boot(
    qemu: &mut Command,
    log: &Path,
    timeout: Duration,
    on_result: &mut dyn FnMut(&ScenarioResult),
) -> Result<Run> {
    cmd::note(format_args!("$ {}", cmd::show(qemu)));
    let mut child = qemu
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", qemu.get_program().to_string_lossy()))?;
    let mut file = fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let (tx, rx) = mpsc::channel::<String>();
    let stdout = child.stdout.take().context("qemu's stdout")?;
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).split(b'\n') {
            let Ok(line) = line else { break };
            let text = String::from_utf8_lossy(&line).trim_end_matches('\r').to_owned();
            if tx.send(text).is_err() {
                break;
            }
        }
    });
    let stderr = child.stderr.take();
    let stderr_reader = std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut s) = stderr {
            let _ = std::io::Read::read_to_string(&mut s, &mut text);
        }
        text
    });

    let deadline = Instant::now() + timeout;
    let mut run = Run::default();
    loop {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) => {
                writeln!(file, "{line}")?;
                run.take(line, on_result);
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                run.problem = Some(format!("the VM did not finish within {}s: killed it", timeout.as_secs()));
                let _ = child.kill();
                break;
            }
        }
    }
    let status = child.wait()?;
    let stderr = stderr_reader.join().unwrap_or_default();
    if run.problem.is_none() && !status.success() {
        run.problem = Some(format!("qemu exited with {status}: {}", stderr.trim()));
    }
    if run.problem.is_none() && !run.done {
        run.problem = Some(format!("the guest stopped before finishing its scenarios (qemu: {status})"));
    }
    file.flush()?;
    Ok(run)
}

/// The console log's path for a run under `dir`.
pub fn log_path(dir: &Path) -> PathBuf {
    dir.join("console.log")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_markers_among_other_console_output() {
        let mut run = Run::default();
        let mut seen = Vec::new();
        let mut on = |r: &ScenarioResult| seen.push(r.name.clone());
        for line in [
            "[    0.000000] Booting Linux on physical CPU 0x0000000000 [0x410fd083]".to_owned(),
            format!("{MARKER} guest 6.1.0-56-arm64 aarch64 cpus=2"),
            format!("{MARKER} begin leaks/go1.24.11"),
            "test leaked_goroutines ... ok".to_owned(),
            format!("[   12.3] random: crng init done{MARKER} result leaks/go1.24.11 PASS 30s exit=0"),
            format!("{MARKER} begin spin/go1.24.11"),
            "boom".to_owned(),
            format!("{MARKER} result spin/go1.24.11 FAIL 9s exit=101"),
            format!("{MARKER} result bogus MAYBE 1s"),
            format!("{MARKER} done"),
        ] {
            run.take(line, &mut on);
        }
        assert_eq!(run.guest.as_deref(), Some("6.1.0-56-arm64 aarch64 cpus=2"));
        assert!(run.done);
        assert_eq!(seen, ["leaks/go1.24.11", "spin/go1.24.11"]);
        assert_eq!(run.results[0].verdict, Verdict::Pass);
        assert_eq!(run.results[0].detail, "30s exit=0");
        assert_eq!(run.results[1].verdict, Verdict::Fail);
        assert_eq!(run.scenario_output("spin/go1.24.11"), ["boom"]);
        assert_eq!(run.scenario_output("leaks/go1.24.11"), ["test leaked_goroutines ... ok"]);
        assert!(run.scenario_output("absent").is_empty());
    }
}
