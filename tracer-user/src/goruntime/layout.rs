//! [`RuntimeLayout`]: offsets into the runtime's structs and the values of
//! its enums, from the binary's DWARF or, for stripped binaries, from the
//! built-in table `layouts.json`.
//!
//! The table is generated from every Go toolchain by `cargo xtask
//! gen-layouts` (`xtask/gen-layouts/main.go`); never edit it by hand. Its
//! records deserialise straight into [`RuntimeLayout`], so a field added here
//! is a field the generator must emit.
use std::{collections::BTreeMap, sync::OnceLock};

use serde::Deserialize;

use super::goroutines::GoroutineStatus;
use crate::gobin::{Arch, DwarfFacts, GoBinError, GoBinary, GoVersion};

/// The structs a [`RuntimeLayout`] is computed from.
pub(crate) const STRUCTS: &[&str] = &[
    "runtime.g",
    "runtime.gobuf",
    "runtime.m",
    "runtime._defer",
    "runtime.stack",
    "runtime.mheap",
    "runtime.mspan",
    "runtime.special",
    "runtime.sudog",
    "runtime.moduledata",
    "runtime.p",
    "runtime.wbBuf",
    "runtime.gcWork",
    "runtime.pageCache",
    "runtime.semaRoot",
    "runtime.semTable",
    // Go 1.26+ only (the P's vector-register scratch).
    "runtime.xRegPerP",
];

static TABLE_JSON: &str = include_str!("layouts.json");

/// Upper bound on a runtime struct's size (`runtime.g` is under 500 bytes,
/// `runtime.m` under 2 KiB). The scanner reads `g_size` bytes per goroutine
/// and `defer_size` per record, so DWARF claiming more is refused.
const MAX_STRUCT_SIZE: u64 = 1 << 16;

/// Offsets into runtime structures (bytes) and the runtime's enum values.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub(crate) struct RuntimeLayout {
    pub g_size: u64,
    pub g_stack_lo: u64,
    pub g_stack_hi: u64,
    pub g_defer: u64,
    pub g_panic: u64,
    pub g_m: u64,
    pub g_sched: u64,
    pub gobuf_sp: u64,
    pub gobuf_pc: u64,
    pub gobuf_lr: u64,
    pub gobuf_bp: u64,
    pub g_atomicstatus: u64,
    pub g_goid: u64,
    pub g_waitsince: u64,
    pub g_waitreason: u64,
    /// Absent before Go 1.21.
    pub g_parent_goid: Option<u64>,
    pub g_gopc: u64,
    pub g_startpc: u64,
    /// `g.trackingSeq` (uint8): bumped each time the goroutine stops
    /// running. None if the runtime has no such field.
    pub g_tracking_seq: Option<u64>,
    pub m_curg: u64,
    pub defer_size: u64,
    pub defer_sp: u64,
    pub defer_pc: u64,
    pub defer_fn: u64,
    pub defer_link: u64,
    pub defer_heap: u64,
    /// `_defer.openDefer` (Go ≤ 1.21), else None.
    pub defer_open_defer: Option<u64>,
    /// `_defer.rangefunc` (Go ≥ 1.22), else None.
    pub defer_rangefunc: Option<u64>,
    /// `_defer.head` (Go ≥ 1.22), else None.
    pub defer_head: Option<u64>,
    /// The `_G*` constants of `runtime2.go` (goroutine status values).
    pub g_statuses: StatusCodes,
    /// The `waitReason` enum and the strings Go prints for it.
    pub wait_reasons: WaitReasons,
    /// What the reachability scan reads (leak proofs); None when the
    /// binary's DWARF lacks one of its members (no proofs, never a guess).
    #[serde(default)]
    pub reach: Option<ReachLayout>,
    /// Where this layout came from: "dwarf" or "table:go1.24".
    #[serde(skip)]
    pub source: String,
}

