//! The snapshot: what every output (JSON, text view, TUI, /metrics) shows.
//!
//! Its JSON form is a public contract: keep field names, add freely.
use std::sync::Arc;

use serde::Serialize;

use crate::{gobin::SourceLine, goruntime::GoroutineStatus};

/// A source position as shown to users. Shared: the same site shows up in
/// many goroutines, stacks and snapshots, so clones must be cheap, and one
/// pointer (not two strings and a line) keeps the 100k goroutine views of a
/// snapshot small (three optional sites each).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Site(Arc<SiteParts>);

/// What a [`Site`] names; reached through it (`site.function`).
#[derive(Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct SiteParts {
    pub function: Arc<str>,
    pub file: Arc<str>,
    pub line: u32,
}

impl Site {
    pub fn new(function: &str, file: &str, line: u32) -> Self {
        Self(Arc::new(SiteParts { function: function.into(), file: file.into(), line }))
    }
}

impl std::ops::Deref for Site {
    type Target = SiteParts;

    fn deref(&self) -> &SiteParts {
        &self.0
    }
}

impl From<SourceLine> for Site {
    fn from(s: SourceLine) -> Self {
        Self::new(&s.function, &s.file, s.line)
    }
}

impl std::fmt::Display for Site {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}:{}", self.function, self.file, self.line)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Totals {
    /// Defer records pushed while traced.
    pub defers_pushed: u64,
    /// Defer records popped while traced.
    pub defers_popped: u64,
    /// Live defer records now, over all goroutines (pre-attach ones included).
    pub defer_records_live: u64,
    pub goroutines_created: u64,
    pub goroutines_exited: u64,
    /// Live goroutines, without the runtime's own (as `runtime.NumGoroutine`).
    pub goroutines_live: u64,
    /// Live goroutines including the runtime's own.
    pub goroutines_total: u64,
    /// Events received from the probes.
    pub events: u64,
    /// Events the probes could not deliver (ring buffer full). Never hidden.
    pub events_lost: u64,
    /// Goroutines proven leaked: the members of the `leaked` groups.
    pub goroutines_leaked: u64,
    /// Stuck goroutines not proven leaked: the members of the `stuck` groups.
    pub goroutines_stuck: u64,
    /// Pops seen for a goroutine whose chain deferscope believed empty: a
    /// sign of lost events; the goroutine is resynchronised from memory.
    pub unmatched_pops: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct GoroutineView {
    pub goid: u64,
    pub state: GoroutineStatus,
    /// Only for waiting goroutines, as Go prints it (`chan receive`).
    pub wait_reason: Option<Arc<str>>,
    pub defer_depth: u64,
    pub max_defer_depth: u64,
    /// The `defer` statement that pushed the newest record.
    pub top_defer_site: Option<Site>,
    /// The `go` statement that created the goroutine.
    pub created_by: Option<Site>,
    /// The function the goroutine started in.
    pub start_function: Option<Arc<str>>,
    /// The goroutine that created it, when the runtime records it (Go 1.21+).
    pub parent_goid: Option<u64>,
    /// One of the runtime's own goroutines (GC workers, finalizers, ...).
    pub system: bool,
    /// Whether the depth is known exactly: false until a consistent memory
    /// read or after lost events.
    pub depth_exact: bool,
    /// How long it has been blocked without running, as far as deferscope
    /// can tell (since it first saw it blocked at the same place).
    pub blocked_for_s: Option<f64>,
    /// Innermost frame outside the runtime of a blocked goroutine's stack.
    pub blocked_at: Option<Site>,
    /// Stuck, and proven: the primitive it waits on is unreachable from
    /// every goroutine that may run (two consecutive scans).
    pub leaked: bool,
    /// Blocked on a concurrency primitive for at least `--leak-after`
    /// without running (leaked goroutines are stuck too).
    pub stuck: bool,
    /// Why it is leaked ("channel unreachable", "nil channel", ...), or for
    /// a stuck one why it is not ("reachable: could still be woken", ...).
    pub leak_reason: Option<Arc<str>>,
    /// How long its primitive has been known unreachable (leaked ones).
    pub unreachable_for_s: Option<f64>,
    /// What only some goroutines carry, or only the TUI and `--stacks` ask
    /// for (retaining path, stack, defer chain). Boxed: absent from nearly
    /// every goroutine of a large snapshot, and three empty vectors were 72
    /// of the view's 232 bytes (7 MB at 100k goroutines). Serialised in
    /// place, as the view's own fields.
    #[serde(flatten)]
    pub details: Option<Box<GoroutineDetails>>,
}

