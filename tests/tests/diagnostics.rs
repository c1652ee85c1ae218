//! Defer diagnostics end to end (issue 13): what each site's records will
//! call, how long they live, the files they hold and the findings, against
//! what tests/go/diag reports about itself, on every Go version, plain and
//! stripped.
use deferscope_integration::*;
use serde_json::Value;

fn as_u64(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// Source lines of the `// SITE:` markers in tests/go/diag/main.go.
struct Lines {
    file_close: u32,
    closure: u32,
    method: u32,
    handler: u32,
    recursion: u32,
}

#[test]
#[ignore = "needs root and the Go toolchains (cargo xtask test runs it)"]
fn defer_diagnostics_name_the_bug_for_every_go_version() {
    require_root();
    let lines = Lines {
        file_close: marker_line("diag", "SITE:file-close"),
        closure: marker_line("diag", "SITE:closure"),
        method: marker_line("diag", "SITE:method"),
        handler: marker_line("diag", "SITE:handler"),
        recursion: marker_line("diag", "SITE:recursion"),
    };
    for_each_toolchain("defer diagnostics", |tc| {
        for flags in [&[][..], &["-buildmode=pie", "-ldflags=-s -w"][..]] {
            eprintln!("   build flags {flags:?}");
            check(tc, flags, &lines)?;
        }
        Ok(())
    });
}

fn deferred_function(snapshot: &Value, line: u32) -> Result<String, String> {
    let s = site(snapshot, line).ok_or(format!("no defer site at main.go:{line}"))?;
    s["deferred"]["function"].as_str().map(str::to_owned).ok_or(format!("site main.go:{line} has no deferred: {s}"))
}

fn findings<'a>(snapshot: &'a Value, kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    snapshot["findings"].as_array().into_iter().flatten().filter(move |f| f["kind"] == kind)
}

fn loop_finding_at(snapshot: &Value, line: u32) -> Option<&Value> {
    findings(snapshot, "defer_in_loop").find(|f| f["site"]["line"] == line)
}

fn open_fds(snapshot: &Value) -> Result<u64, String> {
    snapshot["process"]["open_fds"].as_u64().ok_or(format!("no process.open_fds: {}", snapshot["process"]))
}

fn check(tc: &Toolchain, flags: &[&str], lines: &Lines) -> anyhow::Result<()> {
    let binary = build_go("diag", tc, flags)?;
    let mut program = GoProgram::start(&binary)?;
    program.expect("ready")?;
    let mut tracer = Tracer::attach(program.pid, &["--overhead-budget", "none"])?;
    tracer.wait_for("a first snapshot", |_| Ok(()))?;

    // `defer f.Close()` on real files in a loop.
    let first = program.command("files 100", "files")?;
    let goid = as_u64(&first["goid"]);
    let fds_first = as_u64(&first["open_fds"]);
    let seen_first = tracer.wait_for("100 pending Close calls and their fds", |s| {
        let site = site(s, lines.file_close).ok_or("no file-close site")?;
        if site["live"] != 100 {
            return Err(format!("file-close site: {site}"));
        }
        match deferred_function(s, lines.file_close)?.as_str() {
            "os.(*File).Close" => {}
            other => return Err(format!("file-close site defers {other}")),
        }
        // The program counted its own fds (less the one counting opens).
        let fds = open_fds(s)?;
        if fds.abs_diff(fds_first) > 1 {
            return Err(format!("open_fds {fds}, the program counts {fds_first}"));
        }
        Ok(())
    })?;
    let fds_seen_first = open_fds(&seen_first).map_err(anyhow::Error::msg)?;
    let second = program.command("files 100", "files")?;
    anyhow::ensure!(second["pending"] == 200, "the program holds {}", second["pending"]);
    let seen_second = tracer.wait_for("a defer_in_loop finding at the file-close site, fds climbing", |s| {
        let f = loop_finding_at(s, lines.file_close).ok_or_else(|| format!("findings: {}", s["findings"]))?;
        if f["goroutine"] != goid || f["records"] != 200 || f["deferred"]["function"] != "os.(*File).Close" {
            return Err(format!("finding {f}, want goroutine {goid}, 200 records of os.(*File).Close"));
        }
        let fds = open_fds(s)?;
        if fds < fds_seen_first + 100 {
            return Err(format!("open_fds {fds}, was {fds_seen_first} before 100 more files"));
        }
        Ok(())
    })?;

    eprintln!(
        "   open_fds {fds_seen_first} → {} (the program counts {} → {}), finding: {}",
        seen_second["process"]["open_fds"],
        fds_first,
        second["open_fds"],
        loop_finding_at(&seen_second, lines.file_close).map_or(String::new(), |f| f["message"].to_string())
    );

    // A real closure and a method value deferred in a loop.
    program.command("closures 40", "closures")?;
    tracer.wait_for("the closure and the method value named", |s| {
        let closure = deferred_function(s, lines.closure)?;
        let method = deferred_function(s, lines.method)?;
        if closure == "main.closureLoop.func1" && method == "main.(*conn).release" {
            Ok(())
        } else {
            Err(format!("closure site defers {closure}, method site {method}"))
        }
    })?;

    // A handler holding two heap records for ~200 ms per call.
    let handled = program.command("handle 6", "handled")?;
    let popped = as_u64(&handled["calls"]) * as_u64(&handled["records_per_call"]);
    let timed = tracer.wait_for("handler lifetimes of ~0.2 s, no defer_in_loop", |s| {
        if loop_finding_at(s, lines.handler).is_some() {
            return Err(format!("defer_in_loop at the handler: {}", s["findings"]));
        }
        let site = site(s, lines.handler).ok_or("no handler site")?;
        let l = &site["lifetime_s"];
        let p50 = l["p50"].as_f64().ok_or(format!("no lifetime: {site}"))?;
        if l["count"] != popped || !(0.19..=0.3).contains(&p50) {
            return Err(format!("handler lifetime_s {l}, want {popped} records of ~0.2 s"));
        }
        Ok(())
    })?;

    eprintln!("   handler lifetime_s {}", site(&timed, lines.handler).map_or(Value::Null, |s| s["lifetime_s"].clone()));

    // Deep recursion with stack defers: one record per frame per site.
    let recursed = program.command("recurse 40", "recursed")?;
    let rec_goid = as_u64(&recursed["goid"]);
    let depth = as_u64(&recursed["depth"]);
    tracer.wait_for("the recursion's chain", |s| expect_depth(s, rec_goid, depth))?;
    tracer.expect_every(5, "no defer_in_loop for a recursion", |s| {
        let wrong: Vec<_> = findings(s, "defer_in_loop")
            .filter(|f| f["goroutine"] == rec_goid || f["site"]["line"] == lines.recursion)
            .collect();
        if wrong.is_empty() { Ok(()) } else { Err(format!("recursion flagged: {wrong:?}")) }
    })?;
    tracer.quit_with(&mut program)?;
    Ok(())
}
