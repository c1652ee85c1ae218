//! `cargo xtask vm-test --arch aarch64`: deferscope on arm64, for real.
//!
//! On an x86_64 host: installs what is missing (qemu, the aarch64 cross
//! toolchain; the arm64 kernel and busybox are downloaded, not installed),
//! cross-builds deferscope and the integration tests statically for aarch64,
//! cross-builds their Go programs, packs all of it into an initramfs with a
//! small runner (`guest.rs`), boots one VM under qemu's TCG emulation and
//! runs every scenario in it.
//!
//! A scenario is one integration test of `tests/tests/` against one Go
//! toolchain: the very test functions `cargo xtask test` runs on the host,
//! with their checks against what the Go programs report about themselves,
//! so nothing is checked twice in two ways. The tests find the prebuilt
//! programs through `DEFERSCOPE_GO_PREBUILT` and their Go sources through
//! `DEFERSCOPE_WORKSPACE` (see `tests/src/lib.rs`).
//!
//! Builds are reused when nothing changed (cargo and the Go build cache), so
//! a warm run costs the boot and the scenarios.
mod assets;
mod console;
mod guest;
mod initramfs;

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use deferscope_integration::{go_build_args, go_program_path};

use crate::{
    cmd::{self, note, step},
    paths,
    toolchains::{self, GoToolchain},
};
use console::Verdict;
use initramfs::Initramfs;

/// Guest architectures `vm-test` can boot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum VmArch {
    Aarch64,
}

impl VmArch {
    fn rust_target(self) -> &'static str {
        match self {
            VmArch::Aarch64 => "aarch64-unknown-linux-gnu",
        }
    }
    fn goarch(self) -> &'static str {
        match self {
            VmArch::Aarch64 => "arm64",
        }
    }
    fn name(self) -> &'static str {
        match self {
            VmArch::Aarch64 => "aarch64",
        }
    }
    /// The dynamic loader (path in the guest, where the cross C library
    /// has it on the host) that PIE Go programs name as their interpreter,
    /// even without cgo.
    fn dynamic_loader(self) -> (&'static str, &'static str) {
        match self {
            VmArch::Aarch64 => ("lib/ld-linux-aarch64.so.1", "/usr/aarch64-linux-gnu/lib/ld-linux-aarch64.so.1"),
        }
    }
}

/// One integration test run in the VM, and the Go programs (name, `go
/// build` flags) it builds with `build_go`.
struct TestSpec {
    /// `tests/tests/<binary>.rs`.
    binary: &'static str,
    test: &'static str,
    programs: &'static [(&'static str, &'static [&'static str])],
    /// Extra deferscope arguments (`DEFERSCOPE_TEST_ARGS`).
    tracer_args: &'static str,
}

/// What runs in the VM: exact depths (chains built before attach, pushes and
/// pops while traced, a panic recovered mid-chain, Goexit, goroutines
/// exiting, a stripped PIE build, deferscope exiting 0 with its target),
/// stuck groups, leaks proven by reachability (plain and stripped),
/// goroutine counts against `runtime.NumGoroutine()`, and
/// goroutines deferring in a tight loop while deferscope attaches.
const TESTS: &[TestSpec] = &[
    TestSpec {
        binary: "defer_depth",
        test: "defer_depths_are_exact_for_every_go_version",
        programs: &[("defers", &[]), ("defers", &["-buildmode=pie", "-ldflags=-s -w"])],
        // Under TCG a probe hit costs ~100 µs, so the default budget (1% of
        // the target's CPU) sheds the probes of this test's bursts of 1000
        // pushes: its exact counts of pushes need every probe. (busy_attach
        // runs both ways itself.)
        tracer_args: "--overhead-budget none",
    },
    TestSpec {
        binary: "leaks",
        test: "stuck_goroutines_are_grouped_exactly_and_healthy_ones_are_not",
        programs: &[("leaks", &[])],
        tracer_args: "",
    },
    TestSpec {
        binary: "leaks",
        test: "leaks_are_proven_by_reachability_and_stuck_goroutines_are_not",
        programs: &[("leakproof", &[]), ("leakproof", &["-ldflags=-s -w"])],
        tracer_args: "",
    },
    TestSpec {
        binary: "busy_attach",
        test: "goroutines_deferring_while_deferscope_attaches_keep_exact_depths",
        programs: &[("spin", &[])],
        tracer_args: "",
    },
];

