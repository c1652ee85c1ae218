//! The dashboard's state: the snapshot on screen, what is selected, sorted,
//! filtered, paused, and the history behind the charts. Pure: no terminal,
//! unit-tested directly.
//!
//! - [`filter`]: the `/` filter and its matcher;
//! - [`history`]: rates over successive snapshots and the chart series;
//! - [`panel`]: the three list panels, each a [`PanelState`] (sort, rows,
//!   cursor, selection).
//!
//! Cost model: everything that touches every goroutine (filter, sort, rates,
//! counts) runs once per snapshot or per filter/sort change, in
//! [`App::refresh`]; a frame only reads the visible rows. The snapshot itself
//! is shared (`Arc`), never copied: the views are index lists into it.
use std::{sync::Arc, time::Duration};

use crate::{
    aggregate::model::{DeferSiteView, GoroutineView, LeakGroup, Snapshot},
    goruntime::GoroutineStatus,
};

mod filter;
mod history;
mod panel;

pub use filter::{Filter, Matcher};
pub use history::{History, Series};
use panel::Focused;
pub use panel::{GoroutineSort, LeakKey, LeakSort, Panel, PanelState, SiteSort, SortOrder};

/// What the header shows about how deferscope runs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Settings {
    pub pid: u32,
    pub interval: Duration,
    pub leak_after: Duration,
    pub metrics_addr: Option<std::net::SocketAddr>,
    pub top: Option<usize>,
    /// This dashboard was opened from the process list (Esc goes back).
    pub back_to_processes: bool,
}

impl Settings {
    pub fn from_options(options: &crate::cli::Options) -> Self {
        Self {
            pid: options.pid.first().copied().unwrap_or(0),
            interval: options.interval,
            leak_after: options.leak_after,
            metrics_addr: options.metrics_addr,
            top: options.top,
            back_to_processes: false,
        }
    }
}

/// Goroutine counts by state, for the header.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StateCounts {
    pub running: u64,
    pub runnable: u64,
    pub waiting: u64,
    pub other: u64,
    pub system: u64,
}

#[derive(Clone, Debug, PartialEq)]
pub enum DetailSubject {
    Goroutine(u64),
    Leak(LeakKey),
}

/// The detail view: what it is about and the latest data on it (a copy of
/// one goroutine or group, so it survives the goroutine's exit).
#[derive(Clone, Debug)]
pub struct Detail {
    pub subject: DetailSubject,
    pub goroutine: Option<GoroutineView>,
    pub group: Option<LeakGroup>,
    /// No longer in the newest snapshot (exited, or no longer leaked).
    pub gone: bool,
    pub scroll: usize,
    /// Lines the last frame had room for.
    pub height: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overlay {
    None,
    Help,
    Detail,
}

pub struct App {
    pub settings: Settings,
    snapshot: Option<Arc<Snapshot>>,
    /// Received while paused; shown on resume.
    pending: Option<Arc<Snapshot>>,
    pub paused: bool,
    /// The session ended (the feed is closed).
    pub feed_closed: bool,
    pub focus: Panel,
    pub overlay: Overlay,
    pub filter: Filter,
    matcher: Option<Matcher>,
    pub goroutines: PanelState<GoroutineSort, GoroutineView>,
    pub leaks: PanelState<LeakSort, LeakGroup>,
    pub sites: PanelState<SiteSort, DeferSiteView>,
    pub history: History,
    pub states: StateCounts,
    /// Deepest chain of the snapshot (scale of the depth bars).
    pub max_depth: u64,
    pub detail: Option<Detail>,
    /// Snapshots received (for the header).
    pub received: u64,
    /// The filter changed since the views were computed.
    stale: bool,
}

/// The indices of the `items` that the filter (if any) keeps.
fn matching<T>(items: &[T], matcher: Option<&Matcher>, keep: impl Fn(&Matcher, &T) -> bool) -> Vec<u32> {
    (0..items.len() as u32).filter(|&i| matcher.is_none_or(|m| keep(m, &items[i as usize]))).collect()
}

impl App {
    pub fn new(settings: Settings) -> Self {
        Self {
            settings,
            snapshot: None,
            pending: None,
            paused: false,
            feed_closed: false,
            focus: Panel::Goroutines,
            overlay: Overlay::None,
            filter: Filter::default(),
            matcher: None,
            goroutines: PanelState::new(GoroutineSort::Depth),
            leaks: PanelState::new(LeakSort::Count),
            sites: PanelState::new(SiteSort::Live),
            history: History::default(),
            states: StateCounts::default(),
            max_depth: 0,
            detail: None,
            received: 0,
            stale: false,
        }
    }