/// Offsets the reachability scan (`process::reachability`) reads: the heap's
/// span table, spans, their specials, and the sudogs of blocked goroutines.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub(crate) struct ReachLayout {
    /// `g.waiting`: the goroutine's sudogs while it blocks (chained by
    /// `sudog.waitlink`).
    pub g_waiting: u64,
    /// `mheap.allspans`: slice of every `*mspan` ever created.
    pub mheap_allspans: u64,
    pub mspan_size: u64,
    pub mspan_start: u64,
    pub mspan_npages: u64,
    pub mspan_elemsize: u64,
    /// `mspan.state` (an `mSpanStateBox`: its first byte is the state).
    pub mspan_state: u64,
    pub mspan_spanclass: u64,
    pub mspan_specials: u64,
    /// `mspan.freeindex` and `mspan.nelems`, adjacent: uintptr up to Go
    /// 1.21, uint16 since (their width is `mspan_nelems - mspan_freeindex`).
    /// With `mspan.allocBits` (a `*gcBits`, one bit per object) they say
    /// which slots are free (`(*mspan).isFree`).
    pub mspan_freeindex: u64,
    pub mspan_nelems: u64,
    pub mspan_alloc_bits: u64,
    pub special_next: u64,
    /// `special.offset`: uint16 up to Go 1.21, uintptr since (its width is
    /// `special_kind - special_offset`).
    pub special_offset: u64,
    pub special_kind: u64,
    /// The `_KindSpecial*` values of the specials Go's collector treats as
    /// roots (`markrootSpans`: a finalizer's object is scanned and its
    /// function is a root; a weak handle's and a cleanup's record is a
    /// root); every other kind (profiling records, pin counters, ...) is
    /// not. They change between versions. None: not in this binary's DWARF
    /// (then every special counts as a root, errs towards reachable).
    #[serde(default)]
    pub special_kind_finalizer: Option<i64>,
    #[serde(default)]
    pub special_kind_weak_handle: Option<i64>,
    #[serde(default)]
    pub special_kind_cleanup: Option<i64>,
    pub sudog_size: u64,
    pub sudog_c: u64,
    pub sudog_elem: u64,
    pub sudog_waitlink: u64,
    /// The semaphore table (`runtime/sema.go`): `semTabSize` padded
    /// `semaRoot`s of `semtable_size / SEMTAB_SIZE` bytes each, each a treap
    /// of sudogs (`prev`/`next`) keyed by `elem`, waiters on the same
    /// address chained by `waitlink`; `sudog.g` is the waiter.
    pub sudog_g: u64,
    pub sudog_prev: u64,
    pub sudog_next: u64,
    pub semaroot_treap: u64,
    /// Byte size of `runtime.semTable` (an array type).
    pub semtable_size: u64,
    /// `moduledata.data`/`edata`/`bss`/`ebss` and the pointer masks of those
    /// ranges (`gcdatamask`, `gcbssmask`: a `bitvector`, `n int32` then
    /// `bytedata *uint8`, one bit per word): the precise global roots.
    pub moduledata_data: u64,
    pub moduledata_edata: u64,
    pub moduledata_bss: u64,
    pub moduledata_ebss: u64,
    pub moduledata_gcdatamask: u64,
    pub moduledata_gcbssmask: u64,
    /// `p.wbBuf` and `p.gcw` with the sizes of `runtime.wbBuf` and
    /// `runtime.gcWork`: the GC's own buffers inside each P, which hold
    /// pointers as integers (stale ones too) that Go's GC never traces.
    pub p_wbbuf: u64,
    pub wbbuf_size: u64,
    pub p_gcw: u64,
    pub gcwork_size: u64,
    /// `m.g0`, `m.gsignal` and `m.alllink`: the goroutines of each M (from
    /// `runtime.allm`), not in `allgs`, whose `g.stack` words are no
    /// pointers either.
    pub m_g0: u64,
    pub m_gsignal: u64,
    pub m_alllink: u64,
    /// `p.pcache` and the size of `runtime.pageCache`: its `base` is a
    /// uintptr to a heap chunk (often equal to the chunk's first object).
    pub p_pcache: u64,
    pub pagecache_size: u64,
    /// `p.xRegs` (Go 1.26+ on amd64 and arm64) and the size of
    /// `runtime.xRegPerP`: where asynchronous preemption saves the vector
    /// registers, stale copies of pointers among them (a `sync.Cond` seen
    /// kept alive by one); bytes to Go's GC, which never traces them.
    #[serde(default)]
    pub p_xregs: Option<u64>,
    #[serde(default)]
    pub xregperp_size: u64,
}