/// The Go versions each test runs with in the VM (every uprobe hit costs
/// ~100 µs under TCG, so not the whole matrix): the oldest with `freedefer`
/// and `_defer.openDefer`, the version of issue 12, and the newest.
const GO_VERSIONS: &[&str] = &["1.21", "1.24", "1.27"];

/// Budget for booting and powering off, on top of the scenarios' own.
const BOOT_TIMEOUT: Duration = Duration::from_secs(180);

/// How a `vm-test` ended when it did not fail outright.
pub enum Outcome {
    /// Every scenario ran; the counts.
    Ran { passed: usize, failed: usize, skipped: usize },
    /// The host cannot run the VM; the reason.
    Skipped(String),
}

/// Runs the VM test; `filters` keep only the scenarios whose test name or
/// scenario name contains one of them (all when empty).
pub fn run(workspace_root: &Path, arch: VmArch, all_toolchains: &[GoToolchain], filters: &[String]) -> Result<Outcome> {
    let started = Instant::now();
    let outcome = run_inner(workspace_root, arch, all_toolchains, filters, started)?;
    match &outcome {
        Outcome::Skipped(reason) => println!("SKIPPED: {reason}"),
        Outcome::Ran { passed, failed, skipped } => {
            let mut line = format!("{passed} passed, {failed} failed");
            if *skipped > 0 {
                line.push_str(&format!(", {skipped} skipped"));
            }
            println!("{line}");
            step(format_args!("vm-test ({}) took {:.0}s", arch.name(), started.elapsed().as_secs_f64()));
        }
    }
    Ok(outcome)
}

/// `run`, as a pass/fail step of `cargo xtask test` or `cargo xtask vm-test`.
pub fn check(workspace_root: &Path, arch: VmArch, toolchains: &[GoToolchain], filters: &[String]) -> Result<()> {
    match run(workspace_root, arch, toolchains, filters)? {
        Outcome::Ran { failed: 0, .. } | Outcome::Skipped(_) => Ok(()),
        Outcome::Ran { failed, .. } => bail!("{failed} VM scenario(s) failed"),
    }
}

