//! deferscope's uprobes on the Go runtime.
//!
//! Every probe is an *entry* probe (never a uretprobe: Go moves goroutine
//! stacks and a patched return address crashes the target). Userspace attaches
//! each one after the function's stack-bound check, so `morestack` re-running
//! the function does not fire it twice.
//!
//! The probes only read the target's memory (`bpf_probe_read_user`); they never
//! write it.
#![no_std]
#![no_main]

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns, bpf_probe_read_user},
    macros::{map, uprobe},
    maps::{HashMap, PerCpuArray, PerCpuHashMap, RingBuf},
    programs::ProbeContext,
};
use tracer_common::{
    Event, EventKind, MAX_PROCESSES, NO_OFFSET, ProbeId, ProcessHits, ProcessParams, UNKNOWN_RECORD, counter,
};

/// Every traced process, by tgid: one loaded object serves them all, each
/// process's Go version has its own offsets. Written by userspace before it
/// attaches to a process, removed after it detaches.
#[map]
static PROCESSES: HashMap<u32, ProcessParams> = HashMap::with_max_entries(MAX_PROCESSES, 0);

/// 16 MiB: about 262k events (64 bytes each: the 56-byte `Event` and the ring
/// buffer's 8-byte record header), over a second of the fastest probe rate
/// this machine can sustain, so a slow userspace tick loses nothing.
/// Userspace shrinks it at load when the governor bounds the event rate
/// (`ProbeObject::load`).
#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(16 << 20, 0);

/// Hits per probe of each traced process (entries made by userspace with
/// the `PROCESSES` entry), counted before any filtering so the tracer's own
/// cost is visible, per process for the overhead governor.
#[map]
static PROBE_HITS: PerCpuHashMap<u32, ProcessHits> = PerCpuHashMap::with_max_entries(MAX_PROCESSES, 0);

/// Health counters (index: `tracer_common::counter`).
#[map]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counter::COUNT, 0);

#[inline(always)]
fn current_tgid() -> u32 {
    (bpf_get_current_pid_tgid() >> 32) as u32
}

/// Counts a hit of `probe` for the current process, then returns its
/// parameters: `None` for a process deferscope does not trace (the perf
/// links are scoped to the traced processes' mm; this is a second guard
/// in case a scope is ever widened, and the race at detach).
#[inline(always)]
fn hit(probe: ProbeId) -> Option<ProcessParams> {
    let tgid = current_tgid();
    if let Some(slot) = PROBE_HITS.get_ptr_mut(tgid) {
        // SAFETY: `get_ptr_mut` returned this CPU's value of the entry, valid
        // while the program runs; no other CPU writes it. The index is a
        // constant below PROBE_COUNT.
        unsafe {
            if let Some(count) = (*slot).hits.get_mut(probe as usize) {
                *count += 1;
            }
        }
    }
    // SAFETY: the value is copied out at once; userspace only inserts and
    // removes whole entries.
    unsafe { PROCESSES.get(tgid) }.copied()
}

#[inline(always)]
fn bump(map: &PerCpuArray<u64>, index: u32) {
    if let Some(slot) = map.get_ptr_mut(index) {
        // SAFETY: `get_ptr_mut` returned this CPU's slot of the array (the
        // verifier checks the bounds), valid while the program runs; no other
        // CPU writes it. A probe preempting another on this CPU could at
        // worst lose one count of a diagnostic counter.
        unsafe { *slot += 1 };
    }
}

/// Registers the probes need, per architecture.
#[cfg(bpf_target_arch = "x86_64")]
mod regs {
    use aya_ebpf::programs::ProbeContext;

