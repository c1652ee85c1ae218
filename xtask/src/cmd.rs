//! Running external commands, with every step and command printed.
use std::{
    ffi::OsStr,
    fmt::Display,
    os::unix::process::ExitStatusExt as _,
    path::PathBuf,
    process::{Command, ExitStatus, Stdio},
};

use anyhow::{Context as _, Result, bail};

/// Prints a step header: `==> msg`.
///
/// On stderr, like cargo's own progress: stdout carries what the task
/// produces (`cargo xtask demo --json | jq …`).
pub fn step(msg: impl Display) {
    eprintln!("==> {msg}");
}

/// Prints an indented detail line under a step.
pub fn note(msg: impl Display) {
    eprintln!("    {msg}");
}

/// Runs `cmd` with inherited stdio after printing it; fails on a non-zero exit.
pub fn run(cmd: &mut Command) -> Result<()> {
    let status = status(cmd)?;
    if !status.success() {
        bail!("`{}` failed ({})", show_args(cmd), describe(status));
    }
    Ok(())
}

/// Like [`run`], but the child's stdout goes to our stderr. For setup and
/// build steps (apt-get, pip, rustup, cargo install, cargo build, go build):
/// what they print is progress, like [`step`]'s, never what the task
/// produces, so `cargo xtask demo --json | jq …` sees only JSON even when
/// setup installs something.
pub fn run_to_stderr(cmd: &mut Command) -> Result<()> {
    run(cmd.stdout(std::io::stderr()))
}

/// Runs `cmd` with inherited stdio after printing it and returns its status.
pub fn status(cmd: &mut Command) -> Result<ExitStatus> {
    note(format_args!("$ {}", show(cmd)));
    cmd.status().with_context(|| format!("cannot run `{}`", show(cmd)))
}

/// Runs `cmd` quietly and returns its stdout; fails on a non-zero exit.
pub fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd.stdin(Stdio::null()).output().with_context(|| format!("cannot run `{}`", show(cmd)))?;
    if !out.status.success() {
        bail!("`{}` failed ({}): {}", show(cmd), describe(out.status), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Like [`output`], but `None` when the command is missing or fails.
pub fn try_output(cmd: &mut Command) -> Option<String> {
    let out = cmd.stdin(Stdio::null()).stderr(Stdio::null()).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Where `program` is on PATH.
pub fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(program)).find(|p| p.is_file())
}

/// Whether a program can be found on PATH.
pub fn on_path(program: &str) -> bool {
    which(program).is_some()
}

/// The shell exit code for a status: the code, or 128 + signal.
pub fn exit_code(status: ExitStatus) -> i32 {
    status.code().or_else(|| status.signal().map(|sig| 128 + sig)).unwrap_or(1)
}

fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        _ => status.to_string(),
    }
}

/// Program and arguments only (for error messages; [`status`] printed all).
fn show_args(cmd: &Command) -> String {
    std::iter::once(cmd.get_program()).chain(cmd.get_args()).map(quote).collect::<Vec<_>>().join(" ")
}

/// A shell-like rendering of a command: changed env vars, program, args.
pub fn show(cmd: &Command) -> String {
    let mut parts: Vec<String> =
        cmd.get_envs().filter_map(|(k, v)| v.map(|v| format!("{}={}", quote(k), quote(v)))).collect();
    parts.push(quote(cmd.get_program()));
    parts.extend(cmd.get_args().map(quote));
    let line = parts.join(" ");
    match cmd.get_current_dir() {
        Some(dir) => format!("(cd {} && {line})", quote(dir.as_os_str())),
        None => line,
    }
}

fn quote(s: &OsStr) -> String {
    let s = s.to_string_lossy();
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c)) {
        s.into_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Whether we run as root (apt-get needs it).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}
