//! `cargo xtask bench`, second part: the overhead governor and the tracer's
//! own cost at scale.
//!
//! - an HTTP service under load (`tests/go/httpbench`, a second process as
//!   the client, loopback only): throughput traced with the defaults and with
//!   `--overhead-budget none`, over untraced;
//! - a defer storm (the `heap-defers` workload): the same ratios, the traced
//!   ones measured after the governor had 3 s to react;
//! - the extra cost per probe hit against bpftrace on the same runtime
//!   functions (Debian's `bpftrace`, governor off);
//! - deferscope's CPU, RSS and read times at 1k/10k/100k parked goroutines,
//!   and on Debian's stripped `prometheus`.
//!
//! Interleaved rounds (each round measures every configuration, in a rotating
//! order) and medians of per-round ratios: the machine is shared.
use std::{
    fs,
    io::Write as _,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use serde_json::{Value, json};

use crate::{
    bench::Proc,
    cmd::{self, note, step},
    paths,
    toolchains::GoToolchain,
};

/// Interleaved rounds per configuration. Seven: on the 2-vCPU development VM
/// one round's ratio varies by ±10-15% between identical runs (untraced HTTP
/// rates drift 35-42k/s, the storm's 40-55M/s with deferscope's CPU at 0.1%
/// and every probe detached), so the median of three, or five, could land
/// either side of a 0.98 or 0.9 target. Every round's ratio is printed.
const ROUNDS: usize = 7;
/// Seconds of load per measurement, and of warm-up with the tracer attached
/// (the governor reacts within 2 s).
const MEASURE_S: f64 = 4.0;
const WARMUP_S: f64 = 3.0;
const CLIENTS: u32 = 8;

#[derive(Clone, Copy, PartialEq)]
enum Config {
    Untraced,
    Defaults,
    Unlimited,
    Bpftrace,
}

impl Config {
    fn name(self) -> &'static str {
        match self {
            Self::Untraced => "untraced",
            Self::Defaults => "defaults",
            Self::Unlimited => "none",
            Self::Bpftrace => "bpftrace",
        }
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
}

/// deferscope attached with `--json`, interrupted and read back on `finish`.
struct Tracing {
    proc: Proc,
}

impl Tracing {
    fn start(deferscope: &Path, pid: u32, extra: &[&str]) -> Result<Self> {
        let proc = Proc::spawn(
            Command::new(deferscope).args(["--pid", &pid.to_string(), "--json", "--interval", "1s"]).args(extra),
        )?;
        proc.line("deferscope's first snapshot")?;
        Ok(Self { proc })
    }

    /// Stops deferscope; returns its last snapshot.
    fn finish(mut self) -> Result<Value> {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.proc.child.id() as i32, libc::SIGINT) };
        let status = self.proc.child.wait()?;
        let mut last = None;
        while let Ok(line) = self.proc.lines.recv_timeout(Duration::from_secs(5)) {
            last = Some(line);
        }
        if !status.success() {
            bail!("deferscope exited with {status}");
        }
        Ok(serde_json::from_str(last.as_deref().context("deferscope printed no last snapshot")?)?)
    }
}

/// bpftrace counting hits on the same runtime functions.
fn start_bpftrace(binary: &Path, pid: u32, functions: &[&str]) -> Result<Proc> {
    let program: String = functions
        .iter()
        .enumerate()
        .map(|(i, f)| format!("uprobe:{}:{f} {{ @h{i} = count(); }} ", binary.display()))
        .collect();
    let proc = Proc::spawn(Command::new("bpftrace").args(["-p", &pid.to_string(), "-e", &program]))?;
    loop {
        let line = proc.line("bpftrace attaching")?;
        if line.starts_with("Attaching") {
            break;
        }
    }
    // "Attaching N probes..." comes before the attach itself.
    std::thread::sleep(Duration::from_secs(1));
    Ok(proc)
}

fn stop(mut proc: Proc) {
    // SAFETY: signalling our own child.
    unsafe { libc::kill(proc.child.id() as i32, libc::SIGINT) };
    let _ = proc.child.wait();
}