/// `g.atomicstatus` values by constant name (`_Grunning` → 2), as this
/// version of the runtime numbers them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub(crate) struct StatusCodes(BTreeMap<String, u32>);

impl StatusCodes {
    /// The statuses every supported runtime has; without them no goroutine
    /// could be classified (the generator requires them too).
    const REQUIRED: &[&str] = &["_Gidle", "_Grunnable", "_Grunning", "_Gsyscall", "_Gwaiting", "_Gdead", "_Gscan"];

    /// Keeps the runtime constants that are goroutine statuses: `_G`
    /// followed by lower case (`_Grunning`, `_Gscanwaiting`), not `_GCoff`
    /// nor `_GoidCacheBatch`. The generator applies the same rule.
    fn from_consts(consts: &[(String, i64)]) -> Self {
        let is_status = |name: &str| {
            name.strip_prefix("_G")
                .is_some_and(|rest| !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
        };
        Self(
            consts
                .iter()
                .filter(|(name, _)| is_status(name))
                .filter_map(|(name, v)| Some((name.clone(), u32::try_from(*v).ok()?)))
                .collect(),
        )
    }

    pub(crate) fn value(&self, name: &str) -> Option<u32> {
        self.0.get(name).copied()
    }

    /// Decodes a raw `g.atomicstatus` (the `_Gscan` bit, set while the GC
    /// scans the stack, is ignored).
    pub(crate) fn decode(&self, raw: u32) -> GoroutineStatus {
        let scan_bit = self.value("_Gscan").unwrap_or(0x1000);
        let value = raw & !scan_bit;
        let name = self.0.iter().find(|(name, v)| **v == value && !name.starts_with("_Gscan")).map(|(n, _)| n.as_str());
        GoroutineStatus::from_constant(name).unwrap_or(GoroutineStatus::Unknown(value))
    }
}

/// One value of the runtime's `waitReason` enum.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub(crate) struct WaitReason {
    pub value: u8,
    /// The constant's name (`waitReasonChanReceive`).
    pub name: String,
    /// What Go prints (`chan receive`).
    pub string: String,
}

/// The `waitReason` enum of one runtime version (renumbered across versions).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub(crate) struct WaitReasons(Vec<WaitReason>);

impl WaitReasons {
    /// The string Go prints for `value`.
    pub(crate) fn string(&self, value: u8) -> Option<&str> {
        self.0.iter().find(|w| w.value == value).map(|w| w.string.as_str())
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &WaitReason> {
        self.0.iter()
    }

    /// A table with just these (value, string) pairs, for tests.
    #[cfg(test)]
    pub(crate) fn of(pairs: &[(u8, &str)]) -> Self {
        Self(pairs.iter().map(|&(value, s)| WaitReason { value, name: String::new(), string: s.to_owned() }).collect())
    }
}

/// One (Go minor version, GOARCH) record of `layouts.json`.
#[derive(Deserialize)]
struct Record {
    /// The toolchain the record was generated with (`go1.24.11`).
    #[allow(dead_code)]
    go: String,
    minor: u32,
    arch: String,
    #[serde(flatten)]
    layout: RuntimeLayout,
}

#[derive(Deserialize)]
struct Table {
    layouts: Vec<Record>,
}

fn table() -> &'static Result<Vec<Record>, String> {
    static TABLE: OnceLock<Result<Vec<Record>, String>> = OnceLock::new();
    TABLE.get_or_init(|| {
        serde_json::from_str::<Table>(TABLE_JSON)
            .map(|t| t.layouts)
            .map_err(|e| format!("built-in layouts.json is corrupt: {e}"))
    })
}