/// See [`GoroutineView::details`].
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct GoroutineDetails {
    /// For a stuck goroutine found reachable, with `--explain-leaks`: who
    /// holds its primitive, root first ("global main.registry+0x18",
    /// "goroutine 7 stack: main.run (/src/main.go:12)", "heap 0xc000123000
    /// (96 B) +0x8", ...), the primitive's object last, marked
    /// "(primitive)" (`aggregate::leaks::describe_retaining_path`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retained_by: Option<Vec<String>>,
    /// Symbolised stack, innermost first (only when asked for: TUI, `--stacks`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stack: Option<Vec<Site>>,
    /// The defer chain grouped by site, newest site first (only when asked for).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub defer_chain: Option<Vec<DeferChainEntry>>,
}

impl GoroutineDetails {
    fn is_empty(&self) -> bool {
        self.retained_by.is_none() && self.stack.is_none() && self.defer_chain.is_none()
    }
}

impl GoroutineView {
    /// Who holds a reachable stuck goroutine's primitive (`--explain-leaks`).
    pub fn retained_by(&self) -> Option<&[String]> {
        self.details.as_ref()?.retained_by.as_deref()
    }

    /// Symbolised stack, innermost first (TUI, `--stacks`).
    pub fn stack(&self) -> Option<&[Site]> {
        self.details.as_ref()?.stack.as_deref()
    }

    /// The defer chain grouped by site, newest site first (TUI, `--stacks`).
    pub fn defer_chain(&self) -> Option<&[DeferChainEntry]> {
        self.details.as_ref()?.defer_chain.as_deref()
    }

    /// Sets the details, leaving none when all are absent.
    pub fn set_details(&mut self, details: GoroutineDetails) {
        self.details = (!details.is_empty()).then(|| Box::new(details));
    }
}

/// A run of records from one site in a goroutine's chain.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DeferChainEntry {
    pub site: Option<Site>,
    pub count: u64,
}

/// Stuck or leaked goroutines with the same story.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LeakGroup {
    /// `leaked` (proven) or `stuck`.
    pub verdict: Verdict,
    pub created_by: Option<Site>,
    pub blocked_at: Option<Site>,
    pub wait_reason: String,
    pub count: u64,
    pub oldest_blocked_s: f64,
    /// Some of the goroutines (at most 10), for drilling down.
    pub sample_goids: Vec<u64>,
    /// Whether the group kept gaining members over the recent window (up to
    /// 5 minutes since it appeared, at least 10 s).
    pub growing: bool,
    /// Members gained per minute over that window (negative when shrinking).
    pub growth_per_min: f64,
    /// One member's retaining path (`GoroutineView::retained_by`), for a
    /// stuck group with `--explain-leaks`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retained_by: Option<Vec<String>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Proven: the primitive is unreachable, nothing can wake them.
    Leaked,
    /// Blocked past `--leak-after`, not proven leaked.
    Stuck,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Leaked => "leaked",
            Verdict::Stuck => "stuck",
        }
    }
}

/// The last reachability scan (leak proofs), and what it cost.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct LeakScanView {
    /// Seconds since it ended.
    pub last_s_ago: f64,
    pub duration_s: f64,
    /// Bytes read from the target's memory.
    pub bytes_read: u64,
    pub objects_marked: u64,
    /// Stacks of goroutines that may run, scanned precisely through the
    /// compiler's stack maps, and word by word (running, in a syscall, or a
    /// frame the maps do not describe: errs towards reachable).
    pub stacks_precise: u64,
    pub stacks_conservative: u64,
    /// In-use heap spans.
    pub spans: u64,
    /// False when the heap could not be traced (only goroutines that can
    /// never wake, on nil channels or `select {}`, are proven then).
    pub heap_traced: bool,
    /// Scans since attach, and how many of them failed.
    pub scans: u64,
    pub failures: u64,
    /// Why the last scan proved nothing, if it failed.
    pub error: Option<String>,
}

