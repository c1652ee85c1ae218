//! Goroutine leak detection from outside the process, end to end, against the
//! Go program's own report of which goroutines it leaked and which are
//! healthy (busy, sleeping, consumers fed every 100 ms).
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
        && line_of(&g["blocked_at"]) == Some(u64::from(blocked))
        && g["blocked_at"]["function"] == function
        && g["blocked_at"]["file"].as_str().is_some_and(|f| f.ends_with("tests/go/leaks/main.go"))
        && g["wait_reason"] == reason
        && g["created_by"]["function"] == "main.main";
    if ok { Ok(()) } else { Err(format!("group {g} != {count} × {function} main.go:{blocked} [{reason}]")) }
}

#[test]
fn leaked_goroutines_are_grouped_exactly_and_healthy_ones_are_not() {
    if !require_root("leaked_goroutines_are_grouped_exactly_and_healthy_ones_are_not") {
        return;
    }
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

        let mut tracer = Tracer::attach(program.pid, &["--leak-after", "2s"])?;
        let no_healthy_leak = |s: &Value| -> Result<(), String> {
            for &goid in &healthy {
                if let Some(g) = goroutine(s, goid) {
                    if g["leaked"] == true {
                        return Err(format!("healthy goroutine {goid} reported leaked: {g}"));
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
                return Err(format!("{leaks} leak groups, want 3: {}", s["leaks"]));
            }
            let total = senders.len() + receivers.len() + lockers.len();
            if s["totals"]["goroutines_leaked"] != total as u64 {
                return Err(format!("goroutines_leaked {} != {total}", s["totals"]["goroutines_leaked"]));
            }
            if s["totals"]["goroutines_live"] != num_goroutine {
                return Err(format!(
                    "goroutines_live {} != runtime.NumGoroutine() {num_goroutine}",
                    s["totals"]["goroutines_live"]
                ));
            }
            // Each leaked goroutine is marked, with its own sites.
            for &goid in senders.iter().chain(&receivers).chain(&lockers) {
                let g = goroutine(s, goid).ok_or(format!("goroutine {goid} missing"))?;
                if g["leaked"] != true || g["blocked_for_s"].as_f64().is_none_or(|b| b < 2.0) {
                    return Err(format!("goroutine {goid} not leaked yet: {g}"));
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
