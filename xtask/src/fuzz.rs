//! `cargo xtask fuzz [--seconds N] [--refresh-seeds] [TARGET]`: runs the
//! cargo-fuzz targets in `fuzz/` (every reader of untrusted input), each for
//! N seconds, and fails on any crash, printing the reproducer.
//!
//! Each run reads the committed seeds (`fuzz/corpus/<target>/`) and writes
//! what it discovers to `<target dir>/fuzz/corpus/<target>/`, so the
//! committed corpus only changes through `--refresh-seeds`. Crashes land in
//! `fuzz/artifacts/<target>/` (git-ignored).
use std::{
    collections::BTreeSet,
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::{Result, bail};

use crate::{
    cmd::{self, note, step},
    fixtures, paths, seeds,
    summary::Summary,
    toolchains,
};

/// Every fuzz target (`fuzz/fuzz_targets/<name>.rs`).
pub const TARGETS: &[&str] = &["go_binary", "elf", "buildinfo", "pclntab", "dwarf", "memory_scan"];

/// Seconds per target when `--seconds` is not given: a smoke run.
pub const DEFAULT_SECONDS: u64 = 10;

/// An input slower than this is reported as a hang (libFuzzer's default is
/// 20 minutes; every reader here must answer in milliseconds).
const TIMEOUT_SECONDS: u64 = 10;

pub struct FuzzArgs {
    pub seconds: u64,
    pub target: Option<String>,
    pub refresh_seeds: bool,
    pub sanitizer: String,
}

/// Runs the task; returns the exit code (non-zero when a target crashed).
pub fn run(workspace_root: &Path, args: &FuzzArgs) -> Result<i32> {
    let targets: Vec<&str> = match &args.target {
        Some(t) if TARGETS.contains(&t.as_str()) => vec![t.as_str()],
        Some(t) => bail!("unknown fuzz target {t}; the targets are {}", TARGETS.join(", ")),
        None => TARGETS.to_vec(),
    };
    let fuzz_dir = workspace_root.join("fuzz");
    let target_dir = paths::target_dir(workspace_root).join("fuzz");
    if args.refresh_seeds {
        let toolchains = toolchains::go_toolchains(workspace_root)?;
        let fixtures_dir = paths::target_dir(workspace_root).join("go-fixtures");
        step(format_args!("building Go parser fixtures into {} ...", fixtures_dir.display()));
        fixtures::build_parser_fixtures(workspace_root, &toolchains, &fixtures_dir)?;
        seeds::refresh(workspace_root, &fixtures_dir)?;
    }
    ensure_cargo_fuzz()?;

    step(format_args!("building the fuzz targets (nightly, sanitizer: {}) ...", args.sanitizer));
    let mut build = cargo_fuzz(&fuzz_dir, &target_dir, "build", &args.sanitizer);
    if let Some(t) = &args.target {
        build.arg(t);
    }
    cmd::run(&mut build)?;

    let mut summary = Summary::default();
    for target in targets {
        summary.record(&format!("fuzz {target} ({}s)", args.seconds), || {
            fuzz_one(&fuzz_dir, &target_dir, target, args.seconds, &args.sanitizer)
        });
    }
    Ok(if summary.finish().is_ok() { 0 } else { 1 })
}

/// `cargo install cargo-fuzz` unless it is already there.
fn ensure_cargo_fuzz() -> Result<()> {
    step("checking cargo-fuzz ...");
    if let Some(version) = cmd::try_output(Command::new("cargo").args(["fuzz", "--version"])) {
        note(format_args!("{} present", version.trim()));
        return Ok(());
    }
    step("installing cargo-fuzz ... (takes a few minutes)");
    cmd::run(Command::new("cargo").args(["install", "cargo-fuzz", "--locked"]))?;
    if cmd::try_output(Command::new("cargo").args(["fuzz", "--version"])).is_none() {
        bail!("cargo-fuzz was installed but `cargo fuzz` does not run: is ~/.cargo/bin on PATH?");
    }
    Ok(())
}

/// `cargo +nightly fuzz <sub> ...` for the crate in `fuzz_dir`, without the
/// eBPF probes (the readers need none; building them needs bpf-linker).
fn cargo_fuzz(fuzz_dir: &Path, target_dir: &Path, sub: &str, sanitizer: &str) -> Command {
    let mut cargo = Command::new("rustup");
    cargo
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("RUSTFLAGS")
        .env("DEFERSCOPE_SKIP_EBPF", "1")
        .args(["run", "nightly", "cargo", "fuzz", sub, "--fuzz-dir"])
        .arg(fuzz_dir)
        .arg("--target-dir")
        .arg(target_dir)
        .args(["--sanitizer", sanitizer]);
    cargo
}

fn fuzz_one(fuzz_dir: &Path, target_dir: &Path, target: &str, seconds: u64, sanitizer: &str) -> Result<()> {
    step(format_args!("fuzzing {target} for {seconds}s ..."));
    let seeds = fuzz_dir.join("corpus").join(target);
    let found = target_dir.join("corpus").join(target);
    let artifacts = fuzz_dir.join("artifacts").join(target);
    fs::create_dir_all(&found)?;
    fs::create_dir_all(&artifacts)?;
    let before = files(&artifacts);
    let start = Instant::now();
    let mut run = cargo_fuzz(fuzz_dir, target_dir, "run", sanitizer);
    run.arg(target).arg(&found).arg(&seeds).arg("--").args([
        format!("-max_total_time={seconds}"),
        format!("-timeout={TIMEOUT_SECONDS}"),
        "-rss_limit_mb=2048".into(),
        "-print_final_stats=1".into(),
    ]);
    let status = cmd::status(&mut run)?;
    let new: Vec<PathBuf> = files(&artifacts).difference(&before).cloned().collect();
    note(format_args!(
        "{target}: {:.0}s, {} inputs in {}",
        start.elapsed().as_secs_f64(),
        files(&found).len(),
        found.display()
    ));
    if status.success() && new.is_empty() {
        return Ok(());
    }
    for path in &new {
        eprintln!("    reproducer: {}", path.display());
        eprintln!(
            "    replay it:  DEFERSCOPE_SKIP_EBPF=1 cargo +nightly fuzz run --fuzz-dir {} --target-dir {} \
             --sanitizer {sanitizer} {target} {}",
            fuzz_dir.display(),
            target_dir.display(),
            path.display()
        );
    }
    bail!(
        "{target} crashed ({})",
        new.first().map_or_else(|| format!("exit {}", cmd::exit_code(status)), |p| p.display().to_string())
    )
}

fn files(dir: &Path) -> BTreeSet<PathBuf> {
    fs::read_dir(dir).map(|rd| rd.flatten().map(|e| e.path()).collect()).unwrap_or_default()
}
