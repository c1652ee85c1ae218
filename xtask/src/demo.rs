//! `cargo xtask demo`: builds and starts the demo Go workload
//! (`tests/go/demo`), then traces it with deferscope in this terminal.
use std::{
    fs::{self, File},
    io::{BufRead as _, BufReader, Write as _},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

use crate::{
    build,
    cmd::{self, note, step},
    paths, setup, signals,
    toolchains::{self, GoToolchain},
};

/// The Go version the demo is built with (the one the README's screenshot
/// shows); `cargo xtask demo` installs only this toolchain.
pub const DEMO_GO: &str = "1.24";
/// How long the demo may take to print `ready pid=<PID>`.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Options of `cargo xtask demo`.
pub struct DemoArgs {
    pub json: bool,
    pub duration: Option<String>,
    pub extra: Vec<String>,
}

/// Runs the demo; returns deferscope's exit code.
pub fn run(workspace_root: &Path, args: &DemoArgs) -> Result<i32> {
    let setup = setup::run_plan(workspace_root, &setup::Plan::demo())?;
    let deferscope = build::deferscope(workspace_root, true)?;
    let demo_bin = build_demo(workspace_root, &setup.toolchains)?;

    signals::catch_interrupts()?;
    let log = paths::target_dir(workspace_root).join("demo/demo.log");
    let (demo, pid) = start_demo(&demo_bin, &log)?;

    let mut tracer = Command::new(&deferscope);
    tracer.arg("--pid").arg(pid.to_string());
    if args.json {
        tracer.arg("--json");
    }
    if let Some(d) = &args.duration {
        tracer.args(["--duration", d]);
    }
    // The demo leaks a goroutine every half second: show them after 10 s
    // rather than the default 30 s, unless asked otherwise.
    if !args.extra.iter().any(|a| a.starts_with("--leak-after")) {
        tracer.args(["--leak-after", "10s"]);
    }
    tracer.args(&args.extra);
    step(format_args!("tracing the demo (pid {pid}) with deferscope; the demo's output goes to {}", log.display()));
    let status = cmd::status(&mut tracer)?;
    drop(demo);
    let code = cmd::exit_code(status);
    step(format_args!("deferscope exited with status {code}"));
    Ok(code)
}

/// Builds `tests/go/demo` with Go [`DEMO_GO`] into `<target>/demo/demo`.
fn build_demo(workspace_root: &Path, toolchains: &[GoToolchain]) -> Result<PathBuf> {
    let src = workspace_root.join("tests/go/demo");
    if !src.join("go.mod").is_file() {
        bail!("the demo workload is missing: {} has no go.mod", src.display());
    }
    let go = toolchains::find(toolchains, DEMO_GO).with_context(|| format!("no Go {DEMO_GO} toolchain"))?;
    let out_dir = paths::target_dir(workspace_root).join("demo");
    fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let out = out_dir.join("demo");
    step(format_args!("building the demo workload with {} ...", go.full));
    cmd::run_to_stderr(go.command(workspace_root).current_dir(&src).args(["build", "-o"]).arg(&out).arg("."))?;
    Ok(out)
}

/// Kills (and reaps) the demo when dropped: on success, error, or Ctrl-C.
struct DemoGuard(Child);

impl Drop for DemoGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            note(format_args!("stopping the demo (pid {})", self.0.id()));
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

/// Starts the demo in its own process group (so Ctrl-C reaches only
/// deferscope) and waits for `ready pid=<PID>` on its stdout. Everything it
/// prints goes on to `log`.
fn start_demo(bin: &Path, log: &Path) -> Result<(DemoGuard, u32)> {
    use std::os::unix::process::CommandExt as _;

    step(format_args!("starting {} ...", bin.display()));
    let log_file = File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let mut demo = Command::new(bin);
    demo.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(log_file.try_clone()?).process_group(0);
    // SAFETY: prctl is async-signal-safe and touches no memory of ours. The
    // demo gets SIGKILL if xtask dies without running its guard.
    unsafe {
        demo.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = demo.spawn().with_context(|| format!("starting {}", bin.display()))?;
    let stdout = child.stdout.take().context("demo stdout")?;
    let guard = DemoGuard(child);

    // A thread forwards stdout to the log (so the demo never blocks on a full
    // pipe) and reports the readiness line.
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut log_file = log_file;
        let mut tx = Some(tx);
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let _ = writeln!(log_file, "{line}");
            if let Some(pid) = parse_ready(&line) {
                if let Some(tx) = tx.take() {
                    let _ = tx.send(pid);
                }
            }
        }
    });

    let deadline = Instant::now() + READY_TIMEOUT;
    let mut guard = guard;
    loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(pid) => {
                note(format_args!("demo ready: pid {pid}"));
                return Ok((guard, pid));
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let status = guard.0.wait()?;
                bail!("the demo exited ({status}) before printing `ready pid=<PID>`; see {}", log.display());
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        if signals::interrupted() {
            bail!("interrupted while waiting for the demo");
        }
        if Instant::now() > deadline {
            bail!("the demo did not print `ready pid=<PID>` within {READY_TIMEOUT:?}; see {}", log.display());
        }
    }
}

/// `ready pid=1234` → 1234.
fn parse_ready(line: &str) -> Option<u32> {
    line.trim().strip_prefix("ready pid=")?.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_readiness_line() {
        assert_eq!(parse_ready("ready pid=4242"), Some(4242));
        assert_eq!(parse_ready("ready pid=4242 workers=8\n"), Some(4242));
        assert_eq!(parse_ready("starting"), None);
    }
}
