//! How long defer records stay pending, per `defer` site.
//!
//! A goroutine's chain is LIFO, so each pop ends the newest pending record:
//! the aggregator mirrors every goroutine's chain here with the kernel
//! timestamp of each push. Records known only from a memory read (pushed
//! before attach, or while events were incomplete) are dated from when they
//! were first seen: their age is a lower bound, and their pops are left out
//! of the histograms, which hold only exactly timed records.
use hdrhistogram::Histogram;
use rustc_hash::FxHashMap as HashMap;
use smallvec::SmallVec;

use super::model;

/// Histogram range: 1 µs to a day, 2 significant digits.
const MAX_LIFETIME_US: u64 = 86_400_000_000;

#[derive(Clone, Copy, Debug, PartialEq)]
struct Pending {
    site: u64,
    since_ns: u64,
    /// `since_ns` is the push itself (not when deferscope first saw it).
    exact: bool,
}

/// Equal records next to each other on a chain: a read dates every record
/// it finds alike, so a goroutine's chain is a few runs (one, typically),
/// however deep.
#[derive(Clone, Copy, Debug)]
struct Run {
    site: u64,
    since_ns: u64,
    count: u32,
    exact: bool,
}

/// A goroutine's mirrored chain, oldest record first, run-length encoded;
/// one run inline: at 100k parked goroutines a chain each, a heap buffer
/// per chain cost more than the map holding them.
#[derive(Clone, Debug, Default)]
struct Chain(SmallVec<[Run; 1]>);

impl Chain {
    fn len(&self) -> usize {
        self.0.iter().map(|r| r.count as usize).sum()
    }

    /// Every record, oldest first.
    fn records(&self) -> impl DoubleEndedIterator<Item = Pending> + '_ {
        self.0.iter().flat_map(|r| {
            std::iter::repeat_n(Pending { site: r.site, since_ns: r.since_ns, exact: r.exact }, r.count as usize)
        })
    }

    fn push(&mut self, p: Pending) {
        match self.0.last_mut() {
            Some(r) if (r.site, r.since_ns, r.exact) == (p.site, p.since_ns, p.exact) && r.count < u32::MAX => {
                r.count += 1;
            }
            _ => self.0.push(Run { site: p.site, since_ns: p.since_ns, count: 1, exact: p.exact }),
        }
    }

    fn pop(&mut self) -> Option<Pending> {
        let r = self.0.last_mut()?;
        let p = Pending { site: r.site, since_ns: r.since_ns, exact: r.exact };
        r.count -= 1;
        if r.count == 0 {
            self.0.pop();
        }
        Some(p)
    }

    /// Keeps the oldest `n` records.
    fn truncate(&mut self, n: usize) {
        let mut excess = self.len().saturating_sub(n);
        while excess > 0 {
            let Some(r) = self.0.last_mut() else { return };
            if r.count as usize <= excess {
                excess -= r.count as usize;
                self.0.pop();
            } else {
                r.count -= excess as u32;
                excess = 0;
            }
        }
    }
}

/// The oldest record still pending at a site.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Oldest {
    pub since_ns: u64,
    /// Dated from when deferscope first saw it, not from its push.
    pub lower_bound: bool,
}

#[derive(Default)]
pub struct Lifetimes {
    chains: HashMap<u64, Chain>,
    /// Exactly timed lifetimes of popped records, in µs, by call site.
    popped: HashMap<u64, Histogram<u64>>,
}

pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LIFETIME_US, 2).expect("constant, valid bounds")
}

impl Lifetimes {
    /// Room for `more` goroutines' chains (see `Aggregator::apply_scan`).
    pub fn reserve(&mut self, more: usize) {
        self.chains.reserve(more);
    }

    pub fn pushed(&mut self, goid: u64, site: u64, t_ns: u64) {
        self.chains.entry(goid).or_default().push(Pending { site, since_ns: t_ns, exact: true });
    }

