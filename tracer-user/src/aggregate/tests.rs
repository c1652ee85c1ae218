use super::*;
use crate::{
    goruntime::layout::WaitReasons,
    process::scan::{RecordMark, ScannedGoroutine},
};

struct FakeSymbols;

impl Symbolizer for FakeSymbols {
    fn call_site(&mut self, pc: u64) -> Option<Site> {
        // PCs from 0x9000 are user code called "main.blocker"; below 0x1000
        // "runtime.gopark"; the rest "main.work" with line = pc.
        Some(match pc {
            0x9000.. => Site::new("main.blocker", "/src/main.go", 900),
            0x400..=0x5ff => Site::new("runtime.gopark", "/go/src/runtime/proc.go", 400),
            _ => Site::new("main.work", "/src/main.go", pc as u32),
        })
    }
    fn function_at(&mut self, pc: u64) -> Option<Arc<str>> {
        Some(if pc == 0xdead { "runtime.bgsweep".into() } else { "main.worker".into() })
    }
    fn frames(&mut self, pc: u64, is_return_address: bool) -> Vec<Site> {
        // No inlining here: one frame, looked up like a call site.
        self.call_site(pc + u64::from(!is_return_address)).into_iter().collect()
    }
    fn global_at(&mut self, addr: u64) -> Option<Arc<str>> {
        // Globals: main.registry at 0x50_0000 (32 bytes), then the rest of
        // .bss up to 0x51_0000, as a stripped binary names it.
        match addr {
            0x50_0000..0x50_0020 => Some(format!("main.registry+{:#x}", addr - 0x50_0000).into()),
            0x50_0020..0x51_0000 => Some(format!(".bss+{:#x}", addr - 0x4f_0000).into()),
            _ => None,
        }
    }
}

/// An event; pushes and pops do not say which record is below them.
fn ev(kind: EventKind, t: u64, goid: u64, pc: u64) -> Event {
    let aux = if matches!(kind, EventKind::DeferPush | EventKind::DeferPop) { UNKNOWN_RECORD } else { 0 };
    Event { kind: kind as u32, probe: 0, ktime_ns: t, goid, pc, arg: 0, aux, tid: 0, tgid: 0 }
}

/// A push or pop event naming the record below the one pushed or popped.
fn ev_on(kind: EventKind, t: u64, goid: u64, pc: u64, below: u64) -> Event {
    Event { aux: below, ..ev(kind, t, goid, pc) }
}

fn mem_g(goid: u64, sites_newest_first: &[u64], consistent: bool) -> ScannedGoroutine {
    ScannedGoroutine {
        goid,
        status: GoroutineStatus::Waiting,
        wait_reason: 14,
        waitsince: 0,
        gopc: 7,
        startpc: 0x42,
        parent_goid: Some(1),
        sched_sp: 0,
        sched_pc: 0,
        defer_sites: sites_newest_first.into(),
        records: Vec::new(),
        consistent,
        tracking_seq: Some(1),
        stack_pcs: [0x500, 0x9000].into(),
    }
}

fn snap(t_start: u64, t_end: u64, gs: Vec<ScannedGoroutine>) -> GoroutineScan {
    GoroutineScan { t_start_ns: t_start, t_end_ns: t_end, goroutines: gs, deferred_code: Vec::new() }
}

fn render(agg: &mut Aggregator) -> Snapshot {
    render_at(agg, 0, u64::MAX)
}

fn render_at(agg: &mut Aggregator, now_ns: u64, leak_after_ns: u64) -> Snapshot {
    let options = SnapshotInputs { details: true, now_ns, leak_after_ns, ..Default::default() };
    agg.snapshot(&ProcessInfo::default(), &mut FakeSymbols, &options)
}

fn depth_of(s: &Snapshot, goid: u64) -> Option<u64> {
    s.goroutines.iter().find(|g| g.goid == goid).map(|g| g.defer_depth)
}

#[test]
fn pushes_and_pops_track_depth_and_top_site() {
    let mut agg = Aggregator::new(WaitReasons::of(&[(14, "chan receive")]));
    agg.apply_scan(&snap(0, 1, vec![mem_g(5, &[], true)]));
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
    let mut agg = Aggregator::new(WaitReasons::default());
    // A push stamped before the read is already in memory's chain.
    agg.apply_scan(&snap(100, 200, vec![mem_g(9, &[3, 2, 1], true)]));
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
    let mut agg = Aggregator::new(WaitReasons::default());
    agg.apply_scan(&snap(0, 1, vec![mem_g(3, &[], true)]));
    agg.apply_event(&ev(EventKind::DeferPush, 150, 3, 1));
    // Read started at 100, before that push was applied: keep the events.
    agg.apply_scan(&snap(100, 200, vec![mem_g(3, &[], true)]));
    assert_eq!(depth_of(&render(&mut agg), 3), Some(1));
    // An inconsistent read never overrides a known chain.
    agg.apply_scan(&snap(300, 400, vec![mem_g(3, &[1, 1, 1], false)]));
    assert_eq!(depth_of(&render(&mut agg), 3), Some(1));
    // A consistent later read does.
    agg.apply_scan(&snap(500, 600, vec![mem_g(3, &[1, 1], true)]));
    assert_eq!(depth_of(&render(&mut agg), 3), Some(2));
}

