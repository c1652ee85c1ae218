//! Findings: rules that turn the numbers into a diagnosis, each with the
//! evidence that triggered it. Conservative by design: a finding names a bug,
//! so a pattern that a correct program also shows (a handler holding three
//! records until it returns, a deep recursion with a record per frame) must
//! not trigger one.
use std::collections::VecDeque;

use rustc_hash::FxHashMap as HashMap;

use super::model::{DeferSiteView, Finding, FindingKind, LeakGroup, ProcessResources, Site, Verdict};
use crate::process::stack::MAX_FRAMES;

/// Records from one site on one goroutine before a defer-in-loop is
/// considered at all (a handler's handful never is).
const LOOP_MIN_RECORDS: u64 = 32;
/// Records per frame of the site's function: a recursion holds about one
/// per frame, a loop many.
const LOOP_RECORDS_PER_FRAME: u64 = 4;
/// Held this many, a pile is a finding even when it stopped growing.
const LOOP_ALWAYS_RECORDS: u64 = 1000;
/// Growth is measured over this window.
const GROWTH_WINDOW_NS: u64 = 10_000_000_000;
/// long_held: at least this many timed records, a median of at least this
/// long, and this many times the median of the other sites' medians.
const LONG_HELD_MIN_COUNT: u64 = 10;
const LONG_HELD_MIN_P50_S: f64 = 1.0;
const LONG_HELD_RATIO: f64 = 10.0;
/// fd_pressure: open files at this fraction of the soft limit.
const FD_PRESSURE_RATIO: f64 = 0.8;

/// One goroutine's records from one call site, as the aggregator sees them.
pub struct Holding {
    pub goid: u64,
    pub pc: u64,
    pub records: u64,
    /// Frames of the site's function on the goroutine's stack; `None` when
    /// the stack is unknown or was cut at [`MAX_FRAMES`].
    pub frames: Option<u64>,
    pub site: Option<Site>,
    pub deferred: Option<Site>,
}

/// Counts over time, for growth.
#[derive(Default)]
pub struct Findings {
    history: HashMap<(u64, u64), VecDeque<(u64, u64)>>,
}

/// Frames whose function is `function` in a symbolised stack; `None` if the
/// stack is empty or was cut short.
pub fn frames_of(stack: &[Site], physical_frames: usize, function: &str) -> Option<u64> {
    if stack.is_empty() || physical_frames >= MAX_FRAMES {
        return None;
    }
    Some(stack.iter().filter(|s| &*s.function == function).count() as u64)
}

impl Findings {
    /// `defer_in_loop`: one frame holding many records from one site.
    pub fn defer_in_loop(&mut self, holdings: Vec<Holding>, now_ns: u64) -> Vec<Finding> {
        let seen: rustc_hash::FxHashSet<(u64, u64)> = holdings.iter().map(|h| (h.goid, h.pc)).collect();
        self.history.retain(|key, _| seen.contains(key));
        let mut out = Vec::new();
        for h in holdings {
            let history = self.history.entry((h.goid, h.pc)).or_default();
            history.push_back((now_ns, h.records));
            while history.front().is_some_and(|&(t, _)| now_ns.saturating_sub(t) > GROWTH_WINDOW_NS) {
                history.pop_front();
            }
            let growth_per_s = match history.front() {
                Some(&(t, n)) if now_ns > t => (h.records as f64 - n as f64) / ((now_ns - t) as f64 / 1e9),
                _ => 0.0,
            };
            let Some(frames) = h.frames else { continue };
            if h.records < LOOP_MIN_RECORDS || h.records < LOOP_RECORDS_PER_FRAME * frames.max(1) {
                continue;
            }
            if growth_per_s <= 0.0 && h.records < LOOP_ALWAYS_RECORDS {
                continue;
            }
            let site = h.site.as_ref().map_or_else(|| format!("{:#x}", h.pc), short_site);
            let calls = h.deferred.as_ref().map_or_else(|| "deferred".to_owned(), |d| format!("{}", d.function));
            let message = format!(
                "{site} holds {} pending {calls} calls on goroutine {} ({:+.1}/s): a defer in a loop runs only \
                 when the function returns",
                h.records, h.goid, growth_per_s
            );
            out.push(Finding {
                kind: FindingKind::DeferInLoop,
                site: h.site,
                goroutine: Some(h.goid),
                records: h.records,
                growth_per_s,
                deferred: h.deferred,
                message,
            });
        }
        out.sort_by_key(|f| std::cmp::Reverse(f.records));
        out
    }
}

fn short_site(s: &Site) -> String {
    let file = s.file.rsplit('/').next().unwrap_or(&s.file);
    format!("{file}:{} {}", s.line, s.function)
}