/// Hits of one probe since attach (the tracer's own cost).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ProbeHits {
    pub function: String,
    pub hits: u64,
    /// Whether the probe is attached now (the overhead governor detaches
    /// the costliest ones over budget).
    pub state: ProbeState,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProbeState {
    #[default]
    Attached,
    Detached,
}

/// How the snapshot was measured.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Every probe attached: counts are exact, depths follow every push and
    /// pop.
    #[default]
    Exact,
    /// The overhead governor detached some probes: depths come from memory
    /// reads (`depth_exact` says where they are exact), and the totals named
    /// in `estimated` include estimates.
    Sampled,
}

/// The overhead governor's view of what tracing costs the target.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Overhead {
    /// `--overhead-budget` as a fraction (0.01 for 1%); null for `none`.
    pub budget_ratio: Option<f64>,
    /// Estimated slowdown of the target over the last second (probe time /
    /// the target's own CPU time).
    pub estimate_ratio: f64,
    /// What one probe hit costs on this kernel, measured at startup (ns).
    pub cost_per_hit_ns: f64,
    /// Probe switches (detach or re-attach) so far.
    pub switches: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DeferSiteView {
    /// The `defer` statement (`function`, `file`, `line` in the JSON).
    #[serde(flatten)]
    pub site: Site,
    /// Pushes seen while traced.
    pub pushed: u64,
    /// Records from this site on some goroutine's chain now.
    pub live: u64,
    /// The function its records will call, through the compiler's wrappers
    /// (`os.(*File).Close` for `defer f.Close()`), where it starts; null
    /// until a record of the site was read from memory.
    pub deferred: Option<Site>,
    /// How long its records stayed pending, over those pushed and popped
    /// while traced; null before the first.
    pub lifetime_s: Option<LifetimeStats>,
    /// Age of its oldest pending record, null when none is pending.
    pub oldest_live_s: Option<f64>,
    /// That record predates what deferscope saw of it (pushed before attach,
    /// or known only from a memory read): its age is at least this.
    pub oldest_live_lower_bound: bool,
}

/// What the traced process holds (`process` in the JSON); a figure that
/// could not be read is null.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ProcessResources {
    /// Entries of `/proc/PID/fd`.
    pub open_fds: Option<u64>,
    /// Soft `Max open files` of `/proc/PID/limits` (null: unlimited).
    pub fd_limit: Option<u64>,
    /// Resident set size (`/proc/PID/statm`).
    pub rss_bytes: Option<u64>,
    /// OS threads (`/proc/PID/status`).
    pub threads: Option<u64>,
}

/// Upper bounds (seconds) of the lifetime histogram's buckets, as exported
/// to Prometheus (`+Inf` is the count).
pub const LIFETIME_BUCKETS_S: [f64; 10] = [0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0, 300.0];

/// Record lifetimes at one site, in seconds.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LifetimeStats {
    pub count: u64,
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
    /// Cumulative counts at [`LIFETIME_BUCKETS_S`] (for /metrics).
    #[serde(skip)]
    pub buckets: Vec<u64>,
    /// Sum of the lifetimes (for /metrics), from the histogram: within its
    /// two significant digits.
    #[serde(skip)]
    pub sum: f64,
}