#[test]
fn exit_removes_goroutine_and_stale_memory_cannot_revive_it() {
    let mut agg = Aggregator::new(WaitReasons::default());
    agg.apply_scan(&snap(0, 10, vec![mem_g(4, &[1, 2], true), mem_g(6, &[], true)]));
    agg.apply_event(&ev(EventKind::DeferPop, 20, 4, 0));
    agg.apply_event(&ev(EventKind::DeferPop, 21, 4, 0));
    agg.apply_event(&ev(EventKind::GoroutineExit, 22, 4, 0));
    // A snapshot read before the exit still shows it.
    agg.apply_scan(&snap(15, 25, vec![mem_g(4, &[1, 2], true), mem_g(6, &[], true)]));
    let s = render(&mut agg);
    assert_eq!(depth_of(&s, 4), None);
    assert_eq!(s.totals.goroutines_exited, 1);
    assert_eq!(s.totals.defer_records_live, 0);
    assert!(s.defer_sites.iter().all(|site| site.live == 0));
}

#[test]
fn goroutines_missing_from_memory_are_dropped_unless_new() {
    let mut agg = Aggregator::new(WaitReasons::default());
    agg.apply_scan(&snap(0, 10, vec![mem_g(1, &[5], true), mem_g(2, &[], true)]));
    let mut create = ev(EventKind::GoroutineCreate, 50, 3, 0x77);
    create.aux = 0x42;
    agg.apply_event(&create);
    // Read started before goroutine 3 existed: it must stay; 2 has gone.
    agg.apply_scan(&snap(40, 60, vec![mem_g(1, &[5], true)]));
    let s = render(&mut agg);
    let mut goids: Vec<u64> = s.goroutines.iter().map(|g| g.goid).collect();
    goids.sort();
    assert_eq!(goids, vec![1, 3]);
    assert_eq!(s.totals.goroutines_created, 1);
    assert_eq!(s.totals.defer_records_live, 1);
}

#[test]
fn unmatched_pop_is_counted_and_marks_inexact() {
    let mut agg = Aggregator::new(WaitReasons::default());
    agg.apply_event(&ev(EventKind::DeferPop, 5, 8, 0));
    let s = render(&mut agg);
    assert_eq!(s.totals.unmatched_pops, 1);
    assert_eq!(depth_of(&s, 8), Some(0));
    assert!(!s.goroutines[0].depth_exact);
}

#[test]
fn system_goroutines_are_not_live() {
    let mut agg = Aggregator::new(WaitReasons::default());
    let mut sys = mem_g(2, &[], true);
    sys.startpc = 0xdead;
    agg.apply_scan(&snap(0, 1, vec![mem_g(1, &[], true), sys]));
    let s = render(&mut agg);
    assert_eq!(s.totals.goroutines_live, 1);
    assert_eq!(s.totals.goroutines_total, 2);
    assert!(s.goroutines.iter().any(|g| g.goid == 2 && g.system));
}

#[test]
fn sites_with_the_same_line_merge_and_sort_by_live() {
    let mut agg = Aggregator::new(WaitReasons::default());
    agg.apply_scan(&snap(0, 1, vec![mem_g(1, &[], true)]));
    agg.apply_event(&ev(EventKind::DeferPush, 10, 1, 9));
    agg.apply_event(&ev(EventKind::DeferPush, 11, 1, 9));
    agg.apply_event(&ev(EventKind::DeferPush, 12, 1, 4));
    agg.apply_event(&ev(EventKind::DeferPop, 13, 1, 0));
    let s = render(&mut agg);
    assert_eq!(s.defer_sites.len(), 2);
    assert_eq!((s.defer_sites[0].site.line, s.defer_sites[0].pushed, s.defer_sites[0].live), (9, 2, 2));
    assert_eq!((s.defer_sites[1].site.line, s.defer_sites[1].pushed, s.defer_sites[1].live), (4, 1, 0));
}

#[test]
fn defer_chain_groups_runs_newest_first() {
    let mut agg = Aggregator::new(WaitReasons::default());
    agg.apply_scan(&snap(0, 1, vec![mem_g(1, &[7, 7, 5, 7], true)]));
    let s = render(&mut agg);
    let chain = s.goroutines[0].defer_chain().expect("details");
    let runs: Vec<(u32, u64)> = chain.iter().map(|e| (e.site.as_ref().map_or(0, |s| s.line), e.count)).collect();
    assert_eq!(runs, vec![(7, 2), (5, 1), (7, 1)]);
}

