//! Hand-built snapshots for the tests of everything that shows them: the
//! dashboard (`tui`), the text and JSON output, the Prometheus exporter and
//! the feed. Deterministic: insta snapshots and exact expositions are made
//! from them, so change them only with the tests that depend on them.
//!
//! - building blocks: [`empty`], [`goroutine`], [`defer_site`];
//! - the dashboard's reference snapshot: [`snapshot`], [`snapshot_at`],
//!   [`many`], and the dashboard's [`settings`]; three processes of them:
//!   [`fleet`];
//! - the exporter's: [`exporter_snapshot`], [`app_site`], [`app_leak`];
//! - the JSON schema's: [`one_goroutine`].
use std::{sync::Arc, time::Duration};

use crate::{
    aggregate::model::{
        DeferChainEntry, DeferSiteView, GoroutineView, LeakGroup, LeakScanView, Mode, Overhead, ProbeHits, ProbeState,
        Site, Snapshot, Totals, Verdict,
    },
    feed::Fleet,
    goruntime::GoroutineStatus,
    tui::app::Settings,
};

/// Process 4242 (`exe`), go1.24.11 on x86_64, at a fixed time; nothing else.
pub fn empty(exe: &str) -> Snapshot {
    Snapshot {
        time: "2025-01-01T00:00:00Z".into(),
        pid: 4242,
        exe: exe.into(),
        go_version: "go1.24.11".into(),
        arch: "x86_64".into(),
        ..Default::default()
    }
}

/// A goroutine whose depth is known exactly, and nothing else.
pub fn goroutine(goid: u64, state: GoroutineStatus, wait_reason: Option<&str>) -> GoroutineView {
    GoroutineView { goid, state, wait_reason: wait_reason.map(Into::into), depth_exact: true, ..Default::default() }
}

/// The `defer` statement at `function` `file:line`.
pub fn defer_site(function: &str, file: &str, line: u32, pushed: u64, live: u64) -> DeferSiteView {
    DeferSiteView {
        site: Site::new(function, file, line),
        pushed,
        live,
        deferred: None,
        lifetime_s: None,
        oldest_live_s: None,
        oldest_live_lower_bound: false,
    }
}

fn probe_hits(function: &str, hits: u64) -> ProbeHits {
    ProbeHits { function: function.into(), hits, state: ProbeState::Attached }
}

// --- The dashboard's reference snapshot ---

/// What the dashboard's header shows about the session.
pub fn settings() -> Settings {
    Settings {
        pid: 4242,
        interval: Duration::from_millis(200),
        leak_after: Duration::from_secs(1),
        metrics_addr: Some("127.0.0.1:9464".parse().expect("addr")),
        top: None,
        back_to_processes: false,
    }
}

const SRC: &str = "/home/dev/shop/cmd/server/";

fn site(function: &str, file: &str, line: u32) -> Site {
    Site::new(function, &format!("{SRC}{file}"), line)
}

fn runtime(function: &str, file: &str, line: u32) -> Site {
    Site::new(function, &format!("/usr/local/go/src/runtime/{file}"), line)
}

/// The reference snapshot, 2 s into tracing: a deep chain, a leak group,
/// healthy traffic, a runtime goroutine.
pub fn snapshot() -> Snapshot {
    snapshot_at(2.0, 4000)
}

/// Three processes: the reference snapshot as PIDs 4242, 5151 (without its
/// deep goroutines, no leak, an older Go) and 6060.
pub fn fleet(uptime: f64, pushed: u64) -> Fleet {
    let first = snapshot_at(uptime, pushed);
    let mut second = snapshot_at(uptime, pushed);
    second.pid = 5151;
    second.exe = "/srv/api/bin/api".into();
    second.go_version = "go1.21.13".into();
    second.goroutines.retain(|g| g.defer_depth < 10 && !g.leaked);
    second.leaks.clear();
    second.totals.goroutines_leaked = 0;
    second.totals.goroutines_live = second.goroutines.iter().filter(|g| !g.system).count() as u64;
    let mut third = snapshot_at(uptime, pushed);
    third.pid = 6060;
    third.exe = "/usr/local/bin/worker".into();
    Fleet { snapshots: vec![Arc::new(first), Arc::new(second), Arc::new(third)] }
}

