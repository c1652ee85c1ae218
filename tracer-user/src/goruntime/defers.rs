//! Defer records (`runtime._defer`): which linked records are pending calls,
//! and how the compiler names the code a `defer` statement runs.
//!
//! The eBPF probes apply the same rules on the pop side (tracer-ebpf's
//! `pop_defer` skips records without a function, `freedefer` skips synthetic
//! open-coded ones): keep the two in step.
use super::RuntimeLayout;

/// Go's `badDefer()` sentinel, which ends a drained range-over-func list.
pub(crate) const DRAINED_LIST: u64 = 1;

/// What one record linked on `g._defer` is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DeferRecord {
    /// A pending deferred call pushed by `deferproc` (heap: a `defer` in a
    /// loop), `deferprocStack` (stack) or `deferprocat`: one unit of depth.
    Call { heap: bool },
    /// Go ≤ 1.21: a record `gopanic`/`Goexit` link for an open-coded defer
    /// frame. No `deferproc*` pushed it, so it is not part of the depth.
    SyntheticOpenDefer,
    /// Go ≥ 1.22: the record of a range-over-func loop (`rangefunc` set).
    /// Records deferred in the loop body wait on the list at `*head` until
    /// the loop's function returns; the holder itself holds no call.
    RangefuncHolder { head: u64 },
    /// A converted range-over-func header: linked, with no function.
    RangefuncHeader,
}

/// Reads a byte-sized flag of `record`.
fn flag(record: &[u8], offset: Option<u64>) -> bool {
    offset.and_then(|o| record.get(usize::try_from(o).ok()?)).is_some_and(|&b| b != 0)
}

fn word(record: &[u8], offset: u64) -> Option<u64> {
    let start = usize::try_from(offset).ok()?;
    let bytes = record.get(start..start.checked_add(8)?)?;
    Some(u64::from_le_bytes(bytes.try_into().ok()?))
}

/// Classifies one `_defer` record's bytes (`layout.defer_size` of them).
pub(crate) fn classify(layout: &RuntimeLayout, record: &[u8]) -> DeferRecord {
    if flag(record, layout.defer_rangefunc) {
        let head = layout.defer_head.and_then(|o| word(record, o)).unwrap_or(0);
        return DeferRecord::RangefuncHolder { head };
    }
    // The only linked record without a function (Go ≥ 1.22).
    if layout.defer_rangefunc.is_some() && word(record, layout.defer_fn) == Some(0) {
        return DeferRecord::RangefuncHeader;
    }
    if flag(record, layout.defer_open_defer) {
        return DeferRecord::SyntheticOpenDefer;
    }
    DeferRecord::Call { heap: flag(record, Some(layout.defer_heap)) }
}

/// The function holding a `defer` statement, from the function its record
/// points at: the compiler wraps a deferred call with arguments in a closure
/// named after the function (`main.work.deferwrap1`), which sits at the
/// statement's line.
pub(crate) fn defer_statement_function(function: &str) -> &str {
    match function.find(".deferwrap") {
        Some(at) => &function[..at],
        None => function,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gobin::{Arch, GoVersion};

    fn layout(minor: u32) -> RuntimeLayout {
        let v = GoVersion { major: 1, minor, patch: 0, raw: format!("go1.{minor}") };
        RuntimeLayout::from_table(&v, Arch::X86_64).expect("layout")
    }

    fn record(l: &RuntimeLayout, set: &[(u64, u64, usize)]) -> Vec<u8> {
        let mut r = vec![0u8; l.defer_size as usize];
        for &(off, value, len) in set {
            r[off as usize..off as usize + len].copy_from_slice(&value.to_le_bytes()[..len]);
        }
        r
    }

    #[test]
    fn classifies_records() {
        let l = layout(24);
        let call = record(&l, &[(l.defer_fn, 0x1234, 8), (l.defer_heap, 1, 1)]);
        assert_eq!(classify(&l, &call), DeferRecord::Call { heap: true });
        assert_eq!(classify(&l, &record(&l, &[])), DeferRecord::RangefuncHeader);
        let rangefunc = l.defer_rangefunc.expect("rangefunc");
        let holder = record(&l, &[(rangefunc, 1, 1), (l.defer_head.expect("head"), 0x40, 8)]);
        assert_eq!(classify(&l, &holder), DeferRecord::RangefuncHolder { head: 0x40 });
        let l21 = layout(21);
        let open = record(&l21, &[(l21.defer_open_defer.expect("openDefer"), 1, 1), (l21.defer_fn, 9, 8)]);
        assert_eq!(classify(&l21, &open), DeferRecord::SyntheticOpenDefer);
        assert_eq!(classify(&l21, &record(&l21, &[])), DeferRecord::Call { heap: false }, "1.21 has no headers");
        assert_eq!(classify(&l, &[]), DeferRecord::Call { heap: false }, "a short read never panics");
    }

    #[test]
    fn defer_wrappers_name_their_function() {
        assert_eq!(defer_statement_function("main.loop-range1.deferwrap1"), "main.loop-range1");
        assert_eq!(defer_statement_function("main.work"), "main.work");
    }
}
