//! deferscope as a node agent (`--all`, `--exe`): several Go programs of
//! different Go versions and a non-Go process, programs that start later,
//! exit and restart under a new PID. Every number is checked per process
//! against what that program reports about itself, in the JSON lines and in
//! a real Prometheus scraping the one `/metrics` of the agent.
//!
//! `--all` also finds Go processes that are not the test's (other tests,
//! Prometheus itself): the assertions only look at the test's own PIDs,
//! except that nothing may ever show up for the non-Go process or for a
//! program after its exit.
use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use deferscope_integration::{
    prometheus::{Prometheus, TempDir, free_loopback_addr, http_get},
    *,
};
use serde_json::Value;

const JOB: &str = "deferscope";

/// The issue's bound: a program that starts is traced within this long.
const ATTACH_WITHIN: Duration = Duration::from_secs(2);

fn as_u64(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// A `fleet` program (tests/go/fleet) and what it reported about itself.
struct Member {
    program: GoProgram,
    pid: u32,
    exe: String,
    go: String,
    deep_goid: u64,
    depth: u64,
    stuck: u64,
    num_goroutine: u64,
    started: Instant,
}

impl Member {
    fn start(binary: &Path, depth: u64, stuck: u64) -> anyhow::Result<Self> {
        let started = Instant::now();
        let mut program = GoProgram::start_with_args(binary, &[&depth.to_string(), &stuck.to_string()])?;
        let ready = program.expect("ready")?;
        anyhow::ensure!(as_u64(&ready["deep_depth"]) == depth && as_u64(&ready["stuck"]) == stuck, "{ready}");
        Ok(Self {
            pid: program.pid,
            program,
            exe: binary.file_name().expect("file name").to_string_lossy().into_owned(),
            go: ready["go"].as_str().unwrap_or_default().to_owned(),
            deep_goid: as_u64(&ready["deep_goid"]),
            depth,
            stuck,
            num_goroutine: as_u64(&ready["num_goroutine"]),
            started,
        })
    }

    /// Whether `snapshot` (of this member's PID) shows its exact numbers.
    fn matches(&self, snapshot: &Value) -> Result<(), String> {
        let t = &snapshot["totals"];
        if snapshot["exe"] != self.exe.as_str() || snapshot["go_version"] != self.go.as_str() {
            return Err(format!("pid {}: exe {} go {}", self.pid, snapshot["exe"], snapshot["go_version"]));
        }
        if t["goroutines_live"] != self.num_goroutine {
            return Err(format!("pid {}: {} goroutines, want {}", self.pid, t["goroutines_live"], self.num_goroutine));
        }
        if t["goroutines_stuck"] != self.stuck {
            return Err(format!("pid {}: {} stuck, want {}", self.pid, t["goroutines_stuck"], self.stuck));
        }
        expect_depth(snapshot, self.deep_goid, self.depth).map_err(|e| format!("pid {}: {e}", self.pid))
    }
}

/// When each member's PID was first seen: the snapshot's arrival, and when
/// deferscope attached (arrival − the snapshot's `trace_uptime_s`).
#[derive(Clone, Copy, Debug)]
struct Seen {
    snapshot: Instant,
    attached: Instant,
}

/// Reads snapshots until every member has shown its exact numbers; fails
/// on any snapshot of a `forbidden` PID. Returns when each member's PID was
/// first seen.
fn wait_exact(tracer: &mut Tracer, members: &[&Member], forbidden: &[u32]) -> anyhow::Result<HashMap<u32, Seen>> {
    let mut first_seen: HashMap<u32, Seen> = HashMap::new();
    let mut exact: HashMap<u32, bool> = members.iter().map(|m| (m.pid, false)).collect();
    let mut violation = None;
    let mut last_error: HashMap<u32, String> = HashMap::new();
    let what = format!("exact numbers of {:?}", members.iter().map(|m| m.pid).collect::<Vec<_>>());
    tracer.wait_for(&what, |snapshot| {
        let pid = snapshot["pid"].as_u64().unwrap_or(0) as u32;
        if forbidden.contains(&pid) {
            violation.get_or_insert_with(|| format!("a snapshot of PID {pid}, which it must not trace: {snapshot}"));
        }
        if violation.is_some() {
            // Ends the wait at once; reported below.
            return Ok(());
        }
        if let Some(m) = members.iter().find(|m| m.pid == pid) {
            first_seen.entry(pid).or_insert_with(|| {
                let now = Instant::now();
                let uptime = Duration::from_secs_f64(snapshot["trace_uptime_s"].as_f64().unwrap_or(0.0));
                Seen { snapshot: now, attached: now.checked_sub(uptime).unwrap_or(now) }
            });
            match m.matches(snapshot) {
                Ok(()) => {
                    exact.insert(pid, true);
                }
                Err(e) => {
                    last_error.insert(pid, e);
                }
            }
        }
        if exact.values().all(|&done| done) { Ok(()) } else { Err(format!("{last_error:?}")) }
    })?;
    if let Some(v) = violation {
        anyhow::bail!(v);
    }
    Ok(first_seen)
}

/// Reads snapshots until PID `pid`'s last one (`target_exited`); fails on
/// any snapshot of a `forbidden` PID.
fn wait_exited(tracer: &mut Tracer, pid: u32, forbidden: &[u32]) -> anyhow::Result<()> {
    let mut violation = None;
    tracer.wait_for(&format!("the last snapshot of PID {pid}"), |snapshot| {
        let seen = snapshot["pid"].as_u64().unwrap_or(0) as u32;
        if forbidden.contains(&seen) {
            violation.get_or_insert_with(|| format!("a snapshot of PID {seen}: {snapshot}"));
            return Ok(());
        }
        if seen == pid && snapshot["target_exited"] == true { Ok(()) } else { Err(String::new()) }
    })?;
    match violation {
        Some(v) => anyhow::bail!(v),
        None => Ok(()),
    }
}

/// The `fleet` program built with `tc`, copied under a name of its own
/// (`--exe` matches base names; other tests may run a `fleet` too).
fn fleet_binary(tc: &Toolchain, dir: &Path, tag: &str) -> anyhow::Result<PathBuf> {
    let built = build_go("fleet", tc, &[])?;
    let path = dir.join(format!("fleet{}-{tag}-{}", tc.minor(), std::process::id()));
    std::fs::copy(&built, &path)?;
    Ok(path)
}

/// Three Go versions spread over the matrix, and a fourth.
fn four_toolchains() -> Vec<Toolchain> {
    let mut all = toolchains().expect("toolchains");
    all.sort_by_key(Toolchain::minor);
    let n = all.len();
    let pick = [0, n / 2, n - 1, n.saturating_sub(2)];
    pick.iter().map(|&i| all[i.min(n - 1)].clone()).collect()
}

/// deferscope attached to `m` within [`ATTACH_WITHIN`] of its start.
fn check_attach_time(what: &str, m: &Member, seen: Seen) -> anyhow::Result<()> {
    let attached = seen.attached.saturating_duration_since(m.started);
    let shown = seen.snapshot.saturating_duration_since(m.started);
    eprintln!("   {what}: {} ({}) attached {attached:?} after it started, first snapshot after {shown:?}", m.pid, m.go);
    anyhow::ensure!(attached <= ATTACH_WITHIN, "{what} was attached {attached:?} after it started");
    Ok(())
}

/// A process that is not a Go program.
struct NotGo(Child);

impl NotGo {
    fn start() -> anyhow::Result<Self> {
        Ok(Self(Command::new("sleep").arg("1000").stdin(Stdio::null()).spawn()?))
    }
}

impl Drop for NotGo {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Whether Prometheus has any deferscope series of PID `pid` now.
fn series_of(prometheus: &Prometheus, pid: u32) -> anyhow::Result<f64> {
    let q = format!(r#"count({{__name__=~"deferscope_.+",job="{JOB}",pid="{pid}"}}) or vector(0)"#);
    Ok(prometheus.value(&q)?.unwrap_or(0.0))
}

/// Prometheus shows `m`'s own numbers, labelled with its PID and exe.
fn prometheus_exact(prometheus: &Prometheus, m: &Member) -> anyhow::Result<()> {
    let sel = format!(r#"job="{JOB}",pid="{}",exe="{}""#, m.pid, m.exe);
    prometheus.wait_value(&format!("deferscope_up{{{sel}}}"), 1.0)?;
    prometheus.wait_value(&format!("max(deferscope_defer_depth_max{{{sel}}})"), m.depth as f64)?;
    prometheus.wait_value(&format!("sum(deferscope_goroutines{{{sel}}})"), m.num_goroutine as f64)?;
    prometheus.wait_value(&format!("sum(deferscope_goroutines_stuck{{{sel}}})"), m.stuck as f64)?;
    prometheus.wait_value(&format!(r#"count(deferscope_target_info{{{sel},go_version="{}"}})"#, m.go), 1.0)?;
    Ok(())
}

#[test]
#[ignore = "needs root, the Go toolchains and Debian's prometheus (cargo xtask test runs it)"]
fn all_follows_every_go_process_with_prometheus() {
    require_root();
    if let Err(e) = run_all() {
        panic!("--all: {e:#}");
    }
}

fn run_all() -> anyhow::Result<()> {
    let tcs = four_toolchains();
    let dir = TempDir::new("deferscope-fleet")?;
    let bins: Vec<PathBuf> =
        tcs.iter().enumerate().map(|(i, tc)| fleet_binary(tc, dir.path(), &i.to_string())).collect::<Result<_, _>>()?;
    eprintln!("== --all with {:?}", tcs.iter().map(|t| t.full.as_str()).collect::<Vec<_>>());

    let a = Member::start(&bins[0], 101, 3)?;
    let mut b = Member::start(&bins[1], 202, 4)?;
    let c = Member::start(&bins[2], 303, 5)?;
    let not_go = NotGo::start()?;
    let not_go_pid = not_go.0.id();

    let addr = free_loopback_addr()?;
    // --top 1: each snapshot lists only the deepest chain (ours: the deep
    // goroutine), so the lines of big programs elsewhere on the machine stay
    // small and the test reads them as fast as they come.
    let mut tracer = Tracer::spawn(&[
        "--all",
        "--top",
        "1",
        "--metrics-addr",
        &addr.to_string(),
        "--leak-after",
        "1s",
        "--leak-scan",
        "off",
        // Other Go programs on the machine may be big (100k goroutines):
        // one snapshot of each a second.
        "--interval",
        "1s",
    ])?;
    wait_exact(&mut tracer, &[&a, &b, &c], &[not_go_pid])?;
    eprintln!("   JSON: exact for {} ({}), {} ({}), {} ({})", a.pid, a.go, b.pid, b.go, c.pid, c.go);

    let prometheus = Prometheus::start(addr, JOB)?;
    for m in [&a, &b, &c] {
        prometheus_exact(&prometheus, m)?;
    }
    anyhow::ensure!(series_of(&prometheus, not_go_pid)? == 0.0, "series for the non-Go process {not_go_pid}");
    eprintln!("   Prometheus: exact for all three, nothing for the non-Go process");

    // A fourth program starts: traced within the bound, exact. (Timed from
    // the snapshots printed from now on.)
    tracer.skip_queued();
    let d = Member::start(&bins[3], 404, 6)?;
    let seen = wait_exact(&mut tracer, &[&d], &[not_go_pid])?;
    check_attach_time("the new program", &d, seen[&d.pid])?;
    prometheus_exact(&prometheus, &d)?;

    // One is killed: its last snapshot says so, then nothing of it.
    let dead = b.pid;
    drop(b.program);
    wait_exited(&mut tracer, dead, &[not_go_pid])?;
    prometheus.wait_for(&format!("no series for the dead PID {dead}"), |p| match series_of(p, dead) {
        Ok(0.0) => Ok(()),
        other => Err(format!("{other:?}")),
    })?;
    let body = http_get(addr, "/metrics")?.body;
    let left: Vec<&str> = body.lines().filter(|l| l.contains(&format!(r#"pid="{dead}""#))).collect();
    anyhow::ensure!(left.is_empty(), "/metrics still has PID {dead}:\n{}", left.join("\n"));

    // ... and restarted: a new PID of the same exe, traced within the bound.
    tracer.skip_queued();
    b = Member::start(&bins[1], 202, 4)?;
    let seen = wait_exact(&mut tracer, &[&b], &[not_go_pid, dead])?;
    check_attach_time(&format!("the restarted program (was {dead})"), &b, seen[&b.pid])?;
    prometheus_exact(&prometheus, &b)?;
    // The others kept their own numbers throughout.
    wait_exact(&mut tracer, &[&a, &b, &c, &d], &[not_go_pid, dead])?;
    for m in [&a, &c, &d] {
        prometheus_exact(&prometheus, m)?;
    }
    anyhow::ensure!(series_of(&prometheus, dead)? == 0.0, "series came back for the dead PID {dead}");
    anyhow::ensure!(series_of(&prometheus, not_go_pid)? == 0.0, "series for the non-Go process {not_go_pid}");

    let (status, _) = tracer.interrupt()?;
    anyhow::ensure!(status.success(), "deferscope --all exited with {status}");
    Ok(())
}

#[test]
#[ignore = "needs root and the Go toolchains (cargo xtask test runs it)"]
fn exe_follows_the_named_program_across_a_restart() {
    require_root();
    if let Err(e) = run_exe() {
        panic!("--exe: {e:#}");
    }
}

fn run_exe() -> anyhow::Result<()> {
    let tcs = four_toolchains();
    let dir = TempDir::new("deferscope-exe")?;
    let named = fleet_binary(&tcs[2], dir.path(), "named")?;
    let other = fleet_binary(&tcs[2], dir.path(), "other")?;
    let mut a = Member::start(&named, 150, 2)?;
    let o = Member::start(&other, 250, 3)?;
    eprintln!("== --exe {} ({}), beside {}", a.exe, a.go, o.exe);

    let mut tracer =
        Tracer::spawn(&["--exe", &a.exe, "--interval", "200ms", "--leak-after", "1s", "--leak-scan", "off"])?;
    wait_exact(&mut tracer, &[&a], &[o.pid])?;

    let first = a.pid;
    drop(a.program);
    wait_exited(&mut tracer, first, &[o.pid])?;
    a = Member::start(&named, 150, 2)?;
    let seen = wait_exact(&mut tracer, &[&a], &[o.pid, first])?;
    check_attach_time(&format!("the restarted program (was {first})"), &a, seen[&a.pid])?;

    let (status, rest) = tracer.interrupt()?;
    anyhow::ensure!(status.success(), "deferscope --exe exited with {status}");
    anyhow::ensure!(
        rest.iter().all(|s| s["pid"] == a.pid),
        "snapshots of other processes: {:?}",
        rest.iter().map(|s| &s["pid"]).collect::<Vec<_>>()
    );
    Ok(())
}

#[test]
#[ignore = "needs root and the Go toolchains (cargo xtask test runs it)"]
fn max_processes_caps_and_says_so() {
    require_root();
    if let Err(e) = run_max_processes() {
        panic!("--max-processes: {e:#}");
    }
}

fn run_max_processes() -> anyhow::Result<()> {
    let tcs = four_toolchains();
    let dir = TempDir::new("deferscope-max")?;
    let named = fleet_binary(&tcs[1], dir.path(), "capped")?;
    let one = Member::start(&named, 120, 1)?;
    let two = Member::start(&named, 240, 2)?;
    let mut tracer = Tracer::spawn(&[
        "--exe",
        &one.exe,
        "--max-processes",
        "1",
        "--interval",
        "200ms",
        "--leak-after",
        "1s",
        "--leak-scan",
        "off",
    ])?;
    // Ten snapshots: all of one process, the first one found.
    let mut seen = std::collections::BTreeSet::new();
    tracer.expect_every(10, "snapshots of the two programs", |s| {
        seen.insert(s["pid"].as_u64().unwrap_or(0) as u32);
        Ok(())
    })?;
    anyhow::ensure!(seen.len() == 1, "traced {seen:?} with --max-processes 1");
    anyhow::ensure!(
        seen.contains(&one.pid) || seen.contains(&two.pid),
        "traced {seen:?}, neither {} nor {}",
        one.pid,
        two.pid
    );
    let (traced, waiting) = if seen.contains(&one.pid) { (one, two) } else { (two, one) };
    let log = tracer.stderr_text();
    let said = format!("process {} ({}): not traced: --max-processes 1 reached", waiting.pid, waiting.exe);
    anyhow::ensure!(log.contains(&said), "no {said:?} in the log:\n{log}");
    anyhow::ensure!(log.matches("--max-processes 1 reached").count() == 1, "said more than once:\n{log}");
    eprintln!("   traced {}, {} waits (and the log says so)", traced.pid, waiting.pid);

    // A slot frees up: the waiting one is traced, exactly.
    let gone = traced.pid;
    drop(traced.program);
    wait_exited(&mut tracer, gone, &[waiting.pid])?;
    wait_exact(&mut tracer, &[&waiting], &[gone])?;
    let (status, _) = tracer.interrupt()?;
    anyhow::ensure!(status.success(), "deferscope exited with {status}");
    Ok(())
}