    /// The current g: R14 in every ABIInternal function.
    #[inline(always)]
    pub fn g(ctx: &ProbeContext) -> u64 {
        // SAFETY: `ctx.regs` is the kernel's pt_regs of the probed thread,
        // valid for the whole run of the program (the verifier checks every
        // context access).
        unsafe { (*ctx.regs).r14 }
    }
    /// The return address (the caller's call site), at entry: `[RSP]`.
    #[inline(always)]
    pub fn return_address(ctx: &ProbeContext) -> Option<u64> {
        // SAFETY: as in `g`.
        let sp = unsafe { (*ctx.regs).rsp };
        // SAFETY: bpf_probe_read_user copies from user memory with the
        // kernel's fault-tolerant copy: any address is sound, a bad one is Err.
        unsafe { aya_ebpf::helpers::bpf_probe_read_user(sp as *const u64) }.ok()
    }
    /// First integer argument / first result register.
    #[inline(always)]
    pub fn arg0(ctx: &ProbeContext) -> u64 {
        // SAFETY: as in `g`.
        unsafe { (*ctx.regs).rax }
    }
}

#[cfg(bpf_target_arch = "aarch64")]
mod regs {
    use aya_ebpf::{bindings::user_pt_regs, programs::ProbeContext};

    // On arm64 the uprobe context's pt_regs starts with user_pt_regs.
    #[inline(always)]
    fn r(ctx: &ProbeContext) -> &user_pt_regs {
        // SAFETY: `ctx.regs` is the kernel's pt_regs of the probed thread,
        // valid for the whole run of the program (no longer than `ctx`'s
        // borrow), and on arm64 it starts with a user_pt_regs.
        unsafe { &*(ctx.regs as *const user_pt_regs) }
    }
    /// The current g: R28.
    #[inline(always)]
    pub fn g(ctx: &ProbeContext) -> u64 {
        r(ctx).regs[28]
    }
    /// The return address, at entry: the link register (x30).
    #[inline(always)]
    pub fn return_address(ctx: &ProbeContext) -> Option<u64> {
        Some(r(ctx).regs[30])
    }
    #[inline(always)]
    pub fn arg0(ctx: &ProbeContext) -> u64 {
        r(ctx).regs[0]
    }
}

#[inline(always)]
fn read_u64(addr: u64) -> Option<u64> {
    // SAFETY: bpf_probe_read_user copies from user memory with the kernel's
    // fault-tolerant copy: any address is sound, a bad one is Err.
    unsafe { bpf_probe_read_user(addr as *const u64) }.ok()
}

#[inline(always)]
fn emit(kind: EventKind, probe: ProbeId, goid: u64, pc: u64, arg: u64, aux: u64) {
    match EVENTS.reserve::<Event>(0) {
        Some(mut slot) => {
            slot.write(Event {
                kind: kind as u32,
                probe: probe as u32,
                // SAFETY: a helper without arguments or preconditions.
                ktime_ns: unsafe { bpf_ktime_get_ns() },
                goid,
                pc,
                arg,
                aux,
                tid: bpf_get_current_pid_tgid() as u32,
                tgid: current_tgid(),
            });
            slot.submit(0);
        }
        // Never hidden: userspace reports this counter as events_lost.
        None => bump(&COUNTERS, counter::EVENTS_LOST),
    }
}

/// The goid of the goroutine running the probed function (R14/R28 = g).
#[inline(always)]
fn current_goid(ctx: &ProbeContext, params: &ProcessParams) -> Option<u64> {
    let g = regs::g(ctx);
    let goid = read_u64(g.wrapping_add(params.goid_offset));
    if goid.is_none() {
        bump(&COUNTERS, counter::READ_ERRORS);
    }
    goid
}

/// Where a pushed record comes from: normally the return address of the
/// call into the runtime (the `defer` statement's call site).
enum Site {
    ReturnAddress,
    /// The deferred function's code pointer + 1, read from the funcval in
    /// the first argument register: see `deferprocat`.
    DeferredFunction,
}

