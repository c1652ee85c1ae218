//! The snapshot: what every output (JSON, text view, TUI, /metrics) shows.
//!
//! Its JSON form is a public contract: keep field names, add freely.
use serde::Serialize;

use crate::gobin::SourceLine;

/// A source position as shown to users.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Site {
    pub function: String,
    pub file: String,
    pub line: u32,
}

impl From<SourceLine> for Site {
    fn from(s: SourceLine) -> Self {
        Self { function: s.function, file: s.file, line: s.line }
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
    /// Pops seen for a goroutine whose chain deferscope believed empty: a
    /// sign of lost events; the goroutine is resynchronised from memory.
    pub unmatched_pops: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GoroutineView {
    pub goid: u64,
    pub state: String,
    /// Only for waiting goroutines, as Go prints it (`chan receive`).
    pub wait_reason: Option<String>,
    pub defer_depth: u64,
    pub max_defer_depth: u64,
    /// The `defer` statement that pushed the newest record.
    pub top_defer_site: Option<Site>,
    /// The `go` statement that created the goroutine.
    pub created_by: Option<Site>,
    /// The function the goroutine started in.
    pub start_function: Option<String>,
    /// The goroutine that created it, when the runtime records it (Go 1.21+).
    pub parent_goid: Option<u64>,
    /// One of the runtime's own goroutines (GC workers, finalizers, ...).
    pub system: bool,
    /// Whether the depth is known exactly: false until a consistent memory
    /// read or after lost events.
    pub depth_exact: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DeferSiteView {
    pub function: String,
    pub file: String,
    pub line: u32,
    /// Pushes seen while traced.
    pub pushed: u64,
    /// Records from this site on some goroutine's chain now.
    pub live: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Snapshot {
    /// RFC 3339.
    pub time: String,
    pub pid: u32,
    pub exe: String,
    pub go_version: String,
    pub arch: String,
    /// Runtime functions with a probe attached, by name.
    pub probes: Vec<String>,
    pub totals: Totals,
    /// Every live goroutine, deepest chain first (capped by `--top`).
    pub goroutines: Vec<GoroutineView>,
    /// Defer call sites, most live records first.
    pub defer_sites: Vec<DeferSiteView>,
    /// Set on the last snapshot when the target exited.
    pub target_exited: bool,
}
