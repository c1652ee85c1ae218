//! Goroutine leak detection from outside the process, end to end, against the
//! Go programs' own report of which goroutines they leaked, which are only
//! stuck and which are healthy (busy, sleeping, consumers fed every 100 ms),
//! and against Go's own goroutineleak profile (Go 1.26+).
use deferscope_integration::*;
use serde_json::Value;

const PROGRAM: &str = "leaks";

fn goids(v: &Value) -> Vec<u64> {
    v.as_array().expect("array").iter().map(|g| g.as_u64().expect("goid")).collect()
}

fn line_of(site: &Value) -> Option<u64> {
    site["line"].as_u64()
}

/// The leak group whose creation site is line `created` of the program.
fn group(snapshot: &Value, created: u32) -> Option<&Value> {
    snapshot["leaks"].as_array()?.iter().find(|g| line_of(&g["created_by"]) == Some(u64::from(created)))
}

fn expect_group(
    s: &Value,
    created: u32,
    blocked: u32,
    function: &str,
    reason: &str,
    count: usize,
) -> Result<(), String> {
    let g = group(s, created).ok_or(format!("no leak group created at main.go:{created}; leaks: {}", s["leaks"]))?;
    let ok = g["count"] == count as u64
        && g["verdict"] == "stuck"
        && line_of(&g["blocked_at"]) == Some(u64::from(blocked))
        && g["blocked_at"]["function"] == function
        && g["blocked_at"]["file"].as_str().is_some_and(|f| f.ends_with("tests/go/leaks/main.go"))
        && g["wait_reason"] == reason
        && g["created_by"]["function"] == "main.main";
    if ok { Ok(()) } else { Err(format!("group {g} != {count} × {function} main.go:{blocked} [{reason}]")) }
}

