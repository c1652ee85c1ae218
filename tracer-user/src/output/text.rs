//! The plain text view: a compact live table for terminals (and a readable
//! log when stdout is not one). The full dashboard is the TUI.
use std::{
    fmt::Write as _,
    io::{self, Write},
};

use crate::aggregate::model::{Site, Snapshot};

/// `function dir/file.go:line`, or `-` when unknown.
fn site_text(site: Option<&Site>) -> String {
    site.map_or_else(|| "-".to_owned(), |s| position_text(&s.function, &s.file, s.line))
}

fn position_text(function: &str, file: &str, line: u32) -> String {
    format!("{function} {}:{line}", short_file(file))
}

/// Renders a snapshot as text, fitting `rows` goroutine lines.
pub(crate) fn render(snapshot: &Snapshot, rows: usize) -> String {
    let t = &snapshot.totals;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "deferscope  pid {} ({})  {}  {}  {}",
        snapshot.pid, snapshot.exe, snapshot.go_version, snapshot.arch, snapshot.time
    );
    let _ = writeln!(
        s,
        "goroutines {} live ({} total, {} leaked, {} stuck)  created {}  exited {}  defers pushed {}  popped {}  live records {}  events {}  lost {}",
        t.goroutines_live,
        t.goroutines_total,
        t.goroutines_leaked,
        t.goroutines_stuck,
        t.goroutines_created,
        t.goroutines_exited,
        t.defers_pushed,
        t.defers_popped,
        t.defer_records_live,
        t.events,
        t.events_lost
    );
    let _ = writeln!(s);
    let _ = writeln!(s, "{:>8}  {:<10} {:<22} {:>8} {:>8}  NEWEST DEFER", "GOID", "STATE", "WAIT", "DEPTH", "MAX");
    for g in snapshot.goroutines.iter().filter(|g| !g.system).take(rows) {
        let _ = writeln!(
            s,
            "{:>8}  {:<10} {:<22} {:>8} {:>8}  {}",
            g.goid,
            g.state,
            g.wait_reason.as_deref().unwrap_or(""),
            g.defer_depth,
            g.max_defer_depth,
            if g.defer_depth == 0 { String::new() } else { site_text(g.top_defer_site.as_ref()) }
        );
    }
    let _ = writeln!(s);
    let _ = writeln!(s, "{:>10} {:>10}  DEFER SITE", "LIVE", "PUSHED");
    for site in snapshot.defer_sites.iter().take(10) {
        let _ = writeln!(
            s,
            "{:>10} {:>10}  {}",
            site.live,
            site.pushed,
            position_text(&site.site.function, &site.site.file, site.site.line)
        );
    }
    let _ = writeln!(s);
    if snapshot.leaks.is_empty() {
        let _ = writeln!(
            s,
            "no leaked or stuck goroutines (blocked on a channel, select or lock for {:.0}s or more)",
            snapshot.leak_after_s
        );
    } else {
        let _ = writeln!(
            s,
            "{:>7} {:<7} {:>9}  {:<22} {:<45} CREATED BY",
            "COUNT", "VERDICT", "OLDEST", "WAIT", "BLOCKED AT"
        );
        for leak in snapshot.leaks.iter().take(10) {
            let _ = writeln!(
                s,
                "{:>7} {:<7} {:>8.0}s  {:<22} {:<45} {}",
                leak.count,
                leak.verdict.as_str(),
                leak.oldest_blocked_s,
                leak.wait_reason,
                site_text(leak.blocked_at.as_ref()),
                site_text(leak.created_by.as_ref())
            );
        }
    }
    if snapshot.target_exited {
        let _ = writeln!(s, "\ntarget process {} exited", snapshot.pid);
    }
    s
}

fn short_file(path: &str) -> &str {
    // Last two components are enough to recognise a Go source file.
    let mut idx = path.len();
    for _ in 0..2 {
        match path[..idx].rfind('/') {
            Some(i) => idx = i,
            None => return path,
        }
    }
    &path[idx + 1..]
}

/// Redraws the terminal in place (clear + home) or appends when not a tty.
pub(crate) fn show(out: &mut impl Write, snapshot: &Snapshot, is_tty: bool, rows: usize) -> io::Result<()> {
    if is_tty {
        out.write_all(b"\x1b[H\x1b[2J")?;
    }
    out.write_all(render(snapshot, rows).as_bytes())?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_goroutines_sites_and_leaks() {
        insta::assert_snapshot!(render(&crate::test_support::snapshot(), 8));
    }

    #[test]
    fn short_file_keeps_two_components() {
        assert_eq!(short_file("/a/b/c/main.go"), "c/main.go");
        assert_eq!(short_file("main.go"), "main.go");
        assert_eq!(short_file("/main.go"), "/main.go");
    }
}