fn run_inner(
    workspace_root: &Path,
    arch: VmArch,
    all_toolchains: &[GoToolchain],
    filters: &[String],
    started: Instant,
) -> Result<Outcome> {
    step(format_args!("vm-test: deferscope in an {} VM (qemu TCG) ...", arch.name()));
    if let Some(reason) = cannot_run_here() {
        return Ok(Outcome::Skipped(reason));
    }
    // Options for the test binaries (`--nocapture`) select nothing.
    let filters: Vec<&String> = filters.iter().filter(|f| !f.starts_with('-')).collect();
    let specs: Vec<&TestSpec> = TESTS
        .iter()
        .filter(|t| {
            filters.is_empty() || filters.iter().any(|f| t.test.contains(f.as_str()) || t.binary.contains(f.as_str()))
        })
        .collect();
    if specs.is_empty() {
        return Ok(Outcome::Skipped(format!("no VM scenario matches {filters:?}")));
    }
    let dir = paths::target_dir(workspace_root).join(format!("vm-{}", arch.name()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let assets = assets::ensure(&dir)?;
    let toolchains: Vec<&GoToolchain> = GO_VERSIONS
        .iter()
        .map(|v| toolchains::find(all_toolchains, v).with_context(|| format!("no Go {v} toolchain")))
        .collect::<Result<_>>()?;

    let built = cross_build(workspace_root, arch, &dir, &specs)?;
    let go_dir = dir.join("go");
    step(format_args!("cross-building the Go test programs for {} ...", arch.goarch()));
    let mut programs = Vec::new();
    for tc in &toolchains {
        for spec in &specs {
            for (name, flags) in spec.programs {
                let out = go_program_path(&go_dir, name, &tc.full, flags, &[]);
                let mut go = tc.command(workspace_root);
                go.env("GOOS", "linux").env("GOARCH", arch.goarch());
                go_build_args(&mut go, workspace_root, name, flags, &out)?;
                cmd::run(&mut go)?;
                programs.push(out);
            }
        }
    }

    let mut scenarios = String::new();
    let mut names = Vec::new();
    for spec in &specs {
        for tc in &toolchains {
            let name = format!("{}/{}", spec.binary, tc.full);
            scenarios.push_str(&guest::scenario_line(&name, spec.binary, spec.test, &tc.full, spec.tracer_args));
            names.push(name);
        }
    }
    let initrd = dir.join("initramfs.cpio");
    let payload = Payload { built: &built, assets: &assets, go_dir: &go_dir, programs: &programs, specs: &specs };
    let size = pack(workspace_root, arch, &payload, &scenarios, &initrd)?;
    note(format_args!("{} ({:.1} MB, {} scenarios)", initrd.display(), size as f64 / 1e6, names.len()));
    note(format_args!("prepared in {:.0}s", started.elapsed().as_secs_f64()));

    step(format_args!("booting the {} VM (kernel {}) ...", arch.name(), assets.kernel_release));
    let log = console::log_path(&dir);
    let timeout = BOOT_TIMEOUT + Duration::from_secs(u64::from(guest::SCENARIO_TIMEOUT_S) * names.len() as u64);
    let boot_started = Instant::now();
    let mut qemu = qemu_command(arch, &assets.kernel, &initrd);
    let run = console::boot(&mut qemu, &log, timeout, &mut |r| {
        let verdict = match r.verdict {
            Verdict::Pass => "PASS",
            Verdict::Fail => "FAIL",
            Verdict::Skip => "SKIPPED",
        };
        note(format_args!("{verdict:7} {} ({})", r.name, r.detail));
    })?;
    note(format_args!("guest: {}", run.guest.as_deref().unwrap_or("(never reached /init)")));
    note(format_args!("VM ran for {:.0}s; console log: {}", boot_started.elapsed().as_secs_f64(), log.display()));

    let (mut passed, mut failed, mut skipped) = (0, 0, 0);
    for name in &names {
        match run.results.iter().find(|r| &r.name == name).map(|r| r.verdict) {
            Some(Verdict::Pass) => passed += 1,
            Some(Verdict::Skip) => skipped += 1,
            Some(Verdict::Fail) => {
                failed += 1;
                eprintln!("---- {name}: console output ----");
                for line in run.scenario_output(name) {
                    eprintln!("{line}");
                }
            }
            None => {
                failed += 1;
                eprintln!("FAIL    {name}: never finished in the VM");
            }
        }
    }
    if let Some(problem) = &run.problem {
        eprintln!("---- VM problem: {problem}; the console's last lines ----");
        for line in &run.lines[run.lines.len().saturating_sub(40)..] {
            eprintln!("{line}");
        }
        if failed == 0 {
            failed = 1;
        }
    }
    Ok(Outcome::Ran { passed, failed, skipped })
}

/// Why this host cannot run the VM test, if it cannot.
fn cannot_run_here() -> Option<String> {
    if !cfg!(target_arch = "x86_64") {
        return Some("vm-test cross-builds from x86_64 hosts only; on arm64 the integration tests run natively".into());
    }
    let missing: Vec<&str> = assets::HOST_PACKAGES.iter().copied().filter(|p| !crate::apt::is_installed(p)).collect();
    if !missing.is_empty() && !cmd::on_path("apt-get") {
        return Some(format!("{} missing and no apt-get to install them", missing.join(" ")));
    }
    None
}

/// What `cross_build` produced.
struct Built {
    deferscope: PathBuf,
    /// (test binary name, path).
    tests: Vec<(String, PathBuf)>,
}

/// `cargo <subcommand>` building for `arch`, statically, in its own target
/// directory (other rustflags would otherwise rebuild the host's builds).
fn cross_cargo(workspace_root: &Path, arch: VmArch, dir: &Path, subcommand: &[&str]) -> Command {
    let target = arch.rust_target();
    let env_target = target.to_uppercase().replace('-', "_");
    let mut cargo = Command::new("cargo");
    cargo
        .current_dir(workspace_root)
        .env(format!("CARGO_TARGET_{env_target}_LINKER"), "aarch64-linux-gnu-gcc")
        .env(format!("CARGO_TARGET_{env_target}_RUSTFLAGS"), "-C target-feature=+crt-static")
        .args(subcommand)
        .args(["--release", "--target", target, "--target-dir"])
        .arg(dir.join("cargo"));
    cargo
}

fn cross_build(workspace_root: &Path, arch: VmArch, dir: &Path, specs: &[&TestSpec]) -> Result<Built> {
    step(format_args!("cross-building deferscope and the integration tests for {} (static) ...", arch.rust_target()));
    let mut build = cross_cargo(workspace_root, arch, dir, &["build", "-p", "deferscope"]);
    cmd::run(&mut build)?;
    let deferscope = dir.join("cargo").join(arch.rust_target()).join("release/deferscope");
    if !deferscope.is_file() {
        bail!("`{}` succeeded but {} is missing", cmd::show(&build), deferscope.display());
    }

    let mut test = cross_cargo(workspace_root, arch, dir, &["test", "--no-run", "-p", "deferscope-integration"]);
    for spec in specs.iter() {
        test.args(["--test", spec.binary]);
    }
    test.arg("--message-format=json-render-diagnostics");
    note(format_args!("$ {}", cmd::show(&test)));
    let out = test.stdout(Stdio::piped()).stderr(Stdio::inherit()).output().context("running cargo test --no-run")?;
    if !out.status.success() {
        bail!("`{}` failed ({})", cmd::show(&test), out.status);
    }
    let mut tests = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else { continue };
        if msg["reason"] != "compiler-artifact" || msg["profile"]["test"] != true {
            continue;
        }
        if let (Some(name), Some(exe)) = (msg["target"]["name"].as_str(), msg["executable"].as_str()) {
            tests.push((name.to_owned(), PathBuf::from(exe)));
        }
    }
    for spec in specs.iter() {
        if !tests.iter().any(|(n, _)| n == spec.binary) {
            bail!("cargo built no test binary {}", spec.binary);
        }
    }
    Ok(Built { deferscope, tests })
}

/// What goes into the initramfs besides busybox and `/init`.
struct Payload<'a> {
    built: &'a Built,
    assets: &'a assets::Assets,
    /// The Go programs, under `go_dir`.
    go_dir: &'a Path,
    programs: &'a [PathBuf],
    specs: &'a [&'a TestSpec],
}

