//! The probe plan: which runtime functions carry defer and goroutine events
//! in each Go version, and where on them a probe goes.
//!
//! Every probe is an entry probe (never a uretprobe: Go moves stacks and a
//! patched return address crashes the target), placed after the function's
//! stack check; results are read after the call instead (`AfterCall`).
use tracer_common::ProbeId;

use crate::gobin::GoVersion;

/// Where a probe goes.
pub(crate) enum Placement {
    /// Entry of the function, after its stack check.
    Entry(&'static str),
    /// After each call to `callee` inside `caller` (a return value without a
    /// uretprobe, which would crash Go).
    AfterCall { caller: &'static str, callee: &'static str },
}

pub(crate) struct PlannedProbe {
    pub probe: ProbeId,
    pub placement: Placement,
    /// Without it deferscope cannot count exactly; refuse to run.
    pub required: bool,
}

/// Which runtime functions carry defer and goroutine events in this version.
pub(crate) fn plan(version: &GoVersion) -> Vec<PlannedProbe> {
    use Placement::*;
    let mut plan = vec![
        // Heap records (defer in a loop); absent when the program has none.
        PlannedProbe { probe: ProbeId::DeferProc, placement: Entry("runtime.deferproc"), required: false },
        PlannedProbe { probe: ProbeId::DeferProcStack, placement: Entry("runtime.deferprocStack"), required: true },
        // Defers in range-over-func loop bodies (1.23+; linked only when used).
        // Their loop's header record (deferrangefunc) holds no call and is
        // left out of the depth, on the push and the pop side alike.
        PlannedProbe { probe: ProbeId::DeferProcAt, placement: Entry("runtime.deferprocat"), required: false },
        PlannedProbe { probe: ProbeId::Goexit1, placement: Entry("runtime.goexit1"), required: true },
        PlannedProbe {
            probe: ProbeId::NewProcReturn,
            placement: AfterCall { caller: "runtime.newproc.func1", callee: "runtime.newproc1" },
            required: false,
        },
    ];
    // Every pop goes through one primitive: popDefer from 1.23, freedefer before.
    plan.push(if version.minor >= 23 {
        PlannedProbe { probe: ProbeId::PopDefer, placement: Entry("runtime.popDefer"), required: true }
    } else {
        PlannedProbe { probe: ProbeId::FreeDefer, placement: Entry("runtime.freedefer"), required: true }
    });
    plan
}
