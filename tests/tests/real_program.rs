//! deferscope against a real Go program nobody here wrote: Debian's
//! `prometheus` (stripped, Go 1.19). Its own `/debug/pprof/goroutine?debug=1`
//! is the ground truth for the goroutine count and for where the waiting
//! goroutines block.
use std::collections::BTreeMap;

use anyhow::{Context as _, bail};
use deferscope_integration::{prometheus::*, *};
use serde_json::Value;

/// Goroutines per blocking site (function, line) in a pprof debug=1 dump,
/// and the dump's total; goroutines serving the dump itself are left out.
struct Pprof {
    total: u64,
    by_site: BTreeMap<(String, u64), u64>,
    /// Goroutines of the request that produced the dump.
    own: u64,
}

fn is_machinery(function: &str) -> bool {
    // The same rule deferscope uses for `blocked_at`.
    ["runtime.", "sync.", "internal/", "sync/atomic."].iter().any(|p| function.starts_with(p))
}

fn parse_pprof(text: &str) -> anyhow::Result<Pprof> {
    let mut lines = text.lines();
    let header = lines.next().context("empty pprof dump")?;
    let total: u64 =
        header.strip_prefix("goroutine profile: total ").context("not a goroutine profile")?.trim().parse()?;
    let mut out = Pprof { total, by_site: BTreeMap::new(), own: 0 };
    for record in text.split("\n\n") {
        let mut rec_lines = record.lines().filter(|l| !l.starts_with("goroutine profile:"));
        let Some(head) = rec_lines.next() else {
            continue;
        };
        let Some((count, _)) = head.split_once(" @ ") else {
            continue;
        };
        let count: u64 = count.trim().parse()?;
        // "#\t0xb41476\tpkg.func+0xd6\t/path/file.go:235"
        let frames: Vec<(String, u64)> = rec_lines
            .filter_map(|l| {
                let mut f = l.split('\t').map(str::trim).filter(|s| !s.is_empty());
                let _hash = f.next()?;
                let _pc = f.next()?;
                let func = f.next()?.rsplit_once('+').map_or("", |(n, _)| n).to_owned();
                let line = f.next()?.rsplit_once(':')?.1.parse().ok()?;
                Some((func, line))
            })
            .collect();
        // The handler writing the dump, and its connection's background reader.
        let serving_dump = |f: &str| {
            f.starts_with("net/http/pprof.")
                || f.starts_with("runtime/pprof.")
                || f == "net/http.(*connReader).backgroundRead"
        };
        if frames.iter().any(|(f, _)| serving_dump(f)) {
            out.own += count;
            continue;
        }
        if let Some(site) = frames.into_iter().find(|(f, _)| !is_machinery(f)) {
            *out.by_site.entry(site).or_default() += count;
        }
    }
    Ok(out)
}

#[test]
#[ignore = "needs root and Debian's prometheus (cargo xtask test runs it)"]
fn goroutine_count_and_grouping_match_a_real_servers_own_profile() {
    require_root();
    if prometheus_bin().is_err() {
        panic!("Debian's prometheus is not installed: run the tests with `cargo xtask test`");
    }
    // A live server with its own work: it scrapes a loopback port where
    // nothing listens (failed scrapes are work too).
    let addr = free_loopback_addr().expect("port");
    let mut agreed = None;
    let prom = Prometheus::start(addr, "deferscope-real-program").expect("start prometheus");
    let pid = prom.pid();
    let mut tracer = Tracer::attach(pid, &[]).expect("attach");
    let first = tracer.wait_for("first snapshot", |_| Ok(())).expect("snapshot");
    assert_eq!(
        first["go_version"].as_str().map(|v| v.starts_with("go1.19")),
        Some(true),
        "Debian's prometheus is Go 1.19"
    );

    let mut last_diff = String::new();
    for _attempt in 0..40 {
        let before =
            parse_pprof(&http_get(prom.addr, "/debug/pprof/goroutine?debug=1").expect("pprof").body).expect("parse");
        // A snapshot taken after the first dump...
        let snapshot = tracer.wait_for("a snapshot", |_| Ok(())).expect("snapshot");
        let snapshot = tracer.wait_for("the next snapshot", |_| Ok(())).unwrap_or(snapshot);
        let after =
            parse_pprof(&http_get(prom.addr, "/debug/pprof/goroutine?debug=1").expect("pprof").body).expect("parse");
        // ...and before a second, identical one: the server was quiet.
        if before.by_site != after.by_site || before.total - before.own != after.total - after.own {
            last_diff = "the server's goroutines changed between the two dumps".into();
            continue;
        }
        match compare(&snapshot, &after) {
            Ok(()) => {
                agreed = Some(());
                break;
            }
            Err(e) => last_diff = e.to_string(),
        }
    }
    assert!(agreed.is_some(), "no quiet moment where deferscope agreed with pprof; last difference: {last_diff}");
    let (status, _) = tracer.interrupt().expect("stop deferscope");
    assert!(status.success(), "deferscope exit status {status}");
}