#[inline(always)]
fn on_push(ctx: &ProbeContext, probe: ProbeId, record: u64, site: Site) -> u32 {
    let Some(params) = hit(probe) else { return 0 };
    let Some(goid) = current_goid(ctx, &params) else { return 0 };
    let (site, below) = match site {
        // The new record goes on top of g._defer: which record that is lets
        // userspace place the push on a chain read from memory.
        Site::ReturnAddress => (
            regs::return_address(ctx).unwrap_or(0),
            read_u64(regs::g(ctx).wrapping_add(params.g_defer_offset)).unwrap_or(UNKNOWN_RECORD),
        ),
        // deferprocat pushes onto the loop's own list, not g._defer.
        Site::DeferredFunction => match read_u64(regs::arg0(ctx)) {
            Some(code) if code != 0 => (code + 1, UNKNOWN_RECORD),
            _ => (regs::return_address(ctx).unwrap_or(0), UNKNOWN_RECORD),
        },
    };
    emit(EventKind::DeferPush, probe, goid, site, record, below);
    0
}

/// The record below `record` (its `link`), which is the chain's head once
/// `record` is popped.
#[inline(always)]
fn record_below(params: &ProcessParams, record: u64) -> u64 {
    read_u64(record.wrapping_add(params.defer_link_offset)).unwrap_or(UNKNOWN_RECORD)
}

/// `runtime.deferproc(fn func())`: a heap-allocated record (defer in a loop).
#[uprobe]
pub fn deferproc(ctx: ProbeContext) -> u32 {
    on_push(&ctx, ProbeId::DeferProc, 0, Site::ReturnAddress)
}

/// `runtime.deferprocStack(d *_defer)`: a stack-allocated record.
#[uprobe]
pub fn deferproc_stack(ctx: ProbeContext) -> u32 {
    let record = regs::arg0(&ctx);
    on_push(&ctx, ProbeId::DeferProcStack, record, Site::ReturnAddress)
}

/// `runtime.deferprocat(fn, frame)`: a defer inside a range-over-func body.
/// Its record gets no call site until the loop's function returns, so memory
/// reads identify it by its deferred function (the compiler's `deferwrap`
/// closure, which sits at the `defer` statement's line); the event uses the
/// same identity so the two agree.
#[uprobe]
pub fn deferprocat(ctx: ProbeContext) -> u32 {
    on_push(&ctx, ProbeId::DeferProcAt, 0, Site::DeferredFunction)
}

/// `runtime.popDefer(gp *g)` (Go 1.23+): pops `gp._defer`.
#[uprobe]
pub fn pop_defer(ctx: ProbeContext) -> u32 {
    let Some(params) = hit(ProbeId::PopDefer) else { return 0 };
    // popDefer's argument is the goroutine; it is always the current one, but
    // read it from the argument so a future caller on g0 stays correct.
    let gp = regs::arg0(&ctx);
    let Some(goid) = read_u64(gp.wrapping_add(params.goid_offset)) else {
        bump(&COUNTERS, counter::READ_ERRORS);
        return 0;
    };
    // The popped record is gp._defer. A range-over-func header (pushed by
    // deferrangefunc, which is not probed) is the only record without a
    // function; it holds no deferred call, so it is not part of the depth.
    let Some(record) = read_u64(gp.wrapping_add(params.g_defer_offset)) else {
        bump(&COUNTERS, counter::READ_ERRORS);
        return 0;
    };
    match read_u64(record.wrapping_add(params.defer_fn_offset)) {
        Some(0) => {
            bump(&COUNTERS, counter::RANGEFUNC_HEADER_SKIPPED);
            return 0;
        }
        Some(_) => {}
        None => {
            bump(&COUNTERS, counter::READ_ERRORS);
            return 0;
        }
    }
    emit(EventKind::DeferPop, ProbeId::PopDefer, goid, 0, record, record_below(&params, record));
    0
}

