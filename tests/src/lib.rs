//! Helpers for deferscope's end-to-end tests: build the Go programs under
//! `tests/go/` with every toolchain of the matrix, run them, attach the real
//! `deferscope` binary, and compare its snapshots with what the Go program
//! reports about itself.
//!
//! Tests that cannot run without root, the Go toolchains or promtool are
//! `#[ignore]`d with the reason; `cargo xtask test` runs them all
//! (`--include-ignored`) and sets the environment:
//! - `DEFERSCOPE_BIN`: the deferscope binary;
//! - `DEFERSCOPE_GO_TOOLCHAINS`: `go1.19.8=/path/to/go,go1.21.13=...`;
//! - `DEFERSCOPE_GO_CACHE`: a GOCACHE shared by the builds.
use std::{
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
    process::{Child, ChildStdin, Command, Stdio},
    sync::mpsc::{self, Receiver, RecvTimeoutError},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, anyhow, bail};
use serde_json::Value;

pub mod prometheus;
pub mod tmux;

/// How long any single expectation may take before the test fails. Generous:
/// probes cost ~10 µs a hit in these VMs and CI machines are slow.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(60);

/// The checkout the tests read their Go sources from: `DEFERSCOPE_WORKSPACE`
/// if set (the arm64 VM test runs these binaries in a guest that holds a copy
/// of `tests/go/` only), else the one they were built in.
pub fn workspace_root() -> PathBuf {
    match std::env::var_os("DEFERSCOPE_WORKSPACE").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_owned(),
    }
}

/// Fails the test unless it runs as root.
///
/// Tests that need root (or the Go toolchains, or promtool) are
/// `#[ignore = "needs …"]`, so that a plain `cargo test` lists them as
/// ignored, never as passed. `cargo xtask test` runs them all
/// (`--include-ignored`), as root; one that runs without what it needs fails.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "this test needs root (to attach uprobes and read /proc/PID/mem): run `cargo xtask test` as root"
    );
}

#[derive(Clone, Debug)]
pub struct Toolchain {
    /// `go1.24.11`
    pub full: String,
    pub go: PathBuf,
}

impl Toolchain {
    /// Minor version: 24 for go1.24.11.
    pub fn minor(&self) -> u32 {
        self.full.trim_start_matches("go1.").split('.').next().and_then(|m| m.parse().ok()).unwrap_or(0)
    }
}

/// The Go toolchains of the matrix, from `DEFERSCOPE_GO_TOOLCHAINS`.
pub fn toolchains() -> anyhow::Result<Vec<Toolchain>> {
    let spec = std::env::var("DEFERSCOPE_GO_TOOLCHAINS")
        .context("DEFERSCOPE_GO_TOOLCHAINS is not set: run the tests with `cargo xtask test`")?;
    let mut out = Vec::new();
    for entry in spec.split(',').filter(|e| !e.is_empty()) {
        let (full, go) = entry.split_once('=').ok_or_else(|| anyhow!("bad toolchain entry {entry:?}"))?;
        out.push(Toolchain { full: full.to_owned(), go: PathBuf::from(go) });
    }
    if out.is_empty() {
        bail!("DEFERSCOPE_GO_TOOLCHAINS lists no toolchain");
    }
    Ok(out)
}

pub fn deferscope_bin() -> anyhow::Result<PathBuf> {
    let bin = std::env::var_os("DEFERSCOPE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/release/deferscope"));
    if !bin.is_file() {
        bail!("{} does not exist: run the tests with `cargo xtask test`", bin.display());
    }
    Ok(bin)
}

/// Builds the Go program in `tests/go/<name>` with `toolchain`, returning the
/// binary path. `extra` goes to `go build` (e.g. `-buildmode=pie`).
///
/// With `DEFERSCOPE_GO_PREBUILT=DIR` nothing is built: the binary must already
/// be at [`go_program_path`]`(DIR, ..)` (how the arm64 VM test ships programs
/// cross-built on the host; see `xtask/src/vm/`).
pub fn build_go(name: &str, toolchain: &Toolchain, extra: &[&str]) -> anyhow::Result<PathBuf> {
    build_go_env(name, toolchain, extra, &[])
}

