//! The overhead governor: keeps what the probes cost the target under a
//! budget by detaching the costliest probes, and re-attaches them when the
//! target's rates fall again.
//!
//! Pure: the session feeds it one [`Window`] at a time (probe hits, the
//! target's CPU time and the wall time elapsed) and applies the [`Switch`]es
//! it returns.
//!
//! The estimate: an attached uprobe costs its trap on every hit (even when the
//! program returns at once), so the time the target loses is hits × the
//! per-hit cost measured on this kernel at startup. That time is charged to the
//! target's own CPU time, so the slowdown is `probe time / (CPU time − probe
//! time)`: the work the target would have done untraced in that time.
//!
//! The rules:
//! - Over budget: the estimate exceeds the budget *and* the probes cost more
//!   than the budget's share of one CPU (a nearly idle target pays a few
//!   microseconds a request, which is no load to shed), for
//!   [`REACT_WINDOWS`] windows in a row.
//! - Then probe groups are detached in [`Group`] order (goroutine
//!   creation/exit, stack defers and pops first; range-over-func defers next;
//!   heap defers, the bug class users hunt, last), skipping groups too cheap
//!   to matter, until the estimate is back under the budget.
//! - A detached group is re-attached, newest-detached first, once the
//!   estimate *with* it (its hits per unit of target CPU when it was last
//!   attached, times the CPU the target uses now) is under half the budget,
//!   or its cost under half the budget's share of one CPU, for
//!   [`CALM_WINDOWS`] windows in a row, and at least its dwell time after it
//!   was detached. The dwell doubles every time a group is detached again, so
//!   the governor never flaps.
use std::{fmt, time::Duration};

use tracer_common::ProbeId;

/// Windows in a row over budget before probes are detached.
pub const REACT_WINDOWS: u32 = 3;
/// Windows in a row comfortably under budget before one is re-attached.
pub const CALM_WINDOWS: u32 = 4;
/// Shortest time a group stays detached.
pub const MIN_DWELL: Duration = Duration::from_secs(10);
/// Longest dwell.
pub const MAX_DWELL: Duration = Duration::from_secs(320);

/// The `--overhead-budget`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Budget {
    /// Estimated slowdown allowed, as a fraction (0.01 for 1%).
    Ratio(f64),
    /// Every probe stays attached, whatever it costs.
    Unlimited,
}

impl Budget {
    /// Bytes of the event ring buffer under this budget. The kernel maps its
    /// data pages twice, so the ring costs twice this in RSS once it has
    /// wrapped. Unbounded, 16 MiB (about 262k events: over a second of the
    /// fastest probe rate this machine sustains). A budget of a few percent
    /// keeps the event rate far below that (the governor detaches the costly
    /// probes within a tick), so 4 MiB (about 65k events) holds a tick's
    /// worth with room to spare.
    pub fn ring_bytes(self) -> u32 {
        match self {
            Self::Ratio(r) if r <= 0.05 => 4 << 20,
            Self::Ratio(_) | Self::Unlimited => 16 << 20,
        }
    }

    /// Parses `1`, `0.5`, `2%` or `none`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("none") {
            return Ok(Self::Unlimited);
        }
        let number = s.strip_suffix('%').unwrap_or(s).trim();
        match number.parse::<f64>() {
            Ok(p) if p > 0.0 && p <= 100.0 => Ok(Self::Ratio(p / 100.0)),
            _ => {
                Err(format!("invalid overhead budget {s:?}: use a percentage above 0 and up to 100 (e.g. 1), or none"))
            }
        }
    }
}

impl fmt::Display for Budget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ratio(r) => write!(f, "{}%", r * 100.0),
            Self::Unlimited => f.write_str("none"),
        }
    }
}

/// The slowdown of a target that spent `probe_ns` of `cpu_ns` CPU time in
/// probes: probe time over the work it would have done untraced in that time
/// (at most 99×, when nearly all of it went to the probes).
fn slowdown(probe_ns: f64, cpu_ns: f64) -> f64 {
    let fraction = (probe_ns / cpu_ns.max(1.0)).min(0.99);
    fraction / (1.0 - fraction)
}

