//! `--json`: one snapshot object per line on stdout.
use std::io::{self, Write};

use crate::aggregate::model::Snapshot;

pub(crate) fn write_line(out: &mut impl Write, snapshot: &Snapshot) -> io::Result<()> {
    // serde_json writes a field at a time; stdout's line buffer would search
    // every piece for a newline (a third of deferscope's CPU with 100k
    // goroutines listed).
    let mut out = io::BufWriter::with_capacity(64 << 10, out);
    serde_json::to_writer(&mut out, snapshot).map_err(io::Error::other)?;
    out.write_all(b"\n")?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support;

    #[test]
    fn schema_names_are_stable() {
        let snapshot = test_support::one_goroutine();
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