/// Writes the initramfs; returns its size.
fn pack(workspace_root: &Path, arch: VmArch, payload: &Payload<'_>, scenarios: &str, out: &Path) -> Result<u64> {
    step("packing the initramfs ...");
    let Payload { built, assets, go_dir, programs, specs } = payload;
    let stripped = out.with_file_name("stripped");
    std::fs::create_dir_all(&stripped)?;
    // Debug info is most of the size of the Rust binaries; the Go programs
    // keep theirs (the plain builds are read through DWARF).
    let strip = |from: &Path, name: &str| -> Result<PathBuf> {
        let to = stripped.join(name);
        cmd::output(Command::new("aarch64-linux-gnu-strip").arg("-o").arg(&to).arg(from))?;
        Ok(to)
    };
    let mut fs = Initramfs::default();
    fs.bytes("init", guest::init_script(), true);
    fs.file("bin/busybox", &assets.busybox, true);
    let (loader, loader_on_host) = arch.dynamic_loader();
    fs.file(loader, Path::new(loader_on_host), true);
    for d in ["proc", "sys", "dev", "tmp", "root", "sys/kernel/tracing", "sys/kernel/debug"] {
        fs.dir(d);
    }
    fs.char_device("dev/console", 5, 1);
    fs.char_device("dev/null", 1, 3);
    fs.file(guest::DEFERSCOPE, &strip(&built.deferscope, "deferscope")?, true);
    let mut sources = std::collections::BTreeSet::new();
    for spec in specs.iter() {
        let (_, exe) = built.tests.iter().find(|(n, _)| n == spec.binary).context("test binary")?;
        fs.file(&format!("{}/{}", guest::TESTS_DIR, spec.binary), &strip(exe, spec.binary)?, true);
        sources.extend(spec.programs.iter().map(|(name, _)| format!("tests/go/{name}/main.go")));
    }
    // `marker_line` reads the `// SITE:` markers of the sources.
    for src in sources {
        fs.file(&format!("{}/{src}", guest::WORKSPACE_DIR), &workspace_root.join(&src), false);
    }
    for program in programs.iter() {
        let inside = program.strip_prefix(go_dir).context("program outside the Go directory")?;
        fs.file(&format!("{}/{}", guest::GO_DIR, inside.display()), program, true);
    }
    fs.bytes(guest::SCENARIOS, scenarios, false);
    fs.write(out)
}

fn qemu_command(arch: VmArch, kernel: &Path, initrd: &Path) -> Command {
    let VmArch::Aarch64 = arch;
    let mut qemu = Command::new("qemu-system-aarch64");
    // cortex-a72: `-cpu max` boots 6x slower (TCG emulates pointer
    // authentication's cipher). `-nic none`: the default NIC wants a ROM
    // that Debian ships in another package, and nothing here needs a network.
    qemu.args(["-machine", "virt", "-cpu", "cortex-a72", "-smp", "2", "-m", "2048"])
        .args(["-nographic", "-no-reboot", "-nic", "none", "-kernel"])
        .arg(kernel)
        .arg("-initrd")
        .arg(initrd)
        .args(["-append", "console=ttyAMA0 rdinit=/init panic=-1 quiet"]);
    qemu
}