    pub fn snapshot(&self) -> Option<&Snapshot> {
        self.snapshot.as_deref()
    }

    /// The shown snapshot, shared: for drawing while `self` is borrowed
    /// mutably.
    pub fn shared_snapshot(&self) -> Option<Arc<Snapshot>> {
        self.snapshot.clone()
    }

    pub fn target_exited(&self) -> bool {
        self.snapshot.as_ref().is_some_and(|s| s.target_exited)
            || self.pending.as_ref().is_some_and(|s| s.target_exited)
    }

    /// A new snapshot from the session. While paused it waits, unless it is
    /// the last one (the target exited): that one always shows.
    pub fn on_snapshot(&mut self, snapshot: Arc<Snapshot>) {
        self.received += 1;
        if self.paused && !snapshot.target_exited {
            self.pending = Some(snapshot);
            return;
        }
        self.pending = None;
        self.apply(snapshot);
    }

    pub fn toggle_pause(&mut self) {
        self.paused = !self.paused;
        if !self.paused
            && let Some(s) = self.pending.take()
        {
            self.apply(s);
        }
    }

    fn apply(&mut self, snapshot: Arc<Snapshot>) {
        self.history.record(&snapshot);

        let mut states = StateCounts::default();
        let mut max_depth = 0;
        for g in &snapshot.goroutines {
            max_depth = max_depth.max(g.defer_depth);
            if g.system {
                states.system += 1;
                continue;
            }
            match g.state {
                GoroutineStatus::Running => states.running += 1,
                GoroutineStatus::Runnable => states.runnable += 1,
                GoroutineStatus::Waiting => states.waiting += 1,
                _ => states.other += 1,
            }
        }
        self.states = states;
        self.max_depth = max_depth;
        self.snapshot = Some(snapshot);
        self.refresh();
        self.refresh_detail();
    }

    /// Recomputes the filtered, sorted views (after a new snapshot, a sort
    /// or filter change) and keeps each selection on the same item.
    pub fn refresh(&mut self) {
        self.stale = false;
        let Some(snapshot) = self.snapshot.clone() else {
            return;
        };
        let m = self.matcher.as_ref();

        let gs = &snapshot.goroutines;
        let mut rows = matching(gs, m, Matcher::goroutine);
        self.goroutines.sort.sort(&mut rows, gs);
        self.goroutines.set_rows(rows, gs);

        let ls = &snapshot.leaks;
        let mut rows = matching(ls, m, Matcher::leak);
        self.leaks.sort.sort(&mut rows, ls);
        self.leaks.set_rows(rows, ls);

        let ss = &snapshot.defer_sites;
        let mut rows = matching(ss, m, |m, s| m.site(&s.site));
        let history = &self.history;
        self.sites.sort.sort(&mut rows, ss, |i| history.site_rate(i).unwrap_or(0.0));
        self.sites.set_rows(rows, ss);
        self.remember_selection();
    }

    fn refresh_detail(&mut self) {
        let Some(snapshot) = self.snapshot.clone() else {
            return;
        };
        let Some(detail) = &mut self.detail else {
            return;
        };
        match &detail.subject {
            DetailSubject::Goroutine(goid) => match snapshot.goroutines.iter().find(|g| g.goid == *goid) {
                Some(g) => {
                    detail.goroutine = Some(g.clone());
                    detail.gone = false;
                }
                None => detail.gone = true,
            },
            DetailSubject::Leak(key) => match snapshot.leaks.iter().find(|l| key.matches(l)) {
                Some(l) => {
                    detail.goroutine = snapshot.goroutines.iter().find(|g| l.sample_goids.contains(&g.goid)).cloned();
                    detail.group = Some(l.clone());
                    detail.gone = false;
                }
                None => detail.gone = true,
            },
        }
    }

    fn remember_selection(&mut self) {
        let Some(snapshot) = &self.snapshot else {
            return;
        };
        self.goroutines.remember(&snapshot.goroutines);
        self.leaks.remember(&snapshot.leaks);
        self.sites.remember(&snapshot.defer_sites);
    }

    /// The panel with the focus.
    fn focused(&mut self) -> &mut dyn Focused {
        match self.focus {
            Panel::Goroutines => &mut self.goroutines,
            Panel::Leaks => &mut self.leaks,
            Panel::Sites => &mut self.sites,
        }
    }

