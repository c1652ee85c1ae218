//! Builds the eBPF object (tracer-ebpf's `tracer` bin) with nightly and
//! bpf-linker for the BPF target, and puts it in OUT_DIR for
//! `include_bytes_aligned!`.
//!
//! This does what `aya_build::build_ebpf` does, but quietly: aya-build
//! forwards every line cargo prints (`Compiling ...`) as a build-script
//! warning, which buries real warnings; here only compiler diagnostics are
//! forwarded, and the full output only when the build fails.
//!
//! `DEFERSCOPE_SKIP_EBPF=1` writes an empty object instead, so `cargo check`,
//! clippy and the parser unit tests work on a machine without bpf-linker; a
//! binary built that way refuses to attach and says why.
use std::{
    env, fs,
    io::{BufReader, Read as _},
    path::PathBuf,
    process::{Command, Stdio},
};

use anyhow::{Context as _, anyhow, bail};
use cargo_metadata::{Artifact, CompilerMessage, Message};

const EBPF_PACKAGE: &str = "tracer-ebpf";
const EBPF_BIN: &str = "tracer";

fn main() -> anyhow::Result<()> {
    println!("cargo:rerun-if-env-changed=DEFERSCOPE_SKIP_EBPF");
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").context("OUT_DIR not set")?);
    let object = out_dir.join(EBPF_BIN);
    if env::var("DEFERSCOPE_SKIP_EBPF").is_ok_and(|v| v == "1") {
        println!("cargo:warning=DEFERSCOPE_SKIP_EBPF=1: building without the eBPF probes");
        fs::write(&object, []).context("writing the empty eBPF object")?;
        return Ok(());
    }
    let Some(bpf_linker) = find_in_path("bpf-linker") else {
        bail!(
            "bpf-linker is not installed: run `cargo xtask setup` (or set DEFERSCOPE_SKIP_EBPF=1 to build without probes)"
        );
    };
    println!("cargo:rerun-if-changed={}", bpf_linker.display());

    let metadata = cargo_metadata::MetadataCommand::new().no_deps().exec().context("cargo metadata")?;
    let package = metadata
        .packages
        .iter()
        .find(|p| p.name.as_str() == EBPF_PACKAGE)
        .ok_or_else(|| anyhow!("{EBPF_PACKAGE} package not found"))?;
    let root_dir = package.manifest_path.parent().ok_or_else(|| anyhow!("{EBPF_PACKAGE} manifest has no parent"))?;
    // The build-dependency on tracer-ebpf covers its lib; this covers its bin.
    println!("cargo:rerun-if-changed={root_dir}");

    let endian = env::var("CARGO_CFG_TARGET_ENDIAN").context("CARGO_CFG_TARGET_ENDIAN not set")?;
    let target = if endian == "big" { "bpfeb-unknown-none" } else { "bpfel-unknown-none" };
    // The probes read registers of the architecture deferscope runs on.
    let arch = env::var("CARGO_CFG_TARGET_ARCH").context("CARGO_CFG_TARGET_ARCH not set")?;
    let rustflags =
        [format!("--cfg=bpf_target_arch=\"{arch}\""), "-Cdebuginfo=2".into(), "-Clink-arg=--btf".into()].join("\x1f");

    let mut cmd = Command::new("rustup");
    cmd.args(["run", "nightly", "cargo", "build", "--package", EBPF_PACKAGE, "--bins", "--release"])
        .args(["--message-format=json", "--target", target, "-Z", "build-std=core"])
        .arg("--target-dir")
        .arg(out_dir.join("ebpf-target"))
        .env("CARGO_ENCODED_RUSTFLAGS", rustflags)
        // Let rustup pick nightly's compiler, not the one running us.
        .env_remove("RUSTC")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .current_dir(root_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().context("running `rustup run nightly cargo build` for the eBPF probes")?;
    let mut stderr = child.stderr.take().context("stderr")?;
    let stderr_reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let mut executable = None;
    for message in Message::parse_stream(BufReader::new(child.stdout.take().context("stdout")?)) {
        match message.context("reading cargo's JSON messages")? {
            Message::CompilerArtifact(Artifact { executable: Some(exe), target, .. }) if target.name == EBPF_BIN => {
                executable = Some(exe.into_std_path_buf());
            }
            Message::CompilerMessage(CompilerMessage { message, .. }) => {
                for line in message.rendered.unwrap_or_default().lines() {
                    println!("cargo:warning={line}");
                }
            }
            _ => {}
        }
    }
    let status = child.wait().context("waiting for the eBPF build")?;
    let stderr = stderr_reader.join().unwrap_or_default();
    if !status.success() {
        bail!(
            "building the eBPF probes failed ({status}); `cargo xtask setup` installs nightly rust-src and bpf-linker\n{stderr}"
        );
    }
    let executable = executable.ok_or_else(|| anyhow!("the eBPF build produced no `{EBPF_BIN}` binary\n{stderr}"))?;
    fs::copy(&executable, &object)
        .with_context(|| format!("copying {} to {}", executable.display(), object.display()))?;
    Ok(())
}

fn find_in_path(name: &str) -> Option<PathBuf> {
    env::split_paths(&env::var_os("PATH")?).map(|d| d.join(name)).find(|p| p.is_file())
}
