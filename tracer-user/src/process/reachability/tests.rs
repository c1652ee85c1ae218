//! The proof on a fake address space laid out like a Go 1.26 runtime's:
//! globals, one scan span, one noscan span, goroutines with stacks and
//! sudogs, a special.
use std::collections::BTreeMap;

use super::*;
use crate::gobin::{Arch, GoVersion};

#[derive(Default)]
struct FakeMem {
    regions: BTreeMap<u64, Vec<u8>>,
}

impl FakeMem {
    fn map(&mut self, addr: u64, len: usize) {
        self.regions.insert(addr, vec![0; len]);
    }

    fn put(&mut self, addr: u64, value: u64) {
        let (start, region) = self.regions.range_mut(..=addr).next_back().expect("mapped");
        let off = (addr - start) as usize;
        region[off..off + 8].copy_from_slice(&value.to_le_bytes());
    }

    fn put_bytes(&mut self, addr: u64, bytes: &[u8]) {
        let (start, region) = self.regions.range_mut(..=addr).next_back().expect("mapped");
        let off = (addr - start) as usize;
        region[off..off + bytes.len()].copy_from_slice(bytes);
    }
}

impl ReadMemory for FakeMem {
    fn read_exact(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        let short = || MemoryError::Short { addr, len: buf.len(), got: 0 };
        let (start, region) = self.regions.range(..=addr).next_back().ok_or_else(short)?;
        let off = (addr - start) as usize;
        let bytes = region.get(off..off + buf.len()).ok_or_else(short)?;
        buf.copy_from_slice(bytes);
        Ok(())
    }
}

const GLOBALS: u64 = 0x10_0000;
const ALLGS: u64 = 0x20_0000;
const GS: u64 = 0x30_0000;
const G_STRIDE: u64 = 0x1000;
const STACKS: u64 = 0x100_0000;
const STACK_SIZE: u64 = 0x2000;
const SPANS: u64 = 0x40_0000;
const SPECIAL: u64 = 0x60_0000;
const MHEAP: u64 = 0x70_0000;
/// `runtime.semtable`: 251 roots of 64 bytes (in bss: a global root).
const SEMTABLE: u64 = 0x80_0000;
/// A scan span of 64-byte objects and a noscan one.
const HEAP: u64 = 0xc000_0000;
const NOSCAN: u64 = HEAP + 0x2000;
/// A scan span of sudogs (96-byte objects).
const SUDOGS: u64 = HEAP + 0x4000;

fn obj(i: u64) -> u64 {
    HEAP + i * 64
}

struct Fake {
    mem: FakeMem,
    target: ReachTarget,
    gs: Vec<u64>,
    sudogs: u64,
}