    /// Moves the selection of the focused panel (or scrolls the detail).
    pub fn move_by(&mut self, delta: isize) {
        if self.overlay == Overlay::Detail {
            if let Some(d) = &mut self.detail {
                d.scroll = (d.scroll as isize + delta).max(0) as usize;
            }
            return;
        }
        self.focused().move_by(delta);
        self.remember_selection();
    }

    pub fn page(&mut self, pages: isize) {
        let page = match self.overlay {
            Overlay::Detail => self.detail.as_ref().map_or(1, |d| d.height.max(1) as isize),
            _ => self.focused().page(),
        };
        self.move_by(pages * page);
    }

    pub fn top(&mut self) {
        self.move_by(isize::MIN / 2);
    }

    pub fn bottom(&mut self) {
        if self.overlay == Overlay::Detail {
            if let Some(d) = &mut self.detail {
                d.scroll = usize::MAX / 2; // clamped when drawn
            }
            return;
        }
        self.move_by(isize::MAX / 2);
    }

    pub fn cycle_sort(&mut self) {
        self.focused().cycle_sort();
        self.refresh();
    }

    pub fn set_filter(&mut self, text: String) {
        self.filter.text = text;
        self.matcher = Matcher::new(&self.filter.text);
        self.refresh();
    }

    /// Typing in the filter: the views are recomputed once before the next
    /// frame ([`App::prepare`]), not once per key of a fast typist or a paste.
    pub fn edit_filter(&mut self, edit: impl FnOnce(&mut String)) {
        edit(&mut self.filter.text);
        self.matcher = Matcher::new(&self.filter.text);
        self.stale = true;
    }

    /// Brings the views up to date after [`App::edit_filter`].
    pub fn prepare(&mut self) {
        if self.stale {
            self.refresh();
        }
    }

    pub fn clear_filter(&mut self) {
        self.filter.editing = false;
        if !self.filter.text.is_empty() {
            self.set_filter(String::new());
        }
    }

    /// Enter: the detail of the selected goroutine or leak group; on a defer
    /// site, filters the goroutine table to that site instead.
    pub fn open_selected(&mut self) {
        let Some(snapshot) = self.snapshot.clone() else {
            return;
        };
        let subject = match self.focus {
            Panel::Goroutines => {
                self.goroutines.selected(&snapshot.goroutines).map(|g| DetailSubject::Goroutine(g.goid))
            }
            Panel::Leaks => self.leaks.selected(&snapshot.leaks).map(|l| DetailSubject::Leak(LeakKey::of(l))),
            Panel::Sites => {
                if let Some(d) = self.sites.selected(&snapshot.defer_sites) {
                    let s = &d.site;
                    let name = s.file.rsplit('/').next().unwrap_or(&s.file);
                    self.set_filter(format!("{name}:{}", s.line));
                    self.focus = Panel::Goroutines;
                    self.goroutines.nav.selected = 0;
                    self.remember_selection();
                }
                None
            }
        };
        if let Some(subject) = subject {
            self.detail = Some(Detail { subject, goroutine: None, group: None, gone: false, scroll: 0, height: 0 });
            self.refresh_detail();
            self.overlay = Overlay::Detail;
        }
    }

    pub fn close_overlay(&mut self) {
        self.overlay = Overlay::None;
        self.detail = None;
    }

    pub fn toggle_help(&mut self) {
        self.overlay = if self.overlay == Overlay::Help { Overlay::None } else { Overlay::Help };
    }

    /// The `i`-th visible goroutine row.
    pub fn goroutine_at(&self, row: usize) -> Option<&GoroutineView> {
        self.goroutines.item(row, &self.snapshot.as_ref()?.goroutines)
    }

