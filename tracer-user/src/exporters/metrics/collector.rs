//! Snapshot → OpenMetrics families, encoded by `prometheus-client` on each
//! scrape straight from the latest snapshot.
//!
//! Encoding from the snapshot (rather than keeping registered metrics up to
//! date) means a series exists exactly as long as its group does: goroutine
//! states, leak groups and defer sites that vanish are simply not emitted
//! any more, never left stale.
//!
//! Every traced process is in the same families, its series labelled `pid`,
//! `exe` and, in a container, `container`. A process that exited is served
//! once more with `deferscope_up 0`, then its series are gone. Cardinality
//! is bounded per process (`--metrics-top-sites` sites and leak groups per
//! verdict) and so across processes by `--max-processes`.
//!
//! The only state kept between scrapes is what keeps counters monotonic,
//! per process (and dropped with it): the highest value emitted per counter
//! series, and the pushes of sites while they were folded into
//! `site="other"` (so that `other` never goes down when a site moves into
//! the top N).
use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
};

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, NoLabelSet},
    metrics::MetricType,
    registry::Unit,
};

use crate::{
    aggregate::model::{
        DeferSiteView, FindingKind, GoroutineView, LIFETIME_BUCKETS_S, ProbeState, Site, Snapshot, Verdict,
    },
    feed::FleetFeed,
    goruntime::GoroutineStatus,
};

/// Label value of the series that folds everything beyond the top N.
pub const OTHER: &str = "other";

/// Label value for a site deferscope could not symbolise.
const UNKNOWN: &str = "unknown";

/// Upper bounds of the defer-depth histogram: 0, 1, 2, 4, ..., 65536 (+Inf
/// is added by the encoder's bucket list).
pub fn depth_buckets() -> Vec<f64> {
    std::iter::once(0.0).chain((0..=16).map(|i| f64::from(1u32 << i))).collect()
}

/// States always emitted (0 when empty) so that alerts on them do not see
/// an absent series; others appear when some goroutine is in them.
const STATES: [GoroutineStatus; 4] =
    [GoroutineStatus::Running, GoroutineStatus::Runnable, GoroutineStatus::Syscall, GoroutineStatus::Waiting];

type Labels = Vec<(&'static str, String)>;

/// Encodes the latest snapshots of `feed` on each scrape.
pub struct SnapshotCollector {
    feed: FleetFeed,
    top: usize,
    /// Per traced process (by PID).
    counters: Mutex<HashMap<u32, CounterState>>,
}

impl std::fmt::Debug for SnapshotCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotCollector").field("top", &self.top).finish_non_exhaustive()
    }
}

impl SnapshotCollector {
    /// `top`: at most this many `site` series and leak groups, the rest
    /// folded into `other`.
    pub fn new(feed: FleetFeed, top: usize) -> Self {
        Self { feed, top, counters: Mutex::new(HashMap::new()) }
    }
}

impl Collector for SnapshotCollector {
    fn encode(&self, encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let Some(fleet) = self.feed.latest() else {
            // Nothing to say before the first snapshot.
            return Ok(());
        };
        let mut counters = self.counters.lock().unwrap_or_else(PoisonError::into_inner);
        // Processes no longer in the fleet are gone for good (a restart is a
        // new PID): so is what kept their counters monotonic.
        counters.retain(|pid, _| fleet.snapshots.iter().any(|s| s.pid == *pid));
        let mut families = Families::default();
        for snapshot in &fleet.snapshots {
            let state = counters.entry(snapshot.pid).or_default();
            snapshot_families(&mut families, snapshot, self.top, state);
        }
        families.encode(encoder)
    }
}

/// One sample's value.
#[derive(Clone, Debug)]
enum Sample {
    Counter(u64),
    GaugeInt(i64),
    GaugeUint(u64),
    GaugeFloat(f64),
    Histogram { sum: f64, count: u64, buckets: Vec<(f64, u64)> },
    Info,
}

impl From<i64> for Sample {
    fn from(v: i64) -> Self {
        Self::GaugeInt(v)
    }
}

impl From<u64> for Sample {
    fn from(v: u64) -> Self {
        Self::GaugeUint(v)
    }
}

impl From<f64> for Sample {
    fn from(v: f64) -> Self {
        Self::GaugeFloat(v)
    }
}

