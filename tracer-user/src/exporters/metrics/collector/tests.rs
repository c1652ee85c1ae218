//! The exposition of fixture snapshots (`test_support`), through the crate's
//! text encoder.
#![allow(clippy::unwrap_used)]

use prometheus_client::registry::Registry;

use crate::{
    aggregate::model::Snapshot,
    exporters::metrics::{registry, render},
    feed::{self, FeedPublisher, Fleet},
    goruntime::GoroutineStatus,
    test_support::{app_leak as leak, app_site as site, exporter_snapshot as fixture},
};

/// A registry fed by a snapshot feed, like the server's.
fn setup(snapshot: Snapshot, top: usize) -> (FeedPublisher<Fleet>, Registry) {
    let (publisher, feed) = feed::channel();
    publisher.publish(Fleet::of(snapshot));
    (publisher, registry(feed, top))
}

fn lines(registry: &Registry) -> Vec<String> {
    render(registry).unwrap().lines().map(str::to_owned).collect()
}

/// The value of the sample line starting with `series` (name and labels).
fn value(lines: &[String], series: &str) -> Option<f64> {
    lines
        .iter()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')).map(|v| v.parse().unwrap()))
}

const L: &str = r#"pid="4242",exe="server""#;

#[test]
fn exposition_of_a_fixture_snapshot() {
    let (_tx, registry) = setup(fixture(), 2);
    let text = render(&registry).unwrap();
    let expected = format!(
        r#"# HELP deferscope_up 1 while deferscope is attached to the target, 0 once the target exited.
# TYPE deferscope_up gauge
deferscope_up{{{L}}} 1
# HELP deferscope_target The traced Go program.
# TYPE deferscope_target info
deferscope_target_info{{{L},go_version="go1.24.11",arch="x86_64"}} 1
# HELP deferscope_defers_pushed Defer records pushed while traced.
# TYPE deferscope_defers_pushed counter
deferscope_defers_pushed_total{{{L}}} 1500
# HELP deferscope_defers_popped Defer records popped while traced.
# TYPE deferscope_defers_popped counter
deferscope_defers_popped_total{{{L}}} 300
# HELP deferscope_defer_records_live Defer records on all goroutines' chains now.
# TYPE deferscope_defer_records_live gauge
deferscope_defer_records_live{{{L}}} 1203
# HELP deferscope_defer_depth_max Defer chain depth of the deepest goroutine now.
# TYPE deferscope_defer_depth_max gauge
deferscope_defer_depth_max{{{L}}} 1200
# HELP deferscope_goroutine_defer_depth Defer chain depth of each goroutine now (a distribution of the current goroutines, not cumulative).
# TYPE deferscope_goroutine_defer_depth histogram
deferscope_goroutine_defer_depth_sum{{{L}}} 1203.0
deferscope_goroutine_defer_depth_count{{{L}}} 3
deferscope_goroutine_defer_depth_bucket{{le="0.0",{L}}} 1
deferscope_goroutine_defer_depth_bucket{{le="1.0",{L}}} 1
deferscope_goroutine_defer_depth_bucket{{le="2.0",{L}}} 1
deferscope_goroutine_defer_depth_bucket{{le="4.0",{L}}} 2
deferscope_goroutine_defer_depth_bucket{{le="8.0",{L}}} 2
deferscope_goroutine_defer_depth_bucket{{le="16.0",{L}}} 2
deferscope_goroutine_defer_depth_bucket{{le="32.0",{L}}} 2
deferscope_goroutine_defer_depth_bucket{{le="64.0",{L}}} 2
deferscope_goroutine_defer_depth_bucket{{le="128.0",{L}}} 2
deferscope_goroutine_defer_depth_bucket{{le="256.0",{L}}} 2
deferscope_goroutine_defer_depth_bucket{{le="512.0",{L}}} 2
deferscope_goroutine_defer_depth_bucket{{le="1024.0",{L}}} 2
deferscope_goroutine_defer_depth_bucket{{le="2048.0",{L}}} 3
deferscope_goroutine_defer_depth_bucket{{le="4096.0",{L}}} 3
deferscope_goroutine_defer_depth_bucket{{le="8192.0",{L}}} 3
deferscope_goroutine_defer_depth_bucket{{le="16384.0",{L}}} 3
deferscope_goroutine_defer_depth_bucket{{le="32768.0",{L}}} 3
deferscope_goroutine_defer_depth_bucket{{le="65536.0",{L}}} 3
deferscope_goroutine_defer_depth_bucket{{le="+Inf",{L}}} 3
# HELP deferscope_defer_site_pushed Defer records pushed while traced, by defer statement (top sites by activity; the rest in site="other").
# TYPE deferscope_defer_site_pushed counter
deferscope_defer_site_pushed_total{{{L},site="main.deep /src/app/main.go:10"}} 1200
deferscope_defer_site_pushed_total{{{L},site="main.handler /src/app/main.go:20"}} 290
deferscope_defer_site_pushed_total{{{L},site="other"}} 10
# HELP deferscope_defer_site_live Defer records live now, by defer statement (top sites by activity; the rest in site="other").
# TYPE deferscope_defer_site_live gauge
deferscope_defer_site_live{{{L},site="main.deep /src/app/main.go:10"}} 1200
deferscope_defer_site_live{{{L},site="main.handler /src/app/main.go:20"}} 3
deferscope_defer_site_live{{{L},site="other"}} 0
# HELP deferscope_findings Findings now (defer_in_loop, long_held, fd_pressure, goroutine_leak), by kind.
# TYPE deferscope_findings gauge
deferscope_findings{{{L},kind="defer_in_loop"}} 0
deferscope_findings{{{L},kind="long_held"}} 0
deferscope_findings{{{L},kind="fd_pressure"}} 0
deferscope_findings{{{L},kind="goroutine_leak"}} 0
# HELP deferscope_goroutines Goroutines now (without the runtime's own), by state.
# TYPE deferscope_goroutines gauge
deferscope_goroutines{{{L},state="running"}} 1
deferscope_goroutines{{{L},state="runnable"}} 0
deferscope_goroutines{{{L},state="syscall"}} 0
deferscope_goroutines{{{L},state="waiting"}} 2
# HELP deferscope_goroutines_created Goroutines created while traced.
# TYPE deferscope_goroutines_created counter
deferscope_goroutines_created_total{{{L}}} 40
# HELP deferscope_goroutines_exited Goroutines exited while traced.
# TYPE deferscope_goroutines_exited counter
deferscope_goroutines_exited_total{{{L}}} 5
# HELP deferscope_goroutines_leaked Goroutines proven leaked: blocked past --leak-after on a primitive no running goroutine can reach, by story (top groups; the rest in "other").
# TYPE deferscope_goroutines_leaked gauge
deferscope_goroutines_leaked{{{L},wait_reason="chan receive",created_by="main.main /src/app/main.go:50",blocked_at="main.worker /src/app/main.go:60"}} 25
deferscope_goroutines_leaked{{{L},wait_reason="chan send",created_by="main.main /src/app/main.go:51",blocked_at="main.worker /src/app/main.go:61"}} 10
deferscope_goroutines_leaked{{{L},wait_reason="other",created_by="other",blocked_at="other"}} 1
# HELP deferscope_leak_groups_growing Leak groups that kept gaining members over the recent window (up to 5 minutes), by verdict.
# TYPE deferscope_leak_groups_growing gauge
deferscope_leak_groups_growing{{{L},verdict="leaked"}} 0
deferscope_leak_groups_growing{{{L},verdict="stuck"}} 0
# HELP deferscope_events_lost Probe events lost (ring buffer full).
# TYPE deferscope_events_lost counter
deferscope_events_lost_total{{{L}}} 2
# HELP deferscope_probe_hits Hits of each attached probe since attach.
# TYPE deferscope_probe_hits counter
deferscope_probe_hits_total{{{L},probe="runtime.deferproc"}} 1500
deferscope_probe_hits_total{{{L},probe="runtime.popDefer"}} 300
# HELP deferscope_probe_attached 1 while the probe is attached, 0 while the overhead governor keeps it detached.
# TYPE deferscope_probe_attached gauge
deferscope_probe_attached{{{L},probe="runtime.deferproc"}} 1
deferscope_probe_attached{{{L},probe="runtime.popDefer"}} 0
# HELP deferscope_overhead_estimate_ratio Estimated slowdown of the target caused by the probes (probe time / the target's own CPU time).
# TYPE deferscope_overhead_estimate_ratio gauge
deferscope_overhead_estimate_ratio{{{L}}} 0.004
# HELP deferscope_memory_read_seconds Duration of the last read of the target's goroutines from its memory.
# TYPE deferscope_memory_read_seconds gauge
# UNIT deferscope_memory_read_seconds seconds
deferscope_memory_read_seconds{{{L}}} 0.25
# EOF
"#
    );
    if text != expected {
        // Line by line, so a failure shows what differs.
        for (got, want) in text.lines().zip(expected.lines()) {
            assert_eq!(got, want);
        }
        assert_eq!(text, expected);
    }
}