/// [`build_go`] with extra environment for `go build` (e.g.
/// `GOEXPERIMENT=goroutineleakprofile`).
pub fn build_go_env(
    name: &str,
    toolchain: &Toolchain,
    extra: &[&str],
    env: &[(&str, &str)],
) -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("DEFERSCOPE_GO_PREBUILT") {
        let out = go_program_path(Path::new(&dir), name, &toolchain.full, extra, env);
        if !out.is_file() {
            bail!("tests/go/{name} ({} {extra:?}) was not prebuilt: {} is missing", toolchain.full, out.display());
        }
        return Ok(out);
    }
    let root = workspace_root();
    let out = go_program_path(&root.join("target/integration-go"), name, &toolchain.full, extra, env);
    let cache =
        std::env::var_os("DEFERSCOPE_GO_CACHE").map(PathBuf::from).unwrap_or_else(|| root.join("target/gocache"));
    let mut go = Command::new(&toolchain.go);
    go.env("GOTOOLCHAIN", "local")
        .env("GOFLAGS", "-mod=mod")
        .env("GOCACHE", cache)
        .env("GOPATH", root.join("target/gopath"))
        .env("CGO_ENABLED", "0")
        .envs(env.iter().copied());
    go_build_args(&mut go, &root, name, extra, &out)?;
    let status = go.status().with_context(|| format!("running {}", toolchain.go.display()))?;
    if !status.success() {
        bail!("building tests/go/{name} with {} failed: {status}", toolchain.full);
    }
    Ok(out)
}

/// Where [`build_go`] puts (or finds) `tests/go/<name>` built by Go
/// `toolchain_full` (`go1.24.11`) with `extra` flags and `env` (whose values
/// name it too), under `dir`.
pub fn go_program_path(dir: &Path, name: &str, toolchain_full: &str, extra: &[&str], env: &[(&str, &str)]) -> PathBuf {
    let words: Vec<&str> = extra.iter().copied().chain(env.iter().map(|(_, v)| *v)).collect();
    let tag = if words.is_empty() {
        String::new()
    } else {
        format!("-{}", words.join("").replace(['-', '=', ' ', '/', ','], ""))
    };
    dir.join(format!("{toolchain_full}{tag}")).join(name)
}

/// Makes `go` (a `go` command with its environment set) build
/// `<workspace>/tests/go/<name>` with `extra` flags into `out`, creating
/// `out`'s directory.
pub fn go_build_args(go: &mut Command, workspace: &Path, name: &str, extra: &[&str], out: &Path) -> anyhow::Result<()> {
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    go.current_dir(workspace.join("tests/go").join(name)).args(["build", "-o"]).arg(out).args(extra).arg(".");
    Ok(())
}

/// Line number of the line of `tests/go/<name>/main.go` holding `marker`
/// (e.g. `SITE:heap`): the ground truth for reported source lines.
pub fn marker_line(name: &str, marker: &str) -> u32 {
    let path = workspace_root().join("tests/go").join(name).join("main.go");
    let text = std::fs::read_to_string(&path).expect("read Go source");
    let needle = format!("// {marker}");
    let lines: Vec<usize> =
        text.lines().enumerate().filter(|(_, l)| l.trim_end().ends_with(&needle)).map(|(i, _)| i + 1).collect();
    assert_eq!(lines.len(), 1, "marker {marker} must appear exactly once in {}", path.display());
    lines[0] as u32
}

