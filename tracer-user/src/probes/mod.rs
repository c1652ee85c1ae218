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
    maps::{MapData, PerCpuArray, RingBuf},
    programs::{
        ProgramError, UProbe,
        uprobe::{UProbeLinkId, UProbeScope},
    },
};
use tokio::io::unix::AsyncFd;
use tracer_common::{Event, ProbeId, counter, globals};

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

pub struct Probes {
    ebpf: Ebpf,
    /// Every probe placed at attach, in plan order.
    attachments: Vec<Attachment>,
    /// `/proc/PID/exe` of the target.
    exe_link: PathBuf,
    pid: NonZeroU32,
}

impl Probes {
    pub fn attach(process: &TracedProcess, binary: &GoBinary, layout: &RuntimeLayout) -> Result<Self, ProbeError> {
        if EBPF_OBJECT.is_empty() {
            return Err(ProbeError::NoObject);
        }
        raise_memlock_limit();
        let tgid = process.pid;
        let goid_offset = layout.g_goid;
        let parent_offset = layout.g_parent_goid.unwrap_or(globals::NO_OFFSET);
        let gopc_offset = layout.g_gopc;
        let startpc_offset = layout.g_startpc;
        let open_defer_offset = layout.defer_open_defer.unwrap_or(globals::NO_OFFSET);
        let g_defer_offset = layout.g_defer;
        let defer_fn_offset = layout.defer_fn;
        let defer_link_offset = layout.defer_link;
        let mut ebpf = EbpfLoader::new()
            .override_global(globals::TARGET_TGID, &tgid, true)
            .override_global(globals::GOID_OFFSET, &goid_offset, true)
            .override_global(globals::PARENT_GOID_OFFSET, &parent_offset, true)
            .override_global(globals::GOPC_OFFSET, &gopc_offset, true)
            .override_global(globals::STARTPC_OFFSET, &startpc_offset, true)
            .override_global(globals::OPEN_DEFER_OFFSET, &open_defer_offset, true)
            .override_global(globals::G_DEFER_OFFSET, &g_defer_offset, true)
            .override_global(globals::DEFER_FN_OFFSET, &defer_fn_offset, true)
            .override_global(globals::DEFER_LINK_OFFSET, &defer_link_offset, true)
            .load(EBPF_OBJECT)
            .map_err(|e| ProbeError::Load(e.to_string()))?;

        let pid = NonZeroU32::new(process.pid).ok_or(io::Error::other("PID 0"))?;
        let mut attachments = Vec::new();
        for planned in goruntime::probe_plan::plan(binary.version()) {
            let (function, points) = match planned.placement {
                Placement::Entry(function) => {
                    if binary.function_entry(function).is_none() {
                        if planned.required {
                            return Err(ProbeError::MissingFunction {
                                pid: process.pid,
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
                        log::warn!("{caller} not found: goroutine creation will not be counted");
                        continue;
                    }
                    match binary.call_return_points(caller, callee) {
                        Ok(points) if !points.is_empty() => (callee, points),
                        Ok(_) | Err(_) => {
                            log::warn!("no call to {callee} found in {caller}: goroutine creation will not be counted");
                            continue;
                        }
                    }
                }
            };
            let links = attach_points(&mut ebpf, planned.probe, function, &points, &process.exe_link, pid)?;
            attachments.push(Attachment { function, probe: planned.probe, points, links });
        }
        Ok(Self { ebpf, attachments, exe_link: process.exe_link.clone(), pid })
    }

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

    /// Detaches every probe of `group`: from now on they cost the target
    /// nothing.
    pub fn detach(&mut self, group: Group) -> Result<(), ProbeError> {
        for a in self.attachments.iter_mut().filter(|a| Group::of(a.probe) == group) {
            let program = program_mut(&mut self.ebpf, a.probe)?;
            for link in a.links.drain(..) {
                program.detach(link).map_err(|e| ProbeError::Load(format!("detaching {}: {e}", a.function)))?;
            }
        }
        Ok(())
    }

    /// Re-attaches every probe of `group`; all or none.
    pub fn attach_group(&mut self, group: Group) -> Result<(), ProbeError> {
        let mut done = Vec::new();
        for (i, a) in self.attachments.iter().enumerate() {
            if Group::of(a.probe) != group || !a.links.is_empty() {
                continue;
            }
            match attach_points(&mut self.ebpf, a.probe, a.function, &a.points, &self.exe_link, self.pid) {
                Ok(links) => done.push((i, links)),
                Err(e) => {
                    for (i, links) in done {
                        let probe = self.attachments[i].probe;
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
            self.attachments[i].links = links;
        }
        Ok(())
    }

    /// Measures what one probe hit costs on this kernel, in ns (see
    /// [`calibrate`]).
    pub fn calibrate(&mut self) -> Result<f64, ProbeError> {
        calibrate::cost_per_hit_ns(&mut self.ebpf)
    }

    /// The event stream, registered with tokio. Call once.
    pub fn take_events(&mut self) -> Result<AsyncFd<RingBuf<MapData>>, ProbeError> {
        let map = self.ebpf.take_map("EVENTS").ok_or(ProbeError::MissingMap("EVENTS"))?;
        let ring = RingBuf::try_from(map).map_err(|e| ProbeError::Load(e.to_string()))?;
        // SAFETY: the ring buffer's fd stays open as long as the AsyncFd owns it.
        let fd =
            unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) }.map_err(io::Error::from)?;
        Ok(fd)
    }

    pub fn counters(&self) -> ProbeCounters {
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
            if let Ok(array) = PerCpuArray::<&MapData, u64>::try_from(map) {
                for probe in ProbeId::ALL {
                    let i = probe as u32;
                    out.hits[i as usize] = array.get(&i, 0).map(|v| v.iter().sum::<u64>()).unwrap_or(0);
                }
            }
        }
        out
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
