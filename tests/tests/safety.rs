//! Never harm the target: a deferscope killed mid-trace (SIGKILL, no chance
//! to clean up) leaves the Go program running normally, and a new
//! deferscope can attach to it again and count exactly.
use deferscope_integration::*;
use serde_json::Value;

fn as_u64(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a number: {v}"))
}

#[test]
#[ignore = "needs root and the Go toolchains (cargo xtask test runs it)"]
fn a_killed_tracer_leaves_the_target_running_normally() {
    require_root();
    let tc = toolchains().expect("toolchains").into_iter().max_by_key(Toolchain::minor).expect("a toolchain");
    let binary = build_go("defers", &tc, &[]).expect("build");
    let mut program = GoProgram::start(&binary).expect("start");
    let ready = program.expect("ready").expect("ready");
    let heap = as_u64(&ready["heap_goid"]);
    let depth = as_u64(&ready["heap_depth"]);

    let mut tracer = Tracer::attach(program.pid, &[]).expect("attach");
    tracer.wait_for("attached", |s| expect_depth(s, heap, depth)).expect("first snapshot");
    // Probes are hot while the tracer dies.
    let more = program.command("more 2000", "more").expect("more");
    tracer.kill();

    // The program carries on: every step completes and reports what it did.
    let after_kill = program.command("more 500", "more").expect("the program still runs");
    assert_eq!(as_u64(&after_kill["heap_depth"]), as_u64(&more["heap_depth"]) + 500);
    let panicked = program.command("panic", "panic").expect("a recovered panic still works");
    program.command("goexit", "goexit").expect("goexit");
    program.command("goexit-go", "goexit-go").expect("Goexit still works");

    // A new deferscope attaches and counts exactly.
    let mut again = Tracer::attach(program.pid, &[]).expect("attach again");
    again
        .wait_for("exact depths after re-attaching", |s| {
            expect_depth(s, heap, as_u64(&after_kill["heap_depth"]))?;
            expect_depth(s, as_u64(&panicked["goid"]), as_u64(&panicked["depth"]))
        })
        .expect("re-attach");
    program.command("heap-return", "heap-return").expect("heap-return");
    program.command("quit", "quit").expect("quit");
    let status = program.wait_exit().expect("exit");
    assert!(status.success(), "the Go program exited with {status}");
    let (status, _) = again.wait_exit().expect("deferscope exits with the target");
    assert!(status.success());
}