/// Whether `function` is in Go's standard library: its package path's first
/// element has no dot (`net/http`, `context`), unlike a module's
/// (`github.com/…`), and it is not `main`. The standard library's long-held
/// records are by design (`net/http.(*conn).serve` holds its defers for a
/// keep-alive connection's life); a module without a dot in its path is
/// taken for the standard library too, so it misses `long_held`, never
/// gains one.
fn is_standard_library(function: &str) -> bool {
    let after_slash = function.rfind('/').map_or(0, |i| i + 1);
    let package_end = function[after_slash..].find('.').map_or(function.len(), |i| after_slash + i);
    let package = &function[..package_end];
    let first = package.split('/').next().unwrap_or(package);
    package != "main" && !first.contains('.')
}

/// `long_held`: a site whose records live far longer than the others'.
pub fn long_held(sites: &[DeferSiteView]) -> Vec<Finding> {
    let timed: Vec<(&DeferSiteView, f64)> = sites
        .iter()
        .filter_map(|s| s.lifetime_s.as_ref().filter(|l| l.count >= LONG_HELD_MIN_COUNT).map(|l| (s, l.p50)))
        .collect();
    let mut out = Vec::new();
    for (i, &(site, p50)) in timed.iter().enumerate() {
        let mut others: Vec<f64> = timed.iter().enumerate().filter(|&(j, _)| j != i).map(|(_, &(_, p))| p).collect();
        if others.is_empty() || p50 < LONG_HELD_MIN_P50_S || is_standard_library(&site.site.function) {
            continue;
        }
        others.sort_by(f64::total_cmp);
        let median = others[others.len() / 2];
        if p50 < LONG_HELD_RATIO * median {
            continue;
        }
        let calls = site.deferred.as_ref().map_or_else(|| "its deferred calls".to_owned(), |d| d.function.to_string());
        out.push(Finding {
            kind: FindingKind::LongHeld,
            site: Some(site.site.clone()),
            goroutine: None,
            records: site.live,
            growth_per_s: 0.0,
            deferred: site.deferred.clone(),
            message: format!(
                "{} keeps {calls} pending for {p50:.1}s (median), {:.0}× the other sites: whatever it releases is \
                 held that long",
                short_site(&site.site),
                p50 / median.max(1e-6)
            ),
        });
    }
    out
}

/// `fd_pressure`: open files near the limit while a defer-in-loop site holds
/// `Close` calls.
pub fn fd_pressure(process: Option<&ProcessResources>, loops: &[Finding]) -> Option<Finding> {
    let process = process?;
    let (open, limit) = (process.open_fds?, process.fd_limit?);
    if limit == 0 || (open as f64) < FD_PRESSURE_RATIO * limit as f64 {
        return None;
    }
    let closing = loops.iter().find(|f| f.deferred.as_ref().is_some_and(|d| d.function.ends_with("Close")))?;
    Some(Finding {
        kind: FindingKind::FdPressure,
        site: closing.site.clone(),
        goroutine: closing.goroutine,
        records: closing.records,
        growth_per_s: closing.growth_per_s,
        deferred: closing.deferred.clone(),
        message: format!(
            "{open} of {limit} file descriptors open while {} holds {} pending {} calls",
            closing.site.as_ref().map_or_else(String::new, short_site),
            closing.records,
            closing.deferred.as_ref().map_or("Close", |d| &d.function),
        ),
    })
}

/// The leak issue's verdicts as findings: one per leaked group.
pub fn leaks(groups: &[LeakGroup]) -> Vec<Finding> {
    groups
        .iter()
        .filter(|g| g.verdict == Verdict::Leaked)
        .map(|g| Finding {
            kind: FindingKind::GoroutineLeak,
            site: g.blocked_at.clone(),
            goroutine: g.sample_goids.first().copied(),
            records: g.count,
            growth_per_s: g.growth_per_min / 60.0,
            deferred: None,
            message: format!(
                "{} goroutines leaked on {}{}",
                g.count,
                g.wait_reason,
                g.blocked_at.as_ref().map_or_else(String::new, |s| format!(" at {}", short_site(s)))
            ),
        })
        .collect()
}

