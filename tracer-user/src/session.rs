//! One tracing session: open the targets, attach, then fold events and
//! memory reads into snapshots until told to stop or, with `--pid` alone,
//! the targets exit. With `--exe`/`--all` the session discovers processes
//! as they start and lets them go as they exit.
//!
//! One probe object serves every process; each traced process has its own
//! aggregator, overhead governor and memory scans ([`Tracee`]). Data flows
//! one way: probes + memory → aggregator → snapshot feeds that the outputs
//! (JSON lines, text, TUI, /metrics) read.
use std::{
    collections::{BTreeMap, HashMap, HashSet},
    io,
    sync::Arc,
    time::Instant,
};

use tokio::{
    signal::unix::{SignalKind, signal},
    sync::{Notify, mpsc},
    time::MissedTickBehavior,
};

use tracer_common::ProbeId;

use crate::{
    aggregate::{
        Aggregator, Coverage, ProcessInfo, SnapshotInputs,
        model::{Mode, Overhead, ProbeHits, ProbeState, Snapshot},
    },
    cli::Options,
    feed::{self, Fleet},
    gobin::{Arch, GoBinError, GoBinary},
    goruntime,
    governor::{Budget, Governor, Window},
    output::{NothingToShow, OutputMode},
    own_memory,
    probes::{self, ProbeObject, ProcessProbes},
    process::{
        GoroutineScan, GoroutineScanner, ProcessMemory, TracedProcess,
        discover::{self, Identity},
        reachability::{self, BinaryFrames, LeakScan, ReachTarget, StackFrames},
    },
    symbols::BinarySymbols,
};

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Process(#[from] crate::process::traced::ProcessError),
    #[error("process {pid} ({exe}) is not a Go program: {reason}")]
    NotGo { pid: u32, exe: String, reason: GoBinError },
    #[error("process {pid} ({exe}): {source}")]
    Binary { pid: u32, exe: String, source: GoBinError },
    #[error("process {pid} runs {version}, which deferscope does not support (it supports {})", goruntime::SUPPORTED)]
    UnsupportedVersion { pid: u32, version: String },
    #[error(transparent)]
    Probe(#[from] probes::ProbeError),
    #[error("cannot read the memory of process {pid}: {source}")]
    Memory { pid: u32, source: crate::process::memory::MemoryError },
    #[error(transparent)]
    NothingToShow(#[from] NothingToShow),
    #[error("cannot serve metrics on {addr}: {source}")]
    Metrics { addr: std::net::SocketAddr, source: io::Error },
    #[error(transparent)]
    WebConfig(#[from] crate::exporters::web_config::WebConfigError),
    #[error("{given} processes given with --pid, more than --max-processes {max}")]
    TooManyPids { given: usize, max: u32 },
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// Everything known about a target before tracing starts.
struct Prepared {
    process: TracedProcess,
    identity: Identity,
    facts: Arc<BinaryFacts>,
    scanner: Arc<GoroutineScanner>,
    reach: ReachTarget,
    bias: u64,
}

/// The reachability scan's read-rate bound: it never reads the target's
/// memory faster than this.
const LEAK_SCAN_MAX_BYTES_PER_S: u64 = 512 << 20;

/// What deferscope reads from a Go binary once, whatever the number of
/// processes running it (parsing is the costly part of attaching).
struct BinaryFacts {
    binary: Arc<GoBinary>,
    layout: goruntime::RuntimeLayout,
    allgs: crate::gobin::AllgsLocation,
    mheap: Option<u64>,
    pointer_globals: Vec<(u64, u64)>,
}

fn binary_facts(process: &TracedProcess) -> Result<Arc<BinaryFacts>, SessionError> {
    let pid = process.pid;
    let exe = process.exe_path.display().to_string();
    let binary = match GoBinary::open(&process.exe_link) {
        Ok(b) => b,
        Err(e @ (GoBinError::NotGo | GoBinError::NotElf)) => return Err(SessionError::NotGo { pid, exe, reason: e }),
        Err(GoBinError::UnsupportedVersion(version)) => return Err(SessionError::UnsupportedVersion { pid, version }),
        Err(GoBinError::Io { source, .. }) if source.kind() == io::ErrorKind::PermissionDenied => {
            return Err(
                crate::process::traced::ProcessError::PermissionDenied { path: process.exe_link.clone() }.into()
            );
        }
        Err(source) => return Err(SessionError::Binary { pid, exe, source }),
    };
    if !goruntime::SUPPORTED.contains(binary.version()) {
        return Err(SessionError::UnsupportedVersion { pid, version: binary.version().raw.clone() });
    }
    let layout = goruntime::RuntimeLayout::of(&binary).map_err(|source| SessionError::Binary {
        pid,
        exe: exe.clone(),
        source,
    })?;
    let allgs = binary.allgs_location().map_err(|source| SessionError::Binary { pid, exe: exe.clone(), source })?;
    let mheap = binary.mheap_location();
    let pointer_globals = binary.pointer_globals();
    Ok(Arc::new(BinaryFacts { binary: Arc::new(binary), layout, allgs, mheap, pointer_globals }))
}

/// Opens process `pid`; `shared`: what was read from its binary for
/// another process running the same file, if any.
fn prepare(pid: u32, shared: Option<Arc<BinaryFacts>>) -> Result<Prepared, SessionError> {
    let process = TracedProcess::open(pid)?;
    let identity = match Identity::of(pid) {
        Ok(Some(identity)) => identity,
        Ok(None) => return Err(crate::process::traced::ProcessError::NoSuchProcess(pid).into()),
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            return Err(
                crate::process::traced::ProcessError::PermissionDenied { path: process.exe_link.clone() }.into()
            );
        }
        Err(e) => return Err(e.into()),
    };
    let facts = match shared {
        Some(facts) => facts,
        None => binary_facts(&process)?,
    };
    let binary = &facts.binary;
    let first_load = binary.file_offset_to_vaddr(0).unwrap_or(0);
    let bias = process.load_bias(binary.is_pie(), first_load)?;
    let allgs = &facts.allgs;
    let mem = ProcessMemory::open(pid).map_err(|source| SessionError::Memory { pid, source })?;
    let reach = ReachTarget {
        layout: facts.layout.clone(),
        allgs: allgs.allgs.wrapping_add(bias),
        allglen: allgs.allglen.map(|a| a.wrapping_add(bias)),
        mheap: facts.mheap.map(|a| a.wrapping_add(bias)),
        globals: facts
            .pointer_globals
            .iter()
            .map(|(start, end)| (start.wrapping_add(bias), end.wrapping_add(bias)))
            .collect(),
        moduledata: binary.moduledata_location().map(|a| a.wrapping_add(bias)),
        allp: binary.allp_location().map(|a| a.wrapping_add(bias)),
        allm: binary.allm_location().map(|a| a.wrapping_add(bias)),
        max_bytes_per_s: LEAK_SCAN_MAX_BYTES_PER_S,
        // Set by `Session::start` (--explain-leaks).
        explain: false,
        semtable: binary.semtable_location().map(|a| a.wrapping_add(bias)),
        frames: Some(StackFrames {
            source: Arc::new(BinaryFrames::new(Arc::clone(binary), bias)),
            uses_lr: binary.arch() == Arch::Aarch64,
        }),
    };
    let scanner = GoroutineScanner::new(
        mem,
        facts.layout.clone(),
        allgs.allgs.wrapping_add(bias),
        allgs.allglen.map(|a| a.wrapping_add(bias)),
    );
    Ok(Prepared { process, identity, facts, scanner: Arc::new(scanner), reach, bias })
}

fn rfc3339_now() -> String {
    time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

/// Whether a session with these options shows the dashboard.
pub fn uses_tui(options: &Options) -> bool {
    matches!(OutputMode::choose(options), Ok(OutputMode::Tui))
}

/// Several processes may be traced (the dashboard starts on the process
/// list).
fn is_multi(options: &Options) -> bool {
    options.discovers() || options.pid.len() > 1
}

/// Notifies the session when dropped: the TUI thread holds one, so the
/// session ends however that thread ends, a panic included.
struct StopOnDrop(Arc<Notify>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.notify_one();
    }
}

/// One traced process: its probes on the shared object, its aggregator,
/// governor and memory scans.
struct Tracee {
    /// Tells this tracee's scan results from those of an earlier process
    /// with the same PID.
    serial: u64,
    identity: Identity,
    process: TracedProcess,
    facts: Arc<BinaryFacts>,
    scanner: Arc<GoroutineScanner>,
    reach: Arc<ReachTarget>,
    leak_mem: Arc<ProcessMemory>,
    probes: ProcessProbes,
    info: ProcessInfo,
    aggregator: Aggregator,
    symbols: BinarySymbols,
    governor: Governor,
    cpu: CpuClock,
    switches: u64,
    started: Instant,
    scan_in_flight: bool,
    leak_scan_in_flight: bool,
    /// A goroutine scan, or a leak scan, fell due while the other was in
    /// flight: it starts when that one is in. The two never run at once:
    /// each holds a copy of every goroutine it read (at 100k goroutines,
    /// tens of MiB each), and together they set deferscope's memory peak.
    scan_due: bool,
    leak_scan_due: bool,
    /// The first memory read (the chains from before attach) is in: until
    /// then the tracee has no snapshot.
    ready: bool,
}

/// A goroutine scan's result, for the tracee of that serial.
type ScanResult = (u64, Result<GoroutineScan, crate::process::memory::MemoryError>);

type Ring = tokio::io::unix::AsyncFd<aya::maps::RingBuf<aya::maps::MapData>>;

/// Everything the session's loop shares.
struct Host {
    options: Options,
    object: ProbeObject,
    events: Ring,
    tracees: BTreeMap<u32, Tracee>,
    cost_per_hit_ns: f64,
    next_serial: u64,
    details: bool,
    scans: mpsc::Sender<ScanResult>,
}

impl Host {
    /// Attaches to a prepared process and reads the chains it already has:
    /// at once (`wait`: errors are the caller's), or off the loop, the
    /// tracee ready when the read is in (see [`Host::on_scan`]). On error
    /// nothing of it is left attached.
    async fn start(&mut self, prepared: Prepared, wait: bool) -> Result<(), SessionError> {
        let Prepared { process, identity, facts, scanner, mut reach, bias } = prepared;
        // Retaining paths cost a map entry per marked object: only when asked
        // for (README, "Why a stuck goroutine is not leaked").
        reach.explain = self.options.explain_leaks;
        let reach = Arc::new(reach);
        let binary = facts.binary.clone();
        let pid = process.pid;
        let leak_mem = Arc::new(ProcessMemory::open(pid).map_err(|source| SessionError::Memory { pid, source })?);
        let probes = self.object.attach(&process, &binary, scanner.layout())?;
        let probes_live_ns = crate::process::monotonic_ns();
        log::info!("process {pid} ({}): attached to {:?}", process.exe_name(), probes.functions());
        let governor = Governor::new(self.options.overhead_budget, self.cost_per_hit_ns, probes.groups());
        let cpu = CpuClock::new(pid, self.object.counters(pid).hits);
        let info = ProcessInfo {
            pid,
            exe: process.exe_name(),
            container: discover::container_of(pid),
            go_version: binary.version().raw.clone(),
            arch: binary.arch().name().to_owned(),
            probes: probes.functions(),
        };
        let mut aggregator = Aggregator::new(scanner.layout().wait_reasons.clone());
        aggregator.set_probes_live(probes_live_ns);
        let symbols = BinarySymbols::new(binary.clone(), bias);
        self.next_serial += 1;
        let tracee = Tracee {
            serial: self.next_serial,
            identity,
            process,
            facts,
            scanner: scanner.clone(),
            reach,
            leak_mem,
            probes,
            info,
            aggregator,
            symbols,
            governor,
            cpu,
            switches: 0,
            started: Instant::now(),
            scan_in_flight: !wait,
            leak_scan_in_flight: false,
            scan_due: false,
            leak_scan_due: false,
            ready: wait,
        };
        // Registered before the first read, so that the events between
        // attach and that read reach its aggregator.
        if let Some(earlier) = self.tracees.insert(pid, tracee) {
            self.object.release(earlier.probes);
        }
        // Chains that existed before attach: read memory once the probes are
        // in, so nothing falls between the read and the first event.
        if !wait {
            let (tx, serial) = (self.scans.clone(), self.next_serial);
            tokio::task::spawn_blocking(move || {
                let _ = tx.blocking_send((serial, scanner.scan()));
            });
            return Ok(());
        }
        let first = tokio::task::spawn_blocking(move || scanner.scan())
            .await
            .map_err(|e| io::Error::other(e.to_string()))?
            .map_err(|source| SessionError::Memory { pid, source });
        self.drain();
        match first {
            Ok(scan) => {
                if let Some(t) = self.tracees.get_mut(&pid) {
                    t.aggregator.apply_scan(&scan);
                }
                Ok(())
            }
            Err(e) => {
                if let Some(t) = self.tracees.remove(&pid) {
                    self.object.release(t.probes);
                }
                Err(e)
            }
        }
    }

    /// Applies a goroutine scan; a process whose first read fails is
    /// dropped (it may have exited meanwhile).
    fn on_scan(&mut self, (serial, scan): ScanResult) {
        self.drain();
        let Some((&pid, t)) = self.tracees.iter_mut().find(|(_, t)| t.serial == serial) else { return };
        t.scan_in_flight = false;
        match scan {
            Ok(scan) => {
                t.aggregator.apply_scan(&scan);
                if !t.ready {
                    t.ready = true;
                    log::warn!("process {pid} ({}): traced", t.info.exe);
                }
            }
            Err(e) if t.ready => log::debug!("process {pid}: goroutine scan failed: {e}"),
            Err(e) => {
                log::warn!("process {pid} ({}): skipped: {}", t.info.exe, SessionError::Memory { pid, source: e });
                self.release(pid);
            }
        }
    }

    /// Applies every event the ring buffer holds now, each to its process.
    fn drain(&mut self) {
        drain(self.events.get_mut(), &mut self.tracees);
    }

    /// A snapshot of one traced process now.
    fn snapshot(&mut self, pid: u32) -> Option<Snapshot> {
        let counters = self.object.counters(pid);
        let t = self.tracees.get_mut(&pid)?;
        t.aggregator.set_events_lost(counters.events_lost);
        let inputs = snapshot_inputs(&self.options, t, &counters, self.details);
        Some(t.aggregator.snapshot(&t.info, &mut t.symbols, &inputs))
    }

    /// Detaches from a process and forgets it.
    fn release(&mut self, pid: u32) {
        if let Some(t) = self.tracees.remove(&pid) {
            self.object.release(t.probes);
        }
    }

    /// Runs the governor of every process over the last window. Errors only
    /// for a fixed set of processes (with --exe/--all, a failing process is
    /// logged and dropped).
    fn govern(&mut self) -> Result<(), SessionError> {
        let pids: Vec<u32> = self.tracees.keys().copied().collect();
        for pid in pids {
            let hits = self.object.counters(pid).hits;
            let Some(t) = self.tracees.get_mut(&pid) else { continue };
            let Some(window) = t.cpu.window(hits) else { continue };
            for switch in t.governor.observe(&window) {
                // Everything the probes said so far counts under the old coverage.
                self.drain();
                let Some(t) = self.tracees.get_mut(&pid) else { break };
                let result = if switch.attach {
                    self.object.attach_group(&mut t.probes, switch.group)
                } else {
                    let detaching_ns = crate::process::monotonic_ns();
                    let result = self.object.detach(&mut t.probes, switch.group);
                    // Events still in the ring buffer may have been stamped
                    // after part of the stream stopped (pushes without their
                    // pops): they only count.
                    t.aggregator.set_coverage(coverage(&t.probes), detaching_ns);
                    result
                };
                self.drain();
                let Some(t) = self.tracees.get_mut(&pid) else { break };
                match result {
                    Ok(()) => {
                        t.switches += 1;
                        log::warn!(
                            "overhead governor: process {pid}: {} {} probes: {}",
                            if switch.attach { "re-attached" } else { "detached" },
                            switch.group.name(),
                            switch.reason
                        );
                    }
                    Err(e) if switch.attach => {
                        t.governor.attach_failed(switch.group);
                        log::warn!(
                            "overhead governor: process {pid}: re-attaching {} probes failed: {e}",
                            switch.group.name()
                        );
                    }
                    Err(e) if self.options.discovers() => {
                        log::warn!("process {pid}: detaching probes failed ({e}); no longer traced");
                        self.release(pid);
                        break;
                    }
                    Err(e) => return Err(e.into()),
                }
                t.aggregator.set_coverage(coverage(&t.probes), crate::process::monotonic_ns());
            }
        }
        Ok(())
    }
}

/// What `--exe`/`--all` found and decided: processes examined and not
/// traced are not examined again while they run the same program.
///
/// Examining a process (reading and parsing its binary) can take a while
/// for a big program, so it happens on a thread of its own: the session
/// keeps serving the processes it traces meanwhile.
struct Discovery {
    exes: Vec<String>,
    all: bool,
    /// `--pid`s given beside `--exe`/`--all`: examined once, at start.
    pids: Vec<u32>,
    max_processes: usize,
    skipped: HashMap<u32, Identity>,
    /// Sent to the examiner, not answered yet.
    examining: HashSet<u32>,
    /// Processes waiting for a slot under --max-processes, said once each.
    waiting: HashSet<Identity>,
    /// Executables known not to be Go programs (or unsupported ones), by
    /// device and inode, so a hundred shells are read once.
    not_traceable: HashSet<(u64, u64)>,
    examiner: std::sync::mpsc::Sender<Job>,
}

/// A process for the examiner; `shared`: the parsed binary of a traced
/// process running the same file.
struct Job {
    identity: Identity,
    name: String,
    shared: Option<Arc<BinaryFacts>>,
}

/// The examiner's answer.
struct Examined {
    identity: Identity,
    name: String,
    result: Result<Prepared, SessionError>,
}

/// A bound on `not_traceable`: past it the set starts over.
const NOT_TRACEABLE_CAP: usize = 4096;

/// Parsed binaries the examiner keeps after their processes are gone, so a
/// program that restarts is attached again at once.
const RECENT_BINARIES: usize = 4;

/// Starts the examiner thread: it prepares the processes it is sent, one
/// at a time, and stops when the job channel closes.
fn spawn_examiner(results: mpsc::Sender<Examined>) -> io::Result<std::sync::mpsc::Sender<Job>> {
    let (jobs, rx) = std::sync::mpsc::channel::<Job>();
    std::thread::Builder::new().name("examiner".into()).spawn(move || {
        let mut recent: std::collections::VecDeque<((u64, u64), Arc<BinaryFacts>)> = Default::default();
        for Job { identity, name, shared } in rx {
            let shared = shared.or_else(|| recent.iter().find(|(k, _)| *k == identity.exe).map(|(_, b)| b.clone()));
            let result = prepare(identity.pid, shared);
            if let Ok(prepared) = &result {
                recent.retain(|(k, _)| *k != prepared.identity.exe);
                recent.push_front((prepared.identity.exe, prepared.facts.clone()));
                recent.truncate(RECENT_BINARIES);
            }
            if results.blocking_send(Examined { identity, name, result }).is_err() {
                break;
            }
        }
    })?;
    Ok(jobs)
}

impl Discovery {
    fn new(options: &Options, examiner: std::sync::mpsc::Sender<Job>) -> Self {
        Self {
            exes: options.exe.clone(),
            all: options.all,
            pids: options.pid.clone(),
            max_processes: options.max_processes as usize,
            skipped: HashMap::new(),
            examining: HashSet::new(),
            waiting: HashSet::new(),
            not_traceable: HashSet::new(),
            examiner,
        }
    }

    /// Processes to examine now: selected and neither traced, being
    /// examined, nor already skipped.
    fn candidates(&mut self, tracees: &BTreeMap<u32, Tracee>) -> Vec<(Identity, String)> {
        let pids = match discover::pids() {
            Ok(pids) => pids,
            Err(e) => {
                log::warn!("cannot list /proc: {e}");
                return Vec::new();
            }
        };
        let me = std::process::id();
        let explicit = std::mem::take(&mut self.pids);
        self.skipped.retain(|pid, _| pids.binary_search(pid).is_ok());
        self.waiting.retain(|id| pids.binary_search(&id.pid).is_ok());
        let mut out = Vec::new();
        for pid in pids {
            if pid == me || tracees.contains_key(&pid) || self.examining.contains(&pid) {
                continue;
            }
            let wanted_by_pid = explicit.contains(&pid);
            // The common case, cheaply: a process skipped before, still
            // running the same program (an exec changes the inode; a reused
            // PID running the same file gets the same verdict).
            if let Some(skipped) = self.skipped.get(&pid) {
                if skipped.exe != (0, 0) && discover::exe_of(pid) == Some(skipped.exe) {
                    continue;
                }
            }
            let identity = match Identity::of(pid) {
                Ok(Some(identity)) => identity,
                // Gone, or a kernel thread: nothing to trace.
                Ok(None) => continue,
                Err(e) => {
                    let identity = Identity { pid, start_ticks: 0, exe: (0, 0) };
                    if self.skipped.get(&pid) != Some(&identity) {
                        if self.all || wanted_by_pid {
                            log::warn!("process {pid}: skipped: cannot read /proc/{pid}/exe: {e}");
                        }
                        self.skipped.insert(pid, identity);
                    }
                    continue;
                }
            };
            if self.skipped.get(&pid) == Some(&identity) {
                continue;
            }
            let Ok(name) = discover::exe_name(pid) else { continue };
            if !(self.all || wanted_by_pid || self.exes.contains(&name)) {
                // Not selected: looked at again only if it execs.
                self.skipped.insert(pid, identity);
                continue;
            }
            if self.not_traceable.contains(&identity.exe) {
                self.log_skip(pid, &name, &"not a Go program deferscope supports", true);
                self.skipped.insert(pid, identity);
                continue;
            }
            out.push((identity, name));
        }
        out
    }

    /// One line per skipped process: at info level for --all's non-Go
    /// processes (a host has hundreds), else a warning.
    fn log_skip(&self, pid: u32, name: &str, reason: &dyn std::fmt::Display, not_go: bool) {
        if not_go && self.all && !self.exes.iter().any(|e| e == name) {
            log::info!("process {pid} ({name}): skipped: {reason}");
        } else {
            log::warn!("process {pid} ({name}): skipped: {reason}");
        }
    }

    /// Looks for new processes and sends them to the examiner, as far as
    /// --max-processes allows.
    fn rescan(&mut self, host: &Host) {
        for (identity, name) in self.candidates(&host.tracees) {
            let pid = identity.pid;
            if host.tracees.len() + self.examining.len() >= self.max_processes {
                if self.waiting.insert(identity) {
                    log::warn!(
                        "process {pid} ({name}): not traced: --max-processes {} reached (it is traced when a slot \
                         frees up)",
                        self.max_processes
                    );
                }
                continue;
            }
            let shared = host.tracees.values().find(|t| t.identity.exe == identity.exe).map(|t| t.facts.clone());
            if self.examiner.send(Job { identity, name, shared }).is_ok() {
                self.examining.insert(pid);
            }
        }
    }

    /// Attaches to an examined process, or says why not.
    async fn on_examined(&mut self, host: &mut Host, examined: Examined) {
        let Examined { identity, name, result } = examined;
        let pid = identity.pid;
        self.examining.remove(&pid);
        let result = match result {
            // The process may have exec'd since it was selected.
            Ok(prepared) if prepared.identity != identity => {
                log::info!("process {pid} ({name}): changed while being examined; examined again next time");
                return;
            }
            Ok(prepared) => host.start(prepared, false).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => {
                self.waiting.remove(&identity);
            }
            Err(e) => {
                let not_traceable = matches!(e, SessionError::NotGo { .. } | SessionError::UnsupportedVersion { .. });
                self.log_skip(pid, &name, &e, matches!(e, SessionError::NotGo { .. }));
                if not_traceable {
                    if self.not_traceable.len() >= NOT_TRACEABLE_CAP {
                        self.not_traceable.clear();
                    }
                    self.not_traceable.insert(identity.exe);
                }
                self.skipped.insert(pid, identity);
            }
        }
    }
}

/// How often `--exe`/`--all` look for new processes: a new one is traced
/// within this, plus reading its binary, plus an --interval. A rescan costs
/// one `stat` per process already seen.
const RESCAN_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

/// Runs a session to completion. Returns when the duration elapses, a
/// signal arrives, the user quits the TUI, or (with `--pid` alone) every
/// target exited.
pub async fn run(options: Options) -> Result<(), SessionError> {
    let mode = OutputMode::choose(&options)?;
    // A mistake in the exporter's TLS or auth fails before any target is
    // looked at.
    let web = match &options.web_config_file {
        Some(path) => crate::exporters::web_config::WebConfig::load(path)?,
        None => Default::default(),
    };
    let discovers = options.discovers();
    let mut fixed = Vec::new();
    if !discovers {
        let mut pids = options.pid.clone();
        pids.dedup();
        if pids.len() > options.max_processes as usize {
            return Err(SessionError::TooManyPids { given: pids.len(), max: options.max_processes });
        }
        // Every given process must be traceable, as with one: errors are fatal.
        for pid in pids {
            let prepared = tokio::task::spawn_blocking(move || prepare(pid, None))
                .await
                .map_err(|e| io::Error::other(e.to_string()))??;
            fixed.push(prepared);
        }
    }

    // Bind the metrics address before attaching: a busy port should fail
    // before the target is touched at all.
    let (fleet, fleet_feed) = feed::channel::<Fleet>();
    let (publisher, feed) = feed::channel::<Snapshot>();
    let metrics = match options.metrics_addr {
        Some(addr) => Some(
            crate::exporters::metrics::serve(addr, fleet_feed, options.metrics_top_sites, web)
                .await
                .map_err(|source| SessionError::Metrics { addr, source })?,
        ),
        None => {
            drop(fleet_feed);
            None
        }
    };

    let mut object = ProbeObject::load(options.overhead_budget.ring_bytes())?;
    let events = object.take_events()?;
    let cost_per_hit_ns = match object.calibrate() {
        Ok(ns) => {
            log::info!("one probe hit costs {ns:.0} ns on this kernel");
            ns
        }
        Err(e) => {
            log::warn!("measuring the cost of a probe hit failed ({e}); assuming {FALLBACK_COST_NS} ns");
            FALLBACK_COST_NS
        }
    };
    let details = mode == OutputMode::Tui || options.stacks;
    // Memory scans run off the async threads; their results come back
    // tagged with the tracee's serial.
    let (scan_tx, mut scan_rx) = mpsc::channel::<ScanResult>(64);
    let mut host = Host {
        options: options.clone(),
        object,
        events,
        tracees: BTreeMap::new(),
        cost_per_hit_ns,
        next_serial: 0,
        details,
        scans: scan_tx.clone(),
    };
    for prepared in fixed {
        host.start(prepared, true).await?;
    }
    let (examined_tx, mut examined_rx) = mpsc::channel::<Examined>(16);
    let mut discovery = match discovers {
        true => Some(Discovery::new(&options, spawn_examiner(examined_tx)?)),
        false => None,
    };
    if let Some(discovery) = &mut discovery {
        discovery.rescan(&host);
    }

    let stop = Arc::new(Notify::new());
    let tui = (mode == OutputMode::Tui).then(|| {
        let (feed, fleet_feed) = (feed.clone(), fleet.subscribe());
        let stop = StopOnDrop(stop.clone());
        let options = options.clone();
        std::thread::spawn(move || {
            // However the TUI ends, a panic included, the session ends with it.
            let _stop = stop;
            match is_multi(&options) {
                true => crate::tui::run_fleet(fleet_feed, &options),
                false => crate::tui::run(feed, &options),
            }
        })
    });
    drop(feed);

    // Reachability scans (leak proofs): the first right away, then every
    // --leak-scan.
    let (leak_tx, mut leak_rx) = mpsc::channel::<(u64, LeakScan)>(64);
    let mut leak_tick = tokio::time::interval(options.leak_scan.0.unwrap_or(std::time::Duration::from_secs(3600)));
    leak_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut output_tick = tokio::time::interval(options.interval);
    output_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    // The first snapshot right away when the given processes are read
    // already (`start` waited for their first read), then one per
    // --interval. Rates need no full interval: views and exporters divide
    // counter deltas by `trace_uptime_s` deltas. Discovered processes are
    // read off the loop, so there the first tick waits an interval.
    if discovers {
        output_tick.tick().await;
    }
    let mut resync_tick = tokio::time::interval(options.resync.unwrap_or(options.interval));
    resync_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    resync_tick.tick().await;
    let mut governor_tick = tokio::time::interval(GOVERNOR_WINDOW);
    governor_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    governor_tick.tick().await;
    let mut rescan_tick = tokio::time::interval(RESCAN_EVERY);
    rescan_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    rescan_tick.tick().await;
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let deadline = options.duration.map(|d| Instant::now() + d);
    let sleep_until_deadline = async {
        match deadline {
            Some(at) => tokio::time::sleep_until(at.into()).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(sleep_until_deadline);

    // With --pid alone, the session ends when its processes have exited.
    let mut all_exited = false;
    // Nobody reads stdout any more (see `OutputMode::print`).
    let mut reader_gone = false;
    loop {
        tokio::select! {
            guard = host.events.readable_mut() => {
                let mut guard = guard?;
                drain(guard.get_inner_mut(), &mut host.tracees);
                guard.clear_ready();
            }
            Some(scan) = scan_rx.recv() => {
                host.on_scan(scan);
                own_memory::release_free_memory();
                for t in host.tracees.values_mut().filter(|t| t.leak_scan_due && !t.scan_in_flight) {
                    t.leak_scan_due = false;
                    start_leak_scan(t, &leak_tx);
                }
            }
            Some((serial, scan)) = leak_rx.recv() => {
                if let Some(t) = host.tracees.values_mut().find(|t| t.serial == serial) {
                    t.leak_scan_in_flight = false;
                    if std::mem::take(&mut t.scan_due) {
                        start_scan(t, &scan_tx);
                    }
                    if let Some(e) = &scan.error {
                        log::info!("process {}: leak scan proved nothing: {e}", t.process.pid);
                    }
                    t.aggregator.apply_leak_scan(scan);
                }
                own_memory::release_free_memory();
            }
            _ = leak_tick.tick(), if options.leak_scan.0.is_some() => {
                for t in host.tracees.values_mut().filter(|t| t.ready && !t.leak_scan_in_flight) {
                    match t.scan_in_flight {
                        true => t.leak_scan_due = true,
                        false => start_leak_scan(t, &leak_tx),
                    }
                }
            }
            _ = resync_tick.tick() => {
                for t in host.tracees.values_mut().filter(|t| !t.scan_in_flight) {
                    match t.leak_scan_in_flight {
                        true => t.scan_due = true,
                        false => start_scan(t, &scan_tx),
                    }
                }
            }
            _ = governor_tick.tick() => host.govern()?,
            _ = rescan_tick.tick(), if discovery.is_some() => {
                if let Some(discovery) = &mut discovery {
                    discovery.rescan(&host);
                }
            }
            Some(examined) = examined_rx.recv() => {
                if let Some(discovery) = &mut discovery {
                    discovery.on_examined(&mut host, examined).await;
                }
            }
            _ = output_tick.tick() => {
                host.drain();
                let mut snapshots = Vec::with_capacity(host.tracees.len());
                let pids: Vec<u32> = host.tracees.keys().copied().collect();
                for pid in pids {
                    let Some(t) = host.tracees.get(&pid) else { continue };
                    // A process that exec'd runs another program: for this
                    // one, that is an exit.
                    let exited = !t.process.is_alive() || Identity::of(pid).ok().flatten().as_ref() != Some(&t.identity);
                    if !t.ready {
                        if exited {
                            log::warn!("process {pid} ({}): exited before its first read", t.info.exe);
                            host.release(pid);
                        }
                        continue;
                    }
                    let Some(mut snapshot) = host.snapshot(pid) else { continue };
                    if exited {
                        snapshot.target_exited = true;
                        log::warn!("process {pid} ({}): exited", snapshot.exe);
                        host.release(pid);
                    }
                    reader_gone |= !mode.print(&snapshot, options.top)?;
                    snapshots.push(Arc::new(snapshot));
                }
                if let Some(one) = snapshots.first().filter(|_| !is_multi(&options)) {
                    publisher.publish_shared(Arc::clone(one));
                }
                fleet.publish(Fleet { snapshots });
                own_memory::release_free_memory();
                if reader_gone {
                    log::info!("stdout was closed: detaching");
                    break;
                }
                if !discovers && host.tracees.is_empty() {
                    all_exited = true;
                    break;
                }
            }
            _ = &mut sleep_until_deadline => break,
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
            _ = stop.notified() => break,
        }
    }
    // The last snapshots, with every event the ring still holds.
    host.drain();
    let mut snapshots = Vec::new();
    let pids: Vec<u32> = host.tracees.keys().copied().collect();
    for pid in pids {
        if host.tracees.get(&pid).is_some_and(|t| !t.ready) {
            host.release(pid);
            continue;
        }
        let alive = host.tracees.get(&pid).is_some_and(|t| t.process.is_alive());
        let Some(mut last) = host.snapshot(pid) else { continue };
        last.target_exited = !alive;
        if !reader_gone {
            reader_gone = !mode.print(&last, options.top)?;
        }
        host.release(pid);
        snapshots.push(Arc::new(last));
    }
    let keep_screen = all_exited || snapshots.iter().any(|s| s.target_exited);
    if let Some(one) = snapshots.first().filter(|_| !is_multi(&options)) {
        publisher.publish_shared(Arc::clone(one));
    }
    if !snapshots.is_empty() {
        fleet.publish(Fleet { snapshots });
    }
    // Detach before waiting on the user: the targets owe us nothing now.
    drop(host);
    if let Some(tui) = tui {
        if !keep_screen {
            // Closing the feed tells the TUI to leave; when the target
            // exited it stays up, showing the last data, until `q`.
            drop(publisher);
        }
        let result =
            tokio::task::spawn_blocking(move || tui.join()).await.map_err(|e| io::Error::other(e.to_string()))?;
        match result {
            Ok(r) => r?,
            Err(_) => return Err(io::Error::other("the terminal UI failed").into()),
        }
    }
    if let Some(metrics) = metrics {
        metrics.abort();
    }
    Ok(())
}

/// How often the overhead governor looks at the probes' cost.
const GOVERNOR_WINDOW: std::time::Duration = std::time::Duration::from_millis(500);

/// Assumed cost of a probe hit when it cannot be measured (a VM's order of
/// magnitude).
const FALLBACK_COST_NS: f64 = 3000.0;

/// Which event streams are complete with the probes attached now.
/// Reads the tracee's goroutines off the loop (see `Tracee::scan_due`).
fn start_scan(t: &mut Tracee, scans: &mpsc::Sender<ScanResult>) {
    t.scan_in_flight = true;
    let (scanner, tx, serial) = (t.scanner.clone(), scans.clone(), t.serial);
    tokio::task::spawn_blocking(move || {
        let _ = tx.blocking_send((serial, scanner.scan()));
    });
}

/// Runs a reachability scan (leak proofs) off the loop.
fn start_leak_scan(t: &mut Tracee, leak_scans: &mpsc::Sender<(u64, LeakScan)>) {
    t.leak_scan_in_flight = true;
    let (mem, reach, tx, serial) = (t.leak_mem.clone(), t.reach.clone(), leak_scans.clone(), t.serial);
    tokio::task::spawn_blocking(move || {
        let scan = reachability::scan(&*mem, &reach);
        // The scan's marks and goroutine list are freed by now, in this
        // thread's arena.
        own_memory::release_free_memory();
        let _ = tx.blocking_send((serial, scan));
    });
}

fn coverage(probes: &ProcessProbes) -> Coverage {
    let states: Vec<(ProbeId, bool)> = probes.states().map(|(_, p, attached)| (p, attached)).collect();
    let all = |pred: fn(ProbeId) -> bool| states.iter().filter(|(p, _)| pred(*p)).all(|(_, a)| *a);
    let is_push = |p: ProbeId| matches!(p, ProbeId::DeferProc | ProbeId::DeferProcStack | ProbeId::DeferProcAt);
    Coverage {
        pushes: all(is_push),
        some_pushes: states.iter().any(|(p, a)| is_push(*p) && *a),
        pops: all(|p| matches!(p, ProbeId::PopDefer | ProbeId::FreeDefer)),
        goroutines: all(|p| matches!(p, ProbeId::Goexit1 | ProbeId::NewProcReturn)),
    }
}

/// The target's CPU time, from `/proc/PID/stat` (user + system, in clock
/// ticks), and the probe hits at the previous window.
struct CpuClock {
    stat: std::path::PathBuf,
    ticks_per_s: u64,
    last: Option<(Instant, u64)>,
    last_hits: [u64; tracer_common::PROBE_COUNT as usize],
}

impl CpuClock {
    fn new(pid: u32, hits: [u64; tracer_common::PROBE_COUNT as usize]) -> Self {
        // SAFETY: sysconf has no preconditions.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        let mut clock = Self {
            stat: format!("/proc/{pid}/stat").into(),
            ticks_per_s: u64::try_from(ticks).ok().filter(|&t| t > 0).unwrap_or(100),
            last: None,
            last_hits: hits,
        };
        clock.last = clock.cpu_ns().map(|ns| (Instant::now(), ns));
        clock
    }

    fn cpu_ns(&self) -> Option<u64> {
        let stat = std::fs::read_to_string(&self.stat).ok()?;
        // The command name can hold spaces and parentheses: fields count from
        // the last ')'. utime and stime are fields 14 and 15.
        let rest = &stat[stat.rfind(')')? + 1..];
        let mut fields = rest.split_whitespace().skip(11);
        let utime: u64 = fields.next()?.parse().ok()?;
        let stime: u64 = fields.next()?.parse().ok()?;
        Some((utime + stime) * 1_000_000_000 / self.ticks_per_s)
    }

    /// What happened since the previous call.
    fn window(&mut self, hits: [u64; tracer_common::PROBE_COUNT as usize]) -> Option<Window> {
        let now = (Instant::now(), self.cpu_ns()?);
        let (then, cpu_then) = self.last.replace(now)?;
        let mut window = Window {
            elapsed_ns: u64::try_from(now.0.duration_since(then).as_nanos()).unwrap_or(u64::MAX),
            target_cpu_ns: now.1.saturating_sub(cpu_then),
            ..Window::default()
        };
        for (i, h) in hits.iter().enumerate() {
            window.hits[i] = h.saturating_sub(self.last_hits[i]);
        }
        self.last_hits = hits;
        Some(window)
    }
}

fn snapshot_inputs(
    options: &Options,
    tracee: &Tracee,
    counters: &probes::ProbeCounters,
    details: bool,
) -> SnapshotInputs {
    let (governor, switches) = (&tracee.governor, tracee.switches);
    let mut mode = Mode::Exact;
    let probe_hits = tracee
        .probes
        .states()
        .map(|(function, probe, attached)| {
            if !attached {
                mode = Mode::Sampled;
            }
            ProbeHits {
                function: function.to_owned(),
                hits: counters.hits[probe as usize],
                state: if attached { ProbeState::Attached } else { ProbeState::Detached },
            }
        })
        .collect();
    let overhead = Overhead {
        budget_ratio: match governor.budget() {
            Budget::Ratio(r) => Some(r),
            Budget::Unlimited => None,
        },
        estimate_ratio: governor.estimate(),
        cost_per_hit_ns: governor.cost_per_hit_ns(),
        switches,
    };
    SnapshotInputs {
        time: rfc3339_now(),
        top: None,
        details,
        now_ns: crate::process::monotonic_ns(),
        leak_after_ns: u64::try_from(options.leak_after.as_nanos()).unwrap_or(u64::MAX),
        trace_uptime_s: tracee.started.elapsed().as_secs_f64(),
        probe_hits,
        mode,
        overhead: Some(overhead),
        process: Some(crate::process::resources::read(tracee.process.pid)),
    }
}

/// Applies every event the ring buffer holds now, each to its process's
/// aggregator (events of a process just released are dropped).
fn drain(ring: &mut aya::maps::RingBuf<aya::maps::MapData>, tracees: &mut BTreeMap<u32, Tracee>) {
    while let Some(item) = ring.next() {
        if let Some(event) = probes::decode_event(&item) {
            if let Some(t) = tracees.get_mut(&event.tgid) {
                t.aggregator.apply_event(&event);
            }
        }
    }
}