#[test]
fn blocked_goroutines_are_stuck_after_the_threshold_and_group() {
    let mut agg = Aggregator::new(WaitReasons::of(&[(14, "chan receive"), (19, "sleep")]));
    let blocked = |goid| mem_g(goid, &[], true);
    let mut sleeper = mem_g(3, &[], true);
    sleeper.wait_reason = 19;
    // (Not goroutine 1: the main goroutine has no creation site.)
    let reads = |t| snap(t, t + 1, vec![blocked(11), blocked(12), sleeper.clone()]);
    agg.apply_scan(&reads(1_000));
    let s = render_at(&mut agg, 1_500, 1_000);
    assert!(s.leaks.is_empty(), "not blocked long enough yet");
    agg.apply_scan(&reads(2_000));
    let s = render_at(&mut agg, 2_500, 1_000);
    assert_eq!(s.leaks.len(), 1);
    let group = &s.leaks[0];
    assert_eq!((group.count, group.wait_reason.as_str()), (2, "chan receive"));
    assert_eq!(group.blocked_at.as_ref().map(|s| s.line), Some(900), "innermost non-runtime frame");
    assert_eq!(group.created_by.as_ref().map(|s| s.line), Some(7));
    assert_eq!(group.sample_goids, vec![11, 12]);
    assert!((group.oldest_blocked_s - 1.5e-6).abs() < 1e-9);
    assert_eq!(s.totals.goroutines_stuck, 2);
    let sleeper_view = s.goroutines.iter().find(|g| g.goid == 3).expect("sleeper");
    assert!(!sleeper_view.stuck && !sleeper_view.leaked, "sleeping is never a leak");
    assert_eq!(group.verdict, Verdict::Stuck, "no reachability proof: stuck, not leaked");
    assert_eq!(s.totals.goroutines_leaked, 0);
    assert_eq!(sleeper_view.blocked_for_s, Some(1.5e-6));
}

#[test]
fn a_goroutine_that_ran_between_reads_is_not_stuck() {
    let mut agg = Aggregator::new(WaitReasons::of(&[(14, "chan receive")]));
    let mut consumer = mem_g(21, &[], true);
    agg.apply_scan(&snap(1_000, 1_001, vec![consumer.clone()]));
    consumer.tracking_seq = Some(2);
    agg.apply_scan(&snap(2_000, 2_001, vec![consumer.clone()]));
    let s = render_at(&mut agg, 2_500, 1_000);
    assert!(s.leaks.is_empty());
    assert_eq!(s.goroutines[0].blocked_for_s, Some(500e-9));
    // Unchanged from then on: it leaks once the threshold passes.
    agg.apply_scan(&snap(3_100, 3_101, vec![consumer]));
    assert_eq!(render_at(&mut agg, 3_100, 1_000).totals.goroutines_stuck, 1);
}

#[test]
fn waitsince_ages_goroutines_blocked_before_attach() {
    let mut agg = Aggregator::new(WaitReasons::of(&[(14, "chan receive")]));
    let mut old = mem_g(21, &[], true);
    old.waitsince = 10;
    agg.apply_scan(&snap(5_000, 5_001, vec![old]));
    let s = render_at(&mut agg, 5_010, 4_000);
    assert_eq!(s.totals.goroutines_stuck, 1, "blocked since 10 ns, now 5010 ns");
}

#[test]
fn unblocked_goroutines_leave_the_leak_report() {
    let mut agg = Aggregator::new(WaitReasons::of(&[(14, "chan receive")]));
    let g = mem_g(21, &[], true);
    agg.apply_scan(&snap(0, 1, vec![g.clone()]));
    agg.apply_scan(&snap(10, 11, vec![g.clone()]));
    assert_eq!(render_at(&mut agg, 20, 5).totals.goroutines_stuck, 1);
    let mut running = g;
    running.status = GoroutineStatus::Runnable;
    agg.apply_scan(&snap(30, 31, vec![running]));
    let s = render_at(&mut agg, 40, 5);
    assert_eq!(s.totals.goroutines_stuck, 0);
    assert!(s.leaks.is_empty());
}

#[test]
fn the_main_goroutine_is_never_leaked() {
    let mut agg = Aggregator::new(WaitReasons::of(&[(10, "select (no cases)")]));
    let mut main = mem_g(1, &[], true);
    main.wait_reason = 10;
    agg.apply_scan(&snap(0, 1, vec![main.clone()]));
    agg.apply_scan(&snap(10, 11, vec![main]));
    let s = render_at(&mut agg, 100, 5);
    assert_eq!(s.totals.goroutines_stuck, 0);
    assert!(!s.goroutines[0].leaked && !s.goroutines[0].stuck);
}

fn unreachable(t: u64, goids: &[u64], seq: u8) -> LeakScan {
    use crate::process::reachability::{ParkSignature, Unreachable};
    LeakScan {
        t_start_ns: t,
        t_end_ns: t + 1,
        heap_traced: true,
        unreachable: goids
            .iter()
            .map(|&goid| Unreachable {
                goid,
                signature: ParkSignature { raw_status: 4, wait_reason: 14, sched_pc: 0, tracking_seq: seq },
                reason: "channel unreachable",
            })
            .collect(),
        reachable: vec![13],
        ..LeakScan::default()
    }
}