/// Minor versions the built-in table covers for `arch`, ascending.
pub(crate) fn builtin_minors(arch: Arch) -> Vec<u32> {
    let mut minors: Vec<u32> = match table() {
        Ok(t) => t.iter().filter(|r| r.arch == arch.goarch()).map(|r| r.minor).collect(),
        Err(_) => Vec::new(),
    };
    minors.sort_unstable();
    minors.dedup();
    minors
}

impl RuntimeLayout {
    /// The layout of `binary`'s runtime: from its DWARF when it has some,
    /// else from the built-in table.
    pub(crate) fn of(binary: &GoBinary) -> Result<Self, GoBinError> {
        match binary.dwarf_facts(STRUCTS)? {
            Some(facts) => Self::from_dwarf(&facts, binary.version(), binary.wait_reason_strings().as_deref()),
            None => Self::from_table(binary.version(), binary.arch()),
        }
    }

    /// The built-in table's layout for this version and architecture.
    pub(crate) fn from_table(version: &GoVersion, arch: Arch) -> Result<Self, GoBinError> {
        let t = table().as_ref().map_err(|e| GoBinError::Other(e.clone()))?;
        let record = t
            .iter()
            .find(|r| version.major == 1 && r.minor == version.minor && r.arch == arch.goarch())
            .ok_or_else(|| {
                let known: Vec<String> = builtin_minors(arch).iter().map(|m| format!("1.{m}")).collect();
                GoBinError::UnsupportedVersion(format!(
                    "{} on {}: the binary has no DWARF and deferscope has no built-in runtime layout for it \
                     (built-in: {}); rebuild the target without -ldflags=-s or regenerate the table with \
                     `cargo xtask gen-layouts`",
                    version.raw,
                    arch.goarch(),
                    known.join(", ")
                ))
            })?;
        Ok(Self { source: format!("table:go1.{}", record.minor), ..record.layout.clone() })
    }

    /// Builds the layout from DWARF facts. `binary_strings` is the binary's
    /// own `runtime.waitReasonStrings` when it could be read (index = value).
    pub(crate) fn from_dwarf(
        facts: &DwarfFacts,
        version: &GoVersion,
        binary_strings: Option<&[String]>,
    ) -> Result<Self, GoBinError> {
        let s = &facts.structs;
        let member = |st: &str, m: &str| s.get(st).and_then(|x| x.1.get(m).copied());
        let req = |st: &str, m: &str| member(st, m).ok_or_else(|| missing(&format!("{st}.{m}")));
        let size = |st: &str| s.get(st).map(|x| x.0).filter(|&n| n > 0).ok_or_else(|| missing(&format!("struct {st}")));
        let (g, d) = ("runtime.g", "runtime._defer");
        let stack = req(g, "stack")?;
        let g_statuses = StatusCodes::from_consts(&facts.runtime_consts);
        if let Some(absent) = StatusCodes::REQUIRED.iter().find(|name| g_statuses.value(name).is_none()) {
            return Err(missing(&format!("goroutine status constant runtime.{absent}")));
        }
        let in_stack = |m: &str| {
            stack.checked_add(req("runtime.stack", m)?).ok_or_else(|| out_of_bounds(&format!("runtime.g.stack.{m}")))
        };
        let layout = Self {
            g_size: size(g)?,
            g_stack_lo: in_stack("lo")?,
            g_stack_hi: in_stack("hi")?,
            g_defer: req(g, "_defer")?,
            g_panic: req(g, "_panic")?,
            g_m: req(g, "m")?,
            g_sched: req(g, "sched")?,
            gobuf_sp: req("runtime.gobuf", "sp")?,
            gobuf_pc: req("runtime.gobuf", "pc")?,
            gobuf_lr: req("runtime.gobuf", "lr")?,
            gobuf_bp: req("runtime.gobuf", "bp")?,
            g_atomicstatus: req(g, "atomicstatus")?,
            g_goid: req(g, "goid")?,
            g_waitsince: req(g, "waitsince")?,
            g_waitreason: req(g, "waitreason")?,
            g_parent_goid: member(g, "parentGoid"),
            g_gopc: req(g, "gopc")?,
            g_startpc: req(g, "startpc")?,
            g_tracking_seq: member(g, "trackingSeq"),
            m_curg: req("runtime.m", "curg")?,
            defer_size: size(d)?,
            defer_sp: req(d, "sp")?,
            defer_pc: req(d, "pc")?,
            defer_fn: req(d, "fn")?,
            defer_link: req(d, "link")?,
            defer_heap: req(d, "heap")?,
            defer_open_defer: member(d, "openDefer"),
            defer_rangefunc: member(d, "rangefunc"),
            defer_head: member(d, "head"),
            reach: reach_from_dwarf(
                &member,
                &|st: &str| s.get(st).map(|x| x.0).filter(|&n| n > 0),
                &facts.runtime_consts,
            ),
            g_statuses,
            wait_reasons: wait_reasons_from_dwarf(&facts.runtime_consts, version, binary_strings),
            source: "dwarf".to_string(),
        };
        layout.check_bounds()?;
        Ok(layout)
    }