/// A measurement with deferscope (or bpftrace) attached as `config` says.
fn measured(
    config: Config,
    deferscope: &Path,
    pid: u32,
    bpftrace: Option<(&Path, &[&str])>,
    mut load: impl FnMut(f64) -> Result<f64>,
) -> Result<(f64, Option<Value>)> {
    match config {
        Config::Untraced => Ok((load(MEASURE_S)?, None)),
        Config::Defaults | Config::Unlimited => {
            let extra: &[&str] = if config == Config::Unlimited { &["--overhead-budget", "none"] } else { &[] };
            let tracing = Tracing::start(deferscope, pid, extra)?;
            load(WARMUP_S)?;
            let rate = load(MEASURE_S)?;
            Ok((rate, Some(tracing.finish()?)))
        }
        Config::Bpftrace => {
            let (binary, functions) = bpftrace.context("bpftrace needs its probes")?;
            let bpf = start_bpftrace(binary, pid, functions)?;
            let rate = load(MEASURE_S)?;
            stop(bpf);
            Ok((rate, None))
        }
    }
}

/// Interleaved rounds of `configs`: per config, the rates, and the last
/// snapshot of a defaults run.
fn rounds(
    configs: &[Config],
    deferscope: &Path,
    pid: u32,
    bpftrace: Option<(&Path, &[&str])>,
    mut load: impl FnMut(f64) -> Result<f64>,
) -> Result<(Vec<Vec<f64>>, Option<Value>)> {
    let mut rates = vec![Vec::new(); configs.len()];
    let mut governed = None;
    for round in 0..ROUNDS {
        for k in 0..configs.len() {
            let i = (round + k) % configs.len();
            let (rate, snapshot) = measured(configs[i], deferscope, pid, bpftrace, &mut load)?;
            note(format_args!("round {}: {:<9} {rate:>12.0}/s", round + 1, configs[i].name()));
            rates[i].push(rate);
            if configs[i] == Config::Defaults {
                governed = snapshot;
            }
        }
    }
    Ok((rates, governed))
}

/// Per-round ratios of config `i` over config 0 (untraced).
fn round_ratios(rates: &[Vec<f64>], i: usize) -> Vec<f64> {
    rates[i].iter().zip(&rates[0]).map(|(t, u)| t / u.max(1e-9)).collect()
}

/// Per-round ratios of config `i` over config 0 (untraced), median.
fn ratio(rates: &[Vec<f64>], i: usize) -> f64 {
    median(round_ratios(rates, i))
}

fn build_go(go: &GoToolchain, root: &Path, name: &str) -> Result<PathBuf> {
    let out = paths::target_dir(root).join("bench").join(name);
    cmd::run(go.command(root).current_dir(root.join("tests/go").join(name)).args(["build", "-o"]).arg(&out).arg("."))?;
    Ok(out)
}

fn vm_hwm_kib(pid: u32) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// The tracer's `--interval` in the cost rows: its first snapshot comes right
/// after it attached and read memory, the next ones one interval apart.
const COST_INTERVAL_S: f64 = 1.0;

/// deferscope on `pid` for a few snapshots: time to the first, read times,
/// peak RSS, CPU.
fn tracer_cost(deferscope: &Path, pid: u32) -> Result<Value> {
    let started = Instant::now();
    let interval = format!("{COST_INTERVAL_S}s");
    let proc =
        Proc::spawn(Command::new(deferscope).args(["--pid", &pid.to_string(), "--json", "--interval", &interval]))?;
    let first: Value = serde_json::from_str(&proc.line("the first snapshot")?)?;
    let first_s = started.elapsed().as_secs_f64();
    let mut reads = Vec::new();
    for _ in 0..4 {
        let s: Value = serde_json::from_str(&proc.line("a snapshot")?)?;
        reads.push(s["memory_read_s"].as_f64().unwrap_or(f64::NAN));
    }
    let rss_mib = vm_hwm_kib(proc.child.id()) as f64 / 1024.0;
    let cpu_s = crate::bench::cpu_seconds(proc.child.id());
    let elapsed = started.elapsed().as_secs_f64();
    let goroutines = first["totals"]["goroutines_total"].as_u64().unwrap_or(0);
    stop(proc);
    Ok(json!({
        "goroutines": goroutines,
        // Everything before it: reading the binary, attach, calibration and
        // the first read.
        "first_snapshot_s": first_s,
        "first_read_s": first["memory_read_s"],
        "read_s_median": median(reads),
        "rss_peak_mib": rss_mib,
        "tracer_cpu_ratio": cpu_s / elapsed,
    }))
}

/// The 1-minute load average: the machine is shared, and figures measured
/// under load say so.
fn load_average() -> f64 {
    fs::read_to_string("/proc/loadavg").ok().and_then(|l| l.split_whitespace().next()?.parse().ok()).unwrap_or(f64::NAN)
}

