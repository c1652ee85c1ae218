//! deferscope's developer task runner: `cargo xtask <command>`.
//!
//! Every step prints what it does (`==> ...`) and skips fast when its work
//! is already done.

mod apt;
mod bench;
mod bench_leaks;
mod bench_overhead;
mod bpf_linker;
mod build;
mod cmd;
mod demo;
mod disk;
mod fixtures;
mod fuzz;
mod layouts;
mod lint;
mod paths;
mod rustup;
mod seeds;
mod setup;
mod signals;
mod summary;
mod test;
mod toolchains;
mod vm;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "deferscope's developer tasks", arg_required_else_help = true)]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what is missing: nightly rust-src, llvm-N-dev, bpf-linker,
    /// Go 1.19 (apt), tmux, prometheus, and Go 1.21–1.27 (PyPI).
    Setup,
    /// Setup, then build deferscope (release unless --debug).
    Build {
        /// Build the debug profile instead of release.
        #[arg(long)]
        debug: bool,
    },
    /// Install what the demo needs (nightly rust-src, llvm-N-dev, bpf-linker,
    /// Go 1.24), build, start the demo Go workload and trace it with deferscope.
    Demo {
        /// Print JSON snapshots instead of the TUI.
        #[arg(long)]
        json: bool,
        /// Stop after this long (e.g. 500ms, 10s, 1m).
        #[arg(long, value_name = "D")]
        duration: Option<String>,
        /// More deferscope arguments, passed through (e.g. --top 5).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, value_name = "DEFERSCOPE ARGS")]
        extra: Vec<String>,
    },
    /// Setup, release build, Go fixtures, unit + integration tests, lint.
    Test {
        /// Passed to the test binaries (test-name filters, --nocapture, ...).
        #[arg(last = true, value_name = "FILTERS")]
        filters: Vec<String>,
    },
    /// clippy (host crates and the eBPF crate) and rustfmt --check.
    Lint,
    /// Regenerate the Go runtime struct layouts from every Go toolchain.
    GenLayouts,
    /// Run the benchmarks (overhead; `bench leaks`: Go's leak corpus).
    Bench {
        #[command(subcommand)]
        what: Option<BenchKind>,
    },
    /// Fuzz every reader of untrusted input (cargo-fuzz, nightly), each
    /// target for N seconds; fails on any crash.
    Fuzz {
        /// Seconds per target.
        #[arg(long, value_name = "N", default_value_t = fuzz::DEFAULT_SECONDS)]
        seconds: u64,
        /// Regenerate fuzz/corpus/ from the Go parser fixtures first.
        #[arg(long)]
        refresh_seeds: bool,
        /// libFuzzer sanitizer: none (fastest; the readers are safe Rust), address, ...
        #[arg(long, default_value = "none")]
        sanitizer: String,
        /// Only this target (go_binary, elf, buildinfo, pclntab, dwarf, memory_scan).
        target: Option<String>,
    },
    /// Setup, then cross-build deferscope, the integration tests and their Go
    /// programs for another architecture and run them in a qemu VM.
    VmTest {
        /// The VM's architecture.
        #[arg(long, value_enum, default_value = "aarch64")]
        arch: vm::VmArch,
        /// Only the scenarios whose test name contains one of these.
        #[arg(last = true, value_name = "FILTERS")]
        filters: Vec<String>,
    },
}

#[derive(Subcommand)]
enum BenchKind {
    /// Go's own goroutine leak corpus (runtime/testdata/testgoroutineleakprofile)
    /// alive under deferscope, against Go's goroutineleak profile; fails on any
    /// false leak.
    Leaks {
        /// Only these Go versions (major.minor, comma-separated; default: the matrix).
        #[arg(long, value_delimiter = ',', value_name = "VERSIONS")]
        go: Vec<String>,
        /// Only the programs whose name contains one of these.
        only: Vec<String>,
    },
    /// Only deferscope's cost on Debian's stripped prometheus (first
    /// snapshot, RSS peak): three runs, medians.
    Prometheus,
    /// Only deferscope's own cost at 1k/10k/100k parked goroutines (RSS
    /// peak, read times, CPU), in a fresh bench program.
    Scale,
}

fn main() {
    let cli = Cli::parse();
    let code = match run(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    };
    std::process::exit(code);
}

/// Runs one task; returns the process exit code.
fn run(task: Task) -> Result<i32> {
    let root = paths::workspace_root();
    match task {
        Task::Setup => setup::run(&root).map(drop)?,
        Task::Build { debug } => {
            setup::run(&root)?;
            build::deferscope(&root, !debug)?;
        }
        Task::Demo { json, duration, extra } => {
            return demo::run(&root, &demo::DemoArgs { json, duration, extra });
        }
        Task::Test { filters } => test::run(&root, &filters)?,
        Task::Lint => lint::standalone(&root)?,
        Task::GenLayouts => {
            let toolchains = toolchains::go_toolchains(&root)?;
            cmd::step("generating Go runtime layouts ...");
            layouts::gen_layouts(&root, &toolchains)?;
        }
        Task::Bench { what: None } => bench::run(&root)?,
        Task::Bench { what: Some(BenchKind::Leaks { go, only }) } => {
            bench_leaks::run(&root, &bench_leaks::LeaksArgs { go, only })?;
        }
        Task::Bench { what: Some(BenchKind::Prometheus) } => bench::run_prometheus(&root)?,
        Task::Bench { what: Some(BenchKind::Scale) } => bench::run_scale(&root)?,
        Task::Fuzz { seconds, refresh_seeds, sanitizer, target } => {
            return fuzz::run(&root, &fuzz::FuzzArgs { seconds, target, refresh_seeds, sanitizer });
        }
        Task::VmTest { arch, filters } => {
            let setup = setup::run(&root)?;
            return Ok(match vm::run(&root, arch, &setup.toolchains, &filters)? {
                vm::Outcome::Ran { failed, .. } if failed > 0 => 1,
                _ => 0,
            });
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Task {
        Cli::try_parse_from(std::iter::once("xtask").chain(args.iter().copied())).expect("parses").command
    }

    #[test]
    fn demo_passes_unknown_args_through() {
        let Task::Demo { json, duration, extra } = parse(&["demo", "--json", "--duration", "5s", "--top", "3"]) else {
            panic!("not demo");
        };
        assert!(json);
        assert_eq!(duration.as_deref(), Some("5s"));
        assert_eq!(extra, ["--top", "3"]);
        let Task::Demo { json, extra, .. } = parse(&["demo", "--", "--interval", "2s"]) else {
            panic!("not demo");
        };
        assert!(!json);
        assert_eq!(extra, ["--interval", "2s"]);
    }

    #[test]
    fn test_filters_follow_double_dash() {
        let Task::Test { filters } = parse(&["test", "--", "gobin::", "--nocapture"]) else {
            panic!("not test");
        };
        assert_eq!(filters, ["gobin::", "--nocapture"]);
        assert!(matches!(parse(&["build", "--debug"]), Task::Build { debug: true }));
    }
}