#[test]
fn nothing_before_the_first_snapshot() {
    let (_publisher, feed) = feed::channel();
    assert_eq!(render(&registry(feed, 20)).unwrap(), "# EOF\n");
}

#[test]
fn up_is_zero_once_the_target_exited() {
    let mut snapshot = fixture();
    snapshot.target_exited = true;
    let (_tx, registry) = setup(snapshot, 20);
    assert_eq!(value(&lines(&registry), &format!("deferscope_up{{{L}}}")), Some(0.0));
}

#[test]
fn cardinality_is_capped_with_an_other_fold() {
    let mut snapshot = fixture();
    snapshot.defer_sites = (0..1000).map(|i| site("main.f", i, u64::from(i), 1)).collect();
    snapshot.leaks = (0..500).map(|i| leak("chan receive", Some(i), i, 2)).collect();
    let (_tx, registry) = setup(snapshot, 20);
    let lines = lines(&registry);
    let count = |prefix: &str| lines.iter().filter(|l| l.starts_with(prefix)).count();
    assert_eq!(count("deferscope_defer_site_pushed_total{"), 21);
    assert_eq!(count("deferscope_defer_site_live{"), 21);
    assert_eq!(count("deferscope_goroutines_leaked{"), 21);
    // The most active sites are kept: lines 999 down to 980.
    assert!(lines.iter().any(|l| l.contains(r#"site="main.f /src/app/main.go:999""#)));
    assert!(lines.iter().any(|l| l.contains(r#"site="main.f /src/app/main.go:980""#)));
    assert!(!lines.iter().any(|l| l.contains(r#"site="main.f /src/app/main.go:979""#)));
    // Nothing is lost in the fold.
    let other_pushed = value(&lines, &format!("deferscope_defer_site_pushed_total{{{L},site=\"other\"}}")).unwrap();
    assert_eq!(other_pushed, (0..980u64).sum::<u64>() as f64);
    let other_live = value(&lines, &format!("deferscope_defer_site_live{{{L},site=\"other\"}}")).unwrap();
    assert_eq!(other_live, 980.0);
    let leaked: f64 = lines
        .iter()
        .filter(|l| l.starts_with("deferscope_goroutines_leaked{"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum();
    assert_eq!(leaked, 1000.0);
    let other =
        format!(r#"deferscope_goroutines_leaked{{{L},wait_reason="other",created_by="other",blocked_at="other"}}"#);
    assert_eq!(value(&lines, &other), Some(480.0 * 2.0));
}

#[test]
fn no_other_series_when_everything_fits() {
    let (_tx, registry) = setup(fixture(), 20);
    let lines = lines(&registry);
    assert!(!lines.iter().any(|l| !l.starts_with('#') && l.contains(r#""other""#)), "{lines:#?}");
}

#[test]
fn vanished_groups_disappear() {
    let (tx, registry) = setup(fixture(), 20);
    assert!(lines(&registry).iter().any(|l| l.starts_with("deferscope_goroutines_leaked{")));
    let mut next = fixture();
    next.leaks.retain(|g| g.wait_reason == "chan send");
    next.defer_sites.retain(|s| s.site.line != 30);
    next.goroutines.retain(|g| g.state != GoroutineStatus::Running);
    next.probe_hits.pop();
    tx.publish(Fleet::of(next));
    let lines = lines(&registry);
    let leaks: Vec<&String> = lines.iter().filter(|l| l.starts_with("deferscope_goroutines_leaked{")).collect();
    assert_eq!(leaks.len(), 1, "{leaks:#?}");
    assert!(leaks[0].contains(r#"wait_reason="chan send""#));
    assert!(!lines.iter().any(|l| l.contains("main.go:30")));
    assert!(!lines.iter().any(|l| l.contains("runtime.popDefer")));
    // Core states stay, at zero.
    assert_eq!(value(&lines, &format!(r#"deferscope_goroutines{{{L},state="running"}}"#)), Some(0.0));
    // No leaks at all: no leak series.
    let mut none = fixture();
    none.leaks.clear();
    tx.publish(Fleet::of(none));
    assert!(!self::lines(&registry).iter().any(|l| l.starts_with("deferscope_goroutines_leaked")));
}

#[test]
fn counters_are_monotonic() {
    let (tx, registry) = setup(fixture(), 1);
    let first = lines(&registry);
    let other = format!(r#"deferscope_defer_site_pushed_total{{{L},site="other"}}"#);
    let handler = format!(r#"deferscope_defer_site_pushed_total{{{L},site="main.handler /src/app/main.go:20"}}"#);
    // Top 1: main.deep; handler (290) and rare (10) are folded.
    assert_eq!(value(&first, &other), Some(300.0));
    assert_eq!(value(&first, &handler), None);

    // main.handler becomes the most active site: it gets its own series
    // with its full count, and `other` keeps what it had (it never goes
    // down), growing only by rare's new pushes and deep's since it left.
    let mut next = fixture();
    next.defer_sites =
        vec![site("main.deep", 10, 1210, 1200), site("main.handler", 20, 5000, 3), site("main.rare", 30, 15, 0)];
    // A total that went backwards (say, a resync) does not make the counter do.
    next.totals.defers_pushed = 1400;
    next.probe_hits[0].hits = 1600;
    tx.publish(Fleet::of(next));
    let second = lines(&registry);
    assert_eq!(value(&second, &handler), Some(5000.0));
    assert_eq!(value(&second, &other), Some(300.0 + 5.0 + 10.0));
    assert_eq!(value(&second, &format!("deferscope_defers_pushed_total{{{L}}}")), Some(1500.0));
    assert_eq!(
        value(&second, &format!(r#"deferscope_probe_hits_total{{{L},probe="runtime.deferproc"}}"#)),
        Some(1600.0)
    );

    // Every counter sample of the second scrape is >= the first's.
    for line in first.iter().filter(|l| l.contains("_total{")) {
        let (series, v) = line.rsplit_once(' ').unwrap();
        if let Some(now) = value(&second, series) {
            assert!(now >= v.parse::<f64>().unwrap(), "{series} went from {v} to {now}");
        }
    }
}

#[test]
fn label_values_are_escaped() {
    let mut snapshot = fixture();
    snapshot.exe = "we\"ird\\name".into();
    let (_tx, registry) = setup(snapshot, 20);
    let text = render(&registry).unwrap();
    assert!(text.contains(r#"deferscope_up{pid="4242",exe="we\"ird\\name"} 1"#), "{text}");
}

#[tokio::test(flavor = "current_thread")]
async fn serves_metrics_and_an_index_over_http() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    let (publisher, rx) = feed::channel();
    publisher.publish(Fleet::of(fixture()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let server = crate::exporters::metrics::serve(addr, rx.clone(), 20, Default::default()).await.unwrap();

    // A second server on the same address fails up front.
    let err = crate::exporters::metrics::serve(addr, rx, 20, Default::default()).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);

    let get = |path: &'static str| async move {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes()).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        response
    };
    let metrics = get("/metrics").await;
    assert!(metrics.starts_with("HTTP/1.0 200"), "{metrics}");
    assert!(
        metrics
            .to_ascii_lowercase()
            .contains("content-type: application/openmetrics-text; version=1.0.0; charset=utf-8"),
        "{metrics}"
    );
    assert!(metrics.contains(&format!("deferscope_defer_depth_max{{{L}}} 1200\n")), "{metrics}");
    assert!(metrics.ends_with("# EOF\n"));
    let index = get("/").await;
    assert!(index.starts_with("HTTP/1.0 200") && index.contains("/metrics"), "{index}");
    assert!(get("/nope").await.starts_with("HTTP/1.0 404"));
    server.abort();
}

#[test]
fn deferred_calls_lifetimes_findings_and_process() {
    let (_tx, registry) = setup(crate::test_support::diagnosed_snapshot_at(2.0, 4000, 1250), 20);
    let lines = lines(&registry);
    let base = r#"pid="4242",exe="shop-server""#;
    let deep = "main.deepWorker /home/dev/shop/cmd/server/main.go:42";
    let handler = "main.handleOrders /home/dev/shop/cmd/server/orders.go:51";
    assert_eq!(
        value(
            &lines,
            &format!(r#"deferscope_defer_site_deferred{{{base},site="{deep}",deferred="os.(*File).Close"}}"#)
        ),
        Some(1.0),
        "{lines:#?}"
    );
    assert_eq!(
        value(&lines, &format!(r#"deferscope_defer_site_lifetime_seconds_count{{{base},site="{handler}"}}"#)),
        Some(120.0)
    );
    assert_eq!(
        value(
            &lines,
            &format!(r#"deferscope_defer_site_lifetime_seconds_bucket{{le="0.25",{base},site="{handler}"}}"#)
        ),
        Some(119.0)
    );
    assert_eq!(value(&lines, &format!(r#"deferscope_findings{{{base},kind="long_held"}}"#)), Some(0.0));
    assert_eq!(value(&lines, &format!(r#"deferscope_findings{{{base},kind="defer_in_loop"}}"#)), Some(1.0));
    assert_eq!(value(&lines, &format!("deferscope_process_open_fds{{{base}}}")), Some(1250.0));
    assert_eq!(value(&lines, &format!("deferscope_process_max_fds{{{base}}}")), Some(4096.0));
    assert_eq!(value(&lines, &format!("deferscope_process_threads{{{base}}}")), Some(9.0));
}