    pub fn popped(&mut self, goid: u64, t_ns: u64) {
        let Some(p) = self.chains.get_mut(&goid).and_then(Chain::pop) else { return };
        if p.exact {
            let us = t_ns.saturating_sub(p.since_ns) / 1000;
            self.popped.entry(p.site).or_insert_with(new_histogram).saturating_record(us.max(1));
        }
    }

    /// A pop whose event placed the goroutine on a known chain (`left`,
    /// oldest first: the records under the popped one). The mirrored
    /// chain's newest record is the one popped if the rest is `left`;
    /// otherwise events were missed and which record ended is not known
    /// (the caller's [`Self::chain_read`] then redates what differs).
    pub fn popped_leaving(&mut self, goid: u64, t_ns: u64, left: &[u64]) {
        let Some(chain) = self.chains.get(&goid) else { return };
        let matches = chain.len() == left.len() + 1 && chain.records().zip(left).all(|(p, &site)| p.site == site);
        if matches {
            self.popped(goid, t_ns);
        }
    }

    /// A chain (oldest first) read from memory at `t_ns` replaced the
    /// goroutine's: records it shares with the mirrored chain (the common
    /// oldest part) keep their dates, the others are dated from `t_ns`.
    pub fn chain_read(&mut self, goid: u64, sites_oldest_first: &[u64], t_ns: u64) {
        let chain = self.chains.entry(goid).or_default();
        let kept = chain.records().zip(sites_oldest_first).take_while(|(p, site)| p.site == **site).count();
        chain.truncate(kept);
        for &site in &sites_oldest_first[kept..] {
            chain.push(Pending { site, since_ns: t_ns, exact: false });
        }
    }

    /// The first chain read from memory of a goroutine whose mirrored chain
    /// came from events alone (no read before): those records were pushed
    /// since attach, on top of whatever the goroutine held then, so they
    /// are matched from the top; the records under them are dated from
    /// `t_ns`, as lower bounds.
    pub fn first_chain_read(&mut self, goid: u64, sites_oldest_first: &[u64], t_ns: u64) {
        let chain = self.chains.entry(goid).or_default();
        let shared =
            chain.records().rev().zip(sites_oldest_first.iter().rev()).take_while(|(p, site)| p.site == **site).count();
        let top: Vec<Pending> = chain.records().skip(chain.len() - shared).collect();
        let below = &sites_oldest_first[..sites_oldest_first.len() - shared];
        *chain = Chain::default();
        for &site in below {
            chain.push(Pending { site, since_ns: t_ns, exact: false });
        }
        for p in top {
            chain.push(p);
        }
    }

    pub fn exited(&mut self, goid: u64) {
        self.chains.remove(&goid);
    }

    /// The lifetimes of records popped at `site` while traced.
    pub fn popped_at(&self, site: u64) -> Option<&Histogram<u64>> {
        self.popped.get(&site)
    }

    /// The oldest pending record of every site that has one.
    pub fn oldest_pending(&self) -> HashMap<u64, Oldest> {
        let mut oldest: HashMap<u64, Oldest> = HashMap::default();
        for chain in self.chains.values() {
            // A record was pushed before every record above it: a date from
            // higher up bounds it too (then as a lower bound of its age).
            let mut pushed_by = u64::MAX;
            // (Equal records give equal candidates: one per run is enough.)
            for p in chain.0.iter().rev().map(|r| Pending { site: r.site, since_ns: r.since_ns, exact: r.exact }) {
                let candidate = if p.exact && p.since_ns <= pushed_by {
                    Oldest { since_ns: p.since_ns, lower_bound: false }
                } else {
                    Oldest { since_ns: p.since_ns.min(pushed_by), lower_bound: true }
                };
                pushed_by = candidate.since_ns;
                oldest
                    .entry(p.site)
                    .and_modify(|o| {
                        // Equally dated, an older record (a lower bound) wins.
                        if (candidate.since_ns, !candidate.lower_bound) < (o.since_ns, !o.lower_bound) {
                            *o = candidate;
                        }
                    })
                    .or_insert(candidate);
            }
        }
        oldest
    }
}

