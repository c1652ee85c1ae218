//! `cargo xtask bench leaks`: Go's own goroutine leak corpus as the external
//! benchmark of deferscope's leak proofs.
//!
//! The corpus is the one of Go's `TestGoroutineLeakProfile`
//! (`runtime/testdata/testgoroutineleakprofile/` and its `goker/` directory,
//! the program list in `runtime/goroutineleakprofile_test.go`). Each program
//! is built with its `main.go` replaced by `bench_leaks/driver.go`, run as Go's
//! test runs it (`GODEBUG=asyncpreemptoff=1`, `GOMAXPROCS=1` for the
//! non-flaky ones), and kept alive once it returned: the driver prints Go's
//! own goroutineleak profile, then a readiness line. deferscope attaches
//! (`--json`, leak scans every 500 ms) until its leak verdicts have settled,
//! then the driver prints Go's profile again.
//!
//! Ground truth, by goroutine ID:
//! - Go 1.26 (built with `GOEXPERIMENT=goroutineleakprofile`) and 1.27: the
//!   program's own goroutineleak profile. "Go" counts the goroutines it
//!   reported before deferscope attached; a goroutine deferscope calls leaked
//!   that the second profile (taken after deferscope's verdict; a leak never
//!   heals) does not report is a **false leak**.
//! - Older versions have no such profile. The reference is then the newest
//!   version's run of the same program, matched by goroutine entry function:
//!   "extra" counts leaks beyond that reference. It is another run, so a
//!   flaky program may differ for scheduling reasons; a non-flaky one may not.
//!
//! Fails on any false leak, and on any extra leak in a non-flaky program.
use std::{
    collections::{BTreeMap, BTreeSet},
    fs::{self, File},
    io::Write as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use serde_json::{Value, json};

use crate::{
    bench::Proc,
    build,
    cmd::{self, note, step},
    paths,
    toolchains::{self, GoToolchain},
};

const DRIVER: &str = include_str!("bench_leaks/driver.go");
/// The corpus of the newest toolchain builds the programs for versions that
/// ship none (before Go 1.26).
const NEWEST_CORPUS: &str = "1.27";
const READY: &str = "deferscope-corpus: ready pid=";
const PROFILE_BEGIN: &str = "deferscope-corpus: profile begin";
const PROFILE_END: &str = "deferscope-corpus: profile end";
/// deferscope's settings: verdicts within about two seconds.
const TRACER_ARGS: &[&str] =
    &["--json", "--stacks", "--interval", "250ms", "--leak-after", "500ms", "--leak-scan", "500ms"];
/// Scans before a verdict can stand: the first proof needs two consecutive
/// scans after `--leak-after`; one more for margin.
const MIN_SCANS: u64 = 4;
/// Further scans with the same leaked set before it counts as settled.
const SETTLE_SCANS: u64 = 2;
const PROGRAM_TIMEOUT: Duration = Duration::from_secs(60);
const VERDICT_TIMEOUT: Duration = Duration::from_secs(30);

/// `cargo xtask bench leaks` options.
pub struct LeaksArgs {
    /// Major.minor versions (empty: the whole matrix).
    pub go: Vec<String>,
    /// Only programs whose name contains one of these.
    pub only: Vec<String>,
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Dir {
    /// `testgoroutineleakprofile/`: micro, stress and pattern tests.
    Main,
    Goker,
}

impl Dir {
    fn name(self) -> &'static str {
        match self {
            Self::Main => "testgoroutineleakprofile",
            Self::Goker => "goker",
        }
    }
}

/// One program of the corpus, as Go's test lists it.
#[derive(Clone, Debug)]
struct Program {
    dir: Dir,
    name: String,
    /// `makeFlakyTest`: run with all CPUs, its leaks depend on scheduling.
    flaky: bool,
}

/// The programs `goroutineleakprofile_test.go` runs, in its order.
fn parse_programs(test_src: &str) -> Vec<Program> {
    let mut dir = Dir::Main;
    let mut programs = Vec::new();
    for line in test_src.lines().map(str::trim) {
        if line.starts_with("gokerTestCases :=") {
            dir = Dir::Goker;
        }
        for (prefix, flaky) in [("makeTest(\"", false), ("makeFlakyTest(\"", true)] {
            if let Some(name) = line.strip_prefix(prefix).and_then(|rest| rest.split('"').next()) {
                programs.push(Program { dir, name: name.to_owned(), flaky });
            }
        }
    }
    programs
}

/// One goroutine of Go's goroutineleak profile (debug=2).
#[derive(Clone, Debug, PartialEq, Eq)]
struct GoLeak {
    goid: u64,
    wait_reason: String,
    /// The goroutine's entry function, as Go's test extracts it (the frame
    /// above "created by").
    function: String,
}

fn parse_profile(text: &str) -> Vec<GoLeak> {
    let mut leaks = Vec::new();
    for block in text.split("\n\n") {
        // A block may open with the profile's own header line.
        let lines: Vec<&str> = block
            .lines()
            .filter(|l| !l.trim().is_empty())
            .skip_while(|l| !l.strip_prefix("goroutine ").is_some_and(|r| r.starts_with(|c: char| c.is_ascii_digit())))
            .collect();
        let Some(header) = lines.first().and_then(|l| l.strip_prefix("goroutine ")) else { continue };
        if !header.contains("(leaked)") {
            continue;
        }
        let Some(goid) = header.split_whitespace().next().and_then(|g| g.parse().ok()) else { continue };
        let wait_reason = header
            .split_once('[')
            .and_then(|(_, r)| r.split_once(" (leaked)"))
            .map_or(String::new(), |(r, _)| r.to_owned());
        let function = lines
            .iter()
            .rposition(|l| l.starts_with("created by"))
            .and_then(|i| i.checked_sub(2))
            .or_else(|| lines.len().checked_sub(2))
            .map_or(String::new(), |i| {
                let frame = lines[i].trim();
                frame.rfind('(').map_or(frame, |p| &frame[..p]).to_owned()
            });
        leaks.push(GoLeak { goid, wait_reason, function });
    }
    leaks
}

/// A goroutine deferscope called leaked.
#[derive(Clone, Debug)]
struct OurLeak {
    goid: u64,
    function: String,
    /// The frame `function` calls when `function` is a `funcN` closure: on
    /// Go 1.21 and older the compiler's wrapper for `go x.f(args)` is such a
    /// closure (not a hidden `gowrapN`), so Go 1.22+'s traceback, the
    /// reference, names `x.f` where this names `main.F.func1`.
    called: Option<String>,
    reason: String,
}

/// One program's run under one toolchain.
#[derive(Clone, Debug, Default)]
struct Outcome {
    /// Why nothing was measured (the program exited, did not build, ...).
    skipped: Option<String>,
    /// Go's profile before deferscope attached, and after its verdict
    /// (None: no Go profile in this version).
    go_before: Option<Vec<GoLeak>>,
    go_after: Option<Vec<GoLeak>>,
    ours: Vec<OurLeak>,
    stuck: u64,
    scans: u64,
    scan_s: f64,
}

#[derive(Clone, Debug, Default)]
struct Score {
    go: usize,
    ours: usize,
    found: usize,
    /// Ours not in Go's profile after the verdict (exact ground truth).
    false_leaks: usize,
    /// Ours beyond the reference run (versions without a Go profile).
    extra: usize,
}

impl Score {
    fn add(&mut self, o: &Self) {
        self.go += o.go;
        self.ours += o.ours;
        self.found += o.found;
        self.false_leaks += o.false_leaks;
        self.extra += o.extra;
    }
}

/// Scores a run against its own Go profile, or else against the reference
/// run's Go profile by entry function.
fn score(outcome: &Outcome, reference: Option<&Outcome>) -> Option<Score> {
    if outcome.skipped.is_some() {
        return None;
    }
    let ours: BTreeSet<u64> = outcome.ours.iter().map(|l| l.goid).collect();
    if let (Some(before), Some(after)) = (&outcome.go_before, &outcome.go_after) {
        let before: BTreeSet<u64> = before.iter().map(|l| l.goid).collect();
        let after: BTreeSet<u64> = after.iter().map(|l| l.goid).collect();
        return Some(Score {
            go: before.len(),
            ours: ours.len(),
            found: ours.intersection(&before).count(),
            false_leaks: ours.difference(&after).count(),
            extra: 0,
        });
    }
    let reference = reference?.go_before.as_ref()?;
    let count = |fs: &mut dyn Iterator<Item = String>| {
        let mut m = BTreeMap::<String, usize>::new();
        for f in fs {
            *m.entry(f).or_default() += 1;
        }
        m
    };
    let mut want = count(&mut reference.iter().map(|l| l.function.clone()));
    let mut take = |f: &str| match want.get_mut(f) {
        Some(n) if *n > 0 => {
            *n -= 1;
            true
        }
        _ => false,
    };
    // By name first; then a closure that is not in the reference by its own
    // name counts as the call it wraps (see `OurLeak::called`).
    let unmatched: Vec<&OurLeak> = outcome.ours.iter().filter(|l| !take(&l.function)).collect();
    let by_call = unmatched.iter().filter(|l| l.called.as_deref().is_some_and(&mut take)).count();
    let found = outcome.ours.len() - unmatched.len() + by_call;
    Some(Score { go: reference.len(), ours: ours.len(), found, false_leaks: 0, extra: ours.len() - found })
}

/// The toolchain's `GOROOT`.
fn goroot(tc: &GoToolchain) -> Result<PathBuf> {
    let out = cmd::output(Command::new(&tc.go).args(["env", "GOROOT"]))?;
    Ok(PathBuf::from(out.trim()))
}

/// Builds both corpus directories for one toolchain; the binaries, and
/// whether they carry Go's goroutineleak profile.
fn build_corpus(root: &Path, tc: &GoToolchain, corpus_root: &Path) -> Result<(BTreeMap<Dir, PathBuf>, bool)> {
    let own = goroot(tc)?;
    // GOEXPERIMENT=goroutineleakprofile exists in Go 1.26 only (1.27 has the
    // profile by default).
    let experiment = own.join("src/internal/goexperiment/exp_goroutineleakprofile_on.go").is_file();
    let out_dir = paths::target_dir(root).join("bench/leaks").join(&tc.full);
    let mut bins = BTreeMap::new();
    for dir in [Dir::Main, Dir::Goker] {
        let src = match dir {
            Dir::Main => corpus_root.to_path_buf(),
            Dir::Goker => corpus_root.join("goker"),
        };
        let build_dir = out_dir.join(dir.name());
        if build_dir.exists() {
            fs::remove_dir_all(&build_dir)?;
        }
        fs::create_dir_all(&build_dir)?;
        for entry in fs::read_dir(&src).with_context(|| src.display().to_string())? {
            let path = entry?.path();
            let is_go = path.extension().is_some_and(|e| e == "go");
            if is_go && path.file_name().is_some_and(|n| n != "main.go") {
                fs::copy(&path, build_dir.join(path.file_name().unwrap_or_default()))?;
            }
        }
        fs::write(build_dir.join("main.go"), DRIVER)?;
        fs::write(build_dir.join("go.mod"), format!("module leakcorpus\n\ngo {}\n", tc.version))?;
        let bin = out_dir.join(format!("{}.bin", dir.name()));
        let mut go = tc.command(root);
        go.current_dir(&build_dir).args(["build", "-o"]).arg(&bin).arg(".");
        if experiment {
            go.env("GOEXPERIMENT", "goroutineleakprofile");
        }
        cmd::run(&mut go)?;
        bins.insert(dir, bin);
    }
    let has_profile = experiment || tc.version.as_str() >= "1.27";
    Ok((bins, has_profile))
}

/// Reads the program's stdout up to the next profile; its leaks.
fn read_profile(program: &Proc) -> Result<Vec<GoLeak>> {
    let deadline = Instant::now() + PROGRAM_TIMEOUT;
    while program.line_until("the profile", deadline)? != PROFILE_BEGIN {}
    let mut text = String::new();
    loop {
        let line = program.line_until("the profile's end", deadline)?;
        if line == PROFILE_END {
            return Ok(parse_profile(&text));
        }
        text.push_str(&line);
        text.push('\n');
    }
}

fn log_file(dir: &Path, name: &str) -> Result<Stdio> {
    Ok(File::create(dir.join(name)).map(Stdio::from)?)
}

/// Runs one program alive under deferscope.
fn run_program(deferscope: &Path, bin: &Path, program: &Program, has_profile: bool, logs: &Path) -> Result<Outcome> {
    let mut cmd = Command::new(bin);
    cmd.arg(&program.name).env("GODEBUG", "asyncpreemptoff=1");
    if !program.flaky {
        cmd.env("GOMAXPROCS", "1");
    }
    cmd.stderr(log_file(logs, &format!("{}.stderr", program.name))?);
    let mut target = Proc::spawn(&mut cmd)?;
    let go_before = match read_profile(&target) {
        Ok(p) => p,
        Err(e) => return Ok(Outcome { skipped: Some(format!("no profile: {e:#}")), ..Outcome::default() }),
    };
    let ready = target.line("the readiness line")?;
    let pid: u32 = ready
        .strip_prefix(READY)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .with_context(|| format!("bad readiness line {ready:?}"))?;

    let mut tracer = Proc::spawn(
        Command::new(deferscope)
            .args(["--pid", &pid.to_string()])
            .args(TRACER_ARGS)
            .stderr(log_file(logs, &format!("{}.deferscope.stderr", program.name))?),
    )?;
    let deadline = Instant::now() + VERDICT_TIMEOUT;
    // The leaked set once it stayed the same over SETTLE_SCANS scans.
    let mut settled: Option<(BTreeSet<u64>, u64)> = None;
    let snapshot = loop {
        let line = tracer.line_until("a deferscope snapshot", deadline)?;
        let s: Value = serde_json::from_str(&line).with_context(|| format!("deferscope printed {line:?}"))?;
        if s["leak_scan"]["failures"].as_u64().unwrap_or(0) > 0 {
            bail!("a leak scan failed: {}", s["leak_scan"]);
        }
        let scans = s["leak_scan"]["scans"].as_u64().unwrap_or(0);
        if scans < MIN_SCANS {
            continue;
        }
        let leaked: BTreeSet<u64> = ours(&s).iter().map(|l| l.goid).collect();
        match &settled {
            Some((set, since)) if *set == leaked => {
                if scans >= since + SETTLE_SCANS {
                    break s;
                }
            }
            _ => settled = Some((leaked, scans)),
        }
    };
    // The verdict stands: Go's profile again (a leak it reports now existed
    // when deferscope called it, since leaks never heal).
    let stdin = target.stdin.as_mut().context("program stdin")?;
    writeln!(stdin, "profile")?;
    stdin.flush()?;
    let go_after = read_profile(&target)?;
    // SAFETY: signalling our own child.
    unsafe { libc::kill(tracer.child.id() as i32, libc::SIGINT) };
    let _ = tracer.child.wait();
    Ok(Outcome {
        skipped: None,
        go_before: has_profile.then_some(go_before),
        go_after: has_profile.then_some(go_after),
        ours: ours(&snapshot),
        stuck: snapshot["totals"]["goroutines_stuck"].as_u64().unwrap_or(0),
        scans: snapshot["leak_scan"]["scans"].as_u64().unwrap_or(0),
        scan_s: snapshot["leak_scan"]["duration_s"].as_f64().unwrap_or(0.0),
    })
}

fn ours(snapshot: &Value) -> Vec<OurLeak> {
    snapshot["goroutines"]
        .as_array()
        .map(|gs| {
            gs.iter()
                .filter(|g| g["leaked"] == true)
                .map(|g| OurLeak {
                    goid: g["goid"].as_u64().unwrap_or(0),
                    function: entry_function(g),
                    called: closure_call(g),
                    reason: g["leak_reason"].as_str().unwrap_or("").to_owned(),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A goroutine's entry function as Go's traceback names it, to compare with
/// Go's profile by name: the outermost frame of its stack, skipping the
/// wrapper the compiler makes for `go x.f(args)` (`main.F.gowrap1`, Go
/// 1.22+), which Go's traceback hides (it is marked a wrapper) and which
/// deferscope's `start_function` names; the start function when no stack
/// was read.
fn entry_function(g: &Value) -> String {
    let is_gowrap = |f: &str| f.rsplit_once(".gowrap").is_some_and(|(_, n)| n.bytes().all(|b| b.is_ascii_digit()));
    let outermost = g["stack"].as_array().and_then(|frames| {
        frames.iter().rev().filter_map(|f| f["function"].as_str()).find(|f| !is_gowrap(f) && *f != "runtime.goexit")
    });
    outermost.or_else(|| g["start_function"].as_str()).unwrap_or("").to_owned()
}

/// The function a goroutine's entry function calls, when the entry function
/// is a `funcN` closure (see [`OurLeak::called`]): the next frame inward.
fn closure_call(g: &Value) -> Option<String> {
    // `main.F.func1`, or nested, `main.F.func2.3`.
    let is_closure = |f: &str| {
        f.rsplit_once(".func").is_some_and(|(_, n)| {
            n.starts_with(|c: char| c.is_ascii_digit()) && n.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        })
    };
    let frames: Vec<&str> = g["stack"].as_array()?.iter().rev().filter_map(|f| f["function"].as_str()).collect();
    let entry = frames.iter().position(|f| *f != "runtime.goexit")?;
    if !is_closure(frames[entry]) {
        return None;
    }
    frames.get(entry + 1).filter(|f| !f.starts_with("runtime.")).map(|f| (*f).to_owned())
}

struct VersionRun {
    toolchain: GoToolchain,
    has_profile: bool,
    outcomes: Vec<(Program, Outcome)>,
}

pub fn run(root: &Path, args: &LeaksArgs) -> Result<()> {
    if !cmd::is_root() {
        bail!("deferscope attaches uprobes: run `cargo xtask bench leaks` as root");
    }
    let versions = if args.go.is_empty() { toolchains::matrix() } else { args.go.clone() };
    // Newest first: it is the reference of the versions without a profile.
    let mut versions = versions;
    versions.sort_by_key(|v| std::cmp::Reverse(minor(v)));
    let toolchains = toolchains::ensure_versions(root, &versions)?;
    let deferscope = build::deferscope(root, true)?;

    let newest = toolchains::ensure_versions(root, &[NEWEST_CORPUS.to_owned()])?.remove(0);
    let newest_corpus = goroot(&newest)?.join("src/runtime");
    let mut runs: Vec<VersionRun> = Vec::new();
    for tc in &toolchains {
        let own = goroot(tc)?.join("src/runtime");
        let runtime_dir = if own.join("goroutineleakprofile_test.go").is_file() { own } else { newest_corpus.clone() };
        let test_src = fs::read_to_string(runtime_dir.join("goroutineleakprofile_test.go"))?;
        let programs: Vec<Program> = parse_programs(&test_src)
            .into_iter()
            .filter(|p| args.only.is_empty() || args.only.iter().any(|o| p.name.contains(o.as_str())))
            .collect();
        step(format_args!("{}: building the corpus of {} ...", tc.full, runtime_dir.display()));
        let corpus = runtime_dir.join("testdata/testgoroutineleakprofile");
        let (bins, has_profile) = build_corpus(root, tc, &corpus)?;
        let logs = paths::target_dir(root).join("bench/leaks").join(&tc.full).join("logs");
        fs::create_dir_all(&logs)?;
        let mut outcomes = Vec::new();
        for p in programs {
            let outcome = run_program(&deferscope, &bins[&p.dir], &p, has_profile, &logs)
                .unwrap_or_else(|e| Outcome { skipped: Some(format!("{e:#}")), ..Outcome::default() });
            let reference =
                runs.first().and_then(|r| r.outcomes.iter().find(|(q, _)| q.name == p.name)).map(|(_, o)| o);
            match (&outcome.skipped, score(&outcome, reference)) {
                (Some(why), _) => note(format_args!("{} {}: skipped: {why}", tc.full, p.name)),
                (None, Some(s)) => note(format_args!(
                    "{} {}: Go {} ours {} found {} false {} extra {}",
                    tc.full, p.name, s.go, s.ours, s.found, s.false_leaks, s.extra
                )),
                (None, None) => {
                    note(format_args!("{} {}: ours {} (no reference)", tc.full, p.name, outcome.ours.len()))
                }
            }
            outcomes.push((p, outcome));
        }
        runs.push(VersionRun { toolchain: tc.clone(), has_profile, outcomes });
    }
    report(root, &runs)
}

fn minor(version: &str) -> u32 {
    version.rsplit('.').next().and_then(|m| m.parse().ok()).unwrap_or(0)
}

fn report(root: &Path, runs: &[VersionRun]) -> Result<()> {
    let reference = runs.first();
    let mut json_versions = Vec::new();
    let mut failures = Vec::new();
    let mut unconfirmed: Vec<String> = Vec::new();
    println!();
    println!(
        "{:<22} {:<9} {:>5} {:>5} {:>5} {:>7} {:>6} {:>6} {:>6}",
        "program", "go", "Go", "ours", "found", "recall", "false", "extra", "stuck"
    );
    let mut totals_rows = Vec::new();
    for run in runs {
        let mut total = Score::default();
        let (mut measured, mut skipped) = (0, 0);
        let mut rows = Vec::new();
        for (p, o) in &run.outcomes {
            let r = reference
                .filter(|r| !std::ptr::eq(*r, run))
                .and_then(|r| r.outcomes.iter().find(|(q, _)| q.name == p.name))
                .map(|(_, o)| o);
            let s = score(o, r);
            if let Some(s) = &s {
                measured += 1;
                total.add(s);
                println!(
                    "{:<22} {:<9} {:>5} {:>5} {:>5} {:>7} {:>6} {:>6} {:>6}{}",
                    p.name,
                    run.toolchain.full,
                    s.go,
                    s.ours,
                    s.found,
                    ratio(s.found, s.go),
                    s.false_leaks,
                    s.extra,
                    o.stuck,
                    if p.flaky { "  (flaky)" } else { "" }
                );
                if s.false_leaks > 0 {
                    failures.push(format!("{} {}: {} false leak(s)", run.toolchain.full, p.name, s.false_leaks));
                }
                // Not ground truth: the reference is another version's run
                // by entry-function name (names of go-statement wrappers
                // differ by version, programs leak a few more or fewer from
                // run to run). Shown, never counted as false leaks.
                if s.extra > 0 && !p.flaky {
                    unconfirmed
                        .push(format!("{} {}: {} leak(s) beyond the reference", run.toolchain.full, p.name, s.extra));
                }
            } else {
                skipped += 1;
            }
            let go_goids = |l: &Option<Vec<GoLeak>>| {
                l.as_ref().map(|l| l.iter().map(|g| json!([g.goid, g.function, g.wait_reason])).collect::<Vec<_>>())
            };
            rows.push(json!({
                "program": p.name, "dir": p.dir.name(), "flaky": p.flaky, "skipped": o.skipped,
                "go_before": go_goids(&o.go_before), "go_after": go_goids(&o.go_after),
                "ours": o.ours.iter().map(|l| json!([l.goid, l.function, l.reason])).collect::<Vec<_>>(),
                "stuck": o.stuck, "scans": o.scans, "scan_s": o.scan_s,
                "score": s.map(|s| json!({"go": s.go, "ours": s.ours, "found": s.found,
                                          "false_leaks": s.false_leaks, "extra": s.extra})),
            }));
        }
        totals_rows.push((run.toolchain.full.clone(), run.has_profile, measured, skipped, total.clone()));
        json_versions.push(json!({
            "go": run.toolchain.full,
            "ground_truth": if run.has_profile { "own goroutineleak profile" } else { "reference run, by entry function" },
            "programs_measured": measured, "programs_skipped": skipped,
            "go_leaks": total.go, "ours": total.ours, "found": total.found,
            "false_leaks": total.false_leaks, "extra": total.extra,
            "programs": rows,
        }));
    }
    println!();
    println!(
        "{:<9} {:<28} {:>8} {:>5} {:>5} {:>5} {:>7} {:>6} {:>6}",
        "go", "ground truth", "programs", "Go", "ours", "found", "recall", "false", "extra"
    );
    for (go, has_profile, measured, skipped, t) in &totals_rows {
        println!(
            "{:<9} {:<28} {:>8} {:>5} {:>5} {:>5} {:>7} {:>6} {:>6}{}",
            go,
            if *has_profile { "own goroutineleak profile" } else { "reference run (entry fn)" },
            measured,
            t.go,
            t.ours,
            t.found,
            ratio(t.found, t.go),
            t.false_leaks,
            t.extra,
            if *skipped > 0 { format!("  ({skipped} skipped)") } else { String::new() }
        );
    }
    println!();
    println!("Go = leaked goroutines in Go's goroutineleak profile when deferscope attached; found = those");
    println!("deferscope proved leaked; false = deferscope's leaks Go's profile did not report after the verdict.");
    println!("Versions without the profile are compared with the newest version's run of the same program");
    println!("(extra = deferscope's leaks beyond it; flaky programs may differ from run to run).");
    let out = paths::target_dir(root).join("bench/leaks.json");
    fs::create_dir_all(out.parent().unwrap_or(root))?;
    fs::write(&out, serde_json::to_string_pretty(&json!({ "versions": json_versions }))?)?;
    note(format_args!("written to {}", out.display()));
    if !unconfirmed.is_empty() {
        note(format_args!(
            "beyond the reference run, not ground truth (no profile on these versions):\n    {}",
            unconfirmed.join("\n    ")
        ));
    }
    if !failures.is_empty() {
        bail!("false leaks:\n{}", failures.join("\n"));
    }
    Ok(())
}

fn ratio(found: usize, of: usize) -> String {
    if of == 0 { "-".to_owned() } else { format!("{:.0}%", 100.0 * found as f64 / of as f64) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_function_skips_the_go_statement_wrapper() {
        let g = serde_json::json!({
            "start_function": "main.Moby7559.gowrap1",
            "stack": [{"function": "runtime.gopark"}, {"function": "main.(*UDPProxy_moby7559).Run"},
                      {"function": "main.Moby7559.gowrap1"}, {"function": "runtime.goexit"}],
        });
        assert_eq!(entry_function(&g), "main.(*UDPProxy_moby7559).Run");
        // A closure is a frame of its own, and without a stack the start
        // function is all there is.
        let g = serde_json::json!({"start_function": "main.Moby7559.func1", "stack": [{"function": "main.Moby7559.func1"}]});
        assert_eq!(entry_function(&g), "main.Moby7559.func1");
        assert_eq!(entry_function(&serde_json::json!({"start_function": "main.worker"})), "main.worker");
    }

    #[test]
    fn older_go_statement_closures_count_as_the_call_they_wrap() {
        // Go 1.19: `go p.Run()` is `main.Moby7559.func1` calling the method.
        let g = serde_json::json!({
            "stack": [{"function": "runtime.gopark"}, {"function": "runtime.chanrecv1"},
                      {"function": "main.(*UDPProxy_moby7559).Run"}, {"function": "main.Moby7559.func1"},
                      {"function": "runtime.goexit"}],
        });
        assert_eq!(closure_call(&g).as_deref(), Some("main.(*UDPProxy_moby7559).Run"));
        // A closure blocked in its own body calls nothing of the user's.
        let g = serde_json::json!({"stack": [{"function": "runtime.gopark"}, {"function": "main.F.func2"}]});
        assert_eq!(closure_call(&g), None);
        // Nested: Go 1.19 names a closure inside a closure `func2.3`.
        let g = serde_json::json!({"stack": [{"function": "runtime.gopark"}, {"function": "main.(*L).pop"},
                                             {"function": "main.F.func2.3"}, {"function": "runtime.goexit"}]});
        assert_eq!(closure_call(&g).as_deref(), Some("main.(*L).pop"));
        let g = serde_json::json!({"stack": [{"function": "main.(*L).pop"}, {"function": "main.F.function1"}]});
        assert_eq!(closure_call(&g), None, "not a closure");
        let leak = |goid, function: &str, called: Option<&str>| OurLeak {
            goid,
            function: function.into(),
            called: called.map(Into::into),
            reason: String::new(),
        };
        let go = |goid, function: &str| GoLeak { goid, wait_reason: String::new(), function: function.into() };
        let reference = Outcome {
            go_before: Some(vec![go(1, "main.(*P).Run"), go(2, "main.F.func2"), go(3, "main.(*P).Run")]),
            ..Default::default()
        };
        let run = Outcome {
            ours: vec![
                leak(10, "main.F.func1", Some("main.(*P).Run")),
                leak(11, "main.F.func2", Some("main.(*P).Run")),
                leak(12, "main.F.func1", Some("main.(*P).Run")),
                leak(13, "main.F.func1", Some("main.(*P).Run")),
            ],
            ..Default::default()
        };
        let score = score(&run, Some(&reference)).expect("a score");
        // func2 by its own name, two of the three func1 by the call they
        // wrap (the reference has two): one beyond the reference.
        assert_eq!((score.found, score.extra), (3, 1));
    }

    #[test]
    fn programs_come_from_the_test_lists() {
        let src = r#"
	microTests := []testCase{
		makeTest("NilRecv",
			`NilRecv\.func1\(.* \[chan receive \(nil chan\)\]`,
		),
		makeTest("NoLeakGlobal"),
	}
	gokerTestCases := []testCase{
		makeFlakyTest("Cockroach584",
		// makeTest(testCase{name: "Kubernetes1321"},
		makeTest("Moby25348",
"#;
        let p = parse_programs(src);
        let got: Vec<_> = p.iter().map(|p| (p.dir, p.name.as_str(), p.flaky)).collect();
        assert_eq!(
            got,
            [
                (Dir::Main, "NilRecv", false),
                (Dir::Main, "NoLeakGlobal", false),
                (Dir::Goker, "Cockroach584", true),
                (Dir::Goker, "Moby25348", false)
            ]
        );
    }

    #[test]
    fn profile_goroutines_with_entry_functions() {
        let text = "goroutineleak profile: total 2\n\
goroutine 306 [sync.Mutex.Lock (leaked)]:\n\
internal/sync.runtime_SemacquireMutex(0x0?, 0x0?, 0x0?)\n\
\t/go/src/runtime/sema.go:95 +0x25\n\
main.Cockroach7504.func2.2()\n\
\t/tmp/goker/cockroach7504.go:179 +0x28\n\
created by main.Cockroach7504.func2 in goroutine 105\n\
\t/tmp/goker/cockroach7504.go:177 +0x34e\n\
\n\
goroutine 7 [chan receive (nil chan) (leaked)]:\n\
main.(*T).run(...)\n\
\t/tmp/x.go:3\n\
created by main.main\n\
\t/tmp/x.go:9 +0x1\n";
        assert_eq!(
            parse_profile(text),
            [
                GoLeak {
                    goid: 306,
                    wait_reason: "sync.Mutex.Lock".into(),
                    function: "main.Cockroach7504.func2.2".into()
                },
                GoLeak { goid: 7, wait_reason: "chan receive (nil chan)".into(), function: "main.(*T).run".into() },
            ]
        );
    }

    #[test]
    fn false_leaks_are_ours_missing_from_gos_later_profile() {
        let leak = |goid| GoLeak { goid, wait_reason: String::new(), function: "main.f".into() };
        let our = |goid| OurLeak { goid, function: "main.f".into(), called: None, reason: String::new() };
        let o = Outcome {
            go_before: Some(vec![leak(1), leak(2)]),
            go_after: Some(vec![leak(1), leak(2), leak(3)]),
            ours: vec![our(1), our(3), our(4)],
            ..Outcome::default()
        };
        let s = score(&o, None).expect("scored");
        assert_eq!((s.go, s.ours, s.found, s.false_leaks), (2, 3, 1, 1));
        // Without a profile: by entry function against a reference run.
        let old = Outcome { ours: vec![our(8), our(9), our(10)], ..Outcome::default() };
        let s = score(&old, Some(&o)).expect("scored");
        assert_eq!((s.go, s.found, s.extra), (2, 2, 1));
    }
}