#[test]
#[ignore = "needs root and the Go toolchains (cargo xtask test runs it)"]
fn stuck_goroutines_are_grouped_exactly_and_healthy_ones_are_not() {
    require_root();
    let line = |m: &str| marker_line(PROGRAM, m);
    let (send_create, send_block) = (line("SITE:send-create"), line("SITE:send-block"));
    let (recv_create, recv_block) = (line("SITE:recv-create"), line("SITE:recv-block"));
    let (mutex_create, mutex_block) = (line("SITE:mutex-create"), line("SITE:mutex-block"));
    let (nil_create, nil_block) = (line("SITE:nil-create"), line("SITE:nil-block"));

    for_each_toolchain("leak detection", |tc| {
        let binary = build_go(PROGRAM, tc, &[])?;
        let mut program = GoProgram::start(&binary)?;
        let ready = program.expect("ready")?;
        let senders = goids(&ready["senders"]);
        let receivers = goids(&ready["receivers"]);
        let lockers = goids(&ready["lockers"]);
        let healthy = goids(&ready["healthy"]);
        let num_goroutine = ready["num_goroutine"].as_u64().expect("num_goroutine");
        // Go 1.19 parks mutex waiters as plain "semacquire".
        let mutex_reason = if tc.minor() >= 20 { "sync.Mutex.Lock" } else { "semacquire" };

        // Without reachability scans nothing is proven: every group is "stuck".
        let mut tracer = Tracer::attach(program.pid, &["--leak-after", "2s", "--leak-scan", "off"])?;
        let no_healthy_leak = |s: &Value| -> Result<(), String> {
            for &goid in &healthy {
                if let Some(g) = goroutine(s, goid) {
                    if g["leaked"] == true || g["stuck"] == true {
                        return Err(format!("healthy goroutine {goid} reported stuck: {g}"));
                    }
                }
            }
            Ok(())
        };
        tracer.wait_for("leaks that existed before attach", |s| {
            expect_group(s, send_create, send_block, "main.sender", "chan send", senders.len())?;
            expect_group(s, recv_create, recv_block, "main.receiver", "chan receive", receivers.len())?;
            expect_group(s, mutex_create, mutex_block, "main.locker", mutex_reason, lockers.len())?;
            let leaks = s["leaks"].as_array().map_or(0, Vec::len);
            if leaks != 3 {
                return Err(format!("{leaks} stuck groups, want 3: {}", s["leaks"]));
            }
            let total = senders.len() + receivers.len() + lockers.len();
            if s["totals"]["goroutines_stuck"] != total as u64 || s["totals"]["goroutines_leaked"] != 0 {
                return Err(format!(
                    "goroutines_stuck {} != {total} or goroutines_leaked {} != 0",
                    s["totals"]["goroutines_stuck"], s["totals"]["goroutines_leaked"]
                ));
            }
            if !s["leak_scan"].is_null() {
                return Err(format!("leak_scan {} with --leak-scan off", s["leak_scan"]));
            }
            expect_goroutines_live(s, num_goroutine)?;
            // Each leaked goroutine is marked, with its own sites.
            for &goid in senders.iter().chain(&receivers).chain(&lockers) {
                let g = goroutine(s, goid).ok_or(format!("goroutine {goid} missing"))?;
                if g["stuck"] != true || g["leaked"] != false || g["blocked_for_s"].as_f64().is_none_or(|b| b < 2.0) {
                    return Err(format!("goroutine {goid} not stuck yet: {g}"));
                }
            }
            no_healthy_leak(s)
        })?;
        // The healthy ones stay healthy over several more snapshots.
        for _ in 0..5 {
            tracer.wait_for("healthy goroutines stay unleaked", |s| no_healthy_leak(s))?;
        }

        // A leak that starts after attach is found too.
        let nil = program.command("leak-nil 50", "leak-nil")?;
        let nil_goids = goids(&nil["goids"]);
        let created_total = tracer.last.as_ref().map_or(0, |s| s["totals"]["goroutines_created"].as_u64().unwrap_or(0));
        tracer.wait_for("a leak after attach", |s| {
            expect_group(s, nil_create, nil_block, "main.nilSender", "chan send (nil chan)", nil_goids.len())?;
            let created = s["totals"]["goroutines_created"].as_u64().unwrap_or(0);
            if created < created_total + nil_goids.len() as u64 {
                return Err(format!("goroutines_created {created} did not count the 50 new goroutines"));
            }
            no_healthy_leak(s)
        })?;

        // Unblocked goroutines leave the report.
        program.command("unblock-recv", "unblock-recv")?;
        tracer.wait_for("receivers gone from the leak report", |s| {
            if group(s, recv_create).is_some() {
                return Err("the receivers' group is still reported".into());
            }
            if let Some(g) = receivers.iter().find(|&&g| goroutine(s, g).is_some()) {
                return Err(format!("receiver {g} still listed"));
            }
            expect_group(s, send_create, send_block, "main.sender", "chan send", senders.len())
        })?;

        program.command("quit", "quit")?;
        program.wait_exit()?;
        let (status, _) = tracer.wait_exit()?;
        assert!(status.success(), "deferscope exit status {status}");
        Ok(())
    });
}

const PROOF: &str = "leakproof";

/// One group the leak-proof program creates: its key in the program's
/// report, the marker of its blocking line, the function blocked there, and
/// its wait reason.
struct Kind {
    key: &'static str,
    marker: &'static str,
    function: &'static str,
    reasons: &'static [&'static str],
}

const LEAK_KINDS: &[Kind] = &[
    Kind { key: "send", marker: "SITE:leak-send", function: "main.leakSend", reasons: &["chan send"] },
    Kind { key: "recv", marker: "SITE:leak-recv", function: "main.leakRecv", reasons: &["chan receive"] },
    Kind { key: "select", marker: "SITE:leak-select", function: "main.leakSelect", reasons: &["select"] },
    Kind { key: "nil", marker: "SITE:leak-nil", function: "main.leakNil", reasons: &["chan send (nil chan)"] },
    Kind {
        key: "mutex",
        marker: "SITE:leak-mutex",
        function: "main.leakMutex",
        reasons: &["sync.Mutex.Lock", "semacquire"],
    },
    Kind {
        key: "rwmutex",
        marker: "SITE:leak-rwmutex",
        function: "main.leakRWMutex",
        reasons: &["sync.RWMutex.RLock", "semacquire"],
    },
    Kind {
        key: "waitgroup",
        marker: "SITE:leak-wg",
        function: "main.leakWaitGroup",
        reasons: &["sync.WaitGroup.Wait", "semacquire"],
    },
    Kind { key: "cond", marker: "SITE:leak-cond", function: "main.leakCond", reasons: &["sync.Cond.Wait"] },
];