/// Lifetimes of the sites as the snapshot lists them: several call sites
/// (return addresses) can share a source line and one listed site.
pub struct SiteLifetimes<'a> {
    lifetimes: &'a Lifetimes,
    oldest: HashMap<u64, Oldest>,
    now_ns: u64,
    /// By listed site: merged histogram and oldest pending record.
    merged: HashMap<usize, (Option<Histogram<u64>>, Option<Oldest>)>,
}

impl<'a> SiteLifetimes<'a> {
    pub fn new(lifetimes: &'a Lifetimes, now_ns: u64) -> Self {
        Self { lifetimes, oldest: lifetimes.oldest_pending(), now_ns, merged: HashMap::default() }
    }

    /// Call site `pc` is listed as site number `at`.
    pub fn add(&mut self, at: usize, pc: u64) {
        let (histogram, oldest) = self.merged.entry(at).or_default();
        if let Some(h) = self.lifetimes.popped_at(pc) {
            match histogram {
                // Same bounds and precision: adding cannot fail.
                Some(sum) => sum.add(h).unwrap_or_default(),
                None => *histogram = Some(h.clone()),
            }
        }
        if let Some(&o) = self.oldest.get(&pc) {
            if oldest.is_none_or(|current| (o.since_ns, !o.lower_bound) < (current.since_ns, !current.lower_bound)) {
                *oldest = Some(o);
            }
        }
    }

    pub fn fill(self, sites: &mut [model::DeferSiteView]) {
        for (at, (histogram, oldest)) in self.merged {
            let Some(view) = sites.get_mut(at) else { continue };
            view.lifetime_s = histogram.as_ref().map(stats);
            if let Some(o) = oldest {
                view.oldest_live_s = Some(self.now_ns.saturating_sub(o.since_ns) as f64 / 1e9);
                view.oldest_live_lower_bound = o.lower_bound;
            }
        }
    }
}

