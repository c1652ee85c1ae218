//! What a user sees when deferscope cannot trace: one clear sentence on
//! stderr naming the PID or the cause, a non-zero exit, never a panic.
use std::process::{Command, Output, Stdio};

use deferscope_integration::*;

fn deferscope(args: &[&str]) -> Output {
    Command::new(deferscope_bin().expect("deferscope binary"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run deferscope")
}

/// Exactly one line on stderr, starting with "deferscope: ", no panic.
fn one_sentence(out: &Output) -> String {
    assert!(!out.status.success(), "expected a failure, got {}", out.status);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(stderr.lines().count(), 1, "want one line on stderr, got:\n{stderr}");
    assert!(stderr.starts_with("deferscope: "), "{stderr}");
    assert!(!stderr.contains("panicked") && !stderr.contains("backtrace"), "{stderr}");
    assert!(out.stdout.is_empty(), "nothing on stdout: {}", String::from_utf8_lossy(&out.stdout));
    stderr
}

/// A child process that is killed when the test ends.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn missing_pid() {
    // PIDs above pid_max never exist.
    let out = deferscope(&["--pid", "4194305", "--json"]);
    let msg = one_sentence(&out);
    assert!(msg.contains("no process with PID 4194305"), "{msg}");
}

#[test]
fn bad_arguments_are_usage_errors() {
    let out = deferscope(&["--pid", "1", "--interval", "soon"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("invalid duration"), "{stderr}");
}

#[test]
#[ignore = "needs root (cargo xtask test runs it)"]
fn not_a_go_program() {
    require_root();
    let sleep = Running(Command::new("sleep").arg("60").spawn().expect("sleep"));
    let pid = sleep.0.id().to_string();
    let msg = one_sentence(&deferscope(&["--pid", &pid, "--json"]));
    assert!(msg.contains(&format!("process {pid}")) && msg.contains("is not a Go program"), "{msg}");
}

#[test]
#[ignore = "needs root and the Go toolchains (cargo xtask test runs it)"]
fn unsupported_go_version() {
    require_root();
    // A real Go program whose build info claims a version deferscope does
    // not know: same length, so the binary is otherwise untouched and runs.
    let tc = toolchains().expect("toolchains").into_iter().max_by_key(Toolchain::minor).expect("a toolchain");
    let binary = build_go("defers", &tc, &[]).expect("build");
    let mut bytes = std::fs::read(&binary).expect("read");
    // `go1.27.3` → `go1.17.3`: the minor always has two digits here. In
    // .go.buildinfo the string follows its length byte.
    let claimed = format!("go1.17{}", &tc.full["go1.NN".len()..]);
    let from = [&[tc.full.len() as u8][..], tc.full.as_bytes()].concat();
    let at = bytes.windows(from.len()).position(|w| w == from).expect("version string in .go.buildinfo");
    bytes[at + 1..at + 1 + claimed.len()].copy_from_slice(claimed.as_bytes());
    let patched = binary.with_file_name("defers-claims-go1.17");
    std::fs::write(&patched, &bytes).expect("write");
    std::fs::set_permissions(&patched, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    let mut program = GoProgram::start(&patched).expect("start");
    program.expect("ready").expect("ready");
    let pid = program.pid.to_string();
    let msg = one_sentence(&deferscope(&["--pid", &pid, "--json"]));
    assert!(msg.contains(&format!("process {pid} runs {claimed}")) && msg.contains("Go 1.19 to 1.27"), "{msg}");
}

#[test]
#[ignore = "needs root (cargo xtask test runs it)"]
fn missing_privilege() {
    require_root();
    // Root starts the target; deferscope runs as nobody, without capabilities.
    let sleep = Running(Command::new("sleep").arg("60").spawn().expect("sleep"));
    let pid = sleep.0.id().to_string();
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all"])
        .arg(deferscope_bin().expect("bin"))
        .args(["--pid", &pid, "--json"])
        .stdin(Stdio::null())
        .output()
        .expect("setpriv (util-linux)");
    let msg = one_sentence(&out);
    assert!(msg.contains("permission denied") && msg.contains("needs root"), "{msg}");
}