/// The reference snapshot with `pushed` defers pushed after `uptime` s.
pub fn snapshot_at(uptime: f64, pushed: u64) -> Snapshot {
    let mut goroutines = Vec::new();

    let mut deep = goroutine(18, GoroutineStatus::Waiting, Some("chan receive"));
    deep.defer_depth = 2500;
    deep.max_defer_depth = 2500;
    deep.top_defer_site = Some(site("main.deepWorker", "main.go", 42));
    deep.created_by = Some(site("main.main", "main.go", 120));
    deep.start_function = Some("main.deepWorker".into());
    deep.parent_goid = Some(1);
    deep.blocked_for_s = Some(0.4);
    deep.blocked_at = Some(site("main.deepWorker", "main.go", 45));
    deep.details.get_or_insert_default().stack = Some(vec![
        runtime("runtime.gopark", "proc.go", 425),
        runtime("runtime.chanrecv", "chan.go", 664),
        runtime("runtime.chanrecv1", "chan.go", 506),
        site("main.deepWorker", "main.go", 45),
        runtime("runtime.goexit", "asm_amd64.s", 1700),
    ]);
    deep.details.get_or_insert_default().defer_chain = Some(vec![
        DeferChainEntry { site: Some(site("main.deepWorker", "main.go", 42)), count: 2480 },
        DeferChainEntry { site: Some(site("main.deepWorker", "main.go", 37)), count: 20 },
    ]);
    goroutines.push(deep);

    for (i, goid) in (60..63).enumerate() {
        let mut g = goroutine(goid, if i == 0 { GoroutineStatus::Running } else { GoroutineStatus::Runnable }, None);
        g.defer_depth = 3 - i as u64;
        g.max_defer_depth = 4;
        g.top_defer_site = Some(site("main.handleOrders", "orders.go", 51));
        g.created_by = Some(Site::new("net/http.(*Server).Serve", "/usr/local/go/src/net/http/server.go", 3285));
        g.start_function = Some("net/http.(*conn).serve".into());
        g.depth_exact = i != 2;
        goroutines.push(g);
    }

    let mut main = goroutine(1, GoroutineStatus::Waiting, Some("select"));
    main.start_function = Some("main.main".into());
    main.blocked_for_s = Some(2.0);
    main.blocked_at = Some(site("main.main", "main.go", 131));
    main.details.get_or_insert_default().stack = Some(vec![
        runtime("runtime.gopark", "proc.go", 425),
        runtime("runtime.selectgo", "select.go", 335),
        site("main.main", "main.go", 131),
        runtime("runtime.main", "proc.go", 283),
    ]);
    goroutines.push(main);

    for goid in 20..60 {
        let mut g = goroutine(goid, GoroutineStatus::Waiting, Some("chan send"));
        g.created_by = Some(site("main.startLeaks", "leak.go", 30));
        g.start_function = Some("main.leakyProducer".into());
        g.blocked_for_s = Some(12.5 - (goid - 20) as f64 * 0.25);
        g.blocked_at = Some(site("main.leakyProducer", "leak.go", 17));
        g.leaked = true;
        g.stuck = true;
        g.leak_reason = Some("channel unreachable".into());
        g.unreachable_for_s = Some(9.0);
        g.details.get_or_insert_default().stack = Some(vec![
            runtime("runtime.gopark", "proc.go", 425),
            runtime("runtime.chansend", "chan.go", 259),
            runtime("runtime.chansend1", "chan.go", 145),
            site("main.leakyProducer", "leak.go", 17),
            runtime("runtime.goexit", "asm_amd64.s", 1700),
        ]);
        goroutines.push(g);
    }

    let mut gc = goroutine(2, GoroutineStatus::Waiting, Some("force gc (idle)"));
    gc.system = true;
    gc.start_function = Some("runtime.forcegchelper".into());
    goroutines.push(gc);

    let healthy = pushed / 4000 * 91234 / 2;
    Snapshot {
        probes: vec!["runtime.deferproc".into(), "runtime.deferreturn".into(), "runtime.newproc1".into()],
        totals: Totals {
            defers_pushed: pushed,
            defers_popped: pushed.saturating_sub(2509),
            defer_records_live: 2509,
            goroutines_created: 140,
            goroutines_exited: 95,
            goroutines_live: 44,
            goroutines_total: 45,
            events: pushed * 2 + 100,
            events_lost: 0,
            goroutines_leaked: 40,
            goroutines_stuck: 0,
            unmatched_pops: 0,
        },
        goroutines,
        defer_sites: vec![
            defer_site("main.deepWorker", &format!("{SRC}main.go"), 42, pushed.min(2480), 2480),
            defer_site("main.deepWorker", &format!("{SRC}main.go"), 37, 20, 20),
            defer_site("main.handleOrders", &format!("{SRC}orders.go"), 51, healthy, 9),
        ],
        leaks: vec![LeakGroup {
            verdict: Verdict::Leaked,
            created_by: Some(site("main.startLeaks", "leak.go", 30)),
            blocked_at: Some(site("main.leakyProducer", "leak.go", 17)),
            wait_reason: "chan send".into(),
            count: 40,
            oldest_blocked_s: 12.5,
            sample_goids: (20..30).collect(),
            growing: true,
            growth_per_min: 12.0,
            retained_by: None,
        }],
        leak_scan: None,
        leak_after_s: 1.0,
        probe_hits: vec![probe_hits("runtime.deferproc", pushed), probe_hits("runtime.deferreturn", pushed)],
        trace_uptime_s: uptime,
        memory_read_s: 0.002,
        target_exited: false,
        ..empty("shop-server")
    }
}