impl Fake {
    fn new() -> Self {
        let version = GoVersion::parse("go1.26.1").expect("version");
        let mut layout = RuntimeLayout::from_table(&version, Arch::X86_64).expect("table");
        layout.reach = Some(ReachLayout {
            g_waiting: layout.g_size - 8,
            mheap_allspans: 0x10,
            mspan_size: 0x100,
            mspan_start: 0x18,
            mspan_npages: 0x20,
            mspan_elemsize: 0x68,
            mspan_state: 0x70,
            mspan_spanclass: 0x60,
            mspan_specials: 0x58,
            mspan_freeindex: 0x30,
            mspan_nelems: 0x32,
            mspan_alloc_bits: 0x78,
            special_next: 0,
            special_offset: 8,
            special_kind: 16,
            special_kind_finalizer: Some(1),
            special_kind_weak_handle: Some(2),
            special_kind_cleanup: Some(6),
            sudog_size: 0x58,
            sudog_c: 0x50,
            sudog_elem: 0x10,
            sudog_waitlink: 0x30,
            sudog_g: 0,
            sudog_prev: 0x20,
            sudog_next: 0x8,
            semaroot_treap: 8,
            semtable_size: 251 * 64,
            moduledata_data: 0x10,
            moduledata_edata: 0x18,
            moduledata_bss: 0x20,
            moduledata_ebss: 0x28,
            moduledata_gcdatamask: 0x30,
            moduledata_gcbssmask: 0x40,
            p_wbbuf: 0x100,
            wbbuf_size: 0x20,
            p_gcw: 0x200,
            gcwork_size: 0x10,
            m_g0: 0,
            m_gsignal: 0x50,
            m_alllink: 0x150,
            p_pcache: 0x280,
            pagecache_size: 0x18,
            p_xregs: Some(0x2a0),
            xregperp_size: 0x50,
        });
        let mut mem = FakeMem::default();
        for (addr, len) in [
            (GLOBALS, 0x100),
            (ALLGS, 0x1000),
            (GS, 0x10_0000),
            (STACKS, 0x10_0000),
            (SPANS, 0x1000),
            (SPECIAL, 0x40),
            (MHEAP, 0x100),
            (HEAP, 0x6000),
            (SEMTABLE, 251 * 64),
        ] {
            mem.map(addr, len);
        }
        let r = layout.reach.clone().expect("reach");
        // Two in-use spans: scan (class 2 << 1) and noscan (class 2 << 1 | 1).
        for (k, (start, class, size)) in [(HEAP, 4u8, 64), (NOSCAN, 5u8, 64), (SUDOGS, 6u8, 96)].into_iter().enumerate()
        {
            let s = SPANS + 0x100 * k as u64;
            mem.put(s + r.mspan_start, start);
            mem.put(s + r.mspan_npages, 1);
            mem.put(s + r.mspan_elemsize, size);
            mem.put_bytes(s + r.mspan_state, &[MSPAN_IN_USE]);
            mem.put_bytes(s + r.mspan_spanclass, &[class]);
            mem.put(SPANS + 0x800 + 8 * k as u64, s);
        }
        mem.put(MHEAP + r.mheap_allspans, SPANS + 0x800);
        mem.put(MHEAP + r.mheap_allspans + 8, 3);
        mem.put(ALLGS, ALLGS + 0x100);
        let target = ReachTarget {
            layout,
            allgs: ALLGS,
            allglen: None,
            mheap: Some(MHEAP),
            globals: vec![(GLOBALS, GLOBALS + 0x100)],
            moduledata: None,
            allp: None,
            frames: None,
            allm: None,
            max_bytes_per_s: 0,
            explain: true,
            semtable: None,
        };
        Fake { mem, target, gs: Vec::new(), sudogs: SUDOGS }
    }

    /// Adds goroutine `goid` with `status` and wait reason, its stack
    /// holding `stack_words` just below the top (and its saved SP below
    /// them). Returns its g address.
    fn goroutine(&mut self, goid: u64, status: &str, reason: &str, stack_words: &[u64]) -> u64 {
        let l = &self.target.layout;
        let n = self.gs.len() as u64;
        let g = GS + n * G_STRIDE;
        let (lo, hi) = (STACKS + n * STACK_SIZE, STACKS + (n + 1) * STACK_SIZE);
        let sp = hi - 8 * (stack_words.len() as u64 + 1);
        let status_value = l.g_statuses.value(status).expect("status");
        let reason_value = l.wait_reasons.iter().find(|w| w.string == reason).map_or(0, |w| w.value);
        let (goid_off, st, wr, seq) = (l.g_goid, l.g_atomicstatus, l.g_waitreason, l.g_tracking_seq.expect("seq"));
        let (lo_off, hi_off, sp_off) = (l.g_stack_lo, l.g_stack_hi, l.g_sched + l.gobuf_sp);
        self.mem.put(g + goid_off, goid);
        self.mem.put_bytes(g + st, &status_value.to_le_bytes());
        self.mem.put_bytes(g + wr, &[reason_value]);
        self.mem.put_bytes(g + seq, &[7]);
        self.mem.put(g + lo_off, lo);
        self.mem.put(g + hi_off, hi);
        self.mem.put(g + sp_off, sp);
        // A stale word below SP: never a root.
        self.mem.put(sp - 8, obj(60));
        for (k, &w) in stack_words.iter().enumerate() {
            self.mem.put(sp + 8 * k as u64, w);
        }
        self.mem.put(ALLGS + 0x100 + 8 * n, g);
        self.gs.push(g);
        self.mem.put(ALLGS + 8, self.gs.len() as u64);
        g
    }

    /// Parks `g` on the channels `chans` (a select when several).
    fn wait_on(&mut self, g: u64, chans: &[u64], sync: bool) {
        let r = self.target.layout.reach.clone().expect("reach");
        let mut next = 0;
        for &c in chans.iter().rev() {
            let sg = self.sudogs;
            self.sudogs += 96;
            let field = if sync { r.sudog_elem } else { r.sudog_c };
            self.mem.put(sg + field, c);
            self.mem.put(sg + r.sudog_waitlink, next);
            next = sg;
        }
        self.mem.put(g + r.g_waiting, next);
    }

