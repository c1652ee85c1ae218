//! `--json`: one snapshot object per line on stdout.
use std::io::{self, Write};

use crate::aggregate::model::Snapshot;

pub(crate) fn write_line(out: &mut impl Write, snapshot: &Snapshot) -> io::Result<()> {
    serde_json::to_writer(&mut *out, snapshot).map_err(io::Error::other)?;
    out.write_all(b"\n")?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::model::{GoroutineView, Mode, Overhead, ProbeHits, ProbeState, Site, Totals};

    #[test]
    fn schema_names_are_stable() {
        let snapshot = Snapshot {
            time: "2026-11-22T00:00:00Z".into(),
            pid: 7,
            exe: "demo".into(),
            go_version: "go1.24.11".into(),
            arch: "x86_64".into(),
            probes: vec!["runtime.deferproc".into()],
            totals: Totals::default(),
            goroutines: vec![GoroutineView {
                goid: 1,
                state: crate::goruntime::GoroutineStatus::Waiting,
                wait_reason: Some("chan receive".into()),
                defer_depth: 3,
                max_defer_depth: 10,
                top_defer_site: Some(Site::new("main.work", "/a/main.go", 42)),
                depth_exact: true,
                ..Default::default()
            }],
            defer_sites: vec![],
            leaks: vec![crate::aggregate::model::LeakGroup {
                verdict: crate::aggregate::model::Verdict::Leaked,
                created_by: None,
                blocked_at: None,
                wait_reason: "chan send".into(),
                count: 300,
                oldest_blocked_s: 61.2,
                sample_goids: vec![20],
                growing: false,
                growth_per_min: 0.0,
            }],
            leak_scan: Some(crate::aggregate::model::LeakScanView::default()),
            leak_after_s: 30.0,
            probe_hits: vec![ProbeHits { function: "runtime.deferproc".into(), hits: 3, state: ProbeState::Detached }],
            trace_uptime_s: 1.0,
            memory_read_s: 0.01,
            target_exited: false,
            mode: Mode::Sampled,
            overhead: Some(Overhead::default()),
            estimated: vec!["defers_pushed".into()],
        };
        let mut buf = Vec::new();
        write_line(&mut buf, &snapshot).expect("write");
        let text = String::from_utf8(buf).expect("utf8");
        assert!(text.ends_with('\n') && text.matches('\n').count() == 1);
        let v: serde_json::Value = serde_json::from_str(&text).expect("json");
        for key in ["time", "pid", "go_version", "arch", "probes", "totals", "goroutines", "defer_sites"] {
            assert!(v.get(key).is_some(), "missing {key}");
        }
        assert_eq!(v["mode"], "sampled");
        assert_eq!(v["probe_hits"][0]["state"], "detached");
        assert_eq!(v["estimated"][0], "defers_pushed");
        for key in ["budget_ratio", "estimate_ratio", "cost_per_hit_ns", "switches"] {
            assert!(v["overhead"].get(key).is_some(), "missing overhead.{key}");
        }
        for key in [
            "defers_pushed",
            "defers_popped",
            "goroutines_created",
            "goroutines_exited",
            "goroutines_live",
            "events",
            "events_lost",
            "goroutines_leaked",
            "goroutines_stuck",
        ] {
            assert!(v["totals"].get(key).is_some(), "missing totals.{key}");
        }
        let g = &v["goroutines"][0];
        assert_eq!(g["top_defer_site"]["line"], 42);
        assert_eq!(g["wait_reason"], "chan receive");
        assert!(g["created_by"].is_null());
        assert_eq!(g["max_defer_depth"], 10);
        assert!(g.get("stack").is_none(), "stacks are only serialised when asked for");
        for key in ["leaked", "stuck", "leak_reason"] {
            assert!(g.get(key).is_some(), "missing goroutines[].{key}");
        }
        let l = &v["leaks"][0];
        assert_eq!(l["verdict"], "leaked");
        for key in ["created_by", "blocked_at", "wait_reason", "count", "oldest_blocked_s", "growing", "growth_per_min"]
        {
            assert!(l.get(key).is_some(), "missing leaks[].{key}");
        }
        for key in ["last_s_ago", "duration_s", "bytes_read", "objects_marked"] {
            assert!(v["leak_scan"].get(key).is_some(), "missing leak_scan.{key}");
        }
    }
}