const STUCK_KINDS: &[Kind] = &[
    Kind {
        key: "mutex",
        marker: "SITE:stuck-mutex",
        function: "main.stuckMutex",
        reasons: &["sync.Mutex.Lock", "semacquire"],
    },
    Kind {
        key: "lifecycle",
        marker: "SITE:stuck-lifecycle",
        function: "main.stuckLifecycle",
        reasons: &["chan receive"],
    },
    Kind { key: "pool", marker: "SITE:stuck-pool", function: "main.stuckPool", reasons: &["chan send"] },
];

/// Whether deferscope can prove this kind leaked on this build: anything
/// but nil channels only when the heap can be traced; sync waits on every
/// version (before Go 1.26 the runtime does not link their sudog from
/// `g.waiting`: see `process/reachability/sema.rs`).
fn provable(kind: &Kind, heap: bool) -> bool {
    kind.key == "nil" || heap
}

/// The group of `verdict` blocked at line `line` (None if absent).
fn verdict_group<'a>(s: &'a Value, verdict: &str, line: u32) -> Option<&'a Value> {
    s["leaks"]
        .as_array()?
        .iter()
        .find(|g| g["verdict"] == verdict && line_of(&g["blocked_at"]) == Some(u64::from(line)))
}

fn check_group(s: &Value, verdict: &str, kind: &Kind, count: usize) -> Result<(), String> {
    let line = marker_line(PROOF, kind.marker);
    let g = verdict_group(s, verdict, line)
        .ok_or(format!("no {verdict} group blocked at {} (main.go:{line}); leaks: {}", kind.function, s["leaks"]))?;
    let reason_ok = g["wait_reason"].as_str().is_some_and(|r| kind.reasons.contains(&r));
    if g["count"] != count as u64 || g["blocked_at"]["function"] != kind.function || !reason_ok {
        return Err(format!("{verdict} group {g} != {count} × {} main.go:{line} {:?}", kind.function, kind.reasons));
    }
    Ok(())
}

