//! `cargo xtask bench`: what tracing costs the target, measured in one run.
//!
//! For each workload of `tests/go/bench` (heap defers, stack defers,
//! open-coded defers, goroutine churn) it measures the target's throughput
//! untraced, with deferscope attached (every probe: `--overhead-budget none`),
//! and again after deferscope detached,
//! and reports the ratios, the events deferscope handled, the events lost and
//! deferscope's own CPU use. Ratios, not absolute numbers: a uprobe hit costs
//! several microseconds in a VM and far less on bare metal.
use std::{
    fs,
    io::{BufRead as _, BufReader, Write as _},
    path::{Path, PathBuf},
    process::{Child, ChildStdin, Command, Stdio},
    sync::mpsc::{self, Receiver},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use serde_json::Value;

use crate::{
    build,
    cmd::{self, note, step},
    paths, setup,
    toolchains::{self, GoToolchain},
};

const BENCH_GO: &str = "1.24";
/// Seconds each measurement runs.
const WINDOW_S: f64 = 3.0;
const WORKLOADS: &[(&str, &str)] = &[
    ("heap-defers", "16 heap defers per call (defer in a loop: deferproc + popDefer)"),
    ("stack-defers", "10 stack defers per call (deferprocStack + popDefer)"),
    ("open-defers", "2 open-coded defers per call (never reach the runtime)"),
    ("goroutines", "one goroutine created and exited per op (newproc1 + goexit1)"),
];
const STEP_TIMEOUT: Duration = Duration::from_secs(60);

/// A child killed on drop, with its stdout lines on a channel.
pub(crate) struct Proc {
    pub(crate) child: Child,
    pub(crate) stdin: Option<ChildStdin>,
    pub(crate) lines: Receiver<String>,
}

impl Proc {
    pub(crate) fn spawn(cmd: &mut Command) -> Result<Self> {
        let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().with_context(|| cmd::show(cmd))?;
        let stdout = child.stdout.take().context("stdout")?;
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stdin = child.stdin.take();
        Ok(Self { child, stdin, lines })
    }

    pub(crate) fn line(&self, what: &str) -> Result<String> {
        self.lines.recv_timeout(STEP_TIMEOUT).with_context(|| format!("waiting for {what}"))
    }

    /// The next line, if it comes before `deadline`.
    pub(crate) fn line_until(&self, what: &str, deadline: Instant) -> Result<String> {
        let left = deadline.saturating_duration_since(Instant::now());
        self.lines.recv_timeout(left).with_context(|| format!("waiting for {what}"))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn build_bench(root: &Path, toolchains: &[GoToolchain]) -> Result<PathBuf> {
    let go = toolchains::find(toolchains, BENCH_GO).with_context(|| format!("no Go {BENCH_GO} toolchain"))?;
    let out_dir = paths::target_dir(root).join("bench");
    fs::create_dir_all(&out_dir)?;
    let out = out_dir.join("bench");
    step(format_args!("building tests/go/bench with {} ...", go.full));
    cmd::run(go.command(root).current_dir(root.join("tests/go/bench")).args(["build", "-o"]).arg(&out).arg("."))?;
    Ok(out)
}

fn measure(bench: &mut Proc, workload: &str) -> Result<f64> {
    measure_for(bench, workload, WINDOW_S)
}

/// Runs `workload` for `secs` in the bench program; its ops per second.
pub(crate) fn measure_for(bench: &mut Proc, workload: &str, secs: f64) -> Result<f64> {
    let stdin = bench.stdin.as_mut().context("bench stdin")?;
    writeln!(stdin, "{workload} {secs}")?;
    stdin.flush()?;
    let line = bench.line("a measurement")?;
    let v: Value = serde_json::from_str(&line).with_context(|| format!("bench printed {line:?}"))?;
    v["ops_per_s"].as_f64().with_context(|| format!("no ops_per_s in {line}"))
}

/// utime + stime of a process, in seconds.
pub(crate) fn cpu_seconds(pid: u32) -> f64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit_once(')').map_or("", |(_, r)| r).split_whitespace().collect();
    // After the command: state is field 3; utime and stime are fields 14, 15.
    let ticks = |i: usize| fields.get(i - 3).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (ticks(14) + ticks(15)) / hz.max(1.0)
}

struct Row {
    workload: &'static str,
    untraced: f64,
    traced: f64,
    after: f64,
    events_per_s: f64,
    events_lost: u64,
    tracer_cpu: f64,
}

pub fn run(root: &Path) -> Result<()> {
    if !cmd::is_root() {
        bail!("the benchmarks attach uprobes: run `cargo xtask bench` as root");
    }
    let setup = setup::run(root)?;
    // The per-hit row compares with bpftrace; without it (no package
    // source, say) that row is reported as skipped, never as met.
    if let Err(e) = crate::apt::ensure(crate::apt::BENCH_PACKAGES) {
        note(format_args!("bpftrace could not be installed: {e:#}"));
    }
    let deferscope = build::deferscope(root, true)?;
    let bench_bin = build_bench(root, &setup.toolchains)?;
    let (mut bench, pid) = start_bench_program(&bench_bin)?;
    note(format_args!("bench program ready: pid {pid}, {WINDOW_S} s per measurement"));

    let mut rows = Vec::new();
    for &(workload, what) in WORKLOADS {
        step(format_args!("{workload}: {what}"));
        let untraced = measure(&mut bench, workload)?;
        // Every probe attached: the cost of tracing each hit (the governor's
        // part is measured below).
        let mut tracer = Proc::spawn(Command::new(&deferscope).args([
            "--pid",
            &pid.to_string(),
            "--json",
            "--interval",
            "1s",
            "--overhead-budget",
            "none",
        ]))?;
        // The first snapshot means the probes are attached and memory read.
        tracer.line("deferscope's first snapshot")?;
        let (cpu0, t0) = (cpu_seconds(tracer.child.id()), Instant::now());
        let first_events = last_events(&tracer)?;
        let traced = measure(&mut bench, workload)?;
        let tracer_cpu = (cpu_seconds(tracer.child.id()) - cpu0) / t0.elapsed().as_secs_f64();
        // SAFETY: signalling our own child.
        unsafe { libc::kill(tracer.child.id() as i32, libc::SIGINT) };
        let status = tracer.child.wait()?;
        let mut last = None;
        while let Ok(line) = tracer.lines.recv_timeout(Duration::from_secs(5)) {
            last = Some(line);
        }
        let last: Value = serde_json::from_str(last.as_deref().context("deferscope printed no last snapshot")?)?;
        if !status.success() {
            bail!("deferscope exited with {status}");
        }
        let events = last["totals"]["events"].as_u64().unwrap_or(0).saturating_sub(first_events);
        let events_lost = last["totals"]["events_lost"].as_u64().unwrap_or(0);
        let after = measure(&mut bench, workload)?;
        rows.push(Row {
            workload,
            untraced,
            traced,
            after,
            events_per_s: events as f64 / WINDOW_S,
            events_lost,
            tracer_cpu,
        });
    }
    print_table(&rows);
    drop(bench);

    let go = toolchains::find(&setup.toolchains, BENCH_GO).with_context(|| format!("no Go {BENCH_GO} toolchain"))?;
    let report = crate::bench_overhead::run(root, go, &deferscope, &bench_bin)?;
    crate::bench_overhead::print_table(&report);
    let out = paths::target_dir(root).join("bench/bench.json");
    fs::write(&out, serde_json::to_string_pretty(&report)?)?;
    note(format_args!("written to {}", out.display()));
    Ok(())
}

/// Starts `tests/go/bench` and waits for its ready line: the program and
/// its pid.
pub fn start_bench_program(bench_bin: &Path) -> Result<(Proc, u32)> {
    let bench = Proc::spawn(&mut Command::new(bench_bin))?;
    let ready = bench.line("the bench program's ready line")?;
    let pid = ready.strip_prefix("ready pid=").and_then(|p| p.trim().parse().ok()).context("bad ready line")?;
    Ok((bench, pid))
}

/// `cargo xtask bench scale`: deferscope's own cost at 1k/10k/100k parked
/// goroutines alone.
pub fn run_scale(root: &Path) -> Result<()> {
    if !cmd::is_root() {
        bail!("the benchmarks attach uprobes: run `cargo xtask bench scale` as root");
    }
    let setup = setup::run(root)?;
    let deferscope = build::deferscope(root, true)?;
    let bench_bin = build_bench(root, &setup.toolchains)?;
    crate::bench_overhead::run_scale(root, &deferscope, &bench_bin)
}

/// `cargo xtask bench prometheus`: the prometheus row alone.
pub fn run_prometheus(root: &Path) -> Result<()> {
    if !cmd::is_root() {
        bail!("the benchmarks attach uprobes: run `cargo xtask bench prometheus` as root");
    }
    let deferscope = build::deferscope(root, true)?;
    crate::bench_overhead::run_prometheus(root, &deferscope)
}

/// `totals.events` of the newest snapshot deferscope has printed so far
/// (drains what is queued).
fn last_events(tracer: &Proc) -> Result<u64> {
    let mut events = 0;
    while let Ok(line) = tracer.lines.try_recv() {
        let v: Value = serde_json::from_str(&line)?;
        events = v["totals"]["events"].as_u64().unwrap_or(events);
    }
    Ok(events)
}

fn print_table(rows: &[Row]) {
    println!();
    println!(
        "{:<13} {:>14} {:>14} {:>10} {:>13} {:>12} {:>6} {:>11}",
        "workload", "untraced op/s", "traced op/s", "slowdown", "after detach", "events/s", "lost", "tracer CPU"
    );
    for r in rows {
        println!(
            "{:<13} {:>14.0} {:>14.0} {:>9.1}× {:>12.2}× {:>12.0} {:>6} {:>10.0}%",
            r.workload,
            r.untraced,
            r.traced,
            r.untraced / r.traced.max(1.0),
            r.after / r.untraced.max(1.0),
            r.events_per_s,
            r.events_lost,
            r.tracer_cpu * 100.0
        );
    }
    println!();
    println!("slowdown = untraced / traced throughput of the target; after detach = throughput after deferscope");
    println!("stopped / before it attached (≈1.00× means the probes are really gone). open-defers should show");
    println!("no slowdown: open-coded defers never reach the runtime. Measured in one run on this machine.");
}