/// Count and quantiles, in seconds.
pub fn stats(h: &Histogram<u64>) -> model::LifetimeStats {
    let s = |us: u64| us as f64 / 1e6;
    model::LifetimeStats {
        count: h.len(),
        p50: s(h.value_at_quantile(0.5)),
        p99: s(h.value_at_quantile(0.99)),
        max: s(h.max()),
        buckets: model::LIFETIME_BUCKETS_S.iter().map(|&le| h.count_between(0, (le * 1e6) as u64)).collect(),
        sum: h.mean() * h.len() as f64 / 1e6,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn pops_end_the_newest_record() {
        let mut l = Lifetimes::default();
        l.pushed(1, 10, 0);
        l.pushed(1, 20, 100 * MS);
        l.popped(1, 300 * MS); // site 20: 200 ms
        l.popped(1, 1000 * MS); // site 10: 1 s
        let h20 = l.popped_at(20).expect("site 20");
        assert_eq!(h20.len(), 1);
        assert!((h20.max() as f64 / 200_000.0 - 1.0).abs() < 0.01, "{}", h20.max());
        assert!((l.popped_at(10).expect("site 10").max() as f64 / 1e6 - 1.0).abs() < 0.01);
        assert!(l.oldest_pending().is_empty());
    }

    #[test]
    fn records_from_memory_are_lower_bounds_and_not_timed() {
        let mut l = Lifetimes::default();
        l.pushed(1, 10, 5 * MS);
        // Memory shows the pushed record and an older one below it.
        l.chain_read(1, &[7, 10], 50 * MS);
        let oldest = l.oldest_pending();
        assert_eq!(oldest[&7], Oldest { since_ns: 50 * MS, lower_bound: true });
        assert_eq!(oldest[&10], Oldest { since_ns: 50 * MS, lower_bound: true }, "a different prefix: redated");
        l.popped(1, 60 * MS);
        l.popped(1, 70 * MS);
        assert!(l.popped_at(10).is_none() && l.popped_at(7).is_none());
        // A read that agrees keeps the exact dates.
        l.pushed(2, 10, 5 * MS);
        l.chain_read(2, &[10], 50 * MS);
        assert_eq!(l.oldest_pending()[&10], Oldest { since_ns: 5 * MS, lower_bound: false });
        l.popped(2, 205 * MS);
        assert_eq!(l.popped_at(10).expect("timed").len(), 1);
    }

    #[test]
    fn pops_placed_on_a_known_chain_are_timed_when_the_mirror_agrees() {
        let mut l = Lifetimes::default();
        l.pushed(1, 10, 0);
        l.pushed(1, 20, 100 * MS);
        // The pop names the record under it: [10] is left, as mirrored.
        l.popped_leaving(1, 300 * MS, &[10]);
        assert_eq!(l.popped_at(20).expect("timed").len(), 1);
        // Then the empty chain.
        l.popped_leaving(1, 400 * MS, &[]);
        assert!((l.popped_at(10).expect("timed").max() as f64 / 400_000.0 - 1.0).abs() < 0.01);
        // A mirror that disagrees (a missed push) times nothing.
        l.pushed(2, 10, 0);
        l.pushed(2, 20, 0);
        l.popped_leaving(2, 300 * MS, &[]);
        l.popped_leaving(2, 300 * MS, &[30]);
        assert_eq!(l.popped_at(20).expect("site 20").len(), 1);
        assert_eq!(l.popped_at(10).expect("site 10").len(), 1);
    }

    #[test]
    fn events_before_the_first_read_sit_on_top_of_older_records() {
        // Attached to a loop deferring at one site: 2 pushes seen, and the
        // first read finds 5 records, 3 of them from before attach.
        let mut l = Lifetimes::default();
        l.pushed(1, 10, 20 * MS);
        l.pushed(1, 10, 40 * MS);
        l.first_chain_read(1, &[10, 10, 10, 10, 10], 50 * MS);
        // The oldest was pushed before the first push seen.
        assert_eq!(l.oldest_pending()[&10], Oldest { since_ns: 20 * MS, lower_bound: true });
        // The newest two keep their push times.
        l.popped(1, 140 * MS);
        l.popped(1, 220 * MS);
        let h = l.popped_at(10).expect("timed");
        assert_eq!(h.len(), 2);
        assert!((h.max() as f64 / 200_000.0 - 1.0).abs() < 0.01, "{}", h.max());
        // The next pop is a record from before attach: not timed.
        l.popped(1, 300 * MS);
        assert_eq!(l.popped_at(10).expect("timed").len(), 2);
    }

    #[test]
    fn runs_of_equal_records_behave_as_records() {
        let mut l = Lifetimes::default();
        // A read finds 3 records at site 10 and 2 at 20 (two runs).
        l.chain_read(1, &[10, 10, 10, 20, 20], 50 * MS);
        l.pushed(1, 20, 60 * MS);
        assert_eq!(l.chains[&1].0.len(), 3);
        assert_eq!(l.chains[&1].len(), 6);
        // A read that cuts into the first run keeps the records under it.
        l.chain_read(1, &[10, 10, 30], 70 * MS);
        let records: Vec<Pending> = l.chains[&1].records().collect();
        let dated = |site, since_ns| Pending { site, since_ns, exact: false };
        assert_eq!(records, [dated(10, 50 * MS), dated(10, 50 * MS), dated(30, 70 * MS)]);
        l.popped(1, 80 * MS);
        l.popped(1, 90 * MS);
        assert_eq!(l.chains[&1].len(), 1);
        assert_eq!(l.oldest_pending()[&10], Oldest { since_ns: 50 * MS, lower_bound: true });
        assert!(l.popped_at(10).is_none() && l.popped_at(30).is_none(), "read records are not timed");
    }

    #[test]
    fn unknown_pops_and_exits_are_harmless() {
        let mut l = Lifetimes::default();
        l.popped(9, 1);
        l.pushed(9, 1, 10);
        l.exited(9);
        l.popped(9, 20);
        assert!(l.oldest_pending().is_empty());
        assert!(l.popped_at(1).is_none());
    }
}