/// One metric family: its descriptor and the series of every process.
struct Family {
    name: &'static str,
    help: &'static str,
    unit: Option<Unit>,
    kind: MetricType,
    series: Vec<(Labels, Sample)>,
}

/// The families of a scrape, in the order they first appear; each
/// descriptor is written once, whatever the number of processes.
#[derive(Default)]
struct Families(Vec<Family>);

impl Families {
    fn add(
        &mut self,
        name: &'static str,
        help: &'static str,
        unit: Option<&Unit>,
        kind: MetricType,
        series: impl IntoIterator<Item = (Labels, Sample)>,
    ) {
        let index = match self.0.iter().position(|f| f.name == name) {
            Some(i) => i,
            None => {
                self.0.push(Family { name, help, unit: unit.cloned(), kind, series: Vec::new() });
                self.0.len() - 1
            }
        };
        self.0[index].series.extend(series);
    }

    fn encode(self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        for family in self.0.into_iter().filter(|f| !f.series.is_empty()) {
            let mut metric = encoder.encode_descriptor(family.name, family.help, family.unit.as_ref(), family.kind)?;
            for (labels, sample) in &family.series {
                match sample {
                    Sample::Info => metric.encode_info(labels)?,
                    Sample::Counter(v) => {
                        metric.encode_family(labels)?.encode_counter::<NoLabelSet, u64, u64>(v, None)?
                    }
                    Sample::GaugeInt(v) => metric.encode_family(labels)?.encode_gauge(v)?,
                    Sample::GaugeUint(v) => metric.encode_family(labels)?.encode_gauge(v)?,
                    Sample::GaugeFloat(v) => metric.encode_family(labels)?.encode_gauge(v)?,
                    Sample::Histogram { sum, count, buckets } => {
                        metric.encode_family(labels)?.encode_histogram::<NoLabelSet>(*sum, *count, buckets, None)?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// What keeps counters monotonic across scrapes.
#[derive(Debug, Default)]
pub struct CounterState {
    /// Highest value emitted per counter series (metric name + labels).
    emitted: HashMap<String, u64>,
    /// Last `pushed` seen per site label.
    site_pushed: HashMap<Arc<str>, u64>,
    /// Pushes seen while their site was folded into `other`.
    other_pushed: u64,
}

impl CounterState {
    /// `value`, or the highest value this series had, whichever is larger.
    fn monotonic(&mut self, metric: &str, labels: &[(&'static str, String)], value: u64) -> u64 {
        let mut key = String::from(metric);
        for (k, v) in labels {
            key.push('\u{0}');
            key.push_str(k);
            key.push('=');
            key.push_str(v);
        }
        let slot = self.emitted.entry(key).or_insert(0);
        *slot = (*slot).max(value);
        *slot
    }
}

fn site_label(site: Option<&Site>) -> String {
    site.map_or_else(|| UNKNOWN.to_owned(), Site::to_string)
}

fn with(base: &Labels, extra: &[(&'static str, String)]) -> Labels {
    let mut labels = base.clone();
    labels.extend(extra.iter().cloned());
    labels
}

fn counter(families: &mut Families, name: &'static str, help: &'static str, series: &[(Labels, u64)]) {
    let samples = series.iter().map(|(labels, v)| (labels.clone(), Sample::Counter(*v)));
    families.add(name, help, None, MetricType::Counter, samples);
}

fn gauge<V: Copy + Into<Sample>>(
    families: &mut Families,
    name: &'static str,
    help: &'static str,
    unit: Option<&Unit>,
    series: &[(Labels, V)],
) {
    let samples = series.iter().map(|(labels, v)| (labels.clone(), (*v).into()));
    families.add(name, help, unit, MetricType::Gauge, samples);
}

/// A defer site's numbers, labelled `function file:line`.
struct SiteRow<'a> {
    label: Arc<str>,
    pushed: u64,
    live: u64,
    view: &'a DeferSiteView,
}

/// The aggregator's sites (one per `defer` statement already), ranked by
/// activity (pushes seen plus records live now), ties by label so the order
/// is stable.
fn ranked_sites(snapshot: &Snapshot) -> Vec<SiteRow<'_>> {
    let mut rows: Vec<SiteRow<'_>> = snapshot
        .defer_sites
        .iter()
        .map(|s| SiteRow { label: s.site.to_string().into(), pushed: s.pushed, live: s.live, view: s })
        .collect();
    rows.sort_by(|a, b| {
        (b.pushed.saturating_add(b.live)).cmp(&a.pushed.saturating_add(a.live)).then_with(|| a.label.cmp(&b.label))
    });
    rows
}

/// The aggregator's leak groups of one verdict (one per label set already),
/// biggest first, the ones beyond `top` folded into one `other` series.
fn leak_series(snapshot: &Snapshot, top: usize, verdict: Verdict) -> Vec<([String; 3], u64)> {
    let mut groups: Vec<([String; 3], u64)> = snapshot
        .leaks
        .iter()
        .filter(|g| g.verdict == verdict)
        .map(|g| {
            ([g.wait_reason.clone(), site_label(g.created_by.as_ref()), site_label(g.blocked_at.as_ref())], g.count)
        })
        .collect();
    groups.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    if groups.len() > top {
        let folded: u64 = groups[top..].iter().map(|g| g.1).sum();
        groups.truncate(top);
        groups.push(([OTHER.to_owned(), OTHER.to_owned(), OTHER.to_owned()], folded));
    }
    groups
}

/// Every family of one snapshot. Pure but for `counters`.
fn snapshot_families(e: &mut Families, snapshot: &Snapshot, top: usize, counters: &mut CounterState) {
    let mut base: Labels = vec![("pid", snapshot.pid.to_string()), ("exe", snapshot.exe.clone())];
    if let Some(container) = &snapshot.container {
        base.push(("container", container.clone()));
    }
    let t = &snapshot.totals;
    let user: Vec<&GoroutineView> = snapshot.goroutines.iter().filter(|g| !g.system).collect();

    gauge(
        e,
        "deferscope_up",
        "1 while deferscope is attached to the target, 0 once the target exited.",
        None,
        &[(base.clone(), i64::from(!snapshot.target_exited))],
    );
    e.add(
        "deferscope_target",
        "The traced Go program.",
        None,
        MetricType::Info,
        [(with(&base, &[("go_version", snapshot.go_version.clone()), ("arch", snapshot.arch.clone())]), Sample::Info)],
    );

    // Defer records.
    let mut total = |name: &'static str, value: u64| (base.clone(), counters.monotonic(name, &base, value));
    let pushed = [total("deferscope_defers_pushed", t.defers_pushed)];
    let popped = [total("deferscope_defers_popped", t.defers_popped)];
    let created = [total("deferscope_goroutines_created", t.goroutines_created)];
    let exited = [total("deferscope_goroutines_exited", t.goroutines_exited)];
    let lost = [total("deferscope_events_lost", t.events_lost)];
    counter(e, "deferscope_defers_pushed", "Defer records pushed while traced.", &pushed);
    counter(e, "deferscope_defers_popped", "Defer records popped while traced.", &popped);
    gauge(
        e,
        "deferscope_defer_records_live",
        "Defer records on all goroutines' chains now.",
        None,
        &[(base.clone(), t.defer_records_live)],
    );
    let depth_max = snapshot.goroutines.iter().map(|g| g.defer_depth).max().unwrap_or(0);
    gauge(
        e,
        "deferscope_defer_depth_max",
        "Defer chain depth of the deepest goroutine now.",
        None,
        &[(base.clone(), depth_max)],
    );
    {
        let bounds = depth_buckets();
        let mut buckets: Vec<(f64, u64)> = bounds.iter().map(|&b| (b, 0)).collect();
        buckets.push((f64::INFINITY, 0));
        let mut sum = 0.0;
        for g in &user {
            // Depths are whole numbers, so `<=` on f64 is exact up to 2^53.
            let depth = g.defer_depth as f64;
            sum += depth;
            let i = bounds.iter().position(|&b| depth <= b).unwrap_or(bounds.len());
            buckets[i].1 += 1;
        }
        e.add(
            "deferscope_goroutine_defer_depth",
            "Defer chain depth of each goroutine now (a distribution of the current goroutines, not cumulative).",
            None,
            MetricType::Histogram,
            [(base.clone(), Sample::Histogram { sum, count: user.len() as u64, buckets })],
        );
    }

    // Defer sites, capped.
    let sites = ranked_sites(snapshot);
    let cut = top.min(sites.len());
    let mut site_pushed = Vec::with_capacity(cut + 1);
    let mut site_live = Vec::with_capacity(cut + 1);
    for (rank, row) in sites.iter().enumerate() {
        let before = counters.site_pushed.insert(row.label.clone(), row.pushed).unwrap_or(0);
        if rank < cut {
            let labels = with(&base, &[("site", row.label.to_string())]);
            let value = counters.monotonic("deferscope_defer_site_pushed", &labels, row.pushed);
            site_pushed.push((labels.clone(), value));
            site_live.push((labels, row.live));
        } else {
            counters.other_pushed += row.pushed.saturating_sub(before);
        }
    }
    let other = with(&base, &[("site", OTHER.to_owned())]);
    if sites.len() > cut || counters.other_pushed > 0 {
        site_pushed.push((other.clone(), counters.other_pushed));
    }
    if sites.len() > cut {
        site_live.push((other, sites[cut..].iter().map(|r| r.live).sum::<u64>()));
    }
    counter(
        e,
        "deferscope_defer_site_pushed",
        "Defer records pushed while traced, by defer statement (top sites by activity; the rest in site=\"other\").",
        &site_pushed,
    );
    gauge(
        e,
        "deferscope_defer_site_live",
        "Defer records live now, by defer statement (top sites by activity; the rest in site=\"other\").",
        None,
        &site_live,
    );

    // What the top sites' records will call, and how long they live.
    let top_sites = &sites[..cut];
    let deferred: Vec<(Labels, u64)> = top_sites
        .iter()
        .filter_map(|row| {
            let d = row.view.deferred.as_ref()?;
            Some((with(&base, &[("site", row.label.to_string()), ("deferred", d.function.to_string())]), 1))
        })
        .collect();
    gauge(
        e,
        "deferscope_defer_site_deferred",
        "1 per top defer statement, labelled with the function its records will call (through the compiler's \
         wrappers).",
        None,
        &deferred,
    );
    let lifetimes: Vec<(Labels, Sample)> = top_sites
        .iter()
        .filter_map(|row| {
            let l = row.view.lifetime_s.as_ref()?;
            let mut buckets: Vec<(f64, u64)> =
                LIFETIME_BUCKETS_S.iter().copied().zip(l.buckets.iter().copied()).collect();
            buckets.push((f64::INFINITY, l.count));
            Some((
                with(&base, &[("site", row.label.to_string())]),
                Sample::Histogram { sum: l.sum, count: l.count, buckets },
            ))
        })
        .collect();
    e.add(
        "deferscope_defer_site_lifetime_seconds",
        "How long records of the top defer statements stayed pending (pushed and popped while traced).",
        None,
        MetricType::Histogram,
        lifetimes,
    );
    // Every kind, zero included, so a cleared finding reads 0 rather than vanishing.
    let kinds: Vec<(Labels, u64)> = FindingKind::ALL
        .iter()
        .map(|&k| {
            let n = snapshot.findings.iter().filter(|f| f.kind == k).count() as u64;
            (with(&base, &[("kind", k.as_str().to_owned())]), n)
        })
        .collect();
    gauge(
        e,
        "deferscope_findings",
        "Findings now (defer_in_loop, long_held, fd_pressure, goroutine_leak), by kind.",
        None,
        &kinds,
    );

    // What the process holds.
    if let Some(p) = &snapshot.process {
        let one = |v: Option<u64>| -> Vec<(Labels, u64)> { v.map(|v| (base.clone(), v)).into_iter().collect() };
        gauge(e, "deferscope_process_open_fds", "File descriptors the target has open.", None, &one(p.open_fds));
        gauge(e, "deferscope_process_max_fds", "The target's soft limit on open files.", None, &one(p.fd_limit));
        gauge(
            e,
            "deferscope_process_resident_memory_bytes",
            "The target's resident set size.",
            None,
            &one(p.rss_bytes),
        );
        gauge(e, "deferscope_process_threads", "The target's OS threads.", None, &one(p.threads));
    }

    // Goroutines.
    // By label: `_Gdead` and `_Gdeadextra` both read "dead".
    let mut states: Vec<(&str, u64)> = STATES.iter().map(|s| (s.as_str(), 0)).collect();
    for g in &user {
        match states.iter_mut().find(|(s, _)| *s == g.state.as_str()) {
            Some(slot) => slot.1 += 1,
            None => states.push((g.state.as_str(), 1)),
        }
    }
    let states: Vec<(Labels, u64)> =
        states.into_iter().map(|(s, n)| (with(&base, &[("state", s.to_owned())]), n)).collect();
    gauge(e, "deferscope_goroutines", "Goroutines now (without the runtime's own), by state.", None, &states);
    counter(e, "deferscope_goroutines_created", "Goroutines created while traced.", &created);
    counter(e, "deferscope_goroutines_exited", "Goroutines exited while traced.", &exited);
    let series = |verdict: Verdict| -> Vec<(Labels, u64)> {
        leak_series(snapshot, top, verdict)
            .into_iter()
            .map(|([wait_reason, created_by, blocked_at], n)| {
                (
                    with(
                        &base,
                        &[("wait_reason", wait_reason), ("created_by", created_by), ("blocked_at", blocked_at)],
                    ),
                    n,
                )
            })
            .collect()
    };
    gauge(
        e,
        "deferscope_goroutines_leaked",
        "Goroutines proven leaked: blocked past --leak-after on a primitive no running goroutine can reach, by story \
         (top groups; the rest in \"other\").",
        None,
        &series(Verdict::Leaked),
    );
    gauge(
        e,
        "deferscope_goroutines_stuck",
        "Goroutines blocked on a primitive without running for at least --leak-after, not proven leaked, by story \
         (top groups; the rest in \"other\").",
        None,
        &series(Verdict::Stuck),
    );
    let growing: Vec<(Labels, u64)> = [Verdict::Leaked, Verdict::Stuck]
        .into_iter()
        .map(|v| {
            let n = snapshot.leaks.iter().filter(|g| g.verdict == v && g.growing).count() as u64;
            (with(&base, &[("verdict", v.as_str().to_owned())]), n)
        })
        .collect();
    gauge(
        e,
        "deferscope_leak_groups_growing",
        "Leak groups that kept gaining members over the recent window (up to 5 minutes), by verdict.",
        None,
        &growing,
    );
    if let Some(scan) = &snapshot.leak_scan {
        let scans = [(base.clone(), counters.monotonic("deferscope_leak_scans", &base, scan.scans))];
        let failures = [(base.clone(), counters.monotonic("deferscope_leak_scan_failures", &base, scan.failures))];
        counter(e, "deferscope_leak_scans", "Reachability scans (leak proofs) since attach.", &scans);
        counter(
            e,
            "deferscope_leak_scan_failures",
            "Reachability scans that proved nothing (the heap changed while read, or memory was unreadable).",
            &failures,
        );
        gauge(
            e,
            "deferscope_leak_scan_duration",
            "Duration of the last reachability scan.",
            Some(&Unit::Seconds),
            &[(base.clone(), scan.duration_s)],
        );
        gauge(
            e,
            "deferscope_leak_scan_read",
            "Bytes of the target's memory the last reachability scan read.",
            Some(&Unit::Bytes),
            &[(base.clone(), scan.bytes_read)],
        );
        gauge(
            e,
            "deferscope_leak_scan_age",
            "Time since the last reachability scan ended.",
            Some(&Unit::Seconds),
            &[(base.clone(), scan.last_s_ago)],
        );
    }

    // The tracer itself.
    counter(e, "deferscope_events_lost", "Probe events lost (ring buffer full).", &lost);
    let hits: Vec<(Labels, u64)> = snapshot
        .probe_hits
        .iter()
        .map(|p| {
            let labels = with(&base, &[("probe", p.function.clone())]);
            let value = counters.monotonic("deferscope_probe_hits", &labels, p.hits);
            (labels, value)
        })
        .collect();
    counter(e, "deferscope_probe_hits", "Hits of each attached probe since attach.", &hits);
    let attached: Vec<(Labels, i64)> = snapshot
        .probe_hits
        .iter()
        .map(|p| (with(&base, &[("probe", p.function.clone())]), i64::from(p.state == ProbeState::Attached)))
        .collect();
    gauge(
        e,
        "deferscope_probe_attached",
        "1 while the probe is attached, 0 while the overhead governor keeps it detached.",
        None,
        &attached,
    );
    if let Some(overhead) = &snapshot.overhead {
        gauge(
            e,
            "deferscope_overhead_estimate_ratio",
            "Estimated slowdown of the target caused by the probes (probe time / the target's own CPU time).",
            None,
            &[(base.clone(), overhead.estimate_ratio)],
        );
    }
    gauge(
        e,
        "deferscope_memory_read",
        "Duration of the last read of the target's goroutines from its memory.",
        Some(&Unit::Seconds),
        &[(base.clone(), snapshot.memory_read_s)],
    );
}

#[cfg(test)]
mod tests;