#[test]
#[ignore = "needs root and the Go toolchains (cargo xtask test runs it)"]
fn leaks_are_proven_by_reachability_and_stuck_goroutines_are_not() {
    require_root();
    for_each_toolchain("leak proofs", |tc| {
        // Go's own goroutineleak profile: an experiment in 1.26, default in 1.27.
        let env: &[(&str, &str)] = if tc.minor() == 26 { &[("GOEXPERIMENT", "goroutineleakprofile")] } else { &[] };
        // Stripped binaries too: runtime.mheap_ is found by decoding code.
        for (flags, heap) in [(&[][..], true), (&["-ldflags=-s -w"][..], true)] {
            let binary = build_go_env(PROOF, tc, flags, env)?;
            let mut program = GoProgram::start(&binary)?;
            let ready = program.expect("ready")?;
            let goids_of = |m: &Value, key: &str| goids(&m[key]);
            let mut tracer = Tracer::attach(program.pid, &["--leak-after", "2s", "--leak-scan", "1s"])?;
            let (mut leaked, mut stuck) = (Vec::new(), Vec::new());
            for k in LEAK_KINDS {
                let n = goids_of(&ready["leaks"], k.key);
                if provable(k, heap) { leaked.push((k, n)) } else { stuck.push((k, n)) }
            }
            for k in STUCK_KINDS {
                stuck.push((k, goids_of(&ready["stuck"], k.key)));
            }
            let healthy = goids(&ready["healthy"]);
            let never_leaked: Vec<u64> =
                stuck.iter().flat_map(|(_, g)| g.iter().copied()).chain(healthy.iter().copied()).collect();
            let want_leaked: usize = leaked.iter().map(|(_, g)| g.len()).sum();
            let want_stuck: usize = stuck.iter().map(|(_, g)| g.len()).sum();
            let what = format!("{}{}", tc.full, if flags.is_empty() { "" } else { " stripped" });
            let mut recall = std::collections::BTreeMap::new();
            let s = tracer.wait_for(&format!("{what}: proven leaks, exact"), |s| {
                if s["leak_scan"]["heap_traced"] != heap {
                    return Err(format!("leak_scan {} (want heap_traced {heap})", s["leak_scan"]));
                }
                // Every goroutine blocked at a leaking site is proven leaked,
                // exactly: the Go program's own list, plain and stripped builds.
                for (k, g) in &leaked {
                    let line = marker_line(PROOF, k.marker);
                    let count =
                        |verdict: &str| verdict_group(s, verdict, line).map_or(0, |x| x["count"].as_u64().unwrap_or(0));
                    let (proven, missed) = (count("leaked") as usize, count("stuck") as usize);
                    if missed > 0 {
                        return Err(format!(
                            "{}: {proven} leaked, {missed} stuck, want {} leaked",
                            k.function,
                            g.len()
                        ));
                    }
                    if proven + missed != g.len() {
                        return Err(format!(
                            "{}: {proven} leaked + {missed} stuck, want {} leaked",
                            k.function,
                            g.len()
                        ));
                    }
                    if proven > 0 {
                        check_group(s, "leaked", k, proven)?;
                    }
                    let mut n = 0;
                    for &goid in g {
                        let v = goroutine(s, goid).ok_or(format!("goroutine {goid} missing"))?;
                        if v["leaked"] == true {
                            n += 1;
                            if v["stuck"] != true || v["leak_reason"].as_str().is_none() {
                                return Err(format!("goroutine {goid} ({}) leaked but: {v}", k.function));
                            }
                        }
                    }
                    if n != proven {
                        return Err(format!("{}: {n} goroutines marked leaked, group says {proven}", k.function));
                    }
                    recall.insert(k.key, (proven, g.len()));
                }
                for (k, g) in &stuck {
                    check_group(s, "stuck", k, g.len())?;
                }
                let t = &s["totals"];
                let proven: usize = recall.values().map(|r| r.0).sum();
                if t["goroutines_leaked"] != proven as u64
                    || t["goroutines_stuck"] != (want_stuck + want_leaked - proven) as u64
                {
                    return Err(format!(
                        "totals leaked {} stuck {}, want {proven} and {}",
                        t["goroutines_leaked"],
                        t["goroutines_stuck"],
                        want_stuck + want_leaked - proven
                    ));
                }
                for &goid in &never_leaked {
                    if goroutine(s, goid).is_some_and(|v| v["leaked"] == true) {
                        return Err(format!("goroutine {goid} reported leaked"));
                    }
                }
                Ok(())
            })?;
            let scan = &s["leak_scan"];
            let proven: usize = recall.values().map(|r| r.0).sum();
            eprintln!(
                "   {what}: recall {proven}/{want_leaked} provable leaks {recall:?}, 0 false leaks, {want_stuck} stuck; \
                 scan {:.3}s, {} bytes read, {} objects marked, stacks {} precise {} conservative",
                scan["duration_s"].as_f64().unwrap_or(-1.0),
                scan["bytes_read"],
                scan["objects_marked"],
                scan["stacks_precise"],
                scan["stacks_conservative"]
            );
            // The parked stuck and healthy goroutines' stacks are read
            // through the compiler's stack maps (a stale word in a reused
            // stack kept a Cond alive when read word by word).
            if scan["stacks_precise"].as_u64().unwrap_or(0) < want_stuck as u64 {
                anyhow::bail!("{what}: only {} stacks scanned precisely: {scan}", scan["stacks_precise"]);
            }
            // Stable: over several more scans, nothing else is proven.
            for _ in 0..3 {
                let before = tracer.last.as_ref().and_then(|s| s["leak_scan"]["scans"].as_u64()).unwrap_or(0);
                tracer.wait_for("one more scan, same verdicts", |s| {
                    if s["leak_scan"]["scans"].as_u64().unwrap_or(0) <= before {
                        return Err("no new scan yet".into());
                    }
                    if s["totals"]["goroutines_leaked"].as_u64().unwrap_or(0) < proven as u64 {
                        return Err(format!("goroutines_leaked now {}", s["totals"]["goroutines_leaked"]));
                    }
                    for &goid in &never_leaked {
                        if goroutine(s, goid).is_some_and(|v| v["leaked"] == true) {
                            panic!("{what}: goroutine {goid} reported leaked");
                        }
                    }
                    Ok(())
                })?;
            }
            // Go's own detector on the same program (1.26+): deferscope proves
            // exactly what it finds, function by function.
            if heap && ready["goleak_profile"] == true {
                let go = program.command("goleak", "goleak")?;
                for k in LEAK_KINDS {
                    let ours = recall.get(k.key).map_or(0, |r| r.0);
                    let theirs = go["by_function"][k.function].as_u64().unwrap_or(0);
                    if ours as u64 != theirs {
                        anyhow::bail!("{what}: {}: deferscope proves {ours} leaked, Go's profile {theirs}", k.function);
                    }
                }
                let total: u64 =
                    go["by_function"].as_object().map_or(0, |m| m.values().filter_map(Value::as_u64).sum());
                if total != want_leaked as u64 {
                    anyhow::bail!("{what}: Go's profile finds {total} leaked, the program made {want_leaked}: {go}");
                }
                eprintln!("   {what}: Go's goroutineleak profile finds {total}, deferscope {proven}, 0 false leaks");
            }
            program.command("quit", "quit")?;
            program.wait_exit()?;
            let (status, _) = tracer.wait_exit()?;
            anyhow::ensure!(status.success(), "deferscope exit status {status}");
        }
        Ok(())
    });
}

