//! Goroutines that push and pop defer records without pause from before
//! deferscope attaches, while it attaches, and after (issue 12: on arm64, where
//! attaching takes about a second, such a goroutine was reported at a
//! constant depth of ~390 instead of 0–1). They never park while they spin,
//! so no memory read of them is ever taken at rest: every snapshot must still
//! show each at its base depth or one above, as the program says.
use deferscope_integration::*;
use serde_json::Value;

fn as_u64(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a number: {v}"))
}

#[test]
#[ignore = "needs root and the Go toolchains (cargo xtask test runs it)"]
fn goroutines_deferring_while_deferscope_attaches_keep_exact_depths() {
    require_root();
    let spin_line = marker_line("spin", "SITE:spin");
    for_each_toolchain("busy during attach", |tc| {
        let binary = build_go("spin", tc, &[])?;
        // Every probe kept (the event path of issue 12), then the default
        // overhead budget, whose governor sheds the probes of such a hot loop
        // within seconds (depths from memory, through the switch).
        for args in [&["--overhead-budget", "none"][..], &[]] {
            eprintln!("   deferscope {}", args.join(" "));
            spin_while_attaching(&binary, tc, args, spin_line)?;
        }
        Ok(())
    });
}

fn spin_while_attaching(binary: &std::path::Path, tc: &Toolchain, args: &[&str], spin_line: u32) -> anyhow::Result<()> {
    {
        let mut program = GoProgram::start(binary)?;
        let ready = program.expect("ready")?;
        assert_eq!(ready["go"], tc.full, "the program runs the toolchain under test");
        let (spin, spin_depth) = (as_u64(&ready["spin_goid"]), as_u64(&ready["spin_depth"]));
        let (deep, deep_depth) = (as_u64(&ready["deep_goid"]), as_u64(&ready["deep_depth"]));
        let num_goroutine = as_u64(&ready["num_goroutine"]);

        let mut tracer = Tracer::attach(program.pid, args)?;
        let mut seen = Vec::new();
        tracer.expect_every(10, "depths while spinning", |s| {
            let depth = |goid| goroutine(s, goid).map(|g| g["defer_depth"].clone()).unwrap_or_default();
            seen.push(format!("{}/{}", depth(spin), depth(deep)));
            expect_depth_within(s, spin, spin_depth, spin_depth + 1)?;
            expect_depth_within(s, deep, deep_depth, deep_depth + 1)?;
            expect_goroutines_live(s, num_goroutine)
        })?;
        eprintln!("   depths while spinning (goroutine {spin}/{deep}): {}", seen.join(" "));
        let last = tracer.last.clone().unwrap_or_default();
        match site(&last, spin_line) {
            Some(s) if s["pushed"].as_u64().is_some_and(|p| p > 0) => {}
            other => anyhow::bail!("no pushes counted at main.go:{spin_line} while spinning: {other:?}"),
        }

        // Stopped and parked, each is at its base depth exactly.
        let stopped = program.command("stop", "stop")?;
        assert_eq!(stopped["parked"].as_array().map(Vec::len), Some(2));
        tracer.wait_for("parked at their base depths", |s| {
            expect_depth(s, spin, spin_depth)?;
            expect_depth(s, deep, deep_depth)
        })?;

        let last = tracer.quit_with(&mut program)?;
        // With every probe kept, nothing is lost. (Under the default budget
        // the ring buffer can overflow while the governor detaches the probes
        // of this hot loop: those events would only count, and the snapshots
        // above were checked through it.)
        if args.contains(&"none") {
            assert_eq!(last["totals"]["events_lost"], 0, "{}", last["totals"]);
        } else {
            assert_eq!(last["mode"], "sampled", "the governor sheds this loop's probes");
        }
        Ok(())
    }
}
