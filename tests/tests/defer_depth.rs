//! Exact defer-chain depths, end to end: a real Go program per toolchain of
//! the matrix, the real deferscope binary, and the program's own report of
//! its goroutine IDs and depths as ground truth.
use deferscope_integration::*;
use serde_json::Value;

fn as_u64(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a number: {v}"))
}

fn check_site(snapshot: &Value, line: u32, pushed: u64, live: u64) -> Result<(), String> {
    match site(snapshot, line) {
        // A site with nothing pushed while traced and nothing live is dropped.
        None if pushed == 0 && live == 0 => Ok(()),
        None => Err(format!("no defer site at main.go:{line}")),
        Some(s) if s["pushed"] == pushed && s["live"] == live => Ok(()),
        Some(s) => Err(format!("site main.go:{line} is {s}, want pushed {pushed} live {live}")),
    }
}

fn check_top_site(snapshot: &Value, goid: u64, line: u32, function: &str) -> Result<(), String> {
    let g = goroutine(snapshot, goid).ok_or(format!("goroutine {goid} missing"))?;
    let top = &g["top_defer_site"];
    if top["line"] == line
        && top["function"] == function
        && top["file"].as_str().is_some_and(|f| f.ends_with("tests/go/defers/main.go"))
    {
        Ok(())
    } else {
        Err(format!("goroutine {goid} top_defer_site is {top}, want {function} main.go:{line}"))
    }
}

#[test]
#[ignore = "needs root and the Go toolchains (cargo xtask test runs it)"]
fn defer_depths_are_exact_for_every_go_version() {
    require_root();
    let lines = Lines {
        heap: marker_line("defers", "SITE:heap"),
        heap_more: marker_line("defers", "SITE:heap-more"),
        stack_top: marker_line("defers", "SITE:stack-top"),
        panic_outer: marker_line("defers", "SITE:panic-outer"),
        exit: marker_line("defers", "SITE:exit"),
    };

    for_each_toolchain("defer depths", |tc| {
        // Plain, and the way distributions ship Go: PIE, without symbols or
        // DWARF (functions then come from pclntab, offsets from the table).
        for flags in [&[][..], &["-buildmode=pie", "-ldflags=-s -w"][..]] {
            eprintln!("   build flags {flags:?}");
            check_defers(tc, flags, &lines)?;
        }
        Ok(())
    });
}

/// Source lines of the `// SITE:` markers in tests/go/defers/main.go.
struct Lines {
    heap: u32,
    heap_more: u32,
    stack_top: u32,
    panic_outer: u32,
    exit: u32,
}