impl super::Aggregator {
    /// Every finding of the current state (`sites`, `leaks`: as rendered).
    pub(super) fn findings(
        &mut self,
        sym: &mut dyn super::Symbolizer,
        inputs: &super::SnapshotInputs,
        sites: &[DeferSiteView],
        leak_groups: &[LeakGroup],
    ) -> Vec<Finding> {
        let mut holdings = Vec::new();
        for (&goid, g) in &self.goroutines {
            let mut counts: HashMap<u64, u64> = HashMap::default();
            for &pc in &g.sites {
                *counts.entry(pc).or_default() += 1;
            }
            let mut stack: Option<Vec<Site>> = None;
            for (pc, records) in counts.into_iter().filter(|&(_, n)| n >= LOOP_MIN_RECORDS) {
                let site = sym.call_site(pc);
                let stack = stack.get_or_insert_with(|| {
                    g.stack.iter().enumerate().flat_map(|(i, &frame)| sym.frames(frame, i > 0)).collect()
                });
                let frames = site.as_ref().and_then(|s| frames_of(stack, g.stack.len(), &s.function));
                let deferred = self.deferred_code.get(&pc).and_then(|&code| sym.deferred_call(code));
                holdings.push(Holding { goid, pc, records, frames, site, deferred });
            }
        }
        let mut out = self.findings.defer_in_loop(holdings, inputs.now_ns);
        if let Some(f) = fd_pressure(inputs.process.as_ref(), &out) {
            out.push(f);
        }
        out.extend(long_held(sites));
        out.extend(leaks(leak_groups));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn holding(records: u64, frames: Option<u64>) -> Holding {
        Holding {
            goid: 8,
            pc: 0x40,
            records,
            frames,
            site: Some(Site::new("main.batchWorker", "/m/main.go", 39)),
            deferred: Some(Site::new("os.(*File).Close", "/go/os/file_posix.go", 20)),
        }
    }

    #[test]
    fn a_growing_pile_in_one_frame_is_a_defer_in_loop() {
        let mut f = Findings::default();
        assert!(f.defer_in_loop(vec![holding(100, Some(1))], 0).is_empty(), "growth not known yet");
        let found = f.defer_in_loop(vec![holding(150, Some(1))], 5 * S);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].kind, FindingKind::DeferInLoop);
        assert!((found[0].growth_per_s - 10.0).abs() < 1e-9);
        assert!(found[0].message.contains("os.(*File).Close"), "{}", found[0].message);
    }

    #[test]
    fn recursions_handlers_and_unknown_stacks_are_not() {
        let mut f = Findings::default();
        for (t, records) in [(0, 60), (S, 100)] {
            // One record per frame: a recursion.
            assert!(f.defer_in_loop(vec![holding(records, Some(records))], t).is_empty());
        }
        let mut f = Findings::default();
        for (t, records) in [(0, 2), (S, 3)] {
            assert!(f.defer_in_loop(vec![holding(records, Some(1))], t).is_empty(), "a handler's few");
        }
        let mut f = Findings::default();
        for (t, records) in [(0, 100), (S, 200)] {
            assert!(f.defer_in_loop(vec![holding(records, None)], t).is_empty(), "stack unknown");
        }
        let mut f = Findings::default();
        for t in [0, S] {
            assert!(f.defer_in_loop(vec![holding(100, Some(1))], t).is_empty(), "not growing");
        }
        assert_eq!(f.defer_in_loop(vec![holding(1000, Some(1))], 2 * S).len(), 1, "a big pile anyway");
    }

    #[test]
    fn fd_pressure_needs_close_calls_and_a_full_table() {
        let mut f = Findings::default();
        f.defer_in_loop(vec![holding(100, Some(1))], 0);
        let loops = f.defer_in_loop(vec![holding(900, Some(1))], S);
        let full = ProcessResources { open_fds: Some(950), fd_limit: Some(1024), rss_bytes: None, threads: None };
        assert_eq!(fd_pressure(Some(&full), &loops).map(|f| f.kind), Some(FindingKind::FdPressure));
        let roomy = ProcessResources { open_fds: Some(100), ..full.clone() };
        assert!(fd_pressure(Some(&roomy), &loops).is_none());
        assert!(fd_pressure(Some(&full), &[]).is_none());
        assert!(fd_pressure(None, &loops).is_none());
    }

    #[test]
    fn standard_library_functions_by_package_path() {
        assert!(is_standard_library("net/http.(*conn).serve"));
        assert!(is_standard_library("context.WithCancel.func1"));
        assert!(!is_standard_library("main.handle"));
        assert!(!is_standard_library("main.(*conn).release"));
        assert!(!is_standard_library("github.com/acme/shop/cart.(*Cart).Close"));
        assert!(!is_standard_library("deferscope.test/testutil.Report"));
    }

    #[test]
    fn frames_of_a_cut_stack_are_unknown() {
        let s = Site::new("main.rec", "/m.go", 3);
        assert_eq!(frames_of(&[s.clone(), s.clone()], 2, "main.rec"), Some(2));
        assert_eq!(frames_of(&[], 0, "main.rec"), None);
        assert_eq!(frames_of(&[s], MAX_FRAMES, "main.rec"), None);
    }
}
