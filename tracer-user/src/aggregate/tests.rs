use super::*;
use crate::target::GoroutineMemory;

struct FakeSymbols;

impl Symbolizer for FakeSymbols {
    fn call_site(&mut self, pc: u64) -> Option<Site> {
        Some(Site { function: "main.work".into(), file: "/src/main.go".into(), line: pc as u32 })
    }
    fn function_at(&mut self, pc: u64) -> Option<String> {
        Some(if pc == 0xdead { "runtime.bgsweep".into() } else { "main.worker".into() })
    }
}

fn ev(kind: EventKind, t: u64, goid: u64, pc: u64) -> Event {
    Event { kind: kind as u32, probe: 0, ktime_ns: t, goid, pc, arg: 0, aux: 0, tid: 0, _pad: 0 }
}

fn mem_g(goid: u64, sites_newest_first: &[u64], consistent: bool) -> GoroutineMemory {
    GoroutineMemory {
        goid,
        g_addr: 0x1000 * goid,
        status: GoroutineStatus::Waiting,
        wait_reason: 14,
        waitsince: 0,
        gopc: 7,
        startpc: 0x42,
        parent_goid: Some(1),
        sched_sp: 0,
        sched_pc: 0,
        sched_bp: 0,
        sched_lr: 0,
        stack_lo: 0,
        stack_hi: 0,
        defer_sites: sites_newest_first.to_vec(),
        consistent,
        chain_truncated: false,
    }
}

fn snap(t_start: u64, t_end: u64, gs: Vec<GoroutineMemory>) -> MemorySnapshot {
    MemorySnapshot { t_start_ns: t_start, t_end_ns: t_end, goroutines: gs }
}

fn render(agg: &mut Aggregator) -> Snapshot {
    agg.snapshot(&TargetInfo::default(), &mut FakeSymbols, None, String::new())
}

fn depth_of(s: &Snapshot, goid: u64) -> Option<u64> {
    s.goroutines.iter().find(|g| g.goid == goid).map(|g| g.defer_depth)
}

#[test]
fn pushes_and_pops_track_depth_and_top_site() {
    let mut agg = Aggregator::new(&[(14, "chan receive".into())]);
    agg.apply_memory(&snap(0, 1, vec![mem_g(5, &[], true)]));
    for i in 0..10 {
        agg.apply_event(&ev(EventKind::DeferPush, 10 + i, 5, 100 + i));
    }
    for i in 0..3 {
        agg.apply_event(&ev(EventKind::DeferPop, 30 + i, 5, 0));
    }
    let s = render(&mut agg);
    let g = &s.goroutines[0];
    assert_eq!((g.goid, g.defer_depth, g.max_defer_depth), (5, 7, 10));
    assert_eq!(g.top_defer_site.as_ref().map(|s| s.line), Some(106));
    assert_eq!(g.wait_reason.as_deref(), Some("chan receive"));
    assert_eq!(s.totals.defers_pushed, 10);
    assert_eq!(s.totals.defers_popped, 3);
    assert_eq!(s.totals.defer_records_live, 7);
    assert!(g.depth_exact);
}

#[test]
fn memory_baseline_then_events_without_double_counting() {
    let mut agg = Aggregator::new(&[]);
    // A push stamped before the read is already in memory's chain.
    agg.apply_memory(&snap(100, 200, vec![mem_g(9, &[3, 2, 1], true)]));
    agg.apply_event(&ev(EventKind::DeferPush, 90, 9, 3));
    assert_eq!(depth_of(&render(&mut agg), 9), Some(3));
    // One stamped after is not.
    agg.apply_event(&ev(EventKind::DeferPush, 300, 9, 4));
    assert_eq!(depth_of(&render(&mut agg), 9), Some(4));
    agg.apply_event(&ev(EventKind::DeferPop, 301, 9, 0));
    agg.apply_event(&ev(EventKind::DeferPop, 302, 9, 0));
    let s = render(&mut agg);
    assert_eq!(depth_of(&s, 9), Some(2));
    assert_eq!(s.goroutines[0].top_defer_site.as_ref().map(|s| s.line), Some(2));
}