#[test]
fn stuck_goroutines_are_leaked_once_proven_twice() {
    let mut agg = Aggregator::new(WaitReasons::of(&[(14, "chan receive")]));
    let reads = |t| snap(t, t + 1, vec![mem_g(11, &[], true), mem_g(12, &[], true), mem_g(13, &[], true)]);
    agg.apply_scan(&reads(0));
    agg.apply_leak_scan(unreachable(5, &[11, 12], 1));
    agg.apply_scan(&reads(10));
    let s = render_at(&mut agg, 20, 5);
    assert_eq!((s.totals.goroutines_leaked, s.totals.goroutines_stuck), (0, 3), "one scan proves nothing");
    let g11 = s.goroutines.iter().find(|g| g.goid == 11).expect("11");
    assert_eq!(g11.leak_reason.as_deref(), Some("unreachable once: confirming"));
    agg.apply_leak_scan(unreachable(30, &[11, 12], 1));
    let s = render_at(&mut agg, 40, 5);
    assert_eq!((s.totals.goroutines_leaked, s.totals.goroutines_stuck), (2, 1));
    assert_eq!(s.leaks.len(), 2);
    assert_eq!((s.leaks[0].verdict, s.leaks[0].count), (Verdict::Leaked, 2), "leaked groups first");
    assert_eq!((s.leaks[1].verdict, s.leaks[1].count), (Verdict::Stuck, 1));
    let g11 = s.goroutines.iter().find(|g| g.goid == 11).expect("11");
    assert!(g11.leaked && g11.stuck);
    assert_eq!(g11.leak_reason.as_deref(), Some("channel unreachable"));
    assert_eq!(g11.unreachable_for_s, Some(35e-9));
    let g13 = s.goroutines.iter().find(|g| g.goid == 13).expect("13");
    assert_eq!(g13.leak_reason.as_deref(), Some("reachable: could still be woken"));
    assert!(s.leak_scan.as_ref().is_some_and(|l| l.scans == 2 && l.heap_traced));
    // Goroutine 12 runs (trackingSeq moves): its proof no longer holds, at once.
    let mut ran = mem_g(12, &[], true);
    ran.tracking_seq = Some(2);
    agg.apply_scan(&snap(50, 51, vec![mem_g(11, &[], true), ran, mem_g(13, &[], true)]));
    let s = render_at(&mut agg, 60, 5);
    assert_eq!(s.totals.goroutines_leaked, 1);
}

#[test]
fn reachable_stuck_goroutines_say_who_holds_them() {
    use crate::process::reachability::RetainStep;
    let mut agg = Aggregator::new(WaitReasons::of(&[(14, "chan receive")]));
    let reads = |t| snap(t, t + 1, vec![mem_g(11, &[], true), mem_g(13, &[], true)]);
    agg.apply_scan(&reads(0));
    agg.apply_scan(&reads(10));
    let mut scan = unreachable(5, &[11], 1);
    scan.retained_by = vec![(
        13,
        vec![
            RetainStep::Global { addr: 0x50_0018 },
            RetainStep::Object { start: 0x00c0_0012_3000, size: 96, offset: 8 },
            RetainStep::Object { start: 0x00c0_0045_6000, size: 112, offset: 0 },
        ],
    )];
    agg.apply_leak_scan(scan);
    let s = render_at(&mut agg, 20, 5);
    let g13 = s.goroutines.iter().find(|g| g.goid == 13).expect("13");
    assert_eq!(g13.leak_reason.as_deref(), Some("reachable: could still be woken"));
    let want = vec![
        "global main.registry+0x18".to_owned(),
        "heap 0xc000123000 (96 B) +0x8".to_owned(),
        "heap 0xc000456000 (112 B) +0x0 (primitive)".to_owned(),
    ];
    assert_eq!(g13.retained_by(), Some(&want[..]));
    let group = s.leaks.iter().find(|l| l.sample_goids.contains(&13)).expect("13's group");
    assert_eq!(group.retained_by.as_ref(), Some(&want));
    // Not reachable (a candidate): no path, and none in the JSON.
    let g11 = s.goroutines.iter().find(|g| g.goid == 11).expect("11");
    assert_eq!(g11.retained_by(), None);
    assert!(!serde_json::to_string(g11).expect("json").contains("retained_by"));
}