    /// Every offset lies inside its struct and every struct has a plausible
    /// size, so that no offset arithmetic overflows and no read is huge. The
    /// DWARF comes from the target's file: it is checked, not trusted.
    fn check_bounds(&self) -> Result<(), GoBinError> {
        for (name, size) in [("runtime.g", self.g_size), ("runtime._defer", self.defer_size)] {
            if size > MAX_STRUCT_SIZE {
                return Err(out_of_bounds(&format!("struct {name} of {size} bytes")));
            }
        }
        if self.m_curg >= MAX_STRUCT_SIZE {
            return Err(out_of_bounds("runtime.m.curg"));
        }
        let in_g = [
            self.g_stack_lo,
            self.g_stack_hi,
            self.g_defer,
            self.g_panic,
            self.g_m,
            self.g_atomicstatus,
            self.g_goid,
            self.g_waitsince,
            self.g_waitreason,
            self.g_gopc,
            self.g_startpc,
        ]
        .map(Some)
        .into_iter()
        .chain([self.gobuf_sp, self.gobuf_pc, self.gobuf_lr, self.gobuf_bp].map(|f| self.g_sched.checked_add(f)))
        .chain([self.g_parent_goid, self.g_tracking_seq].into_iter().flatten().map(Some));
        let in_defer = [self.defer_sp, self.defer_pc, self.defer_fn, self.defer_link, self.defer_heap]
            .into_iter()
            .chain([self.defer_open_defer, self.defer_rangefunc, self.defer_head].into_iter().flatten());
        if !in_g.into_iter().all(|off| off.is_some_and(|off| off < self.g_size)) {
            return Err(out_of_bounds("a runtime.g member outside the struct"));
        }
        if !in_defer.into_iter().all(|off| off < self.defer_size) {
            return Err(out_of_bounds("a runtime._defer member outside the struct"));
        }
        Ok(())
    }
}

