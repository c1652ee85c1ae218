//! What the dashboard remembers across snapshots: the rates over the last
//! two (header, defer sites panel) and the series behind the charts.
use std::collections::{HashMap, VecDeque};

use crate::aggregate::model::{Site, Snapshot};

/// Samples kept per chart: enough for a wide terminal.
pub const HISTORY_LEN: usize = 512;

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

/// Rates over the last two snapshots; `None` until there are two.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Rates {
    pub pushes_per_s: Option<f64>,
    pub pops_per_s: Option<f64>,
    pub events_per_s: Option<f64>,
    pub probe_hits_per_s: Option<f64>,
}

/// The counters of one snapshot that rates are computed from.
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

/// The rates and chart series, updated once per snapshot shown.
#[derive(Clone, Debug, Default)]
pub struct History {
    pub live_records: Series,
    pub pushes_per_s: Series,
    pub goroutines_live: Series,
    pub goroutines_leaked: Series,
    /// The target's open file descriptors (absent when /proc is unreadable).
    pub open_fds: Series,
    pub rates: Rates,
    /// Pushes/s per defer site, parallel to the snapshot's `defer_sites`.
    site_rates: Vec<Option<f64>>,
    prev_site_pushed: HashMap<Site, u64>,
    prev: Option<Counters>,
}

impl History {
    /// Takes in the snapshot about to be shown.
    pub fn record(&mut self, snapshot: &Snapshot) {
        let now = Counters::of(snapshot);
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
        self.live_records.push(t.defer_records_live);
        if let Some(r) = self.rates.pushes_per_s {
            self.pushes_per_s.push(r.round() as u64);
        }
        self.goroutines_live.push(t.goroutines_live);
        self.goroutines_leaked.push(t.goroutines_leaked);
        if let Some(fds) = snapshot.process.as_ref().and_then(|p| p.open_fds) {
            self.open_fds.push(fds);
        }
    }

    /// Pushes/s of the shown snapshot's `defer_sites[index]`.
    pub fn site_rate(&self, index: usize) -> Option<f64> {
        self.site_rates.get(index).copied().flatten()
    }
}