#[test]
fn retaining_paths_name_globals_stacks_and_off_heap_primitives() {
    use crate::process::reachability::RetainStep;
    let describe = |path: &[RetainStep]| leaks::describe_retaining_path(path, &mut FakeSymbols);
    // Stripped: section and offset; a stack root by its frame's function
    // and line (the innermost frame's pc is no return address).
    assert_eq!(
        describe(&[
            RetainStep::Global { addr: 0x50_1234 },
            RetainStep::Object { start: 0xc000, size: 48, offset: 0x10 }
        ]),
        ["global .bss+0x11234", "heap 0xc000 (48 B) +0x10 (primitive)"]
    );
    assert_eq!(
        describe(&[
            RetainStep::Stack { goid: 7, frame: Some((0x40, true)) },
            RetainStep::Object { start: 0xc000, size: 48, offset: 0 }
        ])[0],
        "goroutine 7 stack: main.work (/src/main.go:64)"
    );
    assert_eq!(
        describe(&[RetainStep::Stack { goid: 7, frame: Some((0x40, false)) }])[0],
        "goroutine 7 stack: main.work (/src/main.go:65) (primitive)"
    );
    // A global sync.Mutex's sema word is the primitive itself.
    assert_eq!(describe(&[RetainStep::OffHeap { addr: 0x50_0004 }]), ["global main.registry+0x4 (primitive)"]);
    assert_eq!(describe(&[RetainStep::OffHeap { addr: 0x7f00_0000 }]), ["off-heap 0x7f000000 (primitive)"]);
    assert_eq!(
        describe(&[RetainStep::Global { addr: 0x10 }, RetainStep::Unknown { addr: 0xc000 }]),
        ["global 0x10", "unknown 0xc000 (primitive)"]
    );
}

#[test]
fn leak_groups_report_growth() {
    let mut agg = Aggregator::new(WaitReasons::of(&[(14, "chan receive")]));
    let s = 1_000_000_000u64;
    let mut gs = Vec::new();
    for k in 0..4u64 {
        gs.push(mem_g(100 + k, &[], true));
        agg.apply_scan(&snap(k * 20 * s, k * 20 * s + 1, gs.clone()));
        let snapshot = render_at(&mut agg, k * 20 * s + 2, 1);
        if k == 3 {
            let group = &snapshot.leaks[0];
            assert!(group.growing);
            assert!((group.growth_per_min - 3.0).abs() < 1e-6, "{}", group.growth_per_min);
        }
    }
}

/// Coverage with the given defer probes attached (goroutine probes on).
fn cover(pushes: bool, some_pushes: bool, pops: bool) -> Coverage {
    Coverage { pushes, some_pushes, pops, goroutines: true }
}

fn running(mut g: ScannedGoroutine) -> ScannedGoroutine {
    g.status = GoroutineStatus::Running;
    g.consistent = false;
    g
}

#[test]
fn a_partial_event_stream_never_moves_a_depth() {
    let mut agg = Aggregator::new(WaitReasons::default());
    agg.apply_scan(&snap(0, 1, vec![mem_g(5, &[1, 1], true)]));
    // Pops detached, pushes attached: pushes count, depths stay with memory.
    agg.set_coverage(cover(true, true, false), 5);
    for t in 10..20 {
        agg.apply_event(&ev(EventKind::DeferPush, t, 5, 7));
    }
    let s = render(&mut agg);
    assert_eq!(depth_of(&s, 5), Some(2), "ten pushes without their pops are not a depth");
    assert_eq!(s.totals.defers_pushed, 10);
    assert!(s.estimated.contains(&"defers_popped".to_owned()));
    assert!(!s.estimated.contains(&"defers_pushed".to_owned()), "every push probe is still on");
    // The next read is the truth: 12 records, of which the goroutine popped none.
    agg.apply_scan(&snap(30, 31, vec![mem_g(5, &[7; 12], true)]));
    let s = render(&mut agg);
    assert_eq!(depth_of(&s, 5), Some(12));
    assert!(s.goroutines[0].depth_exact, "a parked goroutine read consistently is exact");
}