/// A diagnosis: a pattern in the numbers that names a bug, with its evidence.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Finding {
    pub kind: FindingKind,
    /// The `defer` statement (or, for a leak, where the goroutines block).
    pub site: Option<Site>,
    /// The goroutine holding the records (for a leak, one of the group).
    pub goroutine: Option<u64>,
    /// Records held (for a leak, goroutines in the group).
    pub records: u64,
    /// How fast `records` grows, per second.
    pub growth_per_s: f64,
    /// What the records will call.
    pub deferred: Option<Site>,
    /// One sentence for people.
    pub message: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    /// One frame holding many records from one site, growing: a `defer` in
    /// a loop whose calls wait for the function to return.
    DeferInLoop,
    /// A site whose records live far longer than the others'.
    LongHeld,
    /// Open files near the limit while a defer-in-loop site holds `Close`s.
    FdPressure,
    /// A leaked goroutine group (proven unreachable).
    GoroutineLeak,
}

impl FindingKind {
    pub const ALL: [FindingKind; 4] =
        [FindingKind::DeferInLoop, FindingKind::LongHeld, FindingKind::FdPressure, FindingKind::GoroutineLeak];

    pub fn as_str(self) -> &'static str {
        match self {
            FindingKind::DeferInLoop => "defer_in_loop",
            FindingKind::LongHeld => "long_held",
            FindingKind::FdPressure => "fd_pressure",
            FindingKind::GoroutineLeak => "goroutine_leak",
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Snapshot {
    /// RFC 3339.
    pub time: String,
    pub pid: u32,
    pub exe: String,
    /// The container (or pod) the process runs in, from `/proc/PID/cgroup`;
    /// absent outside containers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    pub go_version: String,
    pub arch: String,
    /// Runtime functions with a probe attached, by name.
    pub probes: Vec<String>,
    pub totals: Totals,
    /// Every live goroutine, deepest chain first (capped by `--top`).
    pub goroutines: Vec<GoroutineView>,
    /// Defer call sites, most live records first.
    pub defer_sites: Vec<DeferSiteView>,
    /// Leak groups: leaked ones first, then stuck ones, biggest first.
    pub leaks: Vec<LeakGroup>,
    /// The last reachability scan (absent before the first one, or with
    /// `--leak-scan off`).
    pub leak_scan: Option<LeakScanView>,
    /// The `--leak-after` threshold in seconds.
    pub leak_after_s: f64,
    /// Probe hits since attach, per attached probe.
    pub probe_hits: Vec<ProbeHits>,
    /// Seconds since deferscope attached.
    pub trace_uptime_s: f64,
    /// Seconds the last read of the target's goroutines took.
    pub memory_read_s: f64,
    /// Set on the last snapshot when the target exited.
    pub target_exited: bool,
    /// `exact` while every probe is attached, `sampled` once the overhead
    /// governor detached some.
    pub mode: Mode,
    /// What tracing costs the target, as the governor estimates it.
    pub overhead: Option<Overhead>,
    /// Names of the `totals` that include estimates (counted from memory reads
    /// while their probes were detached), since the first switch.
    pub estimated: Vec<String>,
    /// What the process holds: file descriptors, memory, threads.
    pub process: Option<ProcessResources>,
    /// Diagnoses drawn from the numbers, each with its evidence.
    pub findings: Vec<Finding>,
}

impl Snapshot {
    /// A copy listing only the first `n` goroutines (the deepest chains),
    /// without cloning the rest.
    pub fn with_top(&self, n: usize) -> Snapshot {
        Snapshot {
            time: self.time.clone(),
            pid: self.pid,
            exe: self.exe.clone(),
            container: self.container.clone(),
            go_version: self.go_version.clone(),
            arch: self.arch.clone(),
            probes: self.probes.clone(),
            totals: self.totals.clone(),
            goroutines: self.goroutines.iter().take(n).cloned().collect(),
            defer_sites: self.defer_sites.clone(),
            leaks: self.leaks.clone(),
            leak_scan: self.leak_scan.clone(),
            leak_after_s: self.leak_after_s,
            probe_hits: self.probe_hits.clone(),
            trace_uptime_s: self.trace_uptime_s,
            memory_read_s: self.memory_read_s,
            target_exited: self.target_exited,
            mode: self.mode,
            overhead: self.overhead.clone(),
            estimated: self.estimated.clone(),
            process: self.process.clone(),
            findings: self.findings.clone(),
        }
    }
}
