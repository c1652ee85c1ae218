//! `cargo xtask test`: setup, release build, Go parser fixtures, the unit
//! tests, the (root-needing, serial) integration tests, the same tests in an
//! arm64 VM (`vm-test`), then `lint`.
use std::{ffi::OsString, path::Path, process::Command};

use anyhow::{Result, anyhow};

use crate::{
    build, cmd,
    cmd::step,
    disk, fixtures, lint, paths, setup,
    summary::Summary,
    toolchains::{self, GoToolchain},
    vm,
};

/// The integration-test package: its tests share kernel state, so they run
/// one at a time in their own `cargo test` invocation.
const INTEGRATION_PACKAGE: &str = "deferscope-integration";

/// Tests that need root, the Go fixtures or toolchains, or promtool are
/// `#[ignore = "needs …"]`: a plain `cargo test` shows them as ignored, never
/// as passed. Here everything they need is set up, so all of them run, and
/// one whose prerequisite is missing fails.
const INCLUDE_IGNORED: &str = "--include-ignored";

/// Runs everything; `filters` go to the test binaries (after `--`).
pub fn run(workspace_root: &Path, filters: &[String]) -> Result<()> {
    let mut summary = Summary::default();
    let target = paths::target_dir(workspace_root);
    let fixtures_dir = target.join("go-fixtures");
    step("checking free disk space ...");
    disk::report(&target, disk::TEST_RUN_BYTES);

    let mut setup_result = None;
    let prepared = summary.record("setup", || {
        setup_result = Some(setup::run(workspace_root)?);
        Ok(())
    }) && summary.record("build (release)", || build::deferscope(workspace_root, true).map(drop))
        && summary.record("Go parser fixtures", || {
            let toolchains = &setup_result.as_ref().ok_or_else(|| anyhow!("no setup"))?.toolchains;
            step(format_args!("building Go parser fixtures into {} ...", fixtures_dir.display()));
            fixtures::build_parser_fixtures(workspace_root, toolchains, &fixtures_dir)
        });
    if !prepared {
        disk::explain_failure(&target);
        return summary.finish();
    }
    let toolchains = setup_result.map(|s| s.toolchains).unwrap_or_default();
    let env = test_env(workspace_root, &toolchains, &fixtures_dir);
    for (key, value) in &env {
        cmd::note(format_args!("{key}={}", value.to_string_lossy()));
    }

    summary.record("unit tests", || {
        step("cargo test (all packages but the integration tests) ...");
        let mut cargo = cargo_test(workspace_root, &env);
        cargo.args(["--workspace", "--exclude", "tracer-ebpf", "--exclude", INTEGRATION_PACKAGE]);
        cargo.args(["--", INCLUDE_IGNORED]).args(filters);
        cmd::run(&mut cargo)
    });
    summary.record("integration tests", || {
        step(format_args!("cargo test -p {INTEGRATION_PACKAGE} (one test at a time: kernel state is shared) ..."));
        let mut cargo = cargo_test(workspace_root, &env);
        cargo.args(["-p", INTEGRATION_PACKAGE, "--", "--test-threads=1", INCLUDE_IGNORED]).args(filters);
        cmd::run(&mut cargo)
    });
    summary.record("VM test (aarch64)", || vm::check(workspace_root, vm::VmArch::Aarch64, &toolchains, filters));
    lint::run(workspace_root, &mut summary);
    let result = summary.finish();
    if result.is_err() {
        disk::explain_failure(&target);
    }
    result
}

fn cargo_test(workspace_root: &Path, env: &[(&str, OsString)]) -> Command {
    let mut cargo = Command::new("cargo");
    cargo.current_dir(workspace_root).args(["test", "--no-fail-fast"]).envs(env.iter().map(|(k, v)| (k, v)));
    cargo
}

/// The environment the tests read:
/// - `DEFERSCOPE_BIN`: the release binary,
/// - `DEFERSCOPE_GO_FIXTURES`: the parser fixtures directory,
/// - `DEFERSCOPE_GO_TOOLCHAINS`: `go1.19.8=/usr/lib/go-1.19/bin/go,go1.21.13=/abs/go,...`,
/// - `DEFERSCOPE_GO_CACHE`: the shared Go build cache.
pub fn test_env(
    workspace_root: &Path,
    toolchains: &[GoToolchain],
    fixtures_dir: &Path,
) -> Vec<(&'static str, OsString)> {
    let list = toolchains.iter().map(|tc| format!("{}={}", tc.full, tc.go.display())).collect::<Vec<_>>().join(",");
    vec![
        ("DEFERSCOPE_BIN", paths::deferscope_bin(workspace_root, true).into()),
        ("DEFERSCOPE_GO_FIXTURES", fixtures_dir.into()),
        ("DEFERSCOPE_GO_TOOLCHAINS", list.into()),
        ("DEFERSCOPE_GO_CACHE", toolchains::go_cache_dir(workspace_root).into()),
    ]
}