/// `n` goroutines in 100 functions, for the scale tests.
pub fn many(n: u64) -> Snapshot {
    let mut s = snapshot();
    let sites: Vec<Site> = (0..100).map(|i| site(&format!("main.worker{i}"), "work.go", 10 + i)).collect();
    s.goroutines = (0..n)
        .map(|goid| {
            let mut g = goroutine(
                goid + 100,
                if goid % 7 == 0 { GoroutineStatus::Running } else { GoroutineStatus::Waiting },
                Some("chan receive"),
            );
            let site = sites[(goid % 100) as usize].clone();
            g.defer_depth = (goid * 7919) % 3000;
            g.max_defer_depth = g.defer_depth + goid % 5;
            g.top_defer_site = Some(site.clone());
            g.created_by = Some(sites[0].clone());
            g.blocked_for_s = Some((goid % 97) as f64);
            g.details.get_or_insert_default().stack = Some(vec![runtime("runtime.gopark", "proc.go", 425), site]);
            g
        })
        .collect();
    s.totals.goroutines_live = n;
    s
}

// --- The exporter's snapshot ---

/// The source file of the exporter snapshot's program.
pub const APP_MAIN: &str = "/src/app/main.go";

/// The `defer` statement in `function` at [`APP_MAIN`]`:line`.
pub fn app_site(function: &str, line: u32, pushed: u64, live: u64) -> DeferSiteView {
    defer_site(function, APP_MAIN, line, pushed, live)
}

/// `count` goroutines blocked in `main.worker` at [`APP_MAIN`]`:blocked_line`,
/// created by `main.main` at `created_line` (when known).
pub fn app_leak(wait_reason: &str, created_line: Option<u32>, blocked_line: u32, count: u64) -> LeakGroup {
    LeakGroup {
        verdict: Verdict::Leaked,
        created_by: created_line.map(|l| Site::new("main.main", APP_MAIN, l)),
        blocked_at: Some(Site::new("main.worker", APP_MAIN, blocked_line)),
        wait_reason: wait_reason.to_owned(),
        count,
        oldest_blocked_s: 12.5,
        sample_goids: vec![],
        growing: false,
        growth_per_min: 0.0,
        retained_by: None,
    }
}

fn app_goroutine(goid: u64, state: GoroutineStatus, depth: u64, system: bool) -> GoroutineView {
    GoroutineView {
        defer_depth: depth,
        max_defer_depth: depth,
        system,
        ..goroutine(goid, state, (state == GoroutineStatus::Waiting).then_some("chan receive"))
    }
}