fn compare(snapshot: &Value, pprof: &Pprof) -> anyhow::Result<()> {
    let live = snapshot["totals"]["goroutines_live"].as_u64().context("goroutines_live")?;
    let expected = pprof.total - pprof.own;
    if live != expected {
        bail!("goroutines_live {live}, pprof total {} minus {} serving the dump = {expected}", pprof.total, pprof.own);
    }
    let mut ours: BTreeMap<(String, u64), u64> = BTreeMap::new();
    for g in snapshot["goroutines"].as_array().context("goroutines")? {
        if g["system"] == true || g["state"] != "waiting" {
            continue;
        }
        let site = &g["blocked_at"];
        let key = (site["function"].as_str().unwrap_or("?").to_owned(), site["line"].as_u64().unwrap_or(0));
        *ours.entry(key).or_default() += 1;
    }
    if ours.is_empty() {
        bail!("no waiting goroutines in deferscope's snapshot");
    }
    for (site, count) in &ours {
        let theirs = pprof.by_site.get(site).copied().unwrap_or(0);
        if theirs != *count {
            bail!(
                "{} goroutines blocked at {}:{} per deferscope, {theirs} per pprof\nours: {ours:?}\npprof: {:?}",
                count,
                site.0,
                site.1,
                pprof.by_site
            );
        }
    }
    Ok(())
}

/// Debian's idle prometheus: its lifecycle goroutines (run.Group actors,
/// the TSDB's and the web handler's run loops, ...) wait for a shutdown that
/// has not come. Past --leak-after they are stuck; they are never leaked,
/// since the channels they wait on are still held. The binary is stripped,
/// so this also covers finding the heap without symbols.
#[test]
#[ignore = "needs root and Debian's prometheus (cargo xtask test runs it)"]
fn an_idle_servers_lifecycle_goroutines_are_stuck_not_leaked() {
    require_root();
    if prometheus_bin().is_err() {
        panic!("Debian's prometheus is not installed: run the tests with `cargo xtask test`");
    }
    let addr = free_loopback_addr().expect("port");
    let prom = Prometheus::start(addr, "deferscope-idle-leaks").expect("start prometheus");
    let mut tracer = Tracer::attach(prom.pid(), &["--leak-after", "2s", "--leak-scan", "1s"]).expect("attach");
    let scans = |s: &Value| s["leak_scan"]["scans"].as_u64().unwrap_or(0);
    let snapshot = tracer
        .wait_for("stuck lifecycle goroutines, heap scanned several times", |s| {
            if s["leak_scan"]["heap_traced"] != true || scans(s) < 4 {
                return Err(format!("leak_scan {}", s["leak_scan"]));
            }
            if s["totals"]["goroutines_stuck"].as_u64().unwrap_or(0) < 5 {
                return Err(format!("only {} stuck", s["totals"]["goroutines_stuck"]));
            }
            Ok(())
        })
        .expect("stuck");
    let first_scans = scans(&snapshot);
    eprintln!(
        "   idle prometheus: {} stuck, {} leaked; scan {:.3}s, {} bytes read, {} objects marked",
        snapshot["totals"]["goroutines_stuck"],
        snapshot["totals"]["goroutines_leaked"],
        snapshot["leak_scan"]["duration_s"].as_f64().unwrap_or(-1.0),
        snapshot["leak_scan"]["bytes_read"],
        snapshot["leak_scan"]["objects_marked"]
    );
    // Over every snapshot until five more scans are in: never a leak.
    let mut leaked_seen = None;
    tracer
        .wait_for("five more scans", |s| {
            if s["totals"]["goroutines_leaked"] != 0 {
                leaked_seen.get_or_insert_with(|| s["leaks"].to_string());
            }
            if scans(s) < first_scans + 5 { Err("not yet".into()) } else { Ok(()) }
        })
        .expect("scans");
    assert_eq!(leaked_seen, None, "an idle prometheus reported leaked goroutines");
    assert_eq!(snapshot["totals"]["goroutines_leaked"], 0);
    let (status, _) = tracer.interrupt().expect("stop deferscope");
    assert!(status.success(), "deferscope exit status {status}");
}
