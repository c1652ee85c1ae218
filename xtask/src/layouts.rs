//! `cargo xtask gen-layouts`: regenerates deferscope's built-in runtime
//! layout table, `tracer-user/src/goruntime/layouts.json`.
//!
//! For every toolchain and for GOARCH amd64 and arm64 it builds the tiny
//! program in `xtask/gen-layouts/probe/`, then runs the generator
//! (`xtask/gen-layouts/main.go`, with the newest toolchain) which reads the
//! runtime structs and waitReason constants from each probe's DWARF and the
//! waitReason strings from that toolchain's `GOROOT/src/runtime/runtime2.go`.
//! The output is committed; `goruntime::layout` embeds it with `include_str!`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

use crate::toolchains::GoToolchain;

pub const GEN_DIR: &str = "xtask/gen-layouts";
pub const OUTPUT: &str = "tracer-user/src/goruntime/layouts.json";
const ARCHES: [&str; 2] = ["amd64", "arm64"];

fn go_cmd(tc: &GoToolchain, workspace_root: &Path) -> Command {
    let mut cmd = Command::new(&tc.go);
    cmd.env("GOTOOLCHAIN", "local")
        .env("GOFLAGS", "-mod=mod")
        .env("GOCACHE", workspace_root.join("target").join("gocache"))
        .env("CGO_ENABLED", "0")
        .env("GOOS", "linux");
    cmd
}

fn run(mut cmd: Command, what: &str) -> anyhow::Result<Vec<u8>> {
    let out = cmd.output().with_context(|| format!("running {what}"))?;
    if !out.status.success() {
        bail!("{what} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(out.stdout)
}

/// Minor version number of a toolchain ("1.24" → 24).
fn minor(tc: &GoToolchain) -> anyhow::Result<u32> {
    tc.version
        .split('.')
        .nth(1)
        .and_then(|m| m.parse().ok())
        .with_context(|| format!("cannot parse Go version {:?}", tc.version))
}

pub fn gen_layouts(workspace_root: &Path, toolchains: &[GoToolchain]) -> anyhow::Result<()> {
    if toolchains.is_empty() {
        bail!("gen-layouts needs at least one Go toolchain");
    }
    let gen_dir = workspace_root.join(GEN_DIR);
    let probe_dir = gen_dir.join("probe");
    let work = workspace_root.join("target").join("gen-layouts");
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;

    let mut specs = Vec::new();
    for tc in toolchains {
        let minor = minor(tc)?;
        let mut env = go_cmd(tc, workspace_root);
        env.args(["env", "GOROOT"]);
        let goroot = String::from_utf8(run(env, &format!("{} env GOROOT", tc.full))?)?.trim().to_string();
        for arch in ARCHES {
            let bin: PathBuf = work.join(format!("probe-{}-{arch}", tc.full));
            let mut build = go_cmd(tc, workspace_root);
            build.current_dir(&probe_dir).env("GOARCH", arch).arg("build").arg("-o").arg(&bin).arg(".");
            run(build, &format!("{} build of the layout probe for {arch}", tc.full))?;
            let spec = format!("{minor}:{}:{arch}:{}:{goroot}", tc.full, bin.display());
            if spec.matches(':').count() != 4 {
                bail!("paths must not contain ':' ({spec})");
            }
            specs.push(spec);
        }
    }

    // Run the generator with the newest toolchain: it only uses the
    // standard library, so any of them works, but newer debug/dwarf is safer.
    let newest = toolchains.iter().max_by_key(|tc| minor(tc).unwrap_or(0)).context("no toolchain")?;
    let mut generator = go_cmd(newest, workspace_root);
    generator.current_dir(&gen_dir).arg("run").arg(".").args(&specs);
    let json = run(generator, "the gen-layouts generator")?;
    if json.is_empty() {
        bail!("the generator printed nothing");
    }
    let out = workspace_root.join(OUTPUT);
    std::fs::write(&out, json).with_context(|| format!("writing {}", out.display()))?;
    eprintln!("gen-layouts: wrote {} ({} layouts)", out.display(), specs.len());
    Ok(())
}