    /// A sudog in the sudog span, waiting `g` on the semaphore at `addr`.
    fn sema_sudog(&mut self, g: u64, addr: u64) -> u64 {
        let r = self.target.layout.reach.clone().expect("reach");
        let sg = self.sudogs;
        self.sudogs += 96;
        self.mem.put(sg + r.sudog_g, g);
        self.mem.put(sg + r.sudog_elem, addr);
        sg
    }

    /// Makes `sg` the treap root of semaRoot `root`, the way
    /// `semaRoot.queue` links it, with the table a global root.
    fn sema_root(&mut self, root: u64, sg: u64) {
        let r = self.target.layout.reach.clone().expect("reach");
        self.mem.put(SEMTABLE + root * 64 + r.semaroot_treap, sg);
        self.target.semtable = Some(SEMTABLE);
        if !self.target.globals.contains(&(SEMTABLE, SEMTABLE + 251 * 64)) {
            self.target.globals.push((SEMTABLE, SEMTABLE + 251 * 64));
        }
    }

    fn unreachable(&self) -> Vec<(u64, &'static str)> {
        let scan = scan(&self.mem, &self.target);
        assert_eq!(scan.error, None);
        let mut got: Vec<(u64, &'static str)> = scan.unreachable.iter().map(|u| (u.goid, u.reason)).collect();
        got.sort_unstable();
        got
    }
}

#[test]
fn unreachable_primitives_and_only_them() {
    let mut f = Fake::new();
    // Globals → object 0 → channel 1 (so goroutines on it can be woken).
    f.mem.put(GLOBALS, obj(0));
    f.mem.put(obj(0) + 16, obj(1));
    // Noscan object 0 points at channel 7: not a reference.
    f.mem.put(NOSCAN, obj(7));

    let g10 = f.goroutine(10, "_Gwaiting", "chan receive", &[]);
    f.wait_on(g10, &[obj(1)], false); // reachable from globals
    let g11 = f.goroutine(11, "_Gwaiting", "chan send", &[obj(3)]);
    f.wait_on(g11, &[obj(2)], false); // nobody holds channel 2
    let g12 = f.goroutine(12, "_Gwaiting", "chan receive", &[]);
    f.wait_on(g12, &[obj(3)], false); // only on the stack of g11, itself stuck
    let g13 = f.goroutine(13, "_Gwaiting", "select", &[]);
    f.wait_on(g13, &[obj(2), obj(4)], false); // channel 4: on g14's stack
    f.goroutine(14, "_Grunnable", "", &[obj(4) + 8]); // an interior pointer
    let g15 = f.goroutine(15, "_Gwaiting", "chan receive", &[obj(6)]);
    f.wait_on(g15, &[obj(1)], false); // woken through channel 1, so its stack counts
    let g16 = f.goroutine(16, "_Gwaiting", "chan send", &[]);
    f.wait_on(g16, &[obj(6)], false); // reachable at the second round
    let g17 = f.goroutine(17, "_Gwaiting", "chan receive", &[]);
    f.wait_on(g17, &[obj(7)], false); // only a noscan word points at it
    f.goroutine(18, "_Gwaiting", "chan send (nil chan)", &[]);
    let main = f.goroutine(1, "_Gwaiting", "chan receive", &[obj(9)]);
    f.wait_on(main, &[obj(8)], false); // main: never proven, its stack is a root
    let g19 = f.goroutine(19, "_Gwaiting", "chan receive", &[]);
    f.wait_on(g19, &[obj(9)], false);
    let g20 = f.goroutine(20, "_Gwaiting", "sync.Mutex.Lock", &[]);
    f.wait_on(g20, &[obj(10) + 8], true); // a mutex inside a larger object nobody holds
    f.goroutine(21, "_Gwaiting", "sleep", &[obj(11)]); // sleepers may run
    let g22 = f.goroutine(22, "_Gwaiting", "sync.WaitGroup.Wait", &[]);
    f.wait_on(g22, &[obj(11)], true);
    let g23 = f.goroutine(23, "_Gwaiting", "chan receive", &[]);
    f.wait_on(g23, &[obj(60)], false); // only a stale word below some SP
    f.goroutine(24, "_Gwaiting", "sync.Mutex.Lock", &[]); // no sudog linked (before Go 1.26)
    let g25 = f.goroutine(25, "_Gwaiting", "chan receive", &[]);
    f.wait_on(g25, &[GLOBALS + 0x80], false); // not a heap object: may be woken

    assert_eq!(
        f.unreachable(),
        vec![
            (11, "channel unreachable"),
            (12, "channel unreachable"),
            (17, "channel unreachable"),
            (18, "nil channel"),
            (20, "mutex unreachable"),
            (23, "channel unreachable"),
        ]
    );
}

/// Before Go 1.26 sync waiters are found only in `runtime.semtable`: a
/// treap per root keyed by the semaphore address, waiters on one address
/// chained by `waitlink`.
#[test]
fn semaphore_waiters_are_found_in_the_semtable() {
    let mut f = Fake::new();
    let r = f.target.layout.reach.clone().expect("reach");
    let root_of = |addr: u64| (addr >> 3) % 251;
    // Two waiters on mutex A inside object 20 nobody holds.
    let a = obj(20) + 8;
    let g30 = f.goroutine(30, "_Gwaiting", "sync.Mutex.Lock", &[]);
    let g31 = f.goroutine(31, "_Gwaiting", "sync.Mutex.Lock", &[]);
    let (s30, s31) = (f.sema_sudog(g30, a), f.sema_sudog(g31, a));
    f.mem.put(s30 + r.sudog_waitlink, s31);
    f.sema_root(root_of(a), s30);
    // C hashes to A's root: its node is A's right child.
    let c = a + 251 * 8;
    assert_eq!(root_of(c), root_of(a));
    let g34 = f.goroutine(34, "_Gwaiting", "sync.RWMutex.Lock", &[]);
    let s34 = f.sema_sudog(g34, c);
    f.mem.put(s30 + r.sudog_next, s34);
    f.mem.put(s34 + 0x40, s30); // sudog.parent
    // A node whose address does not hash to its root (a torn read): dropped.
    let g38 = f.goroutine(38, "_Gwaiting", "sync.Mutex.Lock", &[]);
    let s38 = f.sema_sudog(g38, obj(24) + 8);
    assert_ne!(root_of(obj(24) + 8), root_of(a));
    f.mem.put(s34 + r.sudog_prev, s38);
    // B in object 21, which a runnable goroutine holds.
    let b = obj(21);
    let g32 = f.goroutine(32, "_Gwaiting", "sync.WaitGroup.Wait", &[]);
    let s32 = f.sema_sudog(g32, b);
    f.sema_root(root_of(b), s32);
    f.goroutine(33, "_Grunnable", "", &[b]);
    // A runtime semaphore in the globals: not a heap object, may be woken.
    let d = GLOBALS + 0x40;
    let g35 = f.goroutine(35, "_Gwaiting", "semacquire", &[]);
    let s35 = f.sema_sudog(g35, d);
    f.sema_root(root_of(d), s35);
    // An unattributed semaphore in object 23 (WaitGroup up to Go 1.23).
    let e = obj(23);
    let g37 = f.goroutine(37, "_Gwaiting", "semacquire", &[]);
    let s37 = f.sema_sudog(g37, e);
    f.sema_root(root_of(e), s37);
    // A sync waiter the table does not hold: may run.
    f.goroutine(36, "_Gwaiting", "sync.Mutex.Lock", &[]);

    assert_eq!(
        f.unreachable(),
        vec![
            (30, "mutex unreachable"),
            (31, "mutex unreachable"),
            (34, "rwmutex unreachable"),
            (37, "semaphore unreachable"),
        ]
    );
    // Any word outside the sudogs' `elem` pointing at A is a reference.
    f.mem.put(s31 + r.sudog_waitlink + 8, obj(20));
    assert_eq!(f.unreachable(), vec![(34, "rwmutex unreachable"), (37, "semaphore unreachable")]);
}

/// Before Go 1.26 a Cond waiter's sudog hangs only off the Cond's notify
/// list: the sudog (found in the heap by its `g`) is the primitive.
#[test]
fn cond_waiters_are_proven_through_their_sudog() {
    let mut f = Fake::new();
    let r = f.target.layout.reach.clone().expect("reach");
    // Two waiters on a notify list inside object 30 nobody holds (head →
    // first sudog → next → second).
    let g40 = f.goroutine(40, "_Gwaiting", "sync.Cond.Wait", &[0, 0]);
    let g41 = f.goroutine(41, "_Gwaiting", "sync.Cond.Wait", &[]);
    let (s40, s41) = (f.sema_sudog(g40, 0), f.sema_sudog(g41, 0));
    f.mem.put(obj(30), s40);
    f.mem.put(s40 + r.sudog_next, s41);
    // A waiter on a notify list in object 31, which a runnable goroutine holds.
    let g42 = f.goroutine(42, "_Gwaiting", "sync.Cond.Wait", &[]);
    let s42 = f.sema_sudog(g42, 0);
    f.mem.put(obj(31) + 8, s42);
    f.goroutine(43, "_Grunnable", "", &[obj(31)]);
    // A waiter whose sudog is not found: may run.
    f.goroutine(44, "_Gwaiting", "sync.Cond.Wait", &[]);
    assert_eq!(f.unreachable(), vec![(40, "cond unreachable"), (41, "cond unreachable")]);
    // A second object naming g40 (a stale sudog in a P's cache, reachable):
    // g40 may be woken through it, so it is not proven; g41 still is.
    let stale = f.sema_sudog(g40, 0);
    f.mem.put(GLOBALS + 0x20, stale);
    assert_eq!(f.unreachable(), vec![(41, "cond unreachable")]);
    // Unless g40's own stack names its live sudog (`notifyListWait`'s `s`,
    // kept across the park): the stale look-alike is then no primitive.
    let l = &f.target.layout;
    let mut sp = [0; 8];
    f.mem.read_exact(g40 + l.g_sched + l.gobuf_sp, &mut sp).expect("sp");
    f.mem.put(u64::from_le_bytes(sp), s40);
    assert_eq!(f.unreachable(), vec![(40, "cond unreachable"), (41, "cond unreachable")]);
    // Its stack naming the stale one too (a dead slot): errs towards
    // reachable, and g40's stack, a root then, reaches g41's sudog.
    f.mem.put(u64::from_le_bytes(sp) + 8, stale);
    assert_eq!(f.unreachable(), vec![]);
}

#[test]
fn blocked_goroutines_do_not_keep_their_own_primitive_alive() {
    let mut f = Fake::new();
    let g = f.goroutine(10, "_Gwaiting", "chan receive", &[]);
    f.wait_on(g, &[obj(2)], false);
    let r = f.target.layout.reach.clone().expect("reach");
    let sudog = field_u64(&f.mem.read_vec(g + r.g_waiting, 8).expect("g.waiting"), 0).expect("sudog");
    // The sudog is reachable (as through allgs → g → g.waiting, or the
    // channel's wait queue), but its `c` is never traced.
    f.mem.put(GLOBALS, sudog);
    assert_eq!(f.unreachable(), vec![(10, "channel unreachable")]);
    // Any other word pointing at the channel is a reference.
    f.mem.put(sudog + r.sudog_waitlink + 8, obj(2));
    assert_eq!(f.unreachable(), vec![]);
}

#[test]
fn specials_are_roots() {
    let mut f = Fake::new();
    let g = f.goroutine(10, "_Gwaiting", "chan receive", &[]);
    f.wait_on(g, &[obj(2)], false);
    assert_eq!(f.unreachable(), vec![(10, "channel unreachable")]);
    // A heap profile sample on object 5, which holds the channel: not a
    // root (Go's markrootSpans ignores it).
    let r = f.target.layout.reach.clone().expect("reach");
    f.mem.put(obj(5) + 24, obj(2));
    f.mem.put(SPECIAL + r.special_offset, 5 * 64);
    f.mem.put_bytes(SPECIAL + r.special_kind, &[3]);
    f.mem.put(SPANS + r.mspan_specials, SPECIAL);
    assert_eq!(f.unreachable(), vec![(10, "channel unreachable")]);
    // A finalizer on it: its contents are roots.
    f.mem.put_bytes(SPECIAL + r.special_kind, &[1]);
    assert_eq!(f.unreachable(), vec![]);
    // A finalizer on the channel itself: scanned, not marked.
    f.mem.put(SPECIAL + r.special_offset, 2 * 64);
    assert_eq!(f.unreachable(), vec![(10, "channel unreachable")]);
    // Kinds unknown for this binary: every special's object is a root.
    f.target.layout.reach.as_mut().expect("reach").special_kind_finalizer = None;
    assert_eq!(f.unreachable(), vec![]);
}

#[test]
fn torn_heap_proves_nothing() {
    let mut f = Fake::new();
    let g = f.goroutine(10, "_Gwaiting", "chan receive", &[]);
    f.wait_on(g, &[obj(2)], false);
    // The spans overlap: read while the heap changed.
    let r = f.target.layout.reach.clone().expect("reach");
    f.mem.put(SPANS + 0x100 + r.mspan_start, HEAP + 64);
    let torn = scan(&f.mem, &f.target);
    assert!(torn.error.is_some());
    assert!(torn.unreachable.is_empty());
    // An unreadable root too.
    let mut f = Fake::new();
    let g = f.goroutine(10, "_Gwaiting", "chan receive", &[]);
    f.wait_on(g, &[obj(2)], false);
    f.target.globals.push((0xdead_0000, 0xdead_0100));
    let unreadable = scan(&f.mem, &f.target);
    assert!(unreadable.error.is_some() && unreadable.unreachable.is_empty());
}

#[test]
fn without_the_heap_only_never_waking_goroutines_are_proven() {
    let mut f = Fake::new();
    f.target.mheap = None;
    let g = f.goroutine(10, "_Gwaiting", "chan receive", &[]);
    f.wait_on(g, &[obj(2)], false);
    f.goroutine(11, "_Gwaiting", "select (no cases)", &[]);
    f.goroutine(1, "_Gwaiting", "select (no cases)", &[]);
    assert_eq!(f.unreachable(), vec![(11, "select with no cases")]);
}

#[test]
fn global_roots_follow_the_moduledata_pointer_masks() {
    const MODULEDATA: u64 = 0x80_0000;
    const MASKS: u64 = MODULEDATA + 0x100;
    let mut f = Fake::new();
    f.mem.map(MODULEDATA, 0x200);
    let r = f.target.layout.reach.clone().expect("reach");
    let g = f.goroutine(10, "_Gwaiting", "chan receive", &[]);
    f.wait_on(g, &[obj(2)], false);
    // Data is the first half of the globals, bss the second; 16 words each.
    // Word 0 of data holds the channel's address, but as an integer (its
    // mask bit is clear); word 1 of bss is a pointer.
    f.mem.put(GLOBALS, obj(2));
    let (data, bss) = (GLOBALS, GLOBALS + 0x80);
    for (off, value) in [
        (r.moduledata_data, data),
        (r.moduledata_edata, bss),
        (r.moduledata_bss, bss),
        (r.moduledata_ebss, GLOBALS + 0x100),
        (r.moduledata_gcdatamask, 16),
        (r.moduledata_gcdatamask + 8, MASKS),
        (r.moduledata_gcbssmask, 16),
        (r.moduledata_gcbssmask + 8, MASKS + 8),
    ] {
        f.mem.put(MODULEDATA + off, value);
    }
    f.mem.put_bytes(MASKS, &[0b10, 0]);
    f.mem.put_bytes(MASKS + 8, &[0b10, 0]);
    // Without the moduledata every word is a possible pointer.
    assert_eq!(f.unreachable(), vec![]);
    f.target.moduledata = Some(MODULEDATA);
    assert_eq!(f.unreachable(), vec![(10, "channel unreachable")]);
    // A pointer word of bss.
    f.mem.put(bss + 8, obj(2) + 8);
    assert_eq!(f.unreachable(), vec![]);
    f.mem.put(bss + 8, 0);
    assert_eq!(f.unreachable(), vec![(10, "channel unreachable")]);
    // A mask that does not cover its range is not believed: conservative.
    f.mem.put(MODULEDATA + r.moduledata_gcdatamask, 15);
    assert_eq!(f.unreachable(), vec![]);
}

#[test]
fn idle_gc_goroutines_stacks_are_no_roots() {
    let mut f = Fake::new();
    let g = f.goroutine(10, "_Gwaiting", "chan receive", &[]);
    f.wait_on(g, &[obj(2)], false);
    // A GC worker on a reused stack: a stale word of the previous owner's
    // frames points at the channel.
    f.goroutine(11, "_Gwaiting", "GC worker (idle)", &[obj(2)]);
    assert_eq!(f.unreachable(), vec![(10, "channel unreachable")]);
    // A runnable or user goroutine's stack always counts.
    f.goroutine(12, "_Gwaiting", "sleep", &[obj(2)]);
    assert_eq!(f.unreachable(), vec![]);
}

#[test]
fn gc_buffers_of_each_p_are_no_pointers() {
    const ALLP: u64 = 0x90_0000;
    const P: u64 = ALLP + 0x100;
    let mut f = Fake::new();
    f.mem.map(ALLP, 0x400);
    let r = f.target.layout.reach.clone().expect("reach");
    let g = f.goroutine(10, "_Gwaiting", "chan receive", &[]);
    f.wait_on(g, &[obj(2)], false);
    // The P is read through a global (conservative without the moduledata)
    // pointing at a heap object that holds it; here the P itself is
    // global memory for simplicity: a root range.
    f.target.globals.push((P, P + 0x300));
    f.mem.put(ALLP, ALLP + 0x80);
    f.mem.put(ALLP + 8, 1);
    f.mem.put(ALLP + 0x80, P);
    // A stale channel address in the write-barrier buffer.
    f.mem.put(P + r.p_wbbuf + 0x18, obj(2));
    assert_eq!(f.unreachable(), vec![], "without allp every word of a P counts");
    f.target.allp = Some(ALLP);
    assert_eq!(f.unreachable(), vec![(10, "channel unreachable")]);
    // And in the GC work buffer.
    f.mem.put(P + r.p_gcw + 8, obj(2));
    assert_eq!(f.unreachable(), vec![(10, "channel unreachable")]);
    // And the page cache's base: a heap chunk's address, equal to the
    // chunk's first object.
    f.mem.put(P + r.p_pcache, obj(2));
    assert_eq!(f.unreachable(), vec![(10, "channel unreachable")]);
    // And the vector registers saved by asynchronous preemption.
    let xregs = r.p_xregs.expect("xRegs");
    f.mem.put(P + xregs + 0x40, obj(2));
    assert_eq!(f.unreachable(), vec![(10, "channel unreachable")]);
    // Any other word of the P is a pointer.
    f.mem.put(P + r.p_gcw + r.gcwork_size, obj(2));
    assert_eq!(f.unreachable(), vec![]);
}

#[test]
fn retaining_paths_name_the_root_and_each_object() {
    let mut f = Fake::new();
    f.mem.put(GLOBALS + 8, obj(0));
    f.mem.put(obj(0) + 16, obj(1));
    let g10 = f.goroutine(10, "_Gwaiting", "chan receive", &[obj(6)]);
    f.wait_on(g10, &[obj(1) + 8], false);
    let g11 = f.goroutine(11, "_Gwaiting", "chan send", &[]);
    f.wait_on(g11, &[obj(6)], false); // only on g10's stack
    let scan = scan(&f.mem, &f.target);
    assert_eq!(scan.error, None);
    let path = |goid| scan.retained_by.iter().find(|(g, _)| *g == goid).map(|(_, p)| p.clone());
    assert_eq!(
        path(10),
        Some(vec![
            RetainStep::Global { addr: GLOBALS + 8 },
            RetainStep::Object { start: obj(0), size: 64, offset: 0x10 },
            RetainStep::Object { start: obj(1), size: 64, offset: 0x8 },
        ])
    );
    // g10's stack: no frame records in this fake stack.
    assert_eq!(
        path(11),
        Some(vec![
            RetainStep::Stack { goid: 10, frame: None },
            RetainStep::Object { start: obj(6), size: 64, offset: 0 }
        ])
    );
    // A primitive outside the heap (a global Mutex's sema word) is
    // reachable by assumption: its path is that address alone.
    let g12 = f.goroutine(12, "_Gwaiting", "sync.Mutex.Lock", &[]);
    f.wait_on(g12, &[GLOBALS + 0x24], true);
    let scan = super::scan(&f.mem, &f.target);
    let path = |goid| scan.retained_by.iter().find(|(g, _)| *g == goid).map(|(_, p)| p.clone());
    assert_eq!(path(12), Some(vec![RetainStep::OffHeap { addr: GLOBALS + 0x24 }]));
    // Off by default: nothing recorded.
    f.target.explain = false;
    let quiet = super::scan(&f.mem, &f.target);
    assert!(quiet.retained_by.is_empty());
    assert_eq!(quiet.reachable, scan.reachable);
}

#[test]
fn g_stack_bounds_and_sudog_slack_are_no_pointers() {
    const ALLM: u64 = 0x90_0000;
    const M: u64 = ALLM + 0x100;
    const G0: u64 = ALLM + 0x400;
    let mut f = Fake::new();
    f.mem.map(ALLM, 0x1000);
    let l = f.target.layout.clone();
    let r = l.reach.clone().expect("reach");
    let g = f.goroutine(10, "_Gwaiting", "chan receive", &[]);
    f.wait_on(g, &[obj(2)], false);
    // Every g is read (through allgs) as global memory here, and a dead
    // one's stack.hi is one past its stack: the first object of a span.
    f.target.globals.push((GS, GS + 0x10_0000));
    let dead = f.goroutine(11, "_Gdead", "", &[]);
    f.mem.put(dead + l.g_stack_hi, obj(2));
    assert_eq!(f.unreachable(), vec![(10, "channel unreachable")]);
    // So is an M's g0's, found through allm.
    f.target.globals.push((G0, G0 + l.g_size));
    f.mem.put(G0 + l.g_stack_hi, obj(2));
    assert_eq!(f.unreachable(), vec![], "without allm every word of a g0 counts");
    f.mem.put(ALLM, M);
    f.mem.put(M + r.m_g0, G0);
    f.target.allm = Some(ALLM);
    assert_eq!(f.unreachable(), vec![(10, "channel unreachable")]);
    // A sudog's heap object is larger than the sudog: its slack is stale.
    let sudog = field_u64(&f.mem.read_vec(g + r.g_waiting, 8).expect("g.waiting"), 0).expect("sudog");
    f.mem.put(GLOBALS, sudog);
    f.mem.put(sudog + r.sudog_size, obj(2));
    assert_eq!(f.unreachable(), vec![(10, "channel unreachable")]);
    // Any other word of the g0 still counts.
    f.mem.put(G0 + l.g_stack_hi + 8, obj(2));
    assert_eq!(f.unreachable(), vec![]);
}

/// A free slot of an in-use span (at or past `freeindex`, its `allocBits`
/// bit clear) holds stale words: like Go's collector, the scan neither
/// marks nor scans it. A primitive in a free slot can only be a torn read:
/// it proves nothing.
#[test]
fn free_slots_are_neither_marked_nor_scanned() {
    const ALLOC_BITS: u64 = 0x90_0000;
    let mut f = Fake::new();
    let r = f.target.layout.reach.clone().expect("reach");
    f.mem.map(ALLOC_BITS, 0x100);
    // The scan span: 128 objects, allocated below 40 and where a bit is set
    // (object 50: bit 2 of byte 6).
    f.mem.put_bytes(SPANS + r.mspan_freeindex, &40u16.to_le_bytes());
    f.mem.put_bytes(SPANS + r.mspan_nelems, &128u16.to_le_bytes());
    f.mem.put(SPANS + r.mspan_alloc_bits, ALLOC_BITS);
    f.mem.put_bytes(ALLOC_BITS + 6, &[1 << 2]);
    // Globals → free object 61 (a stale pointer) → channel 2.
    f.mem.put(GLOBALS, obj(61));
    f.mem.put(obj(61), obj(2));
    // Globals → allocated object 50 → channel 3.
    f.mem.put(GLOBALS + 8, obj(50));
    f.mem.put(obj(50) + 8, obj(3));
    // Globals → object 30, below freeindex: allocated whatever its bit → channel 4.
    f.mem.put(GLOBALS + 16, obj(30));
    f.mem.put(obj(30), obj(4));

    let g40 = f.goroutine(40, "_Gwaiting", "chan receive", &[]);
    f.wait_on(g40, &[obj(2)], false);
    let g41 = f.goroutine(41, "_Gwaiting", "chan receive", &[]);
    f.wait_on(g41, &[obj(3)], false);
    let g42 = f.goroutine(42, "_Gwaiting", "chan send", &[]);
    f.wait_on(g42, &[obj(4)], false);
    let g43 = f.goroutine(43, "_Gwaiting", "chan receive", &[]);
    f.wait_on(g43, &[obj(70)], false); // in a free slot: torn
    assert_eq!(f.unreachable(), vec![(40, "channel unreachable")]);

    // Without the span's free slots (its bitmap unreadable), every slot
    // counts as allocated: the stale pointer keeps channel 2 alive, and
    // nothing holds channel 70.
    f.mem.put(SPANS + r.mspan_alloc_bits, 0xdead_0000);
    assert_eq!(f.unreachable(), vec![(43, "channel unreachable")]);
}