#[test]
#[ignore = "needs root and the Go toolchains (cargo xtask test runs it)"]
fn a_growing_pool_on_a_global_channel_is_stuck_and_growing() {
    require_root();
    let toolchains = toolchains().expect("toolchains");
    let tc = toolchains.iter().max_by_key(|t| t.minor()).expect("a toolchain");
    let binary = build_go(PROOF, tc, &[]).expect("build");
    let mut program = GoProgram::start(&binary).expect("start");
    let ready = program.expect("ready").expect("ready");
    let pool = STUCK_KINDS.iter().find(|k| k.key == "pool").expect("pool");
    let mut tracer = Tracer::attach(program.pid, &["--leak-after", "1s", "--leak-scan", "1s"]).expect("attach");
    let mut size = goids(&ready["stuck"]["pool"]).len();
    tracer.wait_for("the pool, stuck, not growing", |s| check_group(s, "stuck", pool, size)).expect("stuck");
    // It grows by 5 every 2 s (of the tracer's clock) for 14 s: growing,
    // never leaked.
    let line = marker_line(PROOF, pool.marker);
    let uptime = |s: &Value| s["trace_uptime_s"].as_f64().unwrap_or(0.0);
    let t0 = tracer.last.as_ref().map_or(0.0, uptime);
    for step in 1..=7 {
        size += goids(&program.command("grow 5", "grow").expect("grow")["goids"]).len();
        tracer
            .wait_for("2 s later", |s| {
                if verdict_group(s, "leaked", line).is_some() {
                    panic!("the pool was reported leaked: {}", s["leaks"]);
                }
                if uptime(s) < t0 + 2.0 * f64::from(step) {
                    return Err("not yet".into());
                }
                Ok(())
            })
            .expect("pacing");
    }
    tracer
        .wait_for("the pool group growing", |s| {
            check_group(s, "stuck", pool, size)?;
            let g = verdict_group(s, "stuck", marker_line(PROOF, pool.marker)).expect("checked");
            if g["growing"] != true || g["growth_per_min"].as_f64().is_none_or(|r| r <= 0.0) {
                return Err(format!("pool group not growing: {g}"));
            }
            Ok(())
        })
        .expect("growing");
    program.command("quit", "quit").expect("quit");
    program.wait_exit().expect("exit");
    let (status, _) = tracer.wait_exit().expect("deferscope exit");
    assert!(status.success());
}

/// Parses a stripped build's `global .bss+0x1234` into (section, offset).
fn section_offset(step: &str) -> Option<(String, u64)> {
    let (section, offset) = step.strip_prefix("global ")?.split_once("+0x")?;
    section.starts_with('.').then_some(())?;
    Some((section.to_owned(), u64::from_str_radix(offset.trim_end_matches(" (primitive)"), 16).ok()?))
}