#[test]
fn depths_stay_right_through_sampled_and_back() {
    let mut agg = Aggregator::new(WaitReasons::default());
    // Exact: a parked goroutine (5) with 3 records, a running one (6) with 1.
    agg.apply_scan(&snap(0, 1, vec![mem_g(5, &[3, 2, 1], true), running(mem_g(6, &[9], false))]));
    agg.apply_event(&ev(EventKind::DeferPush, 5, 6, 9));
    let s = render(&mut agg);
    assert_eq!((depth_of(&s, 5), depth_of(&s, 6)), (Some(3), Some(2)));

    // Everything detached: memory alone.
    agg.set_coverage(Coverage { pushes: false, some_pushes: false, pops: false, goroutines: false }, 10);
    // 6 keeps running: its chain grows to 40, read inconsistently; 5 parked
    // after popping one.
    agg.apply_scan(&snap(20, 21, vec![mem_g(5, &[2, 1], true), running(mem_g(6, &[9; 40], false))]));
    let s = render(&mut agg);
    assert_eq!(depth_of(&s, 5), Some(2));
    assert_eq!(depth_of(&s, 6), Some(40));
    let exact = |s: &Snapshot, goid| s.goroutines.iter().find(|g| g.goid == goid).map(|g| g.depth_exact);
    assert_eq!(exact(&s, 5), Some(true));
    assert_eq!(exact(&s, 6), Some(false), "a running goroutine cannot be read consistently");
    // Lower bounds from successive reads: 6 grew by 38, 5 shrank by 1.
    assert_eq!(s.totals.defers_pushed, 1 + 38);
    assert_eq!(s.totals.defers_popped, 1);
    for name in ["defers_pushed", "defers_popped", "goroutines_created", "goroutines_exited"] {
        assert!(s.estimated.contains(&name.to_owned()), "{name} is labelled an estimate");
    }
    assert_eq!(s.totals.defer_records_live, 42);

    // Back to exact at t=100. A read that started before (t=90) is not a
    // baseline: events between it and the re-attach were never seen.
    agg.set_coverage(Coverage::FULL, 100);
    agg.apply_event(&ev(EventKind::DeferPush, 101, 5, 4));
    agg.apply_scan(&snap(90, 102, vec![mem_g(5, &[2, 1], true), running(mem_g(6, &[9; 40], false))]));
    let s = render(&mut agg);
    assert_eq!(exact(&s, 5), Some(false), "a read from before the re-attach is no baseline");
    // A read after the re-attach is: 5 parked with 3 records (the push at 101
    // is in it), 6 running.
    agg.apply_scan(&snap(110, 111, vec![mem_g(5, &[4, 2, 1], true), running(mem_g(6, &[9; 40], false))]));
    agg.apply_event(&ev(EventKind::DeferPush, 112, 5, 8));
    agg.apply_event(&ev(EventKind::DeferPop, 113, 6, 0));
    let s = render(&mut agg);
    assert_eq!(depth_of(&s, 5), Some(4));
    assert_eq!(exact(&s, 5), Some(true), "events on a fresh baseline are exact again");
    assert_eq!(depth_of(&s, 6), Some(39));
    assert_eq!(exact(&s, 6), Some(false));
    assert_eq!(s.totals.unmatched_pops, 0);
    // Parked again and read consistently: exact again.
    agg.apply_scan(&snap(120, 121, vec![mem_g(5, &[8, 4, 2, 1], true), mem_g(6, &[9; 39], true)]));
    let s = render(&mut agg);
    assert_eq!((depth_of(&s, 6), exact(&s, 6)), (Some(39), Some(true)));
    assert_eq!(s.totals.defer_records_live, 43);
}

#[test]
fn goroutines_are_estimated_from_reads_while_their_probes_are_off() {
    let mut agg = Aggregator::new(WaitReasons::default());
    agg.apply_scan(&snap(0, 1, vec![mem_g(1, &[], true), mem_g(10, &[], true)]));
    agg.set_coverage(Coverage { goroutines: false, ..Coverage::FULL }, 2);
    // Goids 11..=30 were handed out; 25 and 30 are alive, 10 exited.
    agg.apply_scan(&snap(10, 11, vec![mem_g(1, &[], true), mem_g(25, &[], true), mem_g(30, &[], true)]));
    let s = render(&mut agg);
    assert_eq!(s.totals.goroutines_created, 20);
    assert_eq!(s.totals.goroutines_exited, 19);
    assert_eq!(s.totals.goroutines_total, 3);
}

#[test]
fn events_from_before_every_probe_was_attached_only_count() {
    // Issue 12: the push probe went in a second before the pop probe, and
    // a goroutine pushing and popping without pause kept the pushes of that
    // second as a depth of ~390 for good (it never parks, so no read of it
    // is ever taken).
    let mut agg = Aggregator::new(WaitReasons::default());
    agg.set_probes_live(1_000);
    for t in 0..300 {
        agg.apply_event(&ev(EventKind::DeferPush, 100 + t, 1, 42));
    }
    let mut t = 1_000;
    let mut spin = |agg: &mut Aggregator, n: u64| {
        for _ in 0..n {
            agg.apply_event(&ev(EventKind::DeferPush, t, 1, 42));
            agg.apply_event(&ev(EventKind::DeferPop, t + 1, 1, 0));
            t += 2;
        }
    };
    spin(&mut agg, 100);
    // Read while it runs, and raced by its events: not taken.
    agg.apply_scan(&snap(1_100, 1_150, vec![running(mem_g(1, &[42], false))]));
    spin(&mut agg, 100);
    let s = render(&mut agg);
    assert_eq!(depth_of(&s, 1), Some(0));
    assert_eq!(s.totals.defer_records_live, 0);
    // They were pushes all the same.
    assert_eq!(s.totals.defers_pushed, 500);
}

/// A read of a goroutine that is running (so never consistent), with the
/// records behind `sites_newest_first` at addresses `base + 0x100 * depth`.
fn running_g(goid: u64, sites_newest_first: &[u64], base: u64) -> ScannedGoroutine {
    let n = sites_newest_first.len() as u64;
    let records = (0..n).map(|i| RecordMark { addr: base + 0x100 * (n - i), depth: n - i }).collect();
    ScannedGoroutine { records, ..running(mem_g(goid, sites_newest_first, false)) }
}