/// Process 4242 `server`, 3 s into tracing: a deep goroutine and a shallow
/// one, three defer sites, three leak groups (one without a creation site),
/// two probes, two lost events.
pub fn exporter_snapshot() -> Snapshot {
    Snapshot {
        probes: vec!["runtime.deferproc".into(), "runtime.popDefer".into()],
        totals: Totals {
            defers_pushed: 1500,
            defers_popped: 300,
            defer_records_live: 1203,
            goroutines_created: 40,
            goroutines_exited: 5,
            goroutines_live: 3,
            goroutines_total: 4,
            events: 1845,
            events_lost: 2,
            goroutines_leaked: 36,
            goroutines_stuck: 0,
            unmatched_pops: 0,
        },
        goroutines: vec![
            app_goroutine(7, GoroutineStatus::Waiting, 1200, false),
            app_goroutine(8, GoroutineStatus::Waiting, 3, false),
            app_goroutine(1, GoroutineStatus::Running, 0, false),
            app_goroutine(2, GoroutineStatus::Waiting, 0, true),
        ],
        defer_sites: vec![
            app_site("main.deep", 10, 1200, 1200),
            app_site("main.handler", 20, 290, 3),
            app_site("main.rare", 30, 10, 0),
        ],
        leaks: vec![
            app_leak("chan receive", Some(50), 60, 25),
            app_leak("chan send", Some(51), 61, 10),
            app_leak("select", None, 62, 1),
        ],
        leak_after_s: 1.0,
        probe_hits: vec![
            probe_hits("runtime.deferproc", 1500),
            ProbeHits { function: "runtime.popDefer".into(), hits: 300, state: ProbeState::Detached },
        ],
        trace_uptime_s: 3.0,
        memory_read_s: 0.25,
        target_exited: false,
        mode: Mode::Sampled,
        overhead: Some(Overhead {
            budget_ratio: Some(0.01),
            estimate_ratio: 0.004,
            cost_per_hit_ns: 2000.0,
            switches: 1,
        }),
        estimated: vec!["defers_popped".into()],
        ..empty("server")
    }
}

// --- The JSON schema's snapshot ---

/// Process 7 `demo` with one goroutine, three defers deep (ten at most).
pub fn one_goroutine() -> Snapshot {
    Snapshot {
        time: "2026-11-22T00:00:00Z".into(),
        pid: 7,
        probes: vec!["runtime.deferproc".into()],
        goroutines: vec![GoroutineView {
            defer_depth: 3,
            max_defer_depth: 10,
            top_defer_site: Some(Site::new("main.work", "/a/main.go", 42)),
            ..goroutine(1, GoroutineStatus::Waiting, Some("chan receive"))
        }],
        leaks: vec![LeakGroup {
            verdict: Verdict::Leaked,
            created_by: None,
            blocked_at: None,
            wait_reason: "chan send".into(),
            count: 300,
            oldest_blocked_s: 61.2,
            sample_goids: vec![20],
            growing: false,
            growth_per_min: 0.0,
            retained_by: None,
        }],
        leak_scan: Some(LeakScanView::default()),
        leak_after_s: 30.0,
        probe_hits: vec![ProbeHits { function: "runtime.deferproc".into(), hits: 3, state: ProbeState::Detached }],
        trace_uptime_s: 1.0,
        memory_read_s: 0.01,
        mode: Mode::Sampled,
        overhead: Some(Overhead::default()),
        estimated: vec!["defers_pushed".into()],
        ..empty("demo")
    }
}

/// [`snapshot_at`] with what issue 13 adds: the deep worker's site defers
/// `os.(*File).Close` and is a defer in a loop, fds climb with it.
pub fn diagnosed_snapshot_at(uptime: f64, pushed: u64, open_fds: u64) -> Snapshot {
    use crate::aggregate::model::{Finding, FindingKind, LifetimeStats, ProcessResources};
    let mut s = snapshot_at(uptime, pushed);
    let close = Site::new("os.(*File).Close", "/usr/lib/go/src/os/file_posix.go", 20);
    let deep = &mut s.defer_sites[0];
    deep.deferred = Some(close.clone());
    deep.oldest_live_s = Some(uptime);
    deep.oldest_live_lower_bound = true;
    s.defer_sites[2].lifetime_s = Some(LifetimeStats {
        count: 120,
        p50: 0.2,
        p99: 0.25,
        max: 0.3,
        // Cumulative at LIFETIME_BUCKETS_S: 119 within 0.25 s, all 120 within 0.5 s.
        buckets: vec![0, 0, 0, 0, 119, 120, 120, 120, 120, 120],
        sum: 24.0,
    });
    s.process = Some(ProcessResources {
        open_fds: Some(open_fds),
        fd_limit: Some(4096),
        rss_bytes: Some(64 << 20),
        threads: Some(9),
    });
    s.findings = vec![Finding {
        kind: FindingKind::DeferInLoop,
        site: Some(s.defer_sites[0].site.clone()),
        goroutine: Some(18),
        records: 2480,
        growth_per_s: 49.0,
        deferred: Some(close),
        message: "main.go:42 main.deepWorker holds 2480 pending os.(*File).Close calls on goroutine 18 (+49.0/s): \
                  a defer in a loop runs only when the function returns"
            .into(),
    }];
    s
}