#[test]
#[ignore = "needs root and the Go toolchains (cargo xtask test runs it)"]
fn stuck_goroutines_name_the_global_that_holds_them() {
    require_root();
    let toolchains = toolchains().expect("toolchains");
    let oldest = toolchains.iter().min_by_key(|t| t.minor()).expect("a toolchain");
    let newest = toolchains.iter().max_by_key(|t| t.minor()).expect("a toolchain");
    for tc in [oldest, newest] {
        for stripped in [false, true] {
            let flags: &[&str] = if stripped { &["-ldflags=-s -w"] } else { &[] };
            let what = format!("{}{}", tc.full, if stripped { " stripped" } else { "" });
            let binary = build_go(PROOF, tc, flags).expect("build");
            let mut program = GoProgram::start(&binary).expect("start");
            let ready = program.expect("ready").expect("ready");
            let holders = &ready["holders"];
            let args = ["--leak-after", "2s", "--leak-scan", "1s", "--explain-leaks"];
            let mut tracer = Tracer::attach(program.pid, &args).expect("attach");
            let mut roots = std::collections::BTreeMap::new();
            tracer
                .wait_for(&format!("{what}: stuck goroutines say which global holds them"), |s| {
                    for key in ["lifecycle", "pool", "mutex"] {
                        let h = &holders[key];
                        let global = h["global"].as_str().expect("global");
                        for goid in goids(&ready["stuck"][key]) {
                            let v = goroutine(s, goid).ok_or(format!("goroutine {goid} missing"))?;
                            if v["leak_reason"] != "reachable: could still be woken" {
                                return Err(format!("goroutine {goid} ({key}): {}", v["leak_reason"]));
                            }
                            let path: Vec<&str> = v["retained_by"]
                                .as_array()
                                .ok_or(format!("goroutine {goid} ({key}): no retained_by: {v}"))?
                                .iter()
                                .filter_map(Value::as_str)
                                .collect();
                            let root = path.first().copied().unwrap_or_default();
                            let last = path.last().copied().unwrap_or_default();
                            let bad = || format!("goroutine {goid} ({key}) retained by {path:?}, holder {h}");
                            if !last.ends_with(" (primitive)") {
                                return Err(bad());
                            }
                            match h["object"].as_u64() {
                                // A channel: the global, then the hchan the
                                // program reports.
                                Some(object) => {
                                    if path.len() != 2 || !last.starts_with(&format!("heap {object:#x} (")) {
                                        return Err(bad());
                                    }
                                    if !stripped && root != format!("global {global}+0x0") {
                                        return Err(bad());
                                    }
                                }
                                // The Mutex is a global: its sema word is the
                                // primitive, within the Mutex's 8 bytes.
                                None => {
                                    let named = root
                                        .strip_prefix(&format!("global {global}+0x"))
                                        .and_then(|o| u64::from_str_radix(o.trim_end_matches(" (primitive)"), 16).ok());
                                    if path.len() != 1 || (!stripped && named.is_none_or(|o| o >= 8)) {
                                        return Err(bad());
                                    }
                                }
                            }
                            if stripped {
                                roots.insert(key, section_offset(root).ok_or_else(bad)?);
                            }
                        }
                    }
                    // Healthy consumers carry none; goroutines the program
                    // leaks carry one only while a scan finds them reachable
                    // (not yet proven: Go 1.19's Cond waiters were, at times,
                    // under load), never beside a proof.
                    for goid in goids(&ready["healthy"]) {
                        if goroutine(s, goid).is_some_and(|v| v.get("retained_by").is_some()) {
                            return Err(format!("healthy goroutine {goid} carries retained_by"));
                        }
                    }
                    let leaking = ready["leaks"].as_object().into_iter().flat_map(|m| m.values()).flat_map(goids);
                    for goid in leaking {
                        if let Some(v) = goroutine(s, goid).filter(|v| v.get("retained_by").is_some()) {
                            if v["leaked"] == true || v["leak_reason"] != "reachable: could still be woken" {
                                return Err(format!("goroutine {goid}: retained_by beside {v}"));
                            }
                            eprintln!("{what}: leaking goroutine {goid} found reachable: {}", v["retained_by"]);
                        }
                    }
                    Ok(())
                })
                .expect("retaining paths");
            if stripped {
                // No data symbols: a section and offset. The two channel
                // globals sit in one section, as far apart as the program
                // says they are.
                let (lifecycle, pool) = (&roots["lifecycle"], &roots["pool"]);
                let addr = |key: &str| holders[key]["addr"].as_u64().expect("addr");
                assert_eq!(lifecycle.0, pool.0, "{what}: {roots:?}");
                assert_eq!(
                    pool.1.wrapping_sub(lifecycle.1),
                    addr("pool").wrapping_sub(addr("lifecycle")),
                    "{what}: {roots:?}, holders {holders}"
                );
            }
            program.command("quit", "quit").expect("quit");
            program.wait_exit().expect("exit");
            let (status, _) = tracer.wait_exit().expect("deferscope exit");
            assert!(status.success(), "{what}");
        }
    }
}