pub fn run(root: &Path, go: &GoToolchain, deferscope: &Path, bench_bin: &Path) -> Result<Value> {
    let mut report = serde_json::Map::new();
    let mut loads = vec![load_average()];
    report.insert("cpus".into(), json!(std::thread::available_parallelism().map_or(1, |n| n.get())));

    // 1. An HTTP service under load.
    step("http: a JSON HTTP service, 8 keep-alive clients in a second process (loopback)");
    let http = build_go(go, root, "httpbench")?;
    let server = Proc::spawn(Command::new(&http).arg("serve"))?;
    let ready = server.line("the service's ready line")?;
    let (pid, addr) = ready
        .strip_prefix("ready pid=")
        .and_then(|r| r.split_once(" addr="))
        .and_then(|(p, a)| Some((p.parse::<u32>().ok()?, a.trim().to_owned())))
        .context("bad ready line")?;
    let load = |secs: f64| -> Result<f64> {
        let out = cmd::output(Command::new(&http).args(["load", &addr, &CLIENTS.to_string(), &secs.to_string()]))?;
        let v: Value = serde_json::from_str(out.trim())?;
        v["requests_per_s"].as_f64().context("no requests_per_s")
    };
    let configs = [Config::Untraced, Config::Defaults, Config::Unlimited];
    let (rates, governed) = rounds(&configs, deferscope, pid, None, load)?;
    loads.push(load_average());
    report.insert(
        "http".into(),
        json!({
            "untraced_rps_median": median(rates[0].clone()),
            "defaults_over_untraced": ratio(&rates, 1),
            "defaults_over_untraced_rounds": round_ratios(&rates, 1),
            "none_over_untraced": ratio(&rates, 2),
            "defaults_mode": governed.as_ref().map(|s| s["mode"].clone()),
            "defaults_overhead": governed.as_ref().map(|s| s["overhead"].clone()),
        }),
    );
    drop(server);

    // 2. A defer storm, and 3. per hit against bpftrace.
    step("defer storm: heap defers in a loop on every CPU (deferproc + popDefer)");
    let (mut bench, bench_pid) = crate::bench::start_bench_program(bench_bin)?;
    let has_bpftrace = cmd::on_path("bpftrace");
    let mut configs = vec![Config::Untraced, Config::Defaults, Config::Unlimited];
    if has_bpftrace {
        configs.push(Config::Bpftrace);
    } else {
        note("bpftrace not installed (apt-get install bpftrace): no per-hit comparison");
    }
    let functions: &[&str] = &["runtime.deferproc", "runtime.popDefer"];
    let storm_load = |secs: f64| crate::bench::measure_for(&mut bench, "heap-defers", secs);
    let (rates, governed) = rounds(&configs, deferscope, bench_pid, Some((bench_bin, functions)), storm_load)?;
    loads.push(load_average());
    // heap-defers counts one op per defer: one push and one pop hit.
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let per_hit_ns = |i: usize| {
        median(rates[i].iter().zip(&rates[0]).map(|(t, u)| cpus * (1.0 / t - 1.0 / u) * 1e9 / 2.0).collect())
    };
    report.insert(
        "storm".into(),
        json!({
            "untraced_ops_median": median(rates[0].clone()),
            "defaults_over_untraced": ratio(&rates, 1),
            "defaults_over_untraced_rounds": round_ratios(&rates, 1),
            "none_over_untraced": ratio(&rates, 2),
            "defaults_mode": governed.as_ref().map(|s| s["mode"].clone()),
        }),
    );
    if has_bpftrace {
        let ours = per_hit_ns(2);
        let theirs = per_hit_ns(3);
        report.insert(
            "per_hit".into(),
            json!({
                "deferscope_extra_ns": ours,
                "bpftrace_extra_ns": theirs,
                "deferscope_over_bpftrace": median(
                    rates[2].iter().zip(&rates[3]).zip(&rates[0])
                        .map(|((d, b), u)| (1.0 / d - 1.0 / u) / (1.0 / b - 1.0 / u)).collect()
                ),
            }),
        );
    }

    // 4. The tracer's own cost at scale (a fresh bench program).
    drop(bench);
    report.insert("scale".into(), scale(deferscope, bench_bin, &mut loads)?);

    // 5. A real server: Debian's stripped prometheus.
    if let Some(cost) = prometheus(root, deferscope, &mut loads)? {
        report.insert("prometheus".into(), cost);
    }
    loads.push(load_average());
    report.insert("load_average".into(), json!({"samples": loads, "median": median(loads.clone())}));
    Ok(Value::Object(report))
}