/// Probes that are attached and detached together, in detach order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Group {
    /// Goroutine creation and exit (`newproc1`, `goexit1`): every goroutine
    /// that is created also exits, so the two go together.
    Goroutines,
    /// `deferprocStack`: bounded per frame.
    StackDefers,
    /// `popDefer` / `freedefer`: one hit per record popped, of any kind.
    Pops,
    /// `deferprocat` (range-over-func loop bodies).
    RangeFuncDefers,
    /// `deferproc`: heap records, defer in a loop.
    HeapDefers,
}

impl Group {
    pub fn of(probe: ProbeId) -> Self {
        match probe {
            ProbeId::NewProcReturn | ProbeId::Goexit1 => Self::Goroutines,
            ProbeId::DeferProcStack => Self::StackDefers,
            ProbeId::PopDefer | ProbeId::FreeDefer => Self::Pops,
            ProbeId::DeferProcAt => Self::RangeFuncDefers,
            ProbeId::DeferProc => Self::HeapDefers,
        }
    }

    /// Lower classes go first; within a class, the costliest first.
    fn class(self) -> u8 {
        match self {
            Self::Goroutines | Self::StackDefers | Self::Pops => 0,
            Self::RangeFuncDefers => 1,
            Self::HeapDefers => 2,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Goroutines => "goroutine creation/exit",
            Self::StackDefers => "stack defers",
            Self::Pops => "defer pops",
            Self::RangeFuncDefers => "range-over-func defers",
            Self::HeapDefers => "heap defers",
        }
    }
}

/// What happened in the target since the previous window.
#[derive(Clone, Debug, Default)]
pub struct Window {
    /// Wall time covered.
    pub elapsed_ns: u64,
    /// The target's CPU time (user + system, probe traps included).
    pub target_cpu_ns: u64,
    /// Hits per probe in the window (index: `ProbeId`).
    pub hits: [u64; tracer_common::PROBE_COUNT as usize],
}

/// A decision: attach or detach a group.
#[derive(Clone, Debug, PartialEq)]
pub struct Switch {
    pub group: Group,
    pub attach: bool,
    /// For the log: why.
    pub reason: String,
}

#[derive(Clone, Debug)]
struct GroupState {
    group: Group,
    attached: bool,
    /// Hits per ns of the target's CPU time when last attached: what the
    /// group would cost again at the CPU the target uses then.
    hits_per_cpu_ns: f64,
    /// Governor time (ns since start) of the last detach.
    detached_at_ns: u64,
    dwell_ns: u64,
    /// Times detached.
    detaches: u32,
}

#[derive(Clone, Debug)]
pub struct Governor {
    budget: Budget,
    /// Measured cost of one probe hit, ns.
    cost_per_hit_ns: f64,
    groups: Vec<GroupState>,
    over_streak: u32,
    calm_streak: u32,
    now_ns: u64,
    /// Order the detached groups left in (re-attached newest first).
    detach_order: Vec<Group>,
    last_estimate: f64,
}

impl Governor {
    /// `groups`: the groups with probes attached at startup.
    pub fn new(budget: Budget, cost_per_hit_ns: f64, groups: impl IntoIterator<Item = Group>) -> Self {
        let mut gs: Vec<GroupState> = groups
            .into_iter()
            .map(|group| GroupState {
                group,
                attached: true,
                hits_per_cpu_ns: 0.0,
                detached_at_ns: 0,
                dwell_ns: MIN_DWELL.as_nanos() as u64,
                detaches: 0,
            })
            .collect();
        gs.sort_by_key(|g| g.group);
        gs.dedup_by_key(|g| g.group);
        Self {
            budget,
            cost_per_hit_ns,
            groups: gs,
            over_streak: 0,
            calm_streak: 0,
            now_ns: 0,
            detach_order: Vec::new(),
            last_estimate: 0.0,
        }
    }

    pub fn budget(&self) -> Budget {
        self.budget
    }

    pub fn cost_per_hit_ns(&self) -> f64 {
        self.cost_per_hit_ns
    }

    /// The estimated slowdown of the target over the last window (0.05 = 5%).
    pub fn estimate(&self) -> f64 {
        self.last_estimate
    }

    pub fn is_attached(&self, group: Group) -> bool {
        self.groups.iter().find(|g| g.group == group).is_none_or(|g| g.attached)
    }