fn check_defers(tc: &Toolchain, flags: &[&str], lines: &Lines) -> anyhow::Result<()> {
    let &Lines {
        heap: heap_line,
        heap_more: heap_more_line,
        stack_top: stack_top_line,
        panic_outer: panic_outer_line,
        exit: exit_line,
    } = lines;
    {
        let binary = build_go("defers", tc, flags)?;
        let mut program = GoProgram::start(&binary)?;
        let ready = program.expect("ready")?;
        let heap = as_u64(&ready["heap_goid"]);
        let stack = as_u64(&ready["stack_goid"]);
        let (heap_depth, stack_depth) = (as_u64(&ready["heap_depth"]), as_u64(&ready["stack_depth"]));
        let num_goroutine = as_u64(&ready["num_goroutine"]);
        assert_eq!(ready["go"], tc.full, "the program runs the toolchain under test");

        // Chains built before attach are read from memory, exactly.
        let mut tracer = Tracer::attach(program.pid, &[])?;
        let first = tracer.wait_for("chains built before attach", |s| {
            expect_depth(s, heap, heap_depth)?;
            expect_depth(s, stack, stack_depth)?;
            check_top_site(s, heap, heap_line, "main.heapWorker")?;
            check_top_site(s, stack, stack_top_line, "main.stackRec")?;
            expect_goroutines_live(s, num_goroutine)?;
            Ok(())
        })?;
        assert_eq!(first["pid"], program.pid);
        assert_eq!(first["go_version"], tc.full);
        let probes: Vec<&str> = first["probes"].as_array().expect("probes").iter().filter_map(Value::as_str).collect();
        let pop = if tc.minor() >= 23 { "runtime.popDefer" } else { "runtime.freedefer" };
        for expected in ["runtime.deferproc", "runtime.deferprocStack", pop, "runtime.goexit1"] {
            assert!(probes.contains(&expected), "{expected} not in probes {probes:?}");
        }

        // Pushes while traced: 1000 more heap records on the same goroutine.
        let more = program.command("more 1000", "more")?;
        let heap_now = as_u64(&more["heap_depth"]);
        assert_eq!(heap_now, heap_depth + 1000);
        tracer.wait_for("pushes during the trace", |s| {
            expect_depth(s, heap, heap_now)?;
            check_top_site(s, heap, heap_more_line, "main.heapWorker")?;
            check_site(s, heap_more_line, 1000, 1000)?;
            // Records found in memory are live but were not pushed while traced.
            check_site(s, heap_line, 0, heap_depth)
        })?;

        // A panic recovered midway up a chain: the middle and inner frames'
        // records are popped, the outer frame's stay.
        let panicked = program.command("panic", "panic")?;
        let (pgoid, pdepth) = (as_u64(&panicked["goid"]), as_u64(&panicked["depth"]));
        tracer.wait_for("a recovered panic", |s| {
            expect_depth(s, pgoid, pdepth)?;
            check_top_site(s, pgoid, panic_outer_line, "main.panicOuter")
        })?;

        // runtime.Goexit with pending defers: seen at its depth, then gone.
        let goexit = program.command("goexit", "goexit")?;
        let (xgoid, xdepth) = (as_u64(&goexit["goid"]), as_u64(&goexit["depth"]));
        tracer.wait_for("goroutine before Goexit", |s| expect_depth(s, xgoid, xdepth))?;
        program.command("goexit-go", "goexit-go")?;
        tracer.wait_for("goroutine gone after Goexit", |s| match goroutine(s, xgoid) {
            None => Ok(()),
            Some(g) => Err(format!("goroutine {xgoid} still listed: {g}")),
        })?;

        // Goroutines that return normally.
        let exits = program.command("exit 20", "exit")?;
        let goids: Vec<u64> = exits["goids"].as_array().expect("goids").iter().map(as_u64).collect();
        let edepth = as_u64(&exits["depth"]);
        let before = tracer.wait_for("20 goroutines with 10 records each", |s| {
            goids.iter().try_for_each(|&g| expect_depth(s, g, edepth))?;
            check_site(s, exit_line, 9 * 20, 9 * 20)
        })?;
        let exited_before = as_u64(&before["totals"]["goroutines_exited"]);
        program.command("exit-go", "exit-go")?;
        tracer.wait_for("the 20 goroutines gone", |s| {
            if let Some(g) = goids.iter().find(|&&g| goroutine(s, g).is_some()) {
                return Err(format!("goroutine {g} still listed"));
            }
            let exited = as_u64(&s["totals"]["goroutines_exited"]);
            if exited < exited_before + 20 {
                return Err(format!("goroutines_exited {exited}, want ≥ {}", exited_before + 20));
            }
            check_site(s, exit_line, 9 * 20, 0)
        })?;

        // The heap worker returns: 4000 pops.
        program.command("heap-return", "heap-return")?;
        tracer.wait_for("heap worker gone", |s| {
            if goroutine(s, heap).is_some() {
                return Err(format!("goroutine {heap} still listed"));
            }
            check_site(s, heap_line, 0, 0)?;
            check_site(s, heap_more_line, 1000, 0)?;
            expect_depth(s, stack, stack_depth)
        })?;

        // The target exiting ends deferscope with status 0 and a last snapshot.
        let last = tracer.quit_with(&mut program)?;
        assert_eq!(last["totals"]["events_lost"], 0);
    }
    Ok(())
}
