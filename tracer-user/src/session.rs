//! One tracing session: open the target, attach, then fold events and memory
//! reads into snapshots until told to stop or the target exits.
//!
//! Data flows one way: probes + memory → aggregator → a snapshot feed that
//! the outputs (JSON lines, text, TUI, /metrics) read.
use std::{io, sync::Arc, time::Instant};

use tokio::{
    signal::unix::{SignalKind, signal},
    sync::{Notify, mpsc},
    time::MissedTickBehavior,
};

use tracer_common::ProbeId;

use crate::{
    aggregate::{
        Aggregator, Coverage, ProcessInfo, SnapshotInputs,
        model::{Mode, Overhead, ProbeHits, ProbeState},
    },
    cli::Options,
    feed,
    gobin::{GoBinError, GoBinary},
    goruntime,
    governor::{Budget, Governor, Window},
    output::{NothingToShow, OutputMode},
    probes::{self, Probes},
    process::{
        GoroutineScan, GoroutineScanner, ProcessMemory, TracedProcess,
        reachability::{self, LeakScan, ReachTarget},
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
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// Everything known about the target before tracing starts.
struct Prepared {
    process: TracedProcess,
    binary: Arc<GoBinary>,
    scanner: Arc<GoroutineScanner>,
    reach: Arc<ReachTarget>,
    bias: u64,
}

/// The reachability scan's read-rate bound: it never reads the target's
/// memory faster than this.
const LEAK_SCAN_MAX_BYTES_PER_S: u64 = 512 << 20;

fn prepare(pid: u32) -> Result<Prepared, SessionError> {
    let process = TracedProcess::open(pid)?;
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
    let first_load = binary.file_offset_to_vaddr(0).unwrap_or(0);
    let bias = process.load_bias(binary.is_pie(), first_load)?;
    let allgs = binary.allgs_location().map_err(|source| SessionError::Binary { pid, exe: exe.clone(), source })?;
    let mem = ProcessMemory::open(pid).map_err(|source| SessionError::Memory { pid, source })?;
    let reach = ReachTarget {
        layout: layout.clone(),
        allgs: allgs.allgs.wrapping_add(bias),
        allglen: allgs.allglen.map(|a| a.wrapping_add(bias)),
        mheap: binary.mheap_location().map(|a| a.wrapping_add(bias)),
        globals: binary
            .pointer_globals()
            .into_iter()
            .map(|(start, end)| (start.wrapping_add(bias), end.wrapping_add(bias)))
            .collect(),
        moduledata: binary.moduledata_location().map(|a| a.wrapping_add(bias)),
        allp: binary.allp_location().map(|a| a.wrapping_add(bias)),
        max_bytes_per_s: LEAK_SCAN_MAX_BYTES_PER_S,
    };
    let scanner =
        GoroutineScanner::new(mem, layout, allgs.allgs.wrapping_add(bias), allgs.allglen.map(|a| a.wrapping_add(bias)));
    Ok(Prepared { process, binary: Arc::new(binary), scanner: Arc::new(scanner), reach: Arc::new(reach), bias })
}

fn rfc3339_now() -> String {
    time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

/// Whether a session with these options shows the dashboard.
pub fn uses_tui(options: &Options) -> bool {
    matches!(OutputMode::choose(options), Ok(OutputMode::Tui))
}

/// Notifies the session when dropped: the TUI thread holds one, so the
/// session ends however that thread ends, a panic included.
struct StopOnDrop(Arc<Notify>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.notify_one();
    }
}

/// Runs a session to completion. Returns when the duration elapses, a
/// signal arrives, the user quits the TUI, or the target exits.
pub async fn run(options: Options) -> Result<(), SessionError> {
    let mode = OutputMode::choose(&options)?;
    let pid = options.pid;
    let Prepared { process, binary, scanner, reach, bias } =
        tokio::task::spawn_blocking(move || prepare(pid)).await.map_err(|e| io::Error::other(e.to_string()))??;

    // Bind the metrics address before attaching: a busy port should fail
    // before the target is touched at all.
    let (publisher, feed) = feed::channel();
    let metrics = match options.metrics_addr {
        Some(addr) => Some(
            crate::exporters::metrics::serve(addr, feed.clone(), options.metrics_top_sites)
                .await
                .map_err(|source| SessionError::Metrics { addr, source })?,
        ),
        None => None,
    };

    let mut probes = Probes::attach(&process, &binary, scanner.layout())?;
    let probes_live_ns = crate::process::monotonic_ns();
    log::info!("attached to {:?}", probes.functions());
    let mut events = probes.take_events()?;
    let cost_per_hit_ns = match probes.calibrate() {
        Ok(ns) => {
            log::info!("one probe hit costs {ns:.0} ns on this kernel");
            ns
        }
        Err(e) => {
            log::warn!("measuring the cost of a probe hit failed ({e}); assuming {FALLBACK_COST_NS} ns");
            FALLBACK_COST_NS
        }
    };
    let mut governor = Governor::new(options.overhead_budget, cost_per_hit_ns, probes.groups());
    let mut cpu = CpuClock::new(process.pid, probes.counters().hits);
    let mut switches = 0u64;

    let info = ProcessInfo {
        pid: process.pid,
        exe: process.exe_name(),
        go_version: binary.version().raw.clone(),
        arch: binary.arch().name().to_owned(),
        probes: probes.functions(),
    };
    let mut aggregator = Aggregator::new(scanner.layout().wait_reasons.clone());
    aggregator.set_probes_live(probes_live_ns);
    let mut symbols = BinarySymbols::new(binary.clone(), bias);

    // Chains that existed before attach: read memory once the probes are in,
    // so nothing falls between the read and the first event.
    let first = {
        let scanner = scanner.clone();
        tokio::task::spawn_blocking(move || scanner.scan())
            .await
            .map_err(|e| io::Error::other(e.to_string()))?
            .map_err(|source| SessionError::Memory { pid: process.pid, source })?
    };
    drain(events.get_mut(), &mut aggregator);
    aggregator.apply_scan(&first);
    // Not kept for the session: at 100k goroutines it is ~14 MiB.
    drop(first);

    let stop = Arc::new(Notify::new());
    let tui = (mode == OutputMode::Tui).then(|| {
        let feed = feed.clone();
        let stop = StopOnDrop(stop.clone());
        let options = options.clone();
        std::thread::spawn(move || {
            // However the TUI ends, a panic included, the session ends with it.
            let _stop = stop;
            crate::tui::run(feed, &options)
        })
    });
    drop(feed);

    let (scan_tx, mut scan_rx) = mpsc::channel::<GoroutineScan>(1);
    let mut scan_in_flight = false;
    // Reachability scans (leak proofs), off the async threads like the
    // goroutine scans; the first right away, then every --leak-scan.
    let (leak_tx, mut leak_rx) = mpsc::channel::<LeakScan>(1);
    let mut leak_scan_in_flight = false;
    let leak_mem = Arc::new(ProcessMemory::open(pid).map_err(|source| SessionError::Memory { pid, source })?);
    let mut leak_tick = tokio::time::interval(options.leak_scan.0.unwrap_or(std::time::Duration::from_secs(3600)));
    leak_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut output_tick = tokio::time::interval(options.interval);
    output_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    output_tick.tick().await;
    let mut resync_tick = tokio::time::interval(options.resync.unwrap_or(options.interval));
    resync_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    resync_tick.tick().await;
    let mut governor_tick = tokio::time::interval(GOVERNOR_WINDOW);
    governor_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    governor_tick.tick().await;
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

    let started = Instant::now();
    let details = mode == OutputMode::Tui || options.stacks;
    let mut target_exited = false;
    loop {
        tokio::select! {
            guard = events.readable_mut() => {
                let mut guard = guard?;
                drain(guard.get_inner_mut(), &mut aggregator);
                guard.clear_ready();
            }
            Some(scan) = scan_rx.recv() => {
                scan_in_flight = false;
                drain(events.get_mut(), &mut aggregator);
                aggregator.apply_scan(&scan);
            }
            Some(scan) = leak_rx.recv() => {
                leak_scan_in_flight = false;
                if let Some(e) = &scan.error {
                    log::info!("leak scan proved nothing: {e}");
                }
                aggregator.apply_leak_scan(scan);
            }
            _ = leak_tick.tick(), if options.leak_scan.0.is_some() => {
                if !leak_scan_in_flight {
                    leak_scan_in_flight = true;
                    let (mem, reach, tx) = (leak_mem.clone(), reach.clone(), leak_tx.clone());
                    tokio::task::spawn_blocking(move || {
                        let _ = tx.blocking_send(reachability::scan(&*mem, &reach));
                    });
                }
            }
            _ = resync_tick.tick() => {
                if !scan_in_flight {
                    scan_in_flight = true;
                    let scanner = scanner.clone();
                    let tx = scan_tx.clone();
                    tokio::task::spawn_blocking(move || match scanner.scan() {
                        Ok(scan) => { let _ = tx.blocking_send(scan); }
                        Err(e) => log::debug!("goroutine scan failed: {e}"),
                    });
                }
            }
            _ = governor_tick.tick() => {
                let Some(window) = cpu.window(probes.counters().hits) else { continue };
                for switch in governor.observe(&window) {
                    // Everything the probes said so far counts under the old coverage.
                    drain(events.get_mut(), &mut aggregator);
                    let result = if switch.attach {
                        probes.attach_group(switch.group)
                    } else {
                        let detaching_ns = crate::process::monotonic_ns();
                        let result = probes.detach(switch.group);
                        // Events still in the ring buffer may have been
                        // stamped after part of the stream stopped (pushes
                        // without their pops): they only count.
                        aggregator.set_coverage(coverage(&probes), detaching_ns);
                        result
                    };
                    drain(events.get_mut(), &mut aggregator);
                    match result {
                        Ok(()) => {
                            switches += 1;
                            log::warn!(
                                "overhead governor: {} {} probes: {}",
                                if switch.attach { "re-attached" } else { "detached" },
                                switch.group.name(),
                                switch.reason
                            );
                        }
                        Err(e) if switch.attach => {
                            governor.attach_failed(switch.group);
                            log::warn!("overhead governor: re-attaching {} probes failed: {e}", switch.group.name());
                        }
                        Err(e) => return Err(e.into()),
                    }
                    aggregator.set_coverage(coverage(&probes), crate::process::monotonic_ns());
                }
            }
            _ = output_tick.tick() => {
                if !process.is_alive() {
                    target_exited = true;
                    break;
                }
                drain(events.get_mut(), &mut aggregator);
                aggregator.set_events_lost(probes.counters().events_lost);
                let inputs = snapshot_inputs(&options, &probes, started, details, &governor, switches);
                let snapshot = aggregator.snapshot(&info, &mut symbols, &inputs);
                mode.print(&snapshot, options.top)?;
                publisher.publish(snapshot);
            }
            _ = &mut sleep_until_deadline => break,
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
            _ = stop.notified() => break,
        }
    }
    // The last snapshot, with every event the ring still holds.
    drain(events.get_mut(), &mut aggregator);
    aggregator.set_events_lost(probes.counters().events_lost);
    let inputs = snapshot_inputs(&options, &probes, started, details, &governor, switches);
    let mut last = aggregator.snapshot(&info, &mut symbols, &inputs);
    last.target_exited = target_exited || !process.is_alive();
    mode.print(&last, options.top)?;
    let keep_screen = last.target_exited;
    publisher.publish(last);
    // Detach before waiting on the user: the target owes us nothing now.
    drop(events);
    drop(probes);
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
fn coverage(probes: &Probes) -> Coverage {
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
    probes: &Probes,
    started: Instant,
    details: bool,
    governor: &Governor,
    switches: u64,
) -> SnapshotInputs {
    let counters = probes.counters();
    let mut mode = Mode::Exact;
    let probe_hits = probes
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
        trace_uptime_s: started.elapsed().as_secs_f64(),
        probe_hits,
        mode,
        overhead: Some(overhead),
    }
}

/// Applies every event the ring buffer holds now.
fn drain(ring: &mut aya::maps::RingBuf<aya::maps::MapData>, aggregator: &mut Aggregator) {
    while let Some(item) = ring.next() {
        if let Some(event) = probes::decode_event(&item) {
            aggregator.apply_event(&event);
        }
    }
}
