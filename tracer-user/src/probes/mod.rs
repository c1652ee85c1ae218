//! The eBPF side, from userspace: load the probes, aim them at the target's
//! runtime functions, and hand out the event stream and counters.
//!
//! Dropping [`Probes`] detaches every uprobe and unloads the programs; the
//! kernel does the same if deferscope dies, so the target keeps running
//! untouched either way.
mod calibrate;

use std::{io, num::NonZeroU32, path::PathBuf};

use aya::{
    Ebpf, EbpfLoader,
    maps::{HashMap, MapData, PerCpuArray, PerCpuHashMap, PerCpuValues, RingBuf},
    programs::{
        ProgramError, UProbe,
        uprobe::{UProbeLinkId, UProbeScope},
    },
};
use tokio::io::unix::AsyncFd;
use tracer_common::{Event, NO_OFFSET, ProbeId, ProcessHits, ProcessParams, counter};

use crate::{
    gobin::{GoBinError, GoBinary, ProbePoint},
    goruntime::{self, RuntimeLayout, probe_plan::Placement},
    governor::Group,
    process::TracedProcess,
};

/// The compiled probes (built by build.rs; empty with DEFERSCOPE_SKIP_EBPF).
static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tracer"));

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error(
        "this deferscope was built without its eBPF probes (DEFERSCOPE_SKIP_EBPF=1); rebuild it with `cargo xtask build`"
    )]
    NoObject,
    #[error("loading the eBPF probes failed (deferscope needs root, or CAP_BPF and CAP_PERFMON): {0}")]
    Load(String),
    #[error("the Go runtime of process {pid} has no {function}: Go {version} is not supported")]
    MissingFunction { pid: u32, function: &'static str, version: String },
    #[error("cannot place a probe on {function}: {source}")]
    Locate { function: &'static str, source: GoBinError },
    #[error(
        "attaching a uprobe to {function} in process {pid} failed (needs root, or CAP_PERFMON, and a kernel with uprobes): {detail}"
    )]
    Attach { function: &'static str, pid: u32, detail: String },
    #[error("eBPF map {0} missing from the probe object")]
    MissingMap(&'static str),
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// Health counters summed over CPUs.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProbeCounters {
    pub events_lost: u64,
    pub read_errors: u64,
    pub open_defer_skipped: u64,
    pub rangefunc_header_skipped: u64,
    pub calibration_hits: u64,
    pub hits: [u64; tracer_common::PROBE_COUNT as usize],
}

/// One planned probe: where it goes, and its links while attached.
struct Attachment {
    function: &'static str,
    probe: ProbeId,
    points: Vec<ProbePoint>,
    /// Empty while detached (by the overhead governor).
    links: Vec<UProbeLinkId>,
}

/// The loaded probe programs and maps, shared by every traced process: the
/// programs are loaded once and attached to each process's binary, each
/// process's parameters sit in the `PROCESSES` map under its tgid.
///
/// Dropping it detaches every uprobe and unloads the programs.
pub struct ProbeObject {
    ebpf: Ebpf,
}

/// The probes of one traced process: its uprobe links on the shared
/// programs. Give it back with [`ProbeObject::release`]; until then its
/// probes stay attached.
pub struct ProcessProbes {
    /// Every probe placed at attach, in plan order.
    attachments: Vec<Attachment>,
    /// `/proc/PID/exe` of the target.
    exe_link: PathBuf,
    pid: NonZeroU32,
}

impl ProbeObject {
    /// Loads the probe programs (attached to nothing yet), with an event ring
    /// of `ring_bytes` (a power of two, at least a page).
    pub fn load(ring_bytes: u32) -> Result<Self, ProbeError> {
        if EBPF_OBJECT.is_empty() {
            return Err(ProbeError::NoObject);
        }
        raise_memlock_limit();
        let ebpf = EbpfLoader::new()
            .map_max_entries("EVENTS", ring_bytes)
            .load(EBPF_OBJECT)
            .map_err(|e| ProbeError::Load(e.to_string()))?;
        Ok(Self { ebpf })
    }

    /// Registers `process` (its parameters and hit counters) and attaches the
    /// probes of its Go version to its binary. All or nothing: on error the
    /// process is left untouched.
    pub fn attach(
        &mut self,
        process: &TracedProcess,
        binary: &GoBinary,
        layout: &RuntimeLayout,
    ) -> Result<ProcessProbes, ProbeError> {
        let pid = NonZeroU32::new(process.pid).ok_or(io::Error::other("PID 0"))?;
        let params = ProcessParams {
            goid_offset: layout.g_goid,
            parent_goid_offset: layout.g_parent_goid.unwrap_or(NO_OFFSET),
            gopc_offset: layout.g_gopc,
            startpc_offset: layout.g_startpc,
            g_defer_offset: layout.g_defer,
            defer_fn_offset: layout.defer_fn,
            defer_link_offset: layout.defer_link,
            open_defer_offset: layout.defer_open_defer.unwrap_or(NO_OFFSET),
        };
        self.register(process.pid, params)?;
        let mut probes = ProcessProbes { attachments: Vec::new(), exe_link: process.exe_link.clone(), pid };
        match self.attach_plan(&mut probes, binary) {
            Ok(()) => Ok(probes),
            Err(e) => {
                self.release(probes);
                Err(e)
            }
        }
    }

    fn attach_plan(&mut self, probes: &mut ProcessProbes, binary: &GoBinary) -> Result<(), ProbeError> {
        let pid = probes.pid;
        for planned in goruntime::probe_plan::plan(binary.version()) {
            let (function, points) = match planned.placement {
                Placement::Entry(function) => {
                    if binary.function_entry(function).is_none() {
                        if planned.required {
                            return Err(ProbeError::MissingFunction {
                                pid: pid.get(),
                                function,
                                version: binary.version().raw.clone(),
                            });
                        }
                        continue;
                    }
                    let point =
                        binary.probe_point(function).map_err(|source| ProbeError::Locate { function, source })?;
                    (function, vec![point])
                }
                Placement::AfterCall { caller, callee } => {
                    if binary.function_entry(caller).is_none() {
                        log::warn!("process {pid}: {caller} not found: goroutine creation will not be counted");
                        continue;
                    }
                    match binary.call_return_points(caller, callee) {
                        Ok(points) if !points.is_empty() => (callee, points),
                        Ok(_) | Err(_) => {
                            log::warn!(
                                "process {pid}: no call to {callee} found in {caller}: goroutine creation will not \
                                 be counted"
                            );
                            continue;
                        }
                    }
                }
            };
            let links = attach_points(&mut self.ebpf, planned.probe, function, &points, &probes.exe_link, pid)?;
            probes.attachments.push(Attachment { function, probe: planned.probe, points, links });
        }
        Ok(())
    }

    /// Makes the probes serve `tgid`: its parameters, and zeroed hit counters.
    fn register(&mut self, tgid: u32, params: ProcessParams) -> Result<(), ProbeError> {
        let nr_cpus = aya::util::nr_cpus().map_err(|(_, e)| e)?;
        let mut hits = PerCpuHashMap::<_, u32, ProcessHits>::try_from(
            self.ebpf.map_mut("PROBE_HITS").ok_or(ProbeError::MissingMap("PROBE_HITS"))?,
        )
        .map_err(|e| ProbeError::Load(e.to_string()))?;
        let zero = PerCpuValues::try_from(vec![ProcessHits::default(); nr_cpus])
            .map_err(|e| ProbeError::Load(e.to_string()))?;
        hits.insert(tgid, zero, 0).map_err(|e| ProbeError::Load(format!("registering process {tgid}: {e}")))?;
        let mut processes = HashMap::<_, u32, ProcessParams>::try_from(
            self.ebpf.map_mut("PROCESSES").ok_or(ProbeError::MissingMap("PROCESSES"))?,
        )
        .map_err(|e| ProbeError::Load(e.to_string()))?;
        processes.insert(tgid, params, 0).map_err(|e| ProbeError::Load(format!("registering process {tgid}: {e}")))?;
        Ok(())
    }

    /// Detaches every probe of a process and forgets it. Never fails: a
    /// process that exited has nothing left to detach from.
    pub fn release(&mut self, probes: ProcessProbes) {
        let tgid = probes.pid.get();
        for a in probes.attachments {
            if let Ok(program) = program_mut(&mut self.ebpf, a.probe) {
                for link in a.links {
                    let _ = program.detach(link);
                }
            }
        }
        if let Some(map) = self.ebpf.map_mut("PROCESSES") {
            if let Ok(mut processes) = HashMap::<_, u32, ProcessParams>::try_from(map) {
                let _ = processes.remove(&tgid);
            }
        }
        if let Some(map) = self.ebpf.map_mut("PROBE_HITS") {
            if let Ok(mut hits) = PerCpuHashMap::<_, u32, ProcessHits>::try_from(map) {
                let _ = hits.remove(&tgid);
            }
        }
    }

    /// Detaches every probe of `group` from one process: from now on they
    /// cost it nothing.
    pub fn detach(&mut self, probes: &mut ProcessProbes, group: Group) -> Result<(), ProbeError> {
        for a in probes.attachments.iter_mut().filter(|a| Group::of(a.probe) == group) {
            let program = program_mut(&mut self.ebpf, a.probe)?;
            for link in a.links.drain(..) {
                program.detach(link).map_err(|e| ProbeError::Load(format!("detaching {}: {e}", a.function)))?;
            }
        }
        Ok(())
    }

    /// Re-attaches every probe of `group` to one process; all or none.
    pub fn attach_group(&mut self, probes: &mut ProcessProbes, group: Group) -> Result<(), ProbeError> {
        let mut done = Vec::new();
        for (i, a) in probes.attachments.iter().enumerate() {
            if Group::of(a.probe) != group || !a.links.is_empty() {
                continue;
            }
            match attach_points(&mut self.ebpf, a.probe, a.function, &a.points, &probes.exe_link, probes.pid) {
                Ok(links) => done.push((i, links)),
                Err(e) => {
                    for (i, links) in done {
                        let probe = probes.attachments[i].probe;
                        if let Ok(program) = program_mut(&mut self.ebpf, probe) {
                            for link in links {
                                let _ = program.detach(link);
                            }
                        }
                    }
                    return Err(e);
                }
            }
        }
        for (i, links) in done {
            probes.attachments[i].links = links;
        }
        Ok(())
    }

    /// Measures what one probe hit costs on this kernel, in ns (see
    /// [`calibrate`]).
    pub fn calibrate(&mut self) -> Result<f64, ProbeError> {
        calibrate::cost_per_hit_ns(&mut self.ebpf)
    }

    /// The event stream of every traced process, registered with tokio.
    /// Call once.
    pub fn take_events(&mut self) -> Result<AsyncFd<RingBuf<MapData>>, ProbeError> {
        let map = self.ebpf.take_map("EVENTS").ok_or(ProbeError::MissingMap("EVENTS"))?;
        let ring = RingBuf::try_from(map).map_err(|e| ProbeError::Load(e.to_string()))?;
        // SAFETY: the ring buffer's fd stays open as long as the AsyncFd owns it.
        let fd =
            unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) }.map_err(io::Error::from)?;
        Ok(fd)
    }

    /// The health counters (shared by all processes: one ring buffer) and
    /// the probe hits of process `tgid`.
    pub fn counters(&self, tgid: u32) -> ProbeCounters {
        let mut out = ProbeCounters::default();
        if let Some(map) = self.ebpf.map("COUNTERS") {
            if let Ok(array) = PerCpuArray::<&MapData, u64>::try_from(map) {
                let sum = |i: u32| array.get(&i, 0).map(|v| v.iter().sum::<u64>()).unwrap_or(0);
                out.events_lost = sum(counter::EVENTS_LOST);
                out.read_errors = sum(counter::READ_ERRORS);
                out.open_defer_skipped = sum(counter::OPEN_DEFER_SKIPPED);
                out.rangefunc_header_skipped = sum(counter::RANGEFUNC_HEADER_SKIPPED);
                out.calibration_hits = sum(counter::CALIBRATION_HITS);
            }
        }
        if let Some(map) = self.ebpf.map("PROBE_HITS") {
            if let Ok(hits) = PerCpuHashMap::<&MapData, u32, ProcessHits>::try_from(map) {
                if let Ok(per_cpu) = hits.get(&tgid, 0) {
                    for cpu in per_cpu.iter() {
                        for (sum, h) in out.hits.iter_mut().zip(cpu.hits) {
                            *sum += h;
                        }
                    }
                }
            }
        }
        out
    }
}