/// The reachability offsets, when the DWARF has every one of them.
fn reach_from_dwarf(
    member: &dyn Fn(&str, &str) -> Option<u64>,
    size: &dyn Fn(&str) -> Option<u64>,
    consts: &[(String, i64)],
) -> Option<ReachLayout> {
    let constant = |name: &str| consts.iter().find(|(n, _)| n == name).map(|&(_, v)| v);
    let (ms, sg, sp, md) = ("runtime.mspan", "runtime.sudog", "runtime.special", "runtime.moduledata");
    Some(ReachLayout {
        g_waiting: member("runtime.g", "waiting")?,
        mheap_allspans: member("runtime.mheap", "allspans")?,
        mspan_size: size(ms)?,
        mspan_start: member(ms, "startAddr")?,
        mspan_npages: member(ms, "npages")?,
        mspan_elemsize: member(ms, "elemsize")?,
        mspan_state: member(ms, "state")?,
        mspan_spanclass: member(ms, "spanclass")?,
        mspan_specials: member(ms, "specials")?,
        mspan_freeindex: member(ms, "freeindex")?,
        mspan_nelems: member(ms, "nelems")?,
        mspan_alloc_bits: member(ms, "allocBits")?,
        special_next: member(sp, "next")?,
        special_offset: member(sp, "offset")?,
        special_kind: member(sp, "kind")?,
        special_kind_finalizer: constant("_KindSpecialFinalizer"),
        special_kind_weak_handle: constant("_KindSpecialWeakHandle"),
        special_kind_cleanup: constant("_KindSpecialCleanup"),
        sudog_size: size(sg)?,
        sudog_c: member(sg, "c")?,
        sudog_elem: member(sg, "elem")?,
        sudog_waitlink: member(sg, "waitlink")?,
        sudog_g: member(sg, "g")?,
        sudog_prev: member(sg, "prev")?,
        sudog_next: member(sg, "next")?,
        semaroot_treap: member("runtime.semaRoot", "treap")?,
        semtable_size: size("runtime.semTable")?,
        moduledata_data: member(md, "data")?,
        moduledata_edata: member(md, "edata")?,
        moduledata_bss: member(md, "bss")?,
        moduledata_ebss: member(md, "ebss")?,
        moduledata_gcdatamask: member(md, "gcdatamask")?,
        moduledata_gcbssmask: member(md, "gcbssmask")?,
        p_wbbuf: member("runtime.p", "wbBuf")?,
        wbbuf_size: size("runtime.wbBuf")?,
        p_gcw: member("runtime.p", "gcw")?,
        gcwork_size: size("runtime.gcWork")?,
        m_g0: member("runtime.m", "g0")?,
        m_gsignal: member("runtime.m", "gsignal")?,
        m_alllink: member("runtime.m", "alllink")?,
        p_pcache: member("runtime.p", "pcache")?,
        pagecache_size: size("runtime.pageCache")?,
        p_xregs: member("runtime.p", "xRegs"),
        xregperp_size: size("runtime.xRegPerP").unwrap_or(0),
    })
}

fn missing(what: &str) -> GoBinError {
    GoBinError::Malformed { what: "DWARF", detail: format!("no {what}") }
}

fn out_of_bounds(what: &str) -> GoBinError {
    GoBinError::Malformed { what: "DWARF", detail: format!("implausible layout: {what}") }
}