/// deferscope's own cost at 1k/10k/100k goroutines parked in a fresh bench
/// program (two heap defers each), one after the other.
fn scale(deferscope: &Path, bench_bin: &Path, loads: &mut Vec<f64>) -> Result<Value> {
    step("deferscope's own cost at 1k/10k/100k parked goroutines (two heap defers each)");
    let (mut bench, bench_pid) = crate::bench::start_bench_program(bench_bin)?;
    let mut scale = Vec::new();
    let mut parked = 0;
    for target in [1_000, 10_000, 100_000] {
        let stdin = bench.stdin.as_mut().context("bench stdin")?;
        writeln!(stdin, "park {}", target - parked)?;
        stdin.flush()?;
        bench.line("parked")?;
        parked = target;
        loads.push(load_average());
        let cost = tracer_cost(deferscope, bench_pid)?;
        note(format_args!("{target}: {cost}"));
        scale.push(json!({"parked": target, "cost": cost}));
    }
    Ok(Value::Array(scale))
}

/// `cargo xtask bench scale`: the 1k/10k/100k rows alone.
pub fn run_scale(root: &Path, deferscope: &Path, bench_bin: &Path) -> Result<()> {
    let mut loads = vec![load_average()];
    let scale = scale(deferscope, bench_bin, &mut loads)?;
    write_partial_report(root, "scale", scale, loads)
}

/// A report of one part of the bench alone (`key`: its rows), with the
/// machine's CPUs and load: printed as the table and written to
/// `target/bench/bench-KEY.json`.
fn write_partial_report(root: &Path, key: &str, rows: Value, mut loads: Vec<f64>) -> Result<()> {
    loads.push(load_average());
    let report = json!({
        "cpus": std::thread::available_parallelism().map_or(1, |n| n.get()),
        key: rows,
        "load_average": {"samples": loads, "median": median(loads.clone())},
    });
    print_table(&report);
    let out = paths::target_dir(root).join(format!("bench/bench-{key}.json"));
    fs::write(&out, serde_json::to_string_pretty(&report)?)?;
    note(format_args!("written to {}", out.display()));
    Ok(())
}

/// Runs of deferscope on prometheus (one prometheus, attached to in turn).
const PROMETHEUS_RUNS: usize = 3;

/// deferscope's cost on Debian's stripped `prometheus` (idle, temp data
/// dir): every run, and the medians of first snapshot and RSS peak. None
/// when prometheus is not installed.
fn prometheus(root: &Path, deferscope: &Path, loads: &mut Vec<f64>) -> Result<Option<Value>> {
    let Some(prometheus) = cmd::which("prometheus") else { return Ok(None) };
    step("prometheus: Debian's stripped binary, idle");
    let dir = paths::target_dir(root).join("bench/prometheus");
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir)?;
    fs::write(dir.join("prometheus.yml"), "global:\n  scrape_interval: 15s\n")?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let mut server = Command::new(prometheus)
        .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
        .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    // Let it start up fully (TSDB open, web listening).
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut runs = Vec::new();
    for run in 0..PROMETHEUS_RUNS {
        loads.push(load_average());
        match tracer_cost(deferscope, server.id()) {
            Ok(cost) => {
                note(format_args!("prometheus, run {}: {cost}", run + 1));
                runs.push(cost);
            }
            Err(e) => {
                let _ = server.kill();
                let _ = server.wait();
                return Err(e);
            }
        }
    }
    let _ = server.kill();
    let _ = server.wait();
    let med = |key: &str| median(runs.iter().map(|c| f(&c[key])).collect());
    Ok(Some(json!({
        "first_snapshot_s": med("first_snapshot_s"),
        "rss_peak_mib": med("rss_peak_mib"),
        "read_s_median": med("read_s_median"),
        "runs": runs,
    })))
}

/// `cargo xtask bench prometheus`: only the prometheus row.
pub fn run_prometheus(root: &Path, deferscope: &Path) -> Result<()> {
    let mut loads = vec![load_average()];
    let Some(cost) = prometheus(root, deferscope, &mut loads)? else {
        bail!("prometheus is not installed (Debian: apt-get install prometheus)");
    };
    write_partial_report(root, "prometheus", cost, loads)
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

/// Targets of issue 10, checked in the table.
const HTTP_MIN_RATIO: f64 = 0.98;
const STORM_MIN_RATIO: f64 = 0.90;
const PER_HIT_MAX_RATIO: f64 = 1.0;
const RSS_MAX_MIB: f64 = 100.0 * 1e6 / (1 << 20) as f64;
const READ_MAX_S: f64 = 0.2;
const FIRST_SNAPSHOT_MAX_S: f64 = 1.0;

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "**not met**" }
}