/// Lines of a child's stdout, read on a thread so waits can time out.
fn line_reader(stream: impl std::io::Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// A running Go test program that reports JSON lines.
pub struct GoProgram {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    pub pid: u32,
}

impl GoProgram {
    pub fn start(binary: &Path) -> anyhow::Result<Self> {
        Self::start_with_args(binary, &[])
    }

    /// [`GoProgram::start`] with command-line arguments.
    pub fn start_with_args(binary: &Path, args: &[&str]) -> anyhow::Result<Self> {
        let mut child = Command::new(binary)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let stdin = child.stdin.take();
        let lines = line_reader(child.stdout.take().context("stdout")?);
        let pid = child.id();
        Ok(Self { child, stdin, lines, pid })
    }

    /// Waits for the program's next report and checks its `event` name.
    pub fn expect(&mut self, event: &str) -> anyhow::Result<Value> {
        let line = match self.lines.recv_timeout(STEP_TIMEOUT) {
            Ok(line) => line,
            Err(RecvTimeoutError::Timeout) => {
                bail!("the Go program did not report {event:?} within {STEP_TIMEOUT:?}")
            }
            Err(RecvTimeoutError::Disconnected) => {
                bail!("the Go program exited before reporting {event:?}")
            }
        };
        let value: Value = serde_json::from_str(&line).with_context(|| format!("Go program printed {line:?}"))?;
        if value["event"] != event {
            bail!("expected event {event:?} from the Go program, got {line}");
        }
        Ok(value)
    }

    /// Sends a command and waits for its report.
    pub fn command(&mut self, cmd: &str, event: &str) -> anyhow::Result<Value> {
        let stdin = self.stdin.as_mut().context("stdin closed")?;
        writeln!(stdin, "{cmd}")?;
        stdin.flush()?;
        self.expect(event)
    }

    pub fn wait_exit(&mut self) -> anyhow::Result<std::process::ExitStatus> {
        self.stdin.take();
        Ok(self.child.wait()?)
    }
}

impl Drop for GoProgram {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// deferscope attached with `--json`, its snapshots parsed as they arrive.
pub struct Tracer {
    child: Child,
    lines: Receiver<String>,
    pub last: Option<Value>,
    stderr: Receiver<String>,
}

impl Tracer {
    /// Starts deferscope on `pid` with `extra` arguments, and those of
    /// `DEFERSCOPE_TEST_ARGS` (space-separated: the arm64 VM test keeps every
    /// probe with `--overhead-budget none` where emulation makes each hit
    /// cost ~100 µs; see `xtask/src/vm/`).
    pub fn attach(pid: u32, extra: &[&str]) -> anyhow::Result<Self> {
        Self::spawn(&[&["--pid", &pid.to_string(), "--interval", "200ms"], extra].concat())
    }

    /// deferscope with `--json`, `args` (the selection included: `--all`,
    /// `--exe NAME`, ...) and those of `DEFERSCOPE_TEST_ARGS`.
    pub fn spawn(args: &[&str]) -> anyhow::Result<Self> {
        let from_env = std::env::var("DEFERSCOPE_TEST_ARGS").unwrap_or_default();
        let mut child = Command::new(deferscope_bin()?)
            .arg("--json")
            .args(args)
            .args(from_env.split_whitespace())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting deferscope")?;
        let lines = line_reader(child.stdout.take().context("stdout")?);
        let stderr = line_reader(child.stderr.take().context("stderr")?);
        Ok(Self { child, lines, last: None, stderr })
    }

    /// What deferscope wrote on stderr since the last call.
    pub fn stderr_text(&self) -> String {
        self.stderr.try_iter().collect::<Vec<_>>().join("\n")
    }

    /// Reads snapshots until `check` accepts one (returns it) or the step
    /// times out (error naming `what` and showing the last snapshot's
    /// relevant part via `check`'s own error text).
    pub fn wait_for(
        &mut self,
        what: &str,
        mut check: impl FnMut(&Value) -> Result<(), String>,
    ) -> anyhow::Result<Value> {
        let deadline = Instant::now() + STEP_TIMEOUT;
        let mut last_error = String::from("no snapshot received");
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let snapshot: Value =
                        serde_json::from_str(&line).with_context(|| format!("deferscope printed {line:?}"))?;
                    let verdict = check(&snapshot);
                    self.last = Some(snapshot.clone());
                    match verdict {
                        Ok(()) => return Ok(snapshot),
                        Err(e) => last_error = e,
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    bail!("{what}: not seen within {STEP_TIMEOUT:?}; last: {last_error}")
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let status = self.child.wait()?;
                    bail!(
                        "{what}: deferscope exited ({status}) first; last: {last_error}; stderr: {}",
                        self.stderr_text()
                    )
                }
            }
        }
    }

    /// Reads the next `count` snapshots, failing at the first one that
    /// `check` rejects (or if they do not come in time); returns the last.
    pub fn expect_every(
        &mut self,
        count: usize,
        what: &str,
        mut check: impl FnMut(&Value) -> Result<(), String>,
    ) -> anyhow::Result<Value> {
        let mut last = None;
        for i in 1..=count {
            let mut verdict = Ok(());
            let snapshot = self.wait_for(what, |s| {
                verdict = check(s);
                Ok(())
            })?;
            if let Err(e) = verdict {
                bail!("{what}: snapshot {i} of {count}: {e}");
            }
            last = Some(snapshot);
        }
        last.context("no snapshot requested")
    }

    /// Drops the snapshots printed so far and not read yet, so that the next
    /// ones read are fresh (for timing what happens next).
    pub fn skip_queued(&mut self) -> usize {
        self.lines.try_iter().count()
    }

    /// Waits for deferscope to exit on its own; returns its status and the
    /// snapshots it printed last.
    pub fn wait_exit(&mut self) -> anyhow::Result<(std::process::ExitStatus, Vec<Value>)> {
        let deadline = Instant::now() + STEP_TIMEOUT;
        let mut rest = Vec::new();
        loop {
            match self.lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) => rest.push(serde_json::from_str(&line)?),
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {
                    bail!("deferscope did not exit within {STEP_TIMEOUT:?}")
                }
            }
        }
        Ok((self.child.wait()?, rest))
    }

    /// Quits `program` and expects deferscope to follow it: exit status 0 and
    /// a last snapshot marked `target_exited`, which it returns.
    pub fn quit_with(&mut self, program: &mut GoProgram) -> anyhow::Result<Value> {
        program.command("quit", "quit")?;
        program.wait_exit()?;
        let (status, rest) = self.wait_exit()?;
        anyhow::ensure!(status.success(), "deferscope exit status {status}");
        let last = rest.last().or(self.last.as_ref()).context("no last snapshot")?.clone();
        anyhow::ensure!(last["target_exited"] == true, "the last snapshot is not marked target_exited");
        Ok(last)
    }

    /// SIGKILL: the tracer gets no chance to clean up.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn interrupt(&mut self) -> anyhow::Result<(std::process::ExitStatus, Vec<Value>)> {
        // SAFETY: kill on our own child's PID.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        self.wait_exit()
    }
}

