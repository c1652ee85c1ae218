//! Builds the Go binaries that `tracer-user/src/gobin`'s unit tests parse.
//!
//! One small program (`xtask/fixtures/parser-fixture/`) is built by every
//! toolchain, for amd64 and arm64, in the variants deferscope meets in the
//! wild: plain, stripped (`-s -w`), PIE, PIE+stripped, and (amd64 only, when a
//! C compiler is present) cgo. Outputs are named `<full>-<arch>-<variant>`,
//! e.g. `go1.24.11-arm64-pie-stripped`. The unit tests find them through
//! `DEFERSCOPE_GO_FIXTURES=<out_dir>`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use anyhow::{Context, bail};

use crate::toolchains::GoToolchain;

/// Directory (relative to the workspace root) of the fixture's Go source.
pub const FIXTURE_SRC: &str = "xtask/fixtures/parser-fixture";

pub const ARCHES: [&str; 2] = ["amd64", "arm64"];

/// Build variants; `cgo` is only built for the host architecture (amd64) and
/// only when a C compiler is available.
pub const VARIANTS: [&str; 5] = ["plain", "stripped", "pie", "pie-stripped", "cgo"];

/// Builds every fixture that is missing or older than the fixture sources.
pub fn build_parser_fixtures(workspace_root: &Path, toolchains: &[GoToolchain], out_dir: &Path) -> anyhow::Result<()> {
    let src = workspace_root.join(FIXTURE_SRC);
    std::fs::create_dir_all(out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let out_dir = out_dir.canonicalize().with_context(|| format!("resolving {}", out_dir.display()))?;
    let gocache = workspace_root.join("target").join("gocache");
    std::fs::create_dir_all(&gocache)?;
    let src_mtime = newest_mtime(&src)?;
    let cgo_ok = host_is_amd64() && have_c_compiler();
    if !cgo_ok {
        eprintln!("fixtures: no C compiler for the host (or host is not amd64): skipping cgo variants");
    }

    // Toolchains are independent: build them in parallel (the first build of
    // each toolchain compiles its runtime, which dominates).
    let results: Vec<anyhow::Result<()>> = std::thread::scope(|scope| {
        let handles: Vec<_> = toolchains
            .iter()
            .map(|tc| {
                let (src, out_dir, gocache) = (&src, &out_dir, &gocache);
                scope.spawn(move || -> anyhow::Result<()> {
                    for arch in ARCHES {
                        for variant in VARIANTS {
                            if variant == "cgo" && (arch != "amd64" || !cgo_ok) {
                                continue;
                            }
                            let out = out_dir.join(format!("{}-{arch}-{variant}", tc.full));
                            if is_fresh(&out, src_mtime) {
                                continue;
                            }
                            build_one(tc, src, gocache, arch, variant, &out)?;
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err(anyhow::anyhow!("fixture build thread panicked"))))
            .collect()
    });
    for r in results {
        r?;
    }
    Ok(())
}

fn build_one(
    tc: &GoToolchain,
    src: &Path,
    gocache: &Path,
    arch: &str,
    variant: &str,
    out: &Path,
) -> anyhow::Result<()> {
    let mut cmd = Command::new(&tc.go);
    cmd.current_dir(src)
        .env("GOTOOLCHAIN", "local")
        .env("GOFLAGS", "-mod=mod")
        .env("GOCACHE", gocache)
        .env("GOOS", "linux")
        .env("GOARCH", arch)
        .env("CGO_ENABLED", if variant == "cgo" { "1" } else { "0" })
        .arg("build")
        .arg("-o")
        .arg(out);
    match variant {
        "plain" | "cgo" => {}
        "stripped" => {
            cmd.arg("-ldflags=-s -w");
        }
        "pie" => {
            cmd.arg("-buildmode=pie");
        }
        "pie-stripped" => {
            cmd.args(["-buildmode=pie", "-ldflags=-s -w"]);
        }
        other => bail!("unknown fixture variant {other}"),
    }
    cmd.arg(".");
    let output = cmd.output().with_context(|| format!("running {}", tc.go.display()))?;
    if !output.status.success() {
        bail!(
            "{} build of {} ({arch}, {variant}) failed:\n{}",
            tc.full,
            src.display(),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    eprintln!("fixtures: built {}", out.display());
    Ok(())
}

fn is_fresh(out: &Path, src_mtime: SystemTime) -> bool {
    std::fs::metadata(out).and_then(|m| m.modified()).map(|m| m >= src_mtime).unwrap_or(false)
}

fn newest_mtime(dir: &Path) -> anyhow::Result<SystemTime> {
    let mut newest = SystemTime::UNIX_EPOCH;
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let m = entry?.metadata()?.modified()?;
        newest = newest.max(m);
    }
    Ok(newest)
}

fn host_is_amd64() -> bool {
    cfg!(target_arch = "x86_64")
}

fn have_c_compiler() -> bool {
    let cc: PathBuf = std::env::var_os("CC").map(PathBuf::from).unwrap_or_else(|| "gcc".into());
    Command::new(cc).arg("--version").output().map(|o| o.status.success()).unwrap_or(false)
}
