//! The overhead governor, end to end: a defer storm with the default budget
//! makes deferscope detach its probes (the JSON says `sampled`), depths stay
//! right from memory while it is, and the probes come back when the storm
//! ends, with depths still right. Ground truth: the Go program's own depths.
use std::time::Instant;

use deferscope_integration::*;
use serde_json::Value;

fn as_u64(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// The state of the probe on `function` in `probe_hits`.
fn probe_state<'a>(s: &'a Value, function: &str) -> Option<&'a str> {
    s["probe_hits"].as_array()?.iter().find(|p| p["function"] == function)?["state"].as_str()
}

/// Depth `depth`, read exactly (`depth_exact`), for goroutine `goid`.
fn expect_exact_depth(s: &Value, goid: u64, depth: u64) -> Result<(), String> {
    expect_depth(s, goid, depth)?;
    match goroutine(s, goid) {
        Some(g) if g["depth_exact"] == true => Ok(()),
        g => Err(format!("goroutine {goid} depth not exact: {g:?}")),
    }
}

fn expect_mode(s: &Value, mode: &str) -> Result<(), String> {
    if s["mode"] == mode { Ok(()) } else { Err(format!("mode is {}, want {mode}", s["mode"])) }
}

#[test]
#[ignore = "needs root and the Go toolchains (cargo xtask test runs it)"]
fn a_defer_storm_is_sampled_and_depths_stay_right_through_the_switches() {
    require_root();
    let toolchains = toolchains().expect("toolchains");
    // The oldest (freedefer pops) and the newest (popDefer) of the matrix:
    // each run waits out the governor's reaction and dwell.
    let mut ends = vec![toolchains[0].clone()];
    if toolchains.len() > 1 {
        ends.push(toolchains[toolchains.len() - 1].clone());
    }
    let mut failures = Vec::new();
    for tc in &ends {
        eprintln!("== governor with {}", tc.full);
        if let Err(e) = check_storm(tc) {
            eprintln!("   {}: FAILED: {e:#}", tc.full);
            failures.push(format!("{}: {e:#}", tc.full));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn check_storm(tc: &Toolchain) -> anyhow::Result<()> {
    let binary = build_go("storm", tc, &[])?;
    let mut program = GoProgram::start(&binary)?;
    let ready = program.expect("ready")?;
    let holder = as_u64(&ready["holder_goid"]);
    let mut depth = as_u64(&ready["holder_depth"]);
    let pop = if tc.minor() >= 23 { "runtime.popDefer" } else { "runtime.freedefer" };

    // Default options: the governor is on, with a 1% budget.
    let mut tracer = Tracer::attach(program.pid, &[])?;
    tracer.wait_for("exact while quiet", |s| {
        expect_mode(s, "exact")?;
        expect_exact_depth(s, holder, depth)
    })?;

    program.command("storm-on", "storm-on")?;
    let storm_started = Instant::now();
    let sampled = tracer.wait_for("sampled during the storm", |s| {
        expect_mode(s, "sampled")?;
        for function in ["runtime.deferproc", pop] {
            if probe_state(s, function) != Some("detached") {
                return Err(format!("{function} is {:?}, want detached", probe_state(s, function)));
            }
        }
        Ok(())
    })?;
    let reaction = storm_started.elapsed();
    eprintln!("   sampled {reaction:?} after the storm began");
    let estimated: Vec<&str> =
        sampled["estimated"].as_array().expect("estimated").iter().filter_map(Value::as_str).collect();
    assert!(estimated.contains(&"defers_pushed"), "pushes are labelled estimates: {estimated:?}");

    // Sampled: the parked holder's depth comes from memory, exactly, even as
    // it grows.
    depth = as_u64(&program.command("more 500", "more")?["holder_depth"]);
    tracer.wait_for("a parked goroutine's depth, sampled", |s| {
        expect_mode(s, "sampled")?;
        expect_exact_depth(s, holder, depth)
    })?;

    // The storm ends: the probes come back (after the governor's dwell) and
    // the depth is still exact.
    program.command("storm-off", "storm-off")?;
    tracer.wait_for("exact again after the storm", |s| {
        expect_mode(s, "exact")?;
        if probe_state(s, "runtime.deferproc") != Some("attached") {
            return Err("runtime.deferproc still detached".into());
        }
        expect_exact_depth(s, holder, depth)
    })?;

    // Exact again: pushes are followed by events once more.
    depth = as_u64(&program.command("more 250", "more")?["holder_depth"]);
    tracer.wait_for("pushes after the switch back", |s| {
        expect_mode(s, "exact")?;
        expect_exact_depth(s, holder, depth)?;
        match site(s, marker_line("storm", "SITE:held-more")) {
            Some(site) if site["live"] == 750 => Ok(()),
            other => Err(format!("held-more site {other:?}, want 750 live")),
        }
    })?;
    program.wait_exit()?;
    Ok(())
}