impl Drop for Tracer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The snapshot's entry for goroutine `goid`.
pub fn goroutine(snapshot: &Value, goid: u64) -> Option<&Value> {
    snapshot["goroutines"].as_array()?.iter().find(|g| g["goid"] == goid)
}

/// Checks that goroutine `goid` has exactly `depth` defer records.
pub fn expect_depth(snapshot: &Value, goid: u64, depth: u64) -> Result<(), String> {
    match goroutine(snapshot, goid) {
        None => Err(format!("goroutine {goid} missing")),
        Some(g) if g["defer_depth"] == depth => Ok(()),
        Some(g) => Err(format!("goroutine {goid} has depth {} (want {depth}): {g}", g["defer_depth"])),
    }
}

/// Checks that goroutine `goid` has between `low` and `high` defer records.
pub fn expect_depth_within(snapshot: &Value, goid: u64, low: u64, high: u64) -> Result<(), String> {
    let g = goroutine(snapshot, goid).ok_or(format!("goroutine {goid} missing"))?;
    match g["defer_depth"].as_u64() {
        Some(d) if (low..=high).contains(&d) => Ok(()),
        _ => Err(format!("goroutine {goid} has depth {} (want {low}..={high}): {g}", g["defer_depth"])),
    }
}

/// Checks that deferscope counts goroutines as `runtime.NumGoroutine()` did.
pub fn expect_goroutines_live(snapshot: &Value, num_goroutine: u64) -> Result<(), String> {
    match &snapshot["totals"]["goroutines_live"] {
        live if *live == num_goroutine => Ok(()),
        live => Err(format!("goroutines_live {live} != runtime.NumGoroutine() {num_goroutine}")),
    }
}

/// The `defer_sites` entry for a source line of a test program.
pub fn site(snapshot: &Value, line: u32) -> Option<&Value> {
    snapshot["defer_sites"]
        .as_array()?
        .iter()
        .find(|s| s["line"] == line && s["file"].as_str().is_some_and(|f| f.ends_with("main.go")))
}

/// Runs `body` for every toolchain; reports every failing version, not just
/// the first, and fails if any did.
pub fn for_each_toolchain(test: &str, mut body: impl FnMut(&Toolchain) -> anyhow::Result<()>) {
    let toolchains = toolchains().expect("toolchains");
    let mut failures = Vec::new();
    for tc in &toolchains {
        eprintln!("== {test} with {}", tc.full);
        match body(tc) {
            Ok(()) => eprintln!("   {}: ok", tc.full),
            Err(e) => {
                eprintln!("   {}: FAILED: {e:#}", tc.full);
                failures.push(format!("{}: {e:#}", tc.full));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{test} failed for {} of {} Go versions:\n{}",
        failures.len(),
        toolchains.len(),
        failures.join("\n")
    );
}