    /// Every group attached: events are complete.
    pub fn all_attached(&self) -> bool {
        self.groups.iter().all(|g| g.attached)
    }

    /// Folds in one window; returns the switches to apply (already recorded
    /// as done: the caller reports a failed attach by calling
    /// [`Governor::attach_failed`]).
    pub fn observe(&mut self, window: &Window) -> Vec<Switch> {
        self.now_ns = self.now_ns.saturating_add(window.elapsed_ns);
        let cost = self.cost_per_hit_ns;
        let group_hits = |group: Group| -> u64 {
            ProbeId::ALL.iter().filter(|p| Group::of(**p) == group).map(|p| window.hits[*p as usize]).sum()
        };
        let probe_ns: f64 = self.groups.iter().filter(|g| g.attached).map(|g| group_hits(g.group) as f64 * cost).sum();
        // The probes' time is part of the target's CPU time; where the two
        // disagree (clock ticks, a noisy calibration) the larger one is the
        // CPU time.
        let cpu_ns = (window.target_cpu_ns as f64).max(probe_ns).max(1_000.0);
        self.last_estimate = slowdown(probe_ns, cpu_ns);
        for g in self.groups.iter_mut().filter(|g| g.attached) {
            g.hits_per_cpu_ns = group_hits(g.group) as f64 / cpu_ns;
        }
        let Budget::Ratio(budget) = self.budget else { return Vec::new() };
        let elapsed = window.elapsed_ns.max(1) as f64;
        // The budget's share of one CPU over the window.
        let busy_floor_ns = budget * elapsed;
        let over = self.last_estimate > budget && probe_ns > busy_floor_ns;
        let calm_with = |extra_ns: f64| {
            let total = probe_ns + extra_ns;
            slowdown(total, cpu_ns.max(total)) <= budget / 2.0 || total <= busy_floor_ns / 2.0
        };
        if over {
            self.calm_streak = 0;
            self.over_streak += 1;
            if self.over_streak < REACT_WINDOWS {
                return Vec::new();
            }
            self.over_streak = 0;
            return self.shed(probe_ns, cpu_ns, budget, &group_hits);
        }
        self.over_streak = 0;
        // Re-attach: newest detached first, one per calm stretch.
        let Some(&candidate) = self.detach_order.last() else {
            self.calm_streak = 0;
            return Vec::new();
        };
        let state = self.groups.iter().find(|g| g.group == candidate).cloned().expect("detached group is known");
        let predicted_ns = state.hits_per_cpu_ns * cpu_ns * cost;
        if !calm_with(predicted_ns) {
            self.calm_streak = 0;
            return Vec::new();
        }
        self.calm_streak += 1;
        if self.calm_streak < CALM_WINDOWS || self.now_ns < state.detached_at_ns.saturating_add(state.dwell_ns) {
            return Vec::new();
        }
        self.calm_streak = 0;
        self.detach_order.pop();
        let g = self.groups.iter_mut().find(|g| g.group == candidate).expect("known");
        g.attached = true;
        vec![Switch {
            group: candidate,
            attach: true,
            reason: format!(
                "estimated overhead with it {:.2}% (budget {})",
                slowdown(probe_ns + predicted_ns, cpu_ns.max(probe_ns + predicted_ns)) * 100.0,
                self.budget
            ),
        }]
    }

