//! One tracing session: open the target, attach, then fold events and memory
//! reads into snapshots until told to stop or the target exits.
//!
//! Data flows one way: probes + memory → aggregator → outputs.
use std::{
    io::{self, IsTerminal as _},
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::{signal::unix::{SignalKind, signal}, sync::mpsc, time::MissedTickBehavior};

use crate::{
    aggregate::{Aggregator, TargetInfo, model::Snapshot},
    cli::Options,
    gobin::{Arch, GoBinError, GoBinary},
    output,
    probes::{self, Probes},
    symbols::BinarySymbols,
    target::{MemorySnapshot, MemoryWalker, ProcessMemory, TargetProcess},
};

/// Oldest and newest Go versions whose runtime deferscope knows.
const MIN_MINOR: u32 = 19;
const MAX_MINOR: u32 = 27;

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Process(#[from] crate::target::process::ProcessError),
    #[error("process {pid} ({exe}) is not a Go program: {reason}")]
    NotGo { pid: u32, exe: String, reason: GoBinError },
    #[error("process {pid} ({exe}): {source}")]
    Binary { pid: u32, exe: String, source: GoBinError },
    #[error("process {pid} runs {version}, which deferscope does not support (it supports Go 1.{MIN_MINOR} to 1.{MAX_MINOR})")]
    UnsupportedVersion { pid: u32, version: String },
    #[error(transparent)]
    Probe(#[from] probes::ProbeError),
    #[error("cannot read the memory of process {pid}: {source}")]
    Memory { pid: u32, source: crate::target::memory::MemoryError },
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// Everything known about the target before tracing starts.
struct Prepared {
    target: TargetProcess,
    binary: Arc<GoBinary>,
    walker: Arc<MemoryWalker>,
    bias: u64,
}

fn prepare(pid: u32) -> Result<Prepared, SessionError> {
    let target = TargetProcess::open(pid)?;
    let exe = target.exe_path.display().to_string();
    let binary = match GoBinary::open(&target.exe_link) {
        Ok(b) => b,
        Err(e @ (GoBinError::NotGo | GoBinError::NotElf)) => return Err(SessionError::NotGo { pid, exe, reason: e }),
        Err(GoBinError::Io { source, .. }) if source.kind() == io::ErrorKind::PermissionDenied => {
            return Err(crate::target::process::ProcessError::PermissionDenied { path: target.exe_link.clone() }.into());
        }
        Err(source) => return Err(SessionError::Binary { pid, exe, source }),
    };
    let version = binary.version();
    if version.major != 1 || !(MIN_MINOR..=MAX_MINOR).contains(&version.minor) {
        return Err(SessionError::UnsupportedVersion { pid, version: version.raw.clone() });
    }
    let layout = binary.runtime_layout().map_err(|source| SessionError::Binary { pid, exe: exe.clone(), source })?;
    let first_load = binary.file_offset_to_vaddr(0).unwrap_or(0);
    let bias = target.load_bias(binary.is_pie(), first_load)?;
    let allgs = binary.allgs_location().map_err(|source| SessionError::Binary { pid, exe: exe.clone(), source })?;
    let mem = ProcessMemory::open(pid).map_err(|source| SessionError::Memory { pid, source })?;
    let walker = MemoryWalker::new(
        mem,
        layout,
        allgs.allgs.wrapping_add(bias),
        allgs.allglen.map(|a| a.wrapping_add(bias)),
    );
    Ok(Prepared { target, binary: Arc::new(binary), walker: Arc::new(walker), bias })
}

fn rfc3339_now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

enum Output {
    Json,
    Text { is_tty: bool, rows: usize },
}

impl Output {
    fn emit(&self, snapshot: &Snapshot) -> io::Result<()> {
        let mut stdout = io::stdout().lock();
        match self {
            Output::Json => output::json::write_line(&mut stdout, snapshot),
            Output::Text { is_tty, rows } => output::text::show(&mut stdout, snapshot, *is_tty, *rows),
        }
    }
}

fn terminal_rows() -> usize {
    let mut ws = libc::winsize { ws_row: 0, ws_col: 0, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCGWINSZ fills the winsize we own.
    let ok = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut ws) } == 0;
    if ok && ws.ws_row > 0 { (ws.ws_row as usize).saturating_sub(20).max(5) } else { 30 }
}

/// Runs a session to completion. Returns when the duration elapses, a
/// signal arrives, or the target exits.
pub async fn run(options: Options) -> Result<(), SessionError> {
    let prepared = tokio::task::spawn_blocking(move || prepare(options.pid))
        .await
        .map_err(|e| io::Error::other(e.to_string()))??;
    let Prepared { target, binary, walker, bias } = prepared;

    let mut probes = Probes::attach(&target, &binary, walker.layout())?;
    log::info!("attached to {:?}", probes.attached_functions());
    let mut events = probes.take_events()?;

    let info = TargetInfo {
        pid: target.pid,
        exe: target.exe_name(),
        go_version: binary.version().raw.clone(),
        arch: match binary.arch() {
            Arch::X86_64 => "x86_64".into(),
            Arch::Aarch64 => "aarch64".into(),
        },
        probes: probes.attached_functions().to_vec(),
    };
    let mut aggregator = Aggregator::new(&walker.layout().wait_reasons);
    let mut symbols = BinarySymbols::new(binary.clone(), bias);
    let output = if options.json {
        Output::Json
    } else {
        Output::Text { is_tty: io::stdout().is_terminal(), rows: terminal_rows() }
    };

    // Chains that existed before attach: read memory once the probes are in,
    // so nothing falls between the read and the first event.
    let first = {
        let walker = walker.clone();
        tokio::task::spawn_blocking(move || walker.snapshot())
            .await
            .map_err(|e| io::Error::other(e.to_string()))?
            .map_err(|source| SessionError::Memory { pid: target.pid, source })?
    };
    drain(&mut events, &mut aggregator);
    aggregator.apply_memory(&first);

    let (mem_tx, mut mem_rx) = mpsc::channel::<MemorySnapshot>(1);
    let mut resync_in_flight = false;
    let mut output_tick = tokio::time::interval(options.interval);
    output_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    output_tick.tick().await;
    let mut resync_tick = tokio::time::interval(options.resync.unwrap_or(options.interval));
    resync_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    resync_tick.tick().await;
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

    let mut target_exited = false;
    loop {
        tokio::select! {
            guard = events.readable_mut() => {
                let mut guard = guard?;
                let ring = guard.get_inner_mut();
                while let Some(item) = ring.next() {
                    if let Some(event) = probes::decode_event(&item) {
                        aggregator.apply_event(&event);
                    }
                }
                guard.clear_ready();
            }
            Some(snapshot) = mem_rx.recv() => {
                resync_in_flight = false;
                drain(&mut events, &mut aggregator);
                aggregator.apply_memory(&snapshot);
            }
            _ = resync_tick.tick() => {
                if !resync_in_flight {
                    resync_in_flight = true;
                    let walker = walker.clone();
                    let tx = mem_tx.clone();
                    tokio::task::spawn_blocking(move || {
                        match walker.snapshot() {
                            Ok(s) => { let _ = tx.blocking_send(s); }
                            Err(e) => log::debug!("memory resync failed: {e}"),
                        }
                    });
                }
            }
            _ = output_tick.tick() => {
                if !target.is_alive() {
                    target_exited = true;
                    break;
                }
                drain(&mut events, &mut aggregator);
                aggregator.set_events_lost(probes.counters().events_lost);
                let snapshot = aggregator.snapshot(&info, &mut symbols, options.top, rfc3339_now());
                emit_or_stop(&output, &snapshot)?;
            }
            _ = &mut sleep_until_deadline => break,
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
        }
    }
    // The last snapshot, with every event the ring still holds.
    drain(&mut events, &mut aggregator);
    aggregator.set_events_lost(probes.counters().events_lost);
    let mut last = aggregator.snapshot(&info, &mut symbols, options.top, rfc3339_now());
    last.target_exited = target_exited || !target.is_alive();
    emit_or_stop(&output, &last)?;
    drop(probes);
    Ok(())
}

fn emit_or_stop(output: &Output, snapshot: &Snapshot) -> io::Result<()> {
    match output.emit(snapshot) {
        // A closed pipe (`deferscope --json | head`) ends the session quietly.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

fn drain(events: &mut tokio::io::unix::AsyncFd<aya::maps::RingBuf<aya::maps::MapData>>, aggregator: &mut Aggregator) {
    let ring = events.get_mut();
    while let Some(item) = ring.next() {
        if let Some(event) = probes::decode_event(&item) {
            aggregator.apply_event(&event);
        }
    }
}

/// How long the caller should wait at most for the session to wind down.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);
