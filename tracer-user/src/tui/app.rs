//! The dashboard's state: the snapshot on screen, what is selected, sorted,
//! filtered, paused, and the history behind the charts. Pure: no terminal,
//! unit-tested directly.
//!
//! Cost model: everything that touches every goroutine (filter, sort, rates,
//! counts) runs once per snapshot or per filter/sort change, in
//! [`App::refresh`]; a frame only reads the visible rows. The snapshot itself
//! is shared (`Arc`), never copied: the views are index lists into it.
use std::{
    collections::{HashMap, VecDeque},
    ops::Range,
    sync::Arc,
    time::Duration,
};

use crate::{
    aggregate::model::{GoroutineView, LeakGroup, Site, Snapshot},
    goruntime::GoroutineStatus,
};

/// Samples kept per chart: enough for a wide terminal.
pub const HISTORY_LEN: usize = 512;

/// What the header shows about how deferscope runs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Settings {
    pub pid: u32,
    pub interval: Duration,
    pub leak_after: Duration,
    pub metrics_addr: Option<std::net::SocketAddr>,
    pub top: Option<usize>,
}

impl Settings {
    pub fn from_options(options: &crate::cli::Options) -> Self {
        Self {
            pid: options.pid,
            interval: options.interval,
            leak_after: options.leak_after,
            metrics_addr: options.metrics_addr,
            top: options.top,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Panel {
    Goroutines,
    Leaks,
    Sites,
}

impl Panel {
    pub fn next(self) -> Self {
        match self {
            Panel::Goroutines => Panel::Leaks,
            Panel::Leaks => Panel::Sites,
            Panel::Sites => Panel::Goroutines,
        }
    }

    pub fn prev(self) -> Self {
        match self {
            Panel::Goroutines => Panel::Sites,
            Panel::Leaks => Panel::Goroutines,
            Panel::Sites => Panel::Leaks,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GoroutineSort {
    /// Deepest defer chain first (the default, as the snapshot comes).
    Depth,
    MaxDepth,
    /// Longest blocked first.
    BlockedFor,
    Goid,
}

impl GoroutineSort {
    pub fn next(self) -> Self {
        match self {
            Self::Depth => Self::MaxDepth,
            Self::MaxDepth => Self::BlockedFor,
            Self::BlockedFor => Self::Goid,
            Self::Goid => Self::Depth,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::Depth => "depth",
            Self::MaxDepth => "max depth",
            Self::BlockedFor => "blocked for",
            Self::Goid => "goid",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeakSort {
    Count,
    Oldest,
}

impl LeakSort {
    pub fn next(self) -> Self {
        match self {
            Self::Count => Self::Oldest,
            Self::Oldest => Self::Count,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::Count => "count",
            Self::Oldest => "oldest",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SiteSort {
    Live,
    PushRate,
    Pushed,
}

impl SiteSort {
    pub fn next(self) -> Self {
        match self {
            Self::Live => Self::PushRate,
            Self::PushRate => Self::Pushed,
            Self::Pushed => Self::Live,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::Live => "live",
            Self::PushRate => "pushes/s",
            Self::Pushed => "pushed",
        }
    }
}

/// Cursor and scroll position of one list. `height` is the number of rows
/// the last frame had room for (for PgUp/PgDn).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListNav {
    pub selected: usize,
    pub offset: usize,
    pub height: usize,
}

impl ListNav {
    pub fn move_by(&mut self, delta: isize, len: usize) {
        if len == 0 {
            self.selected = 0;
            return;
        }
        let next = self.selected as isize + delta;
        self.selected = next.clamp(0, len as isize - 1) as usize;
    }

    pub fn page(&self) -> isize {
        self.height.max(1) as isize
    }

    pub fn clamp(&mut self, len: usize) {
        self.selected = self.selected.min(len.saturating_sub(1));
    }

    /// The rows to draw in a viewport of `height` rows: scrolls just enough
    /// to keep the selection visible.
    pub fn visible(&mut self, len: usize, height: usize) -> Range<usize> {
        self.height = height;
        self.clamp(len);
        if height == 0 || len == 0 {
            self.offset = 0;
            return 0..0;
        }
        if self.selected < self.offset {
            self.offset = self.selected;
        } else if self.selected >= self.offset + height {
            self.offset = self.selected + 1 - height;
        }
        self.offset = self.offset.min(len.saturating_sub(height));
        self.offset..(self.offset + height).min(len)
    }
}

/// `/` filter: a case-insensitive substring of a function name or file path,
/// or `file:line` (`main.go:42`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    pub text: String,
    /// The user is typing it (keys go to the text).
    pub editing: bool,
}

/// The filter, prepared for matching many sites.
#[derive(Clone, Debug)]
pub struct Matcher {
    needle: Vec<u8>,
    /// `file:line` form.
    file_line: Option<(Vec<u8>, u32)>,
}

/// Case-insensitive substring test; `needle` is lowercase.
fn contains_ci(haystack: &str, needle: &[u8]) -> bool {
    let Some((&first, rest)) = needle.split_first() else { return true };
    let h = haystack.as_bytes();
    if h.len() < needle.len() {
        return false;
    }
    // Cheap first-byte scan, full comparison only on a hit: this runs over
    // every site of every goroutine when the filter changes.
    (0..=h.len() - needle.len())
        .any(|i| h[i].to_ascii_lowercase() == first && h[i + 1..i + needle.len()].eq_ignore_ascii_case(rest))
}

impl Matcher {
    pub fn new(text: &str) -> Option<Self> {
        let text = text.trim();
        if text.is_empty() {
            return None;
        }
        let file_line = text
            .rsplit_once(':')
            .and_then(|(file, line)| Some((file.as_bytes().to_ascii_lowercase(), line.parse().ok()?)));
        Some(Self { needle: text.as_bytes().to_ascii_lowercase(), file_line })
    }

    pub fn str(&self, s: &str) -> bool {
        contains_ci(s, &self.needle)
    }

    pub fn site(&self, site: &Site) -> bool {
        if let Some((f, l)) = &self.file_line
            && *l == site.line
            && contains_ci(&site.file, f)
        {
            return true;
        }
        contains_ci(&site.function, &self.needle) || contains_ci(&site.file, &self.needle)
    }

    fn opt_site(&self, site: &Option<Site>) -> bool {
        site.as_ref().is_some_and(|s| self.site(s))
    }

    pub fn goroutine(&self, g: &GoroutineView) -> bool {
        self.opt_site(&g.top_defer_site)
            || self.opt_site(&g.created_by)
            || self.opt_site(&g.blocked_at)
            || g.start_function.as_deref().is_some_and(|f| self.str(f))
            || g.stack.as_ref().is_some_and(|s| s.iter().any(|f| self.site(f)))
            || g.defer_chain.as_ref().is_some_and(|c| c.iter().any(|e| self.opt_site(&e.site)))
    }

    pub fn leak(&self, l: &LeakGroup) -> bool {
        self.opt_site(&l.created_by) || self.opt_site(&l.blocked_at) || self.str(&l.wait_reason)
    }
}

/// A fixed-size series for a chart.
#[derive(Clone, Debug, Default)]
pub struct Series {
    data: VecDeque<u64>,
}

impl Series {
    pub fn push(&mut self, v: u64) {
        if self.data.len() == HISTORY_LEN {
            self.data.pop_front();
        }
        self.data.push_back(v);
    }

    /// The newest `n` samples, oldest first.
    pub fn last(&self, n: usize) -> impl Iterator<Item = u64> + '_ {
        self.data.iter().skip(self.data.len().saturating_sub(n)).copied()
    }

    pub fn latest(&self) -> Option<u64> {
        self.data.back().copied()
    }

    pub fn max_last(&self, n: usize) -> u64 {
        self.last(n).max().unwrap_or(0)
    }

    pub fn len(&self) -> usize {
        self.data.len()
    }
}

#[derive(Clone, Debug, Default)]
pub struct History {
    pub live_records: Series,
    pub pushes_per_s: Series,
    pub goroutines_live: Series,
    pub goroutines_leaked: Series,
}

/// Rates over the last two snapshots; `None` until there are two.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Rates {
    pub pushes_per_s: Option<f64>,
    pub pops_per_s: Option<f64>,
    pub events_per_s: Option<f64>,
    pub probe_hits_per_s: Option<f64>,
}

#[derive(Clone, Copy, Debug)]
struct Counters {
    uptime: f64,
    pushed: u64,
    popped: u64,
    events: u64,
    probe_hits: u64,
}

impl Counters {
    fn of(s: &Snapshot) -> Self {
        Self {
            uptime: s.trace_uptime_s,
            pushed: s.totals.defers_pushed,
            popped: s.totals.defers_popped,
            events: s.totals.events,
            probe_hits: s.probe_hits.iter().map(|p| p.hits).sum(),
        }
    }
}

fn rate(now: u64, before: u64, dt: f64) -> Option<f64> {
    (dt > 0.0).then(|| now.saturating_sub(before) as f64 / dt)
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

/// Identity of a leak group across snapshots.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LeakKey {
    pub created_by: Option<Site>,
    pub blocked_at: Option<Site>,
    pub wait_reason: String,
}

impl LeakKey {
    pub fn of(l: &LeakGroup) -> Self {
        Self { created_by: l.created_by.clone(), blocked_at: l.blocked_at.clone(), wait_reason: l.wait_reason.clone() }
    }

    fn matches(&self, l: &LeakGroup) -> bool {
        self.created_by == l.created_by && self.blocked_at == l.blocked_at && self.wait_reason == l.wait_reason
    }
}

type SiteKey = Site;

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
    pub goroutine_sort: GoroutineSort,
    pub leak_sort: LeakSort,
    pub site_sort: SiteSort,
    pub goroutines: ListNav,
    pub leaks: ListNav,
    pub sites: ListNav,
    selected_goid: Option<u64>,
    selected_leak: Option<LeakKey>,
    selected_site: Option<SiteKey>,
    /// Indices into the snapshot's lists, filtered and sorted.
    goroutine_rows: Vec<u32>,
    leak_rows: Vec<u32>,
    site_rows: Vec<u32>,
    /// Pushes/s per defer site, parallel to `snapshot.defer_sites`.
    site_rates: Vec<Option<f64>>,
    prev_site_pushed: HashMap<SiteKey, u64>,
    prev: Option<Counters>,
    pub rates: Rates,
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
            goroutine_sort: GoroutineSort::Depth,
            leak_sort: LeakSort::Count,
            site_sort: SiteSort::Live,
            goroutines: ListNav::default(),
            leaks: ListNav::default(),
            sites: ListNav::default(),
            selected_goid: None,
            selected_leak: None,
            selected_site: None,
            goroutine_rows: Vec::new(),
            leak_rows: Vec::new(),
            site_rows: Vec::new(),
            site_rates: Vec::new(),
            prev_site_pushed: HashMap::new(),
            prev: None,
            rates: Rates::default(),
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
        let now = Counters::of(&snapshot);
        let dt = self.prev.map(|p| now.uptime - p.uptime).unwrap_or(0.0);
        if let Some(p) = self.prev.filter(|_| dt > 0.0) {
            self.rates = Rates {
                pushes_per_s: rate(now.pushed, p.pushed, dt),
                pops_per_s: rate(now.popped, p.popped, dt),
                events_per_s: rate(now.events, p.events, dt),
                probe_hits_per_s: rate(now.probe_hits, p.probe_hits, dt),
            };
        }
        self.site_rates = snapshot
            .defer_sites
            .iter()
            .map(|s| {
                let before = self.prev_site_pushed.get(&s.site).copied();
                // A site first seen now had no pushes before.
                rate(s.pushed, before.unwrap_or(0), dt).filter(|_| self.prev.is_some())
            })
            .collect();
        self.prev_site_pushed = snapshot.defer_sites.iter().map(|s| (s.site.clone(), s.pushed)).collect();
        self.prev = Some(now);

        let t = &snapshot.totals;
        self.history.live_records.push(t.defer_records_live);
        if let Some(r) = self.rates.pushes_per_s {
            self.history.pushes_per_s.push(r.round() as u64);
        }
        self.history.goroutines_live.push(t.goroutines_live);
        self.history.goroutines_leaked.push(t.goroutines_leaked);

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

        let mut rows: Vec<u32> = (0..snapshot.goroutines.len() as u32)
            .filter(|&i| m.is_none_or(|m| m.goroutine(&snapshot.goroutines[i as usize])))
            .collect();
        let gs = &snapshot.goroutines;
        match self.goroutine_sort {
            // The snapshot comes deepest first; keep its order (stable).
            GoroutineSort::Depth => rows.sort_by(|&a, &b| gs[b as usize].defer_depth.cmp(&gs[a as usize].defer_depth)),
            GoroutineSort::MaxDepth => rows.sort_by(|&a, &b| {
                let (a, b) = (&gs[a as usize], &gs[b as usize]);
                b.max_defer_depth.cmp(&a.max_defer_depth).then(b.defer_depth.cmp(&a.defer_depth))
            }),
            GoroutineSort::BlockedFor => rows.sort_by(|&a, &b| {
                let (a, b) = (&gs[a as usize], &gs[b as usize]);
                b.blocked_for_s.unwrap_or(-1.0).total_cmp(&a.blocked_for_s.unwrap_or(-1.0)).then(a.goid.cmp(&b.goid))
            }),
            GoroutineSort::Goid => rows.sort_by_key(|&i| gs[i as usize].goid),
        }
        self.goroutine_rows = rows;
        if let Some(goid) = self.selected_goid
            && let Some(pos) = self.goroutine_rows.iter().position(|&i| gs[i as usize].goid == goid)
        {
            self.goroutines.selected = pos;
        }
        self.goroutines.clamp(self.goroutine_rows.len());

        let ls = &snapshot.leaks;
        let mut rows: Vec<u32> = (0..ls.len() as u32).filter(|&i| m.is_none_or(|m| m.leak(&ls[i as usize]))).collect();
        match self.leak_sort {
            LeakSort::Count => rows.sort_by(|&a, &b| ls[b as usize].count.cmp(&ls[a as usize].count)),
            LeakSort::Oldest => {
                rows.sort_by(|&a, &b| ls[b as usize].oldest_blocked_s.total_cmp(&ls[a as usize].oldest_blocked_s))
            }
        }
        self.leak_rows = rows;
        if let Some(key) = &self.selected_leak
            && let Some(pos) = self.leak_rows.iter().position(|&i| key.matches(&ls[i as usize]))
        {
            self.leaks.selected = pos;
        }
        self.leaks.clamp(self.leak_rows.len());

        let ss = &snapshot.defer_sites;
        let mut rows: Vec<u32> =
            (0..ss.len() as u32).filter(|&i| m.is_none_or(|m| m.site(&ss[i as usize].site))).collect();
        let rates = &self.site_rates;
        let r = |i: u32| rates.get(i as usize).copied().flatten().unwrap_or(0.0);
        match self.site_sort {
            SiteSort::Live => rows.sort_by(|&a, &b| ss[b as usize].live.cmp(&ss[a as usize].live)),
            SiteSort::PushRate => rows.sort_by(|&a, &b| r(b).total_cmp(&r(a))),
            SiteSort::Pushed => rows.sort_by(|&a, &b| ss[b as usize].pushed.cmp(&ss[a as usize].pushed)),
        }
        self.site_rows = rows;
        if let Some(site) = &self.selected_site
            && let Some(pos) = self.site_rows.iter().position(|&i| ss[i as usize].site == *site)
        {
            self.sites.selected = pos;
        }
        self.sites.clamp(self.site_rows.len());
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
        self.selected_goid =
            self.goroutine_rows.get(self.goroutines.selected).map(|&i| snapshot.goroutines[i as usize].goid);
        self.selected_leak = self.leak_rows.get(self.leaks.selected).map(|&i| LeakKey::of(&snapshot.leaks[i as usize]));
        self.selected_site =
            self.site_rows.get(self.sites.selected).map(|&i| snapshot.defer_sites[i as usize].site.clone());
    }

    pub fn goroutine_rows(&self) -> &[u32] {
        &self.goroutine_rows
    }

    pub fn leak_rows(&self) -> &[u32] {
        &self.leak_rows
    }

    pub fn site_rows(&self) -> &[u32] {
        &self.site_rows
    }

    /// Pushes/s of `snapshot.defer_sites[index]`.
    pub fn site_rate(&self, index: usize) -> Option<f64> {
        self.site_rates.get(index).copied().flatten()
    }

    fn len_of(&self, panel: Panel) -> usize {
        match panel {
            Panel::Goroutines => self.goroutine_rows.len(),
            Panel::Leaks => self.leak_rows.len(),
            Panel::Sites => self.site_rows.len(),
        }
    }

    fn nav_mut(&mut self, panel: Panel) -> &mut ListNav {
        match panel {
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
        let panel = self.focus;
        let len = self.len_of(panel);
        self.nav_mut(panel).move_by(delta, len);
        self.remember_selection();
    }

    pub fn page(&mut self, pages: isize) {
        let page = match self.overlay {
            Overlay::Detail => self.detail.as_ref().map_or(1, |d| d.height.max(1) as isize),
            _ => match self.focus {
                Panel::Goroutines => self.goroutines.page(),
                Panel::Leaks => self.leaks.page(),
                Panel::Sites => self.sites.page(),
            },
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
        match self.focus {
            Panel::Goroutines => self.goroutine_sort = self.goroutine_sort.next(),
            Panel::Leaks => self.leak_sort = self.leak_sort.next(),
            Panel::Sites => self.site_sort = self.site_sort.next(),
        }
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
            Panel::Goroutines => self
                .goroutine_rows
                .get(self.goroutines.selected)
                .map(|&i| DetailSubject::Goroutine(snapshot.goroutines[i as usize].goid)),
            Panel::Leaks => self
                .leak_rows
                .get(self.leaks.selected)
                .map(|&i| DetailSubject::Leak(LeakKey::of(&snapshot.leaks[i as usize]))),
            Panel::Sites => {
                if let Some(&i) = self.site_rows.get(self.sites.selected) {
                    let s = &snapshot.defer_sites[i as usize].site;
                    let name = s.file.rsplit('/').next().unwrap_or(&s.file);
                    self.set_filter(format!("{name}:{}", s.line));
                    self.focus = Panel::Goroutines;
                    self.goroutines.selected = 0;
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
        let s = self.snapshot.as_ref()?;
        self.goroutine_rows.get(row).map(|&i| &s.goroutines[i as usize])
    }

    #[cfg(test)]
    pub fn selected_goroutine(&self) -> Option<&GoroutineView> {
        self.goroutine_at(self.goroutines.selected)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tui::fixtures;

    fn app_with(s: Snapshot) -> App {
        let mut app = App::new(fixtures::settings());
        app.on_snapshot(Arc::new(s));
        app
    }

    #[test]
    fn nav_scrolls_to_keep_selection_visible() {
        let mut nav = ListNav::default();
        assert_eq!(nav.visible(100, 10), 0..10);
        nav.move_by(15, 100);
        assert_eq!(nav.visible(100, 10), 6..16);
        nav.move_by(-10, 100);
        assert_eq!(nav.visible(100, 10), 5..15);
        nav.move_by(1000, 100);
        assert_eq!(nav.selected, 99);
        assert_eq!(nav.visible(100, 10), 90..100);
        // The list shrank under the cursor.
        assert_eq!(nav.visible(5, 10), 0..5);
        assert_eq!(nav.selected, 4);
        assert_eq!(nav.visible(0, 10), 0..0);
    }

    #[test]
    fn matcher_by_function_file_and_line() {
        let site = Site::new("main.deepWorker", "/src/app/main.go", 42);
        assert!(Matcher::new("deepworker").expect("m").site(&site));
        assert!(Matcher::new("app/main").expect("m").site(&site));
        assert!(Matcher::new("main.go:42").expect("m").site(&site));
        assert!(!Matcher::new("main.go:43").expect("m").site(&site));
        assert!(!Matcher::new("leak").expect("m").site(&site));
        assert!(Matcher::new("  ").is_none());
    }

    #[test]
    fn rates_come_from_successive_snapshots() {
        let mut app = App::new(fixtures::settings());
        app.on_snapshot(Arc::new(fixtures::snapshot_at(1.0, 1000)));
        assert_eq!(app.rates.pushes_per_s, None);
        app.on_snapshot(Arc::new(fixtures::snapshot_at(3.0, 5000)));
        assert_eq!(app.rates.pushes_per_s, Some(2000.0));
        assert_eq!(app.history.pushes_per_s.latest(), Some(2000));
        assert_eq!(app.history.live_records.len(), 2);
        let s = app.snapshot().expect("snapshot");
        let deep = s.defer_sites.iter().position(|d| d.site.function.as_ref() == "main.deepWorker").expect("site");
        assert!(app.site_rate(deep).expect("rate") > 0.0);
    }

    #[test]
    fn filter_narrows_every_panel_and_esc_clears() {
        let mut app = app_with(fixtures::snapshot());
        let all = app.goroutine_rows().len();
        app.set_filter("deepWorker".into());
        assert_eq!(app.goroutine_rows().len(), 1);
        assert_eq!(app.selected_goroutine().expect("g").goid, 18);
        assert_eq!(app.leak_rows().len(), 0);
        assert_eq!(app.site_rows().len(), 2);
        app.set_filter("leak.go".into());
        assert_eq!(app.leak_rows().len(), 1);
        app.clear_filter();
        assert_eq!(app.goroutine_rows().len(), all);
    }

    #[test]
    fn sort_cycles_and_selection_follows_the_goroutine() {
        let mut app = app_with(fixtures::snapshot());
        app.move_by(2);
        let goid = app.selected_goroutine().expect("g").goid;
        app.cycle_sort();
        assert_eq!(app.goroutine_sort, GoroutineSort::MaxDepth);
        assert_eq!(app.selected_goroutine().expect("g").goid, goid);
        app.cycle_sort();
        assert_eq!(app.goroutine_sort, GoroutineSort::BlockedFor);
        // Leaked goroutines (blocked longest) first.
        assert!(app.goroutine_at(0).expect("g").leaked);
        app.cycle_sort();
        let goids: Vec<u64> = (0..app.goroutine_rows().len()).map(|i| app.goroutine_at(i).expect("g").goid).collect();
        assert!(goids.windows(2).all(|w| w[0] < w[1]));
        // A new snapshot keeps the cursor on the same goroutine.
        app.on_snapshot(Arc::new(fixtures::snapshot()));
        assert_eq!(app.selected_goroutine().expect("g").goid, goid);
    }

    #[test]
    fn pause_holds_snapshots_until_resumed() {
        let mut app = app_with(fixtures::snapshot_at(1.0, 100));
        app.toggle_pause();
        app.on_snapshot(Arc::new(fixtures::snapshot_at(2.0, 200)));
        assert_eq!(app.snapshot().expect("s").trace_uptime_s, 1.0);
        app.toggle_pause();
        assert_eq!(app.snapshot().expect("s").trace_uptime_s, 2.0);
        // The last snapshot of an exited target shows even while paused.
        app.toggle_pause();
        let mut last = fixtures::snapshot_at(3.0, 300);
        last.target_exited = true;
        app.on_snapshot(Arc::new(last));
        assert!(app.snapshot().expect("s").target_exited);
    }

    #[test]
    fn detail_of_goroutine_and_leak_group() {
        let mut app = app_with(fixtures::snapshot());
        app.open_selected();
        assert_eq!(app.overlay, Overlay::Detail);
        let d = app.detail.as_ref().expect("detail");
        assert_eq!(d.subject, DetailSubject::Goroutine(18));
        assert_eq!(d.goroutine.as_ref().expect("g").defer_depth, 2500);
        // The goroutine exits: the view keeps the last data and says so.
        let mut s = fixtures::snapshot();
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
        let mut app = app_with(fixtures::snapshot());
        app.focus = Panel::Sites;
        app.open_selected();
        assert_eq!(app.overlay, Overlay::None);
        assert_eq!(app.focus, Panel::Goroutines);
        assert_eq!(app.filter.text, "main.go:42");
        assert_eq!(app.goroutine_rows().len(), 1);
    }

    #[test]
    fn scales_to_100k_goroutines() {
        let s = Arc::new(fixtures::many(100_000));
        let mut app = App::new(fixtures::settings());
        let t = std::time::Instant::now();
        app.on_snapshot(s.clone());
        app.on_snapshot(s);
        app.set_filter("worker7".into());
        app.cycle_sort();
        let took = t.elapsed();
        assert!(app.goroutine_rows().len() > 1000);
        // Generous bound (debug build, slow CI): the point is no quadratic work.
        assert!(took < Duration::from_secs(10), "took {took:?}");
    }
}