    /// Detaches groups until the estimate is under the budget.
    fn shed(&mut self, probe_ns: f64, cpu_ns: f64, budget: f64, group_hits: &dyn Fn(Group) -> u64) -> Vec<Switch> {
        let cost = self.cost_per_hit_ns;
        let mut order: Vec<(Group, f64)> =
            self.groups.iter().filter(|g| g.attached).map(|g| (g.group, group_hits(g.group) as f64 * cost)).collect();
        order.sort_by(|a, b| a.0.class().cmp(&b.0.class()).then(b.1.total_cmp(&a.1)));
        let mut remaining = probe_ns;
        let mut chosen = Vec::new();
        // First pass: skip groups too cheap to make a difference; second: if
        // still over, take them too.
        for skip_cheap in [true, false] {
            for &(group, group_ns) in &order {
                if slowdown(remaining, cpu_ns) <= budget || chosen.contains(&group) || group_ns <= 0.0 {
                    continue;
                }
                // Probe time at which the slowdown is exactly the budget.
                let excess = remaining - cpu_ns * budget / (1.0 + budget);
                if skip_cheap && group_ns < excess * 0.05 {
                    continue;
                }
                remaining -= group_ns;
                chosen.push(group);
            }
        }
        let estimate = slowdown(probe_ns, cpu_ns);
        let mut switches = Vec::new();
        for group in chosen {
            let now = self.now_ns;
            let g = self.groups.iter_mut().find(|g| g.group == group).expect("known");
            g.attached = false;
            if g.detaches > 0 {
                g.dwell_ns = (g.dwell_ns * 2).min(MAX_DWELL.as_nanos() as u64);
            }
            g.detaches += 1;
            g.detached_at_ns = now;
            self.detach_order.push(group);
            switches.push(Switch {
                group,
                attach: false,
                reason: format!("estimated overhead {:.2}% over budget {}", estimate * 100.0, self.budget),
            });
        }
        switches
    }