    #[cfg(test)]
    pub fn selected_goroutine(&self) -> Option<&GoroutineView> {
        self.goroutine_at(self.goroutines.nav.selected)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support;

    fn app_with(s: Snapshot) -> App {
        let mut app = App::new(test_support::settings());
        app.on_snapshot(Arc::new(s));
        app
    }

    #[test]
    fn rates_come_from_successive_snapshots() {
        let mut app = App::new(test_support::settings());
        app.on_snapshot(Arc::new(test_support::snapshot_at(1.0, 1000)));
        assert_eq!(app.history.rates.pushes_per_s, None);
        app.on_snapshot(Arc::new(test_support::snapshot_at(3.0, 5000)));
        assert_eq!(app.history.rates.pushes_per_s, Some(2000.0));
        assert_eq!(app.history.pushes_per_s.latest(), Some(2000));
        assert_eq!(app.history.live_records.len(), 2);
        let s = app.snapshot().expect("snapshot");
        let deep = s.defer_sites.iter().position(|d| d.site.function.as_ref() == "main.deepWorker").expect("site");
        assert!(app.history.site_rate(deep).expect("rate") > 0.0);
    }

    #[test]
    fn filter_narrows_every_panel_and_esc_clears() {
        let mut app = app_with(test_support::snapshot());
        let all = app.goroutines.rows().len();
        app.set_filter("deepWorker".into());
        assert_eq!(app.goroutines.rows().len(), 1);
        assert_eq!(app.selected_goroutine().expect("g").goid, 18);
        assert_eq!(app.leaks.rows().len(), 0);
        assert_eq!(app.sites.rows().len(), 2);
        app.set_filter("leak.go".into());
        assert_eq!(app.leaks.rows().len(), 1);
        app.clear_filter();
        assert_eq!(app.goroutines.rows().len(), all);
    }

    #[test]
    fn sort_cycles_and_selection_follows_the_goroutine() {
        let mut app = app_with(test_support::snapshot());
        app.move_by(2);
        let goid = app.selected_goroutine().expect("g").goid;
        app.cycle_sort();
        assert_eq!(app.goroutines.sort, GoroutineSort::MaxDepth);
        assert_eq!(app.selected_goroutine().expect("g").goid, goid);
        app.cycle_sort();
        assert_eq!(app.goroutines.sort, GoroutineSort::BlockedFor);
        // Leaked goroutines (blocked longest) first.
        assert!(app.goroutine_at(0).expect("g").leaked);
        app.cycle_sort();
        let goids: Vec<u64> = (0..app.goroutines.rows().len()).map(|i| app.goroutine_at(i).expect("g").goid).collect();
        assert!(goids.windows(2).all(|w| w[0] < w[1]));
        // A new snapshot keeps the cursor on the same goroutine.
        app.on_snapshot(Arc::new(test_support::snapshot()));
        assert_eq!(app.selected_goroutine().expect("g").goid, goid);
    }

    #[test]
    fn pause_holds_snapshots_until_resumed() {
        let mut app = app_with(test_support::snapshot_at(1.0, 100));
        app.toggle_pause();
        app.on_snapshot(Arc::new(test_support::snapshot_at(2.0, 200)));
        assert_eq!(app.snapshot().expect("s").trace_uptime_s, 1.0);
        app.toggle_pause();
        assert_eq!(app.snapshot().expect("s").trace_uptime_s, 2.0);
        // The last snapshot of an exited target shows even while paused.
        app.toggle_pause();
        let mut last = test_support::snapshot_at(3.0, 300);
        last.target_exited = true;
        app.on_snapshot(Arc::new(last));
        assert!(app.snapshot().expect("s").target_exited);
    }

    #[test]
    fn detail_of_goroutine_and_leak_group() {
        let mut app = app_with(test_support::snapshot());
        app.open_selected();
        assert_eq!(app.overlay, Overlay::Detail);
        let d = app.detail.as_ref().expect("detail");
        assert_eq!(d.subject, DetailSubject::Goroutine(18));
        assert_eq!(d.goroutine.as_ref().expect("g").defer_depth, 2500);
        // The goroutine exits: the view keeps the last data and says so.
        let mut s = test_support::snapshot();
        s.goroutines.retain(|g| g.goid != 18);
        app.on_snapshot(Arc::new(s));
        assert!(app.detail.as_ref().expect("detail").gone);
        app.close_overlay();

        app.focus = Panel::Leaks;
        app.open_selected();
        let d = app.detail.as_ref().expect("detail");
        assert_eq!(d.group.as_ref().expect("group").count, 40);
        assert!(d.goroutine.as_ref().expect("sample").leaked);
    }

    #[test]
    fn enter_on_a_site_filters_goroutines() {
        let mut app = app_with(test_support::snapshot());
        app.focus = Panel::Sites;
        app.open_selected();
        assert_eq!(app.overlay, Overlay::None);
        assert_eq!(app.focus, Panel::Goroutines);
        assert_eq!(app.filter.text, "main.go:42");
        assert_eq!(app.goroutines.rows().len(), 1);
    }

    #[test]
    fn scales_to_100k_goroutines() {
        let s = Arc::new(test_support::many(100_000));
        let mut app = App::new(test_support::settings());
        let t = std::time::Instant::now();
        app.on_snapshot(s.clone());
        app.on_snapshot(s);
        app.set_filter("worker7".into());
        app.cycle_sort();
        let took = t.elapsed();
        assert!(app.goroutines.rows().len() > 1000);
        // Generous bound (debug build, slow CI): the point is no quadratic work.
        assert!(took < Duration::from_secs(10), "took {took:?}");
    }
}