/// Per-round ratios as `0.94, 1.01, …`.
fn rounds_list(v: &Value) -> String {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_f64)
        .map(|x| format!("{x:.2}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The table printed (and pasted into the README).
pub fn print_table(r: &Value) {
    println!();
    println!("| measurement | result | target |");
    println!("| --- | --- | --- |");
    if let Some(h) = r.get("http") {
        let http = f(&h["defaults_over_untraced"]);
        println!(
            "| HTTP service, traced with defaults / untraced (median of {ROUNDS} interleaved rounds: {}) | {http:.3}× (mode {}) | ≥ {HTTP_MIN_RATIO}: {} |",
            rounds_list(&h["defaults_over_untraced_rounds"]),
            h["defaults_mode"],
            verdict(http >= HTTP_MIN_RATIO)
        );
        println!(
            "| HTTP service, `--overhead-budget none` / untraced | {:.3}× | reported |",
            f(&h["none_over_untraced"])
        );
    }
    if let Some(s) = r.get("storm") {
        let storm = f(&s["defaults_over_untraced"]);
        println!(
            "| defer storm, defaults / untraced (after {WARMUP_S} s; rounds: {}) | {storm:.3}× (mode {}) | ≥ {STORM_MIN_RATIO}, sampled: {} |",
            rounds_list(&s["defaults_over_untraced_rounds"]),
            s["defaults_mode"],
            verdict(storm >= STORM_MIN_RATIO && s["defaults_mode"] == "sampled")
        );
        println!(
            "| defer storm, `--overhead-budget none` / untraced | {:.3}× | reported |",
            f(&s["none_over_untraced"])
        );
    }
    if let Some(p) = r.get("per_hit") {
        let ratio = f(&p["deferscope_over_bpftrace"]);
        println!(
            "| extra cost per hit, deferscope / bpftrace (same functions, governor off) | {ratio:.2}× ({:.0} ns vs {:.0} ns) | ≤ {PER_HIT_MAX_RATIO}×: {} |",
            f(&p["deferscope_extra_ns"]),
            f(&p["bpftrace_extra_ns"]),
            verdict(ratio <= PER_HIT_MAX_RATIO)
        );
    } else if r.get("storm").is_some() {
        println!(
            "| extra cost per hit, deferscope / bpftrace (same functions, governor off) | skipped: bpftrace not installed | ≤ {PER_HIT_MAX_RATIO}×: **not measured** |"
        );
    }
    for row in r["scale"].as_array().into_iter().flatten() {
        let c = &row["cost"];
        let (rss, read) = (f(&c["rss_peak_mib"]), f(&c["read_s_median"]));
        let target = if row["parked"] == 100_000 {
            format!(
                "RSS ≤ {RSS_MAX_MIB:.0} MiB: {}; read ≤ {READ_MAX_S} s: {}",
                verdict(rss <= RSS_MAX_MIB),
                verdict(read <= READ_MAX_S)
            )
        } else {
            "reported".to_owned()
        };
        println!(
            "| {} parked goroutines: RSS peak, read (first / median), tracer CPU | {rss:.0} MiB, {:.3} s / {read:.3} s, {:.1}% | {target} |",
            row["parked"],
            f(&c["first_read_s"]),
            f(&c["tracer_cpu_ratio"]) * 100.0
        );
    }
    if let Some(c) = r.get("prometheus") {
        let (first, rss) = (f(&c["first_snapshot_s"]), f(&c["rss_peak_mib"]));
        println!(
            "| Debian's stripped prometheus: first snapshot, RSS peak, read median (medians of {PROMETHEUS_RUNS} runs) | {first:.2} s, {rss:.0} MiB, {:.4} s | first ≤ {FIRST_SNAPSHOT_MAX_S} s: {}; RSS ≤ {RSS_MAX_MIB:.0} MiB: {} |",
            f(&c["read_s_median"]),
            verdict(first <= FIRST_SNAPSHOT_MAX_S),
            verdict(rss <= RSS_MAX_MIB)
        );
    }
    println!();
    println!(
        "{} CPUs; 1-minute load average during the run: median {:.1} (samples {}). Snapshots every {COST_INTERVAL_S} s: the first right after the first read.",
        r["cpus"],
        f(&r["load_average"]["median"]),
        r["load_average"]["samples"]
    );
    println!();
}