    /// An attach the governor asked for failed: the group stays detached.
    pub fn attach_failed(&mut self, group: Group) {
        let now = self.now_ns;
        if let Some(g) = self.groups.iter_mut().find(|g| g.group == group) {
            g.attached = false;
            g.detached_at_ns = now;
            g.dwell_ns = (g.dwell_ns * 2).min(MAX_DWELL.as_nanos() as u64);
            self.detach_order.push(group);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;
    const ALL: [Group; 4] = [Group::Goroutines, Group::StackDefers, Group::Pops, Group::HeapDefers];

    #[test]
    fn ring_is_small_when_governed_and_a_kernel_valid_size() {
        let default = Budget::parse("1").expect("budget");
        assert_eq!(default.ring_bytes(), 4 << 20);
        assert_eq!(Budget::Unlimited.ring_bytes(), 16 << 20);
        assert_eq!(Budget::parse("50").expect("budget").ring_bytes(), 16 << 20);
        for b in [default, Budget::Unlimited] {
            // The kernel wants a power of two that is a multiple of the page.
            assert!(b.ring_bytes().is_power_of_two() && b.ring_bytes() % 4096 == 0);
        }
    }

    fn window(cpu_ms: u64, hits: &[(ProbeId, u64)]) -> Window {
        let mut w = Window { elapsed_ns: 500 * MS, target_cpu_ns: cpu_ms * MS, ..Default::default() };
        for &(p, h) in hits {
            w.hits[p as usize] = h;
        }
        w
    }

    fn run(gov: &mut Governor, w: &Window, n: usize) -> Vec<Switch> {
        (0..n).flat_map(|_| gov.observe(w)).collect()
    }

    #[test]
    fn budgets_parse() {
        assert_eq!(Budget::parse("1"), Ok(Budget::Ratio(0.01)));
        assert_eq!(Budget::parse("2.5%"), Ok(Budget::Ratio(0.025)));
        assert_eq!(Budget::parse("none"), Ok(Budget::Unlimited));
        assert!(Budget::parse("0").is_err());
        assert!(Budget::parse("lots").is_err());
        assert!(Budget::parse("150").is_err());
    }

    #[test]
    fn unlimited_never_switches() {
        let mut gov = Governor::new(Budget::Unlimited, 2000.0, ALL);
        let storm = window(500, &[(ProbeId::DeferProc, 100_000), (ProbeId::PopDefer, 100_000)]);
        assert!(run(&mut gov, &storm, 10).is_empty());
        assert!(gov.estimate() > 1.0, "the estimate is still reported: {}", gov.estimate());
    }

    #[test]
    fn a_short_burst_or_an_idle_target_keeps_every_probe() {
        let mut gov = Governor::new(Budget::Ratio(0.01), 2000.0, ALL);
        // 1000 pushes in one window, over budget once: not sustained.
        assert!(gov.observe(&window(5, &[(ProbeId::DeferProc, 1000), (ProbeId::PopDefer, 1000)])).is_empty());
        assert!(gov.observe(&window(1, &[])).is_empty());
        // A nearly idle target with a steady trickle: 300 hits/s cost 0.6 ms/s,
        // far over 1% of its own 1 ms/s but under 1% of one CPU.
        let trickle = window(1, &[(ProbeId::DeferProcStack, 150), (ProbeId::PopDefer, 150)]);
        assert!(run(&mut gov, &trickle, 20).is_empty());
        assert!(gov.all_attached());
    }

    #[test]
    fn sheds_stack_defers_and_pops_before_heap_defers() {
        let mut gov = Governor::new(Budget::Ratio(0.01), 2000.0, ALL);
        // An HTTP service: stack defers and goroutines, 1 CPU busy.
        let http = window(
            500,
            &[
                (ProbeId::DeferProcStack, 20_000),
                (ProbeId::PopDefer, 25_000),
                (ProbeId::NewProcReturn, 5_000),
                (ProbeId::Goexit1, 5_000),
                (ProbeId::DeferProc, 10),
            ],
        );
        assert!(run(&mut gov, &http, 2).is_empty(), "two windows are not enough");
        let switches = gov.observe(&http);
        let detached: Vec<Group> = switches.iter().filter(|s| !s.attach).map(|s| s.group).collect();
        assert_eq!(detached, vec![Group::Pops, Group::StackDefers, Group::Goroutines]);
        assert!(gov.is_attached(Group::HeapDefers), "10 heap defers a window are kept");
        assert!(!gov.all_attached());
    }

    #[test]
    fn a_heap_defer_storm_sheds_everything_then_comes_back_without_flapping() {
        let mut gov = Governor::new(Budget::Ratio(0.01), 2000.0, ALL);
        let storm = window(500, &[(ProbeId::DeferProc, 100_000), (ProbeId::PopDefer, 100_000)]);
        let switches = run(&mut gov, &storm, 3);
        let detached: Vec<Group> = switches.iter().map(|s| s.group).collect();
        assert_eq!(detached, vec![Group::Pops, Group::HeapDefers]);
        // The storm goes on untraced: the probes cost nothing, nothing comes back.
        let untraced = window(500, &[]);
        // The storm is still on, but with the probes detached it costs nothing
        // and the prediction (its old rate per unit of CPU) keeps them off.
        assert!(run(&mut gov, &untraced, 200).is_empty());
        // The storm stops: the target idles, the predicted cost falls under the
        // floor; after the dwell (10 s) the heap defers come back first, then
        // the pops, one calm stretch apart.
        let idle = window(1, &[]);
        let back = run(&mut gov, &idle, 20);
        let attached: Vec<Group> = back.iter().map(|s| s.group).collect();
        assert_eq!(attached, vec![Group::HeapDefers, Group::Pops]);
        assert!(back.iter().all(|s| s.attach));
        assert!(gov.all_attached());
        // The storm again: detached again, and now it stays off twice as long.
        assert_eq!(run(&mut gov, &storm, 3).len(), 2);
        let idle_back = run(&mut gov, &idle, 20 + 4);
        assert!(idle_back.is_empty(), "dwell doubled to 20 s: {idle_back:?}");
        assert_eq!(run(&mut gov, &idle, 40).len(), 2);
    }

    #[test]
    fn an_overestimated_hit_cost_still_lets_probes_back_on_an_idle_target() {
        // 100 µs a hit: the probes "cost" far more than the CPU the target used.
        let mut gov = Governor::new(Budget::Ratio(0.01), 100_000.0, ALL);
        let storm = window(500, &[(ProbeId::DeferProc, 100_000), (ProbeId::PopDefer, 100_000)]);
        assert_eq!(run(&mut gov, &storm, 3).len(), 2);
        let idle = window(0, &[]);
        assert_eq!(run(&mut gov, &idle, 40).len(), 2, "an idle target gets its probes back");
        assert!(gov.all_attached());
    }

    #[test]
    fn the_estimate_is_probe_time_over_the_targets_own_work() {
        let mut gov = Governor::new(Budget::Ratio(0.01), 1000.0, ALL);
        // 100 ms of CPU, 10k hits at 1 µs = 10 ms of probes: 10 / 90.
        gov.observe(&window(100, &[(ProbeId::DeferProc, 10_000)]));
        assert!((gov.estimate() - 10.0 / 90.0).abs() < 1e-9, "{}", gov.estimate());
    }
}