#[test]
fn racing_read_does_not_override_events() {
    let mut agg = Aggregator::new(&[]);
    agg.apply_memory(&snap(0, 1, vec![mem_g(3, &[], true)]));
    agg.apply_event(&ev(EventKind::DeferPush, 150, 3, 1));
    // Read started at 100, before that push was applied: keep the events.
    agg.apply_memory(&snap(100, 200, vec![mem_g(3, &[], true)]));
    assert_eq!(depth_of(&render(&mut agg), 3), Some(1));
    // An inconsistent read never overrides a known chain.
    agg.apply_memory(&snap(300, 400, vec![mem_g(3, &[1, 1, 1], false)]));
    assert_eq!(depth_of(&render(&mut agg), 3), Some(1));
    // A consistent later read does.
    agg.apply_memory(&snap(500, 600, vec![mem_g(3, &[1, 1], true)]));
    assert_eq!(depth_of(&render(&mut agg), 3), Some(2));
}

#[test]
fn exit_removes_goroutine_and_stale_memory_cannot_revive_it() {
    let mut agg = Aggregator::new(&[]);
    agg.apply_memory(&snap(0, 10, vec![mem_g(4, &[1, 2], true), mem_g(6, &[], true)]));
    agg.apply_event(&ev(EventKind::DeferPop, 20, 4, 0));
    agg.apply_event(&ev(EventKind::DeferPop, 21, 4, 0));
    agg.apply_event(&ev(EventKind::GoroutineExit, 22, 4, 0));
    // A snapshot read before the exit still shows it.
    agg.apply_memory(&snap(15, 25, vec![mem_g(4, &[1, 2], true), mem_g(6, &[], true)]));
    let s = render(&mut agg);
    assert_eq!(depth_of(&s, 4), None);
    assert_eq!(s.totals.goroutines_exited, 1);
    assert_eq!(s.totals.defer_records_live, 0);
    assert!(s.defer_sites.iter().all(|site| site.live == 0));
}

#[test]
fn goroutines_missing_from_memory_are_dropped_unless_new() {
    let mut agg = Aggregator::new(&[]);
    agg.apply_memory(&snap(0, 10, vec![mem_g(1, &[5], true), mem_g(2, &[], true)]));
    let mut create = ev(EventKind::GoroutineCreate, 50, 3, 0x77);
    create.aux = 0x42;
    agg.apply_event(&create);
    // Read started before goroutine 3 existed: it must stay; 2 has gone.
    agg.apply_memory(&snap(40, 60, vec![mem_g(1, &[5], true)]));
    let s = render(&mut agg);
    let mut goids: Vec<u64> = s.goroutines.iter().map(|g| g.goid).collect();
    goids.sort();
    assert_eq!(goids, vec![1, 3]);
    assert_eq!(s.totals.goroutines_created, 1);
    assert_eq!(s.totals.defer_records_live, 1);
}

#[test]
fn unmatched_pop_is_counted_and_marks_inexact() {
    let mut agg = Aggregator::new(&[]);
    agg.apply_event(&ev(EventKind::DeferPop, 5, 8, 0));
    let s = render(&mut agg);
    assert_eq!(s.totals.unmatched_pops, 1);
    assert_eq!(depth_of(&s, 8), Some(0));
    assert!(!s.goroutines[0].depth_exact);
}

#[test]
fn system_goroutines_are_not_live() {
    let mut agg = Aggregator::new(&[]);
    let mut sys = mem_g(2, &[], true);
    sys.startpc = 0xdead;
    agg.apply_memory(&snap(0, 1, vec![mem_g(1, &[], true), sys]));
    let s = render(&mut agg);
    assert_eq!(s.totals.goroutines_live, 1);
    assert_eq!(s.totals.goroutines_total, 2);
    assert!(s.goroutines.iter().any(|g| g.goid == 2 && g.system));
    assert!(is_system_start("runtime.gcBgMarkWorker"));
    assert!(!is_system_start("runtime.main"));
    assert!(!is_system_start("main.main"));
}

#[test]
fn sites_with_the_same_line_merge_and_sort_by_live() {
    let mut agg = Aggregator::new(&[]);
    agg.apply_memory(&snap(0, 1, vec![mem_g(1, &[], true)]));
    agg.apply_event(&ev(EventKind::DeferPush, 10, 1, 9));
    agg.apply_event(&ev(EventKind::DeferPush, 11, 1, 9));
    agg.apply_event(&ev(EventKind::DeferPush, 12, 1, 4));
    agg.apply_event(&ev(EventKind::DeferPop, 13, 1, 0));
    let s = render(&mut agg);
    assert_eq!(s.defer_sites.len(), 2);
    assert_eq!((s.defer_sites[0].line, s.defer_sites[0].pushed, s.defer_sites[0].live), (9, 2, 2));
    assert_eq!((s.defer_sites[1].line, s.defer_sites[1].pushed, s.defer_sites[1].live), (4, 1, 0));
}