/// The `waitReason*` constants with their strings: the binary's own
/// `waitReasonStrings` when readable, else the table's string for the same
/// constant name (exact version first, then the newest: the synctest
/// strings changed in 1.25).
fn wait_reasons_from_dwarf(
    consts: &[(String, i64)],
    version: &GoVersion,
    binary_strings: Option<&[String]>,
) -> WaitReasons {
    let mut records: Vec<&Record> = match table() {
        Ok(t) => t.iter().collect(),
        Err(_) => Vec::new(),
    };
    records.sort_by_key(|r| (r.minor != version.minor, std::cmp::Reverse(r.minor)));
    let table_string = |name: &str| {
        records.iter().flat_map(|r| r.layout.wait_reasons.iter()).find(|w| w.name == name).map(|w| w.string.clone())
    };
    let mut reasons: Vec<WaitReason> = consts
        .iter()
        .filter(|(name, _)| name.starts_with("waitReason"))
        .filter_map(|(name, v)| {
            let value = u8::try_from(*v).ok()?;
            let string =
                binary_strings.and_then(|b| b.get(usize::from(value)).cloned()).or_else(|| table_string(name))?;
            Some(WaitReason { value, name: name.clone(), string })
        })
        .collect();
    reasons.sort_by_key(|w| w.value);
    reasons.dedup_by_key(|w| w.value);
    WaitReasons(reasons)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::gobin::tests as gobin_tests;

    #[test]
    #[ignore = "needs the Go parser fixtures (cargo xtask test runs it)"]
    fn dwarf_and_table_agree_on_every_fixture() {
        let fx = gobin_tests::fixtures();
        for f in &fx {
            let b = gobin_tests::open(f);
            let ctx = f.path.display();
            let minor = b.version().minor;
            let table = RuntimeLayout::from_table(b.version(), b.arch()).unwrap_or_else(|e| panic!("{ctx}: {e}"));
            assert_eq!(table.source, format!("table:go1.{minor}"));
            let got = RuntimeLayout::of(&b).unwrap_or_else(|e| panic!("{ctx}: {e}"));
            if b.has_dwarf() {
                assert_eq!(got.source, "dwarf", "{ctx}");
                let facts = b.dwarf_facts(STRUCTS).expect("dwarf").expect("has DWARF");
                assert!(
                    facts.runtime_consts.iter().any(|(n, _)| n.starts_with("waitReason")),
                    "{ctx}: no waitReason in DWARF"
                );
            } else {
                assert_eq!(got.source, table.source, "{ctx}");
            }
            assert_eq!(
                RuntimeLayout { source: String::new(), ..got.clone() },
                RuntimeLayout { source: String::new(), ..table },
                "{ctx}"
            );
            assert_eq!(got.g_parent_goid.is_some(), minor >= 21, "{ctx}");
            assert_eq!(got.defer_open_defer.is_some(), minor <= 21, "{ctx}");
            assert_eq!(got.defer_head.is_some(), minor >= 22, "{ctx}");
            assert!(got.wait_reasons.string(0).is_some(), "{ctx}");
            assert!(got.wait_reasons.iter().any(|w| w.string == "chan receive"), "{ctx}");
            assert_eq!(
                got.g_statuses.decode(got.g_statuses.value("_Gwaiting").expect("_Gwaiting")),
                GoroutineStatus::Waiting
            );
        }
    }

    fn v(minor: u32) -> GoVersion {
        GoVersion { major: 1, minor, patch: 0, raw: format!("go1.{minor}") }
    }

    #[test]
    fn builtin_table_shape() {
        for arch in [Arch::X86_64, Arch::Aarch64] {
            assert_eq!(builtin_minors(arch), vec![19, 21, 22, 23, 24, 25, 26, 27], "{arch:?}");
        }
        for minor in builtin_minors(Arch::X86_64) {
            let a = RuntimeLayout::from_table(&v(minor), Arch::X86_64).expect("amd64");
            let mut b = RuntimeLayout::from_table(&v(minor), Arch::Aarch64).expect("arm64");
            // semTable's roots are padded to the cache line, which is 128
            // bytes on arm64 in some versions: the one size that may differ.
            if let (Some(ra), Some(rb)) = (&a.reach, &mut b.reach) {
                assert_eq!(ra.semtable_size, 251 * 64, "go1.{minor}");
                assert!(matches!(rb.semtable_size, 16064 | 32128), "go1.{minor}: {}", rb.semtable_size);
                rb.semtable_size = ra.semtable_size;
                // So does the vector-register scratch (Go 1.26+): amd64's
                // AVX registers against arm64's NEON ones; same offset.
                assert_eq!(ra.p_xregs, rb.p_xregs, "go1.{minor}");
                assert_eq!(ra.p_xregs.is_some(), minor >= 26, "go1.{minor}");
                if ra.p_xregs.is_some() {
                    assert_eq!((ra.xregperp_size, rb.xregperp_size), (2120, 520), "go1.{minor}");
                }
                rb.xregperp_size = ra.xregperp_size;
            }
            assert_eq!(a, b, "go1.{minor}: arm64 layout differs from amd64");
            a.check_bounds().unwrap_or_else(|e| panic!("go1.{minor}: {e}"));
            assert_eq!(a.g_statuses.decode(2), GoroutineStatus::Running, "go1.{minor}");
            assert_eq!(a.g_statuses.decode(0x1004), GoroutineStatus::Waiting, "go1.{minor}: scan bit");
        }
        // Spot checks against research/go-runtime.md §4 (DWARF dumps).
        let l21 = RuntimeLayout::from_table(&v(21), Arch::X86_64).expect("1.21");
        assert_eq!(
            (l21.g_goid, l21.g_parent_goid, l21.g_size, l21.m_curg, l21.defer_size),
            (152, Some(272), 408, 192, 72)
        );
        let l27 = RuntimeLayout::from_table(&v(27), Arch::X86_64).expect("1.27");
        assert_eq!((l27.g_goid, l27.g_startpc, l27.g_size, l27.m_curg, l27.gobuf_lr), (152, 304, 456, 184, 32));
        assert_eq!(l27.wait_reasons.string(19), Some("chan receive"));
        assert_eq!(l27.g_statuses.decode(10), GoroutineStatus::Leaked);
        assert_eq!(l27.g_statuses.decode(11), GoroutineStatus::DeadExtra);
        assert_eq!(l21.g_statuses.value("_Gleaked"), None, "1.26+ only");
        assert_eq!(l21.g_statuses.decode(77), GoroutineStatus::Unknown(77));
        let err = RuntimeLayout::from_table(&v(40), Arch::X86_64).expect_err("unknown");
        assert!(matches!(err, GoBinError::UnsupportedVersion(ref m) if m.contains("no DWARF")), "{err}");
    }

    #[test]
    fn status_constants_are_told_apart_from_their_neighbours() {
        let consts: Vec<(String, i64)> =
            [("_Grunning", 2), ("_GCoff", 0), ("_GoidCacheBatch", 16), ("_Gscan", 0x1000), ("_Gscanrunning", 0x1002)]
                .iter()
                .map(|(n, v)| (n.to_string(), *v))
                .collect();
        let codes = StatusCodes::from_consts(&consts);
        assert_eq!(codes.value("_GCoff"), None);
        assert_eq!(codes.value("_GoidCacheBatch"), None);
        assert_eq!(codes.decode(0x1002), GoroutineStatus::Running);
    }

    /// DWARF is read from the target's file: offsets that would overflow or
    /// point outside their struct, and huge structs, are refused.
    #[test]
    fn implausible_dwarf_layouts_are_refused() {
        let members = |pairs: &[(&str, u64)]| pairs.iter().map(|&(n, o)| (n.to_string(), o)).collect();
        let g = members(&[
            ("stack", 8),
            ("_defer", 40),
            ("_panic", 32),
            ("m", 48),
            ("sched", 56),
            ("atomicstatus", 144),
            ("goid", 152),
            ("waitsince", 160),
            ("waitreason", 168),
            ("gopc", 176),
            ("startpc", 184),
        ]);
        let facts = |g_size: u64, stack_hi: u64| DwarfFacts {
            structs: [
                ("runtime.g", (g_size, members(&[]))),
                ("runtime.stack", (16, members(&[("lo", 0), ("hi", stack_hi)]))),
                ("runtime.gobuf", (56, members(&[("sp", 0), ("pc", 8), ("lr", 40), ("bp", 48)]))),
                ("runtime.m", (1024, members(&[("curg", 192)]))),
                ("runtime._defer", (64, members(&[("sp", 8), ("pc", 16), ("fn", 24), ("link", 32), ("heap", 1)]))),
            ]
            .into_iter()
            .map(|(name, (size, m)): (&str, (u64, HashMap<String, u64>))| {
                let m = if name == "runtime.g" { g.clone() } else { m };
                (name.to_string(), (size, m))
            })
            .collect(),
            runtime_consts: StatusCodes::REQUIRED.iter().zip(0..).map(|(name, v)| (name.to_string(), v)).collect(),
        };
        let version = v(24);
        let layout = RuntimeLayout::from_dwarf(&facts(400, 8), &version, None).expect("plausible");
        assert_eq!((layout.g_stack_hi, layout.gobuf_bp), (16, 48));
        for (g_size, stack_hi) in [(400, u64::MAX), (u64::MAX, 8), (100, 8)] {
            let err = RuntimeLayout::from_dwarf(&facts(g_size, stack_hi), &version, None).expect_err("refused");
            assert!(err.to_string().contains("implausible layout"), "{err}");
        }
    }
}
