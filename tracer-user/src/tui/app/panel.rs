//! The three list panels (goroutines, leak groups, defer sites): which one
//! has the focus, their sort orders, and one [`PanelState`] each (sort,
//! filtered and sorted rows, cursor, and the selected item, followed across
//! snapshots).
use std::ops::Range;

use crate::aggregate::model::{DeferSiteView, GoroutineView, LeakGroup, Site};

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

/// A panel's sort orders, which `s` cycles through.
pub trait SortOrder: Copy {
    fn next(self) -> Self;
    /// As the panel's title shows it.
    fn label(self) -> &'static str;
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

impl SortOrder for GoroutineSort {
    fn next(self) -> Self {
        match self {
            Self::Depth => Self::MaxDepth,
            Self::MaxDepth => Self::BlockedFor,
            Self::BlockedFor => Self::Goid,
            Self::Goid => Self::Depth,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::Depth => "depth",
            Self::MaxDepth => "max depth",
            Self::BlockedFor => "blocked for",
            Self::Goid => "goid",
        }
    }
}

impl GoroutineSort {
    /// Sorts `rows`, indices into `gs`.
    pub fn sort(self, rows: &mut [u32], gs: &[GoroutineView]) {
        match self {
            // The snapshot comes deepest first; keep its order (stable).
            Self::Depth => rows.sort_by(|&a, &b| gs[b as usize].defer_depth.cmp(&gs[a as usize].defer_depth)),
            Self::MaxDepth => rows.sort_by(|&a, &b| {
                let (a, b) = (&gs[a as usize], &gs[b as usize]);
                b.max_defer_depth.cmp(&a.max_defer_depth).then(b.defer_depth.cmp(&a.defer_depth))
            }),
            Self::BlockedFor => rows.sort_by(|&a, &b| {
                let (a, b) = (&gs[a as usize], &gs[b as usize]);
                b.blocked_for_s.unwrap_or(-1.0).total_cmp(&a.blocked_for_s.unwrap_or(-1.0)).then(a.goid.cmp(&b.goid))
            }),
            Self::Goid => rows.sort_by_key(|&i| gs[i as usize].goid),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeakSort {
    Count,
    Oldest,
}

impl SortOrder for LeakSort {
    fn next(self) -> Self {
        match self {
            Self::Count => Self::Oldest,
            Self::Oldest => Self::Count,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::Count => "count",
            Self::Oldest => "oldest",
        }
    }
}

impl LeakSort {
    /// Sorts `rows`, indices into `ls`.
    pub fn sort(self, rows: &mut [u32], ls: &[LeakGroup]) {
        match self {
            Self::Count => rows.sort_by(|&a, &b| ls[b as usize].count.cmp(&ls[a as usize].count)),
            Self::Oldest => {
                rows.sort_by(|&a, &b| ls[b as usize].oldest_blocked_s.total_cmp(&ls[a as usize].oldest_blocked_s))
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SiteSort {
    Live,
    PushRate,
    Pushed,
}

impl SortOrder for SiteSort {
    fn next(self) -> Self {
        match self {
            Self::Live => Self::PushRate,
            Self::PushRate => Self::Pushed,
            Self::Pushed => Self::Live,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::Live => "live",
            Self::PushRate => "pushes/s",
            Self::Pushed => "pushed",
        }
    }
}

impl SiteSort {
    /// Sorts `rows`, indices into `ss`; `rate(i)` is the pushes/s of `ss[i]`.
    pub fn sort(self, rows: &mut [u32], ss: &[DeferSiteView], rate: impl Fn(usize) -> f64) {
        match self {
            Self::Live => rows.sort_by(|&a, &b| ss[b as usize].live.cmp(&ss[a as usize].live)),
            Self::PushRate => rows.sort_by(|&a, &b| rate(b as usize).total_cmp(&rate(a as usize))),
            Self::Pushed => rows.sort_by(|&a, &b| ss[b as usize].pushed.cmp(&ss[a as usize].pushed)),
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

    pub fn matches(&self, l: &LeakGroup) -> bool {
        self.created_by == l.created_by && self.blocked_at == l.blocked_at && self.wait_reason == l.wait_reason
    }
}

/// What a panel lists: an item of a snapshot list, with an identity that
/// outlives the snapshot, so the cursor stays on it.
pub trait PanelItem {
    type Key;
    fn key(&self) -> Self::Key;
    fn has_key(&self, key: &Self::Key) -> bool;
}

impl PanelItem for GoroutineView {
    type Key = u64;
    fn key(&self) -> u64 {
        self.goid
    }
    fn has_key(&self, goid: &u64) -> bool {
        self.goid == *goid
    }
}

impl PanelItem for LeakGroup {
    type Key = LeakKey;
    fn key(&self) -> LeakKey {
        LeakKey::of(self)
    }
    fn has_key(&self, key: &LeakKey) -> bool {
        key.matches(self)
    }
}

impl PanelItem for DeferSiteView {
    type Key = Site;
    fn key(&self) -> Site {
        self.site.clone()
    }
    fn has_key(&self, site: &Site) -> bool {
        self.site == *site
    }
}

/// One list panel over a snapshot list of `T`s, sorted by `S`.
#[derive(Clone, Debug)]
pub struct PanelState<S, T: PanelItem> {
    pub sort: S,
    pub nav: ListNav,
    /// Indices into the snapshot's list, filtered and sorted.
    rows: Vec<u32>,
    /// The item under the cursor, so it stays there when the rows change.
    selected: Option<T::Key>,
}

impl<S: SortOrder, T: PanelItem> PanelState<S, T> {
    pub fn new(sort: S) -> Self {
        Self { sort, nav: ListNav::default(), rows: Vec::new(), selected: None }
    }

    /// The visible rows: indices into the snapshot's list.
    pub fn rows(&self) -> &[u32] {
        &self.rows
    }

    /// The item in visible row `row`, from `items` (the snapshot's list).
    pub fn item<'a>(&self, row: usize, items: &'a [T]) -> Option<&'a T> {
        self.rows.get(row).map(|&i| &items[i as usize])
    }

    /// The item under the cursor.
    pub fn selected<'a>(&self, items: &'a [T]) -> Option<&'a T> {
        self.item(self.nav.selected, items)
    }

    /// New rows (indices into `items`): the cursor moves to where the
    /// selected item is now, if it is still listed.
    pub fn set_rows(&mut self, rows: Vec<u32>, items: &[T]) {
        self.rows = rows;
        if let Some(key) = &self.selected
            && let Some(pos) = self.rows.iter().position(|&i| items[i as usize].has_key(key))
        {
            self.nav.selected = pos;
        }
        self.nav.clamp(self.rows.len());
    }

    /// Notes which item is under the cursor (after it moved).
    pub fn remember(&mut self, items: &[T]) {
        self.selected = self.selected(items).map(T::key);
    }
}

/// What the keys do to whichever panel has the focus.
pub trait Focused {
    fn move_by(&mut self, delta: isize);
    fn page(&self) -> isize;
    fn cycle_sort(&mut self);
}

impl<S: SortOrder, T: PanelItem> Focused for PanelState<S, T> {
    fn move_by(&mut self, delta: isize) {
        self.nav.move_by(delta, self.rows.len());
    }

    fn page(&self) -> isize {
        self.nav.page()
    }

    fn cycle_sort(&mut self) {
        self.sort = self.sort.next();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