impl ProcessProbes {
    /// Names of the runtime functions deferscope probes (attached or
    /// detached by the governor).
    pub fn functions(&self) -> Vec<String> {
        self.attachments.iter().map(|a| a.function.to_owned()).collect()
    }

    /// Every planned probe: function, probe and whether it is attached now.
    pub fn states(&self) -> impl Iterator<Item = (&str, ProbeId, bool)> {
        self.attachments.iter().map(|a| (a.function, a.probe, !a.links.is_empty()))
    }

    /// The governor groups with a probe placed.
    pub fn groups(&self) -> Vec<Group> {
        let mut groups: Vec<Group> = self.attachments.iter().map(|a| Group::of(a.probe)).collect();
        groups.sort();
        groups.dedup();
        groups
    }
}

fn program_mut(ebpf: &mut Ebpf, probe: ProbeId) -> Result<&mut UProbe, ProbeError> {
    program_by_name(ebpf, probe.program_name())
}

fn program_by_name<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut UProbe, ProbeError> {
    ebpf.program_mut(name)
        .ok_or_else(|| ProbeError::Load(format!("program {name} missing from the probe object")))?
        .try_into()
        .map_err(|e: ProgramError| ProbeError::Load(e.to_string()))
}

fn attach_points(
    ebpf: &mut Ebpf,
    probe: ProbeId,
    function: &'static str,
    points: &[ProbePoint],
    exe_link: &std::path::Path,
    pid: NonZeroU32,
) -> Result<Vec<UProbeLinkId>, ProbeError> {
    let name = probe.program_name();
    let program = program_mut(ebpf, probe)?;
    // Programs attached to several functions are loaded once.
    if program.fd().is_err() {
        program.load().map_err(|e| ProbeError::Load(format!("{name}: {e}")))?;
    }
    let mut links = Vec::with_capacity(points.len());
    for point in points {
        // /proc/PID/exe is the inode the process runs, even if the file on
        // disk was replaced since it started.
        match program.attach(point.file_offset, exe_link, UProbeScope::OneProcess(pid)) {
            Ok(link) => links.push(link),
            Err(e) => {
                for link in links {
                    let _ = program.detach(link);
                }
                return Err(ProbeError::Attach { function, pid: pid.get(), detail: error_chain(&e) });
            }
        }
    }
    Ok(links)
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

fn raise_memlock_limit() {
    // Kernels before 5.11 charge BPF maps to RLIMIT_MEMLOCK; newer ones use
    // memcg and ignore it, so failing here is not an error.
    let limit = libc::rlimit { rlim_cur: libc::RLIM_INFINITY, rlim_max: libc::RLIM_INFINITY };
    // SAFETY: setrlimit reads the struct we pass.
    unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &limit) };
}

/// Decodes one ring-buffer record; `None` for a short or unknown record.
pub fn decode_event(bytes: &[u8]) -> Option<Event> {
    if bytes.len() < size_of::<Event>() {
        return None;
    }
    // SAFETY: length checked; Event is plain old data, read unaligned.
    Some(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<Event>()) })
}