fn exact_of(s: &Snapshot, goid: u64) -> Option<bool> {
    s.goroutines.iter().find(|g| g.goid == goid).map(|g| g.depth_exact)
}

#[test]
fn an_event_on_the_empty_chain_makes_the_depth_exact() {
    let mut agg = Aggregator::new(WaitReasons::default());
    // Pops missed (or never known): the events alone are off.
    for t in 0..5 {
        agg.apply_event(&ev(EventKind::DeferPush, 10 + t, 4, 7));
    }
    assert_eq!(depth_of(&render(&mut agg), 4), Some(5));
    // A push onto g._defer == nil: the chain is this one record.
    agg.apply_event(&ev_on(EventKind::DeferPush, 20, 4, 8, 0));
    let s = render(&mut agg);
    assert_eq!((depth_of(&s, 4), exact_of(&s, 4)), (Some(1), Some(true)));
    assert_eq!(s.goroutines[0].top_defer_site.as_ref().map(|s| s.line), Some(8));
    assert_eq!(s.totals.defer_records_live, 1);
    agg.apply_event(&ev_on(EventKind::DeferPush, 21, 4, 9, 0xabc));
    // Popping down to the empty chain.
    agg.apply_event(&ev_on(EventKind::DeferPop, 22, 4, 0, 0xabc));
    agg.apply_event(&ev_on(EventKind::DeferPop, 23, 4, 0, 0));
    let s = render(&mut agg);
    assert_eq!((depth_of(&s, 4), exact_of(&s, 4)), (Some(0), Some(true)));
    assert_eq!(s.totals.defer_records_live, 0);
    assert_eq!(s.totals.unmatched_pops, 0);
}

#[test]
fn a_running_goroutine_is_placed_on_its_chain_in_memory_by_its_next_event() {
    // Issue 12: spinning on top of 40 records, every read of it is taken
    // while it runs and races with its events, so only its records place it.
    let base: Vec<u64> = (1..=40).rev().collect(); // newest first
    for caught_on_top in [false, true] {
        let mut agg = Aggregator::new(WaitReasons::default());
        agg.set_probes_live(100);
        agg.apply_event(&ev(EventKind::DeferPop, 150, 6, 0));
        agg.apply_event(&ev(EventKind::DeferPush, 160, 6, 99));
        let mut read: Vec<u64> = base.clone();
        if caught_on_top {
            read.insert(0, 99);
        }
        agg.apply_scan(&snap(155, 170, vec![running_g(6, &read, 0x10_000)]));
        // Nothing names a record yet: the read is the estimate, not the
        // events alone (one push since attach).
        let s = render(&mut agg);
        assert_eq!((depth_of(&s, 6), exact_of(&s, 6)), (Some(read.len() as u64), Some(false)));
        let top_of_base = 0x10_000 + 0x100 * 40;
        if caught_on_top {
            // The loop's record popped: record 40 is on top again.
            agg.apply_event(&ev_on(EventKind::DeferPop, 180, 6, 0, top_of_base));
        } else {
            agg.apply_event(&ev_on(EventKind::DeferPop, 180, 6, 0, 0xdead_0000));
            assert_eq!(exact_of(&render(&mut agg), 6), Some(false), "a record pushed after the read places nothing");
            agg.apply_event(&ev_on(EventKind::DeferPush, 181, 6, 99, top_of_base));
            agg.apply_event(&ev_on(EventKind::DeferPop, 182, 6, 0, top_of_base));
        }
        let s = render(&mut agg);
        assert_eq!(depth_of(&s, 6), Some(40));
        assert_eq!(exact_of(&s, 6), Some(false), "placed by a read of a running goroutine");
        assert_eq!(s.goroutines[0].top_defer_site.as_ref().map(|s| s.line), Some(40));
        assert_eq!(s.totals.defer_records_live, 40);
        agg.apply_event(&ev_on(EventKind::DeferPush, 190, 6, 99, top_of_base));
        assert_eq!(depth_of(&render(&mut agg), 6), Some(41));
    }
}

#[test]
fn a_pop_in_flight_during_the_first_read_is_corrected_by_the_next_event() {
    // The pop's probe fired before the read began, the record left the
    // chain after the walk passed it: the read shows one record too many
    // and the event is older than the read.
    let mut agg = Aggregator::new(WaitReasons::default());
    agg.apply_scan(&snap(100, 110, vec![running_g(8, &[3, 2, 1], 0x20_000)]));
    agg.apply_event(&ev_on(EventKind::DeferPop, 90, 8, 0, 0x20_000 + 0x200));
    assert_eq!(depth_of(&render(&mut agg), 8), Some(3));
    agg.apply_event(&ev_on(EventKind::DeferPush, 200, 8, 4, 0x20_000 + 0x200));
    let s = render(&mut agg);
    assert_eq!(depth_of(&s, 8), Some(3));
    let chain: Vec<u32> = s.goroutines[0]
        .defer_chain()
        .unwrap_or_default()
        .iter()
        .filter_map(|e| e.site.as_ref().map(|s| s.line))
        .collect();
    assert_eq!(chain, [4, 2, 1]);
}

