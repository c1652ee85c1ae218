//! Defers in range-over-func loop bodies (Go 1.23+): pushed by
//! `deferprocat` onto a header record that `deferrangefunc` made. The depth
//! counts deferred calls, so the header is left out on the push side (not
//! probed), the pop side (popDefer skips it), and in memory (the walk skips
//! it) alike.
use deferscope_integration::*;
use serde_json::Value;

fn check_top_site(s: &Value, goid: u64, line: u32) -> Result<(), String> {
    let g = goroutine(s, goid).ok_or(format!("goroutine {goid} missing"))?;
    let top = &g["top_defer_site"];
    // The loop body is compiled as a closure of main.loop.
    if top["line"] == line && top["function"].as_str().is_some_and(|f| f.starts_with("main.loop")) {
        Ok(())
    } else {
        Err(format!("top_defer_site {top} is not main.loop… main.go:{line}"))
    }
}

fn check_released(s: &Value, goid: u64, line: u32) -> Result<(), String> {
    if goroutine(s, goid).is_some() {
        return Err(format!("goroutine {goid} still listed"));
    }
    if s["totals"]["unmatched_pops"] != 0 {
        return Err(format!("unmatched pops: {}", s["totals"]["unmatched_pops"]));
    }
    match site(s, line) {
        Some(site) if site["live"] != 0 => Err(format!("site still live: {site}")),
        _ => Ok(()),
    }
}

#[test]
#[ignore = "needs root and the Go toolchains (cargo xtask test runs it)"]
fn range_over_func_defers_are_counted_exactly() {
    require_root();
    let line = marker_line("rangefunc", "SITE:rangefunc");
    let all = toolchains().expect("toolchains");
    assert!(all.iter().any(|tc| tc.minor() >= 23), "the matrix has no Go 1.23+ toolchain");
    for_each_toolchain("range-over-func defers", |tc| {
        if tc.minor() < 23 {
            eprintln!("   {}: no range-over-func before Go 1.23", tc.full);
            return Ok(());
        }
        let binary = build_go("rangefunc", tc, &[])?;
        let mut program = GoProgram::start(&binary)?;
        program.expect("ready")?;

        // Pending loop-body records built before attach, found in memory.
        let before = program.command("start", "start")?;
        let goid = before["goid"].as_u64().expect("goid");
        let depth = before["depth"].as_u64().expect("depth");
        let mut tracer = Tracer::attach(program.pid, &[])?;
        tracer.wait_for("pending range-over-func defers from before attach", |s| {
            expect_depth(s, goid, depth)?;
            check_top_site(s, goid, line)
        })?;
        program.command("release", "release")?;
        tracer.wait_for("all popped", |s| check_released(s, goid, line))?;

        // The same loop while traced: every deferprocat push is seen.
        let during = program.command("start", "start")?;
        let goid = during["goid"].as_u64().expect("goid");
        let loop_defers = during["loop_defers"].as_u64().expect("loop_defers");
        tracer.wait_for("range-over-func defers pushed while traced", |s| {
            expect_depth(s, goid, depth)?;
            check_top_site(s, goid, line)?;
            match site(s, line) {
                Some(site) if site["pushed"] == loop_defers && site["live"] == loop_defers => Ok(()),
                other => Err(format!("site main.go:{line} is {other:?}, want pushed = live = {loop_defers}")),
            }
        })?;
        program.command("release", "release")?;
        tracer.wait_for("all popped again", |s| check_released(s, goid, line))?;

        tracer.quit_with(&mut program)?;
        Ok(())
    });
}