/// `runtime.freedefer(d *_defer)` (Go ≤ 1.22): called once per popped record.
#[uprobe]
pub fn freedefer(ctx: ProbeContext) -> u32 {
    let Some(params) = hit(ProbeId::FreeDefer) else { return 0 };
    let record = regs::arg0(&ctx);
    let open_defer_offset = params.open_defer_offset;
    if open_defer_offset != NO_OFFSET {
        // Go ≤ 1.21 panics and Goexit create and free synthetic records for
        // open-coded defer frames; they were never pushed by deferproc*.
        // SAFETY: as in `read_u64`: any address is sound.
        let open = unsafe { bpf_probe_read_user((record + open_defer_offset) as *const u8) };
        match open {
            Ok(0) => {}
            Ok(_) => {
                bump(&COUNTERS, counter::OPEN_DEFER_SKIPPED);
                return 0;
            }
            Err(_) => {
                bump(&COUNTERS, counter::READ_ERRORS);
                return 0;
            }
        }
    }
    let Some(goid) = current_goid(&ctx, &params) else { return 0 };
    // freedefer runs once the record is unlinked, before it clears `link`.
    emit(EventKind::DeferPop, ProbeId::FreeDefer, goid, 0, record, record_below(&params, record));
    0
}

/// `runtime.goexit1()`: runs on the exiting goroutine.
#[uprobe]
pub fn goexit1(ctx: ProbeContext) -> u32 {
    let Some(params) = hit(ProbeId::Goexit1) else { return 0 };
    let Some(goid) = current_goid(&ctx, &params) else { return 0 };
    emit(EventKind::GoroutineExit, ProbeId::Goexit1, goid, 0, 0, 0);
    0
}

/// The instruction after `CALL runtime.newproc1` in `runtime.newproc.func1`
/// (on g0): the result register holds the new g.
#[uprobe]
pub fn newproc_return(ctx: ProbeContext) -> u32 {
    let Some(params) = hit(ProbeId::NewProcReturn) else { return 0 };
    let newg = regs::arg0(&ctx);
    let Some(goid) = read_u64(newg.wrapping_add(params.goid_offset)) else {
        bump(&COUNTERS, counter::READ_ERRORS);
        return 0;
    };
    let gopc = read_u64(newg.wrapping_add(params.gopc_offset)).unwrap_or(0);
    let parent_offset = params.parent_goid_offset;
    let parent = if parent_offset == NO_OFFSET { 0 } else { read_u64(newg.wrapping_add(parent_offset)).unwrap_or(0) };
    let startpc = read_u64(newg.wrapping_add(params.startpc_offset)).unwrap_or(0);
    emit(EventKind::GoroutineCreate, ProbeId::NewProcReturn, goid, gopc, parent, startpc);
    0
}

/// Attached by deferscope to a function of its own at startup, to time what
/// one probe hit costs on this kernel. Does what a push probe does (read the
/// g's goid and the return address, look its process up, reserve an event)
/// but discards the event and counts nothing in `PROBE_HITS`.
#[uprobe]
pub fn calibrate(ctx: ProbeContext) -> u32 {
    bump(&COUNTERS, counter::CALIBRATION_HITS);
    // deferscope itself has no entry: the lookup is what a probe pays.
    // SAFETY: as in `hit`.
    let goid_offset = unsafe { PROCESSES.get(current_tgid()) }.map_or(0, |p| p.goid_offset);
    let goid = read_u64(regs::g(&ctx).wrapping_add(goid_offset)).unwrap_or(0);
    let pc = regs::return_address(&ctx).unwrap_or(0);
    if let Some(mut slot) = EVENTS.reserve::<Event>(0) {
        slot.write(Event {
            kind: 0,
            probe: 0,
            ktime_ns: unsafe { bpf_ktime_get_ns() },
            goid,
            pc,
            arg: 0,
            aux: 0,
            tid: bpf_get_current_pid_tgid() as u32,
            tgid: current_tgid(),
        });
        slot.discard(0);
    }
    0
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
