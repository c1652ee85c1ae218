//! Deterministic snapshots for the TUI's tests: a deep chain, a leak group,
//! healthy traffic, a runtime goroutine.
use std::time::Duration;

use super::app::Settings;
use crate::{
    aggregate::model::{
        DeferChainEntry, DeferSiteView, GoroutineView, LeakGroup, ProbeHits, ProbeState, Site, Snapshot, Totals,
        Verdict,
    },
    goruntime::GoroutineStatus,
};

pub fn settings() -> Settings {
    Settings {
        pid: 4242,
        interval: Duration::from_millis(200),
        leak_after: Duration::from_secs(1),
        metrics_addr: Some("127.0.0.1:9464".parse().expect("addr")),
        top: None,
    }
}

const SRC: &str = "/home/dev/shop/cmd/server/";

fn site(function: &str, file: &str, line: u32) -> Site {
    Site::new(function, &format!("{SRC}{file}"), line)
}

fn goroutine(goid: u64, state: GoroutineStatus, wait: Option<&str>) -> GoroutineView {
    GoroutineView { goid, state, wait_reason: wait.map(Into::into), depth_exact: true, ..Default::default() }
}

fn runtime(function: &str, file: &str, line: u32) -> Site {
    Site::new(function, &format!("/usr/local/go/src/runtime/{file}"), line)
}

/// The reference snapshot, 2 s into tracing.
pub fn snapshot() -> Snapshot {
    snapshot_at(2.0, 4000)
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
    deep.stack = Some(vec![
        runtime("runtime.gopark", "proc.go", 425),
        runtime("runtime.chanrecv", "chan.go", 664),
        runtime("runtime.chanrecv1", "chan.go", 506),
        site("main.deepWorker", "main.go", 45),
        runtime("runtime.goexit", "asm_amd64.s", 1700),
    ]);
    deep.defer_chain = Some(vec![
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
    main.stack = Some(vec![
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
        g.stack = Some(vec![
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
        time: "2025-01-01T00:00:00Z".into(),
        pid: 4242,
        exe: "shop-server".into(),
        go_version: "go1.24.11".into(),
        arch: "x86_64".into(),
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
            DeferSiteView {
                site: Site::new("main.deepWorker", &format!("{SRC}main.go"), 42),
                pushed: pushed.min(2480),
                live: 2480,
            },
            DeferSiteView { site: Site::new("main.deepWorker", &format!("{SRC}main.go"), 37), pushed: 20, live: 20 },
            DeferSiteView {
                site: Site::new("main.handleOrders", &format!("{SRC}orders.go"), 51),
                pushed: healthy,
                live: 9,
            },
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
        }],
        leak_scan: None,
        leak_after_s: 1.0,
        probe_hits: vec![
            ProbeHits { function: "runtime.deferproc".into(), hits: pushed, state: ProbeState::Attached },
            ProbeHits { function: "runtime.deferreturn".into(), hits: pushed, state: ProbeState::Attached },
        ],
        trace_uptime_s: uptime,
        memory_read_s: 0.002,
        target_exited: false,
        ..Default::default()
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
            g.stack = Some(vec![runtime("runtime.gopark", "proc.go", 425), site]);
            g
        })
        .collect();
    s.totals.goroutines_live = n;
    s
}