#[test]
fn a_push_in_flight_while_preempted_at_rest_is_counted_back_in() {
    // deferproc's probe fired, then newdefer's stack check preempted the
    // goroutine: parked (runnable) before linking its record, so the read
    // is consistent and older than the record, and newer than the event.
    let mut agg = Aggregator::new(WaitReasons::default());
    let read = ScannedGoroutine { status: GoroutineStatus::Runnable, ..running_g(7, &[2, 1], 0x30_000) };
    let read = ScannedGoroutine { consistent: true, ..read };
    agg.apply_scan(&snap(100, 110, vec![read.clone()]));
    agg.apply_event(&ev_on(EventKind::DeferPush, 90, 7, 3, 0x30_000 + 0x200));
    assert_eq!(depth_of(&render(&mut agg), 7), Some(2));
    // Served from the scanner's cache (no records): the anchor still holds.
    agg.apply_scan(&snap(150, 160, vec![ScannedGoroutine { records: Vec::new(), ..read }]));
    // It resumes, links the record and pops it: back onto the read's top.
    agg.apply_event(&ev_on(EventKind::DeferPop, 200, 7, 0, 0x30_000 + 0x200));
    let s = render(&mut agg);
    assert_eq!((depth_of(&s, 7), exact_of(&s, 7)), (Some(2), Some(true)));
    assert_eq!(s.totals.defer_records_live, 2);
    // Later pops go on as usual.
    agg.apply_event(&ev_on(EventKind::DeferPop, 210, 7, 0, 0x30_000 + 0x100));
    assert_eq!(depth_of(&render(&mut agg), 7), Some(1));
}

#[test]
fn a_running_goroutine_read_while_sampled_is_placed_by_its_first_event_after_the_re_attach() {
    // The busy-attach test under the default budget: the governor sheds the
    // probes of a hot loop spinning on 40 records, and later takes them back.
    let mut agg = Aggregator::new(WaitReasons::default());
    agg.set_coverage(Coverage { pushes: false, some_pushes: false, pops: false, goroutines: true }, 10);
    // Read while sampled, caught with its loop's record on top.
    let read: Vec<u64> = std::iter::once(99).chain((1..=40).rev()).collect();
    agg.apply_scan(&snap(20, 21, vec![running_g(6, &read, 0x10_000)]));
    assert_eq!(depth_of(&render(&mut agg), 6), Some(41));
    // Back to exact; the loop's record was popped in between, unseen: the
    // next push goes onto record 40 and says so.
    agg.set_coverage(Coverage::FULL, 100);
    let top_of_base = 0x10_000 + 0x100 * 40;
    agg.apply_event(&ev_on(EventKind::DeferPush, 101, 6, 99, top_of_base));
    let s = render(&mut agg);
    assert_eq!(depth_of(&s, 6), Some(41), "not 42: the stale read's top record is gone");
    assert_eq!(exact_of(&s, 6), Some(false));
    agg.apply_event(&ev_on(EventKind::DeferPop, 102, 6, 0, top_of_base));
    assert_eq!(depth_of(&render(&mut agg), 6), Some(40));
}

#[test]
fn records_popped_by_events_that_name_the_record_under_them_are_timed() {
    // A handler holding two heap records for 200 ms, on a goroutine read at
    // rest in between: every push and pop names the record below it.
    const MS: u64 = 1_000_000;
    let mut agg = Aggregator::new(WaitReasons::default());
    agg.apply_scan(&snap(0, MS, vec![mem_g(1, &[], true)]));
    for call in 0..3u64 {
        let t = 10 * MS + call * 300 * MS;
        agg.apply_event(&ev_on(EventKind::DeferPush, t, 1, 75, 0));
        agg.apply_event(&ev_on(EventKind::DeferPush, t + MS, 1, 75, 0xa000));
        // Asleep: a read at rest agrees with the events.
        let read = ScannedGoroutine {
            records: vec![RecordMark { addr: 0xb000, depth: 2 }, RecordMark { addr: 0xa000, depth: 1 }],
            ..mem_g(1, &[75, 75], true)
        };
        agg.apply_scan(&snap(t + 50 * MS, t + 51 * MS, vec![read]));
        agg.apply_event(&ev_on(EventKind::DeferPop, t + 201 * MS, 1, 0, 0xa000));
        agg.apply_event(&ev_on(EventKind::DeferPop, t + 201 * MS, 1, 0, 0));
    }
    let s = render_at(&mut agg, 2000 * MS, u64::MAX);
    let site = s.defer_sites.iter().find(|v| v.site.line == 75).expect("the handler's site");
    let l = site.lifetime_s.as_ref().expect("timed lifetimes");
    assert_eq!(l.count, 6);
    assert!((0.19..=0.21).contains(&l.p50), "p50 {}", l.p50);
    assert_eq!(site.oldest_live_s, None);
}
