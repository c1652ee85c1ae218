//! One tracing session: open the target, attach, then fold events and memory
//! reads into snapshots until told to stop or the target exits.
//!
//! Data flows one way: probes + memory → aggregator → a snapshot feed that
//! the outputs (JSON lines, text, TUI, /metrics) read.
use std::{
    io::{self, IsTerminal as _},
    sync::Arc,
    time::Instant,
};

use tokio::{
    signal::unix::{SignalKind, signal},
    sync::{Notify, mpsc, watch},
    time::MissedTickBehavior,
};

use crate::{
    aggregate::{
        Aggregator, RenderOptions, TargetInfo,
        model::{ProbeHits, Snapshot},
    },
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

/// The latest snapshot, for outputs that run beside the session (TUI,
/// /metrics). `None` until the first one. The sender is dropped when the
/// session ends.
pub type SnapshotFeed = watch::Receiver<Option<Arc<Snapshot>>>;

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Process(#[from] crate::target::process::ProcessError),
    #[error("process {pid} ({exe}) is not a Go program: {reason}")]
    NotGo { pid: u32, exe: String, reason: GoBinError },
    #[error("process {pid} ({exe}): {source}")]
    Binary { pid: u32, exe: String, source: GoBinError },
    #[error(
        "process {pid} runs {version}, which deferscope does not support (it supports Go 1.{MIN_MINOR} to 1.{MAX_MINOR})"
    )]
    UnsupportedVersion { pid: u32, version: String },
    #[error(transparent)]
    Probe(#[from] probes::ProbeError),
    #[error("cannot read the memory of process {pid}: {source}")]
    Memory { pid: u32, source: crate::target::memory::MemoryError },
    #[error("--no-tui without --json has nothing to show: add --metrics-addr HOST:PORT or --json")]
    NothingToShow,
    #[error("cannot serve metrics on {addr}: {source}")]
    Metrics { addr: std::net::SocketAddr, source: io::Error },
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
        Err(GoBinError::UnsupportedVersion(version)) => return Err(SessionError::UnsupportedVersion { pid, version }),
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
    let walker =
        MemoryWalker::new(mem, layout, allgs.allgs.wrapping_add(bias), allgs.allglen.map(|a| a.wrapping_add(bias)));
    Ok(Prepared { target, binary: Arc::new(binary), walker: Arc::new(walker), bias })
}

fn rfc3339_now() -> String {
    time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

/// Where snapshots go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// `--json`: one object per line on stdout.
    Json,
    /// Plain text on stdout (not a terminal, or no TUI built in).
    Text { is_tty: bool },
    /// The interactive dashboard.
    Tui,
    /// `--no-tui` with `--metrics-addr`: nothing on stdout.
    Headless,
}

/// Whether a session with these options shows the dashboard.
pub fn uses_tui(options: &Options) -> bool {
    matches!(choose_mode(options), Ok(Mode::Tui))
}

fn choose_mode(options: &Options) -> Result<Mode, SessionError> {
    let is_tty = io::stdout().is_terminal();
    Ok(if options.json {
        Mode::Json
    } else if options.no_tui {
        if options.metrics_addr.is_none() {
            return Err(SessionError::NothingToShow);
        }
        Mode::Headless
    } else if is_tty && io::stdin().is_terminal() && crate::tui::AVAILABLE {
        Mode::Tui
    } else {
        Mode::Text { is_tty }
    })
}

fn terminal_rows() -> usize {
    let mut ws = libc::winsize { ws_row: 0, ws_col: 0, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCGWINSZ fills the winsize we own.
    let ok = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut ws) } == 0;
    if ok && ws.ws_row > 0 { (ws.ws_row as usize).saturating_sub(20).max(5) } else { 30 }
}

fn print(mode: Mode, snapshot: &Snapshot, top: Option<usize>) -> io::Result<()> {
    if matches!(mode, Mode::Tui | Mode::Headless) {
        return Ok(());
    }
    // `--top` caps what is printed; the feed (TUI, /metrics) keeps every
    // goroutine so counts by state and histograms stay whole.
    let capped;
    let snapshot = match top {
        Some(n) if snapshot.goroutines.len() > n => {
            capped = snapshot.with_top(n);
            &capped
        }
        _ => snapshot,
    };
    let mut stdout = io::stdout().lock();
    let result = match mode {
        Mode::Json => output::json::write_line(&mut stdout, snapshot),
        Mode::Text { is_tty } => output::text::show(&mut stdout, snapshot, is_tty, terminal_rows()),
        Mode::Tui | Mode::Headless => Ok(()),
    };
    match result {
        // A closed pipe (`deferscope --json | head`) is not an error.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// Runs a session to completion. Returns when the duration elapses, a
/// signal arrives, the user quits the TUI, or the target exits.
pub async fn run(options: Options) -> Result<(), SessionError> {
    let mode = choose_mode(&options)?;
    let pid = options.pid;
    let Prepared { target, binary, walker, bias } =
        tokio::task::spawn_blocking(move || prepare(pid)).await.map_err(|e| io::Error::other(e.to_string()))??;

    // Bind the metrics address before attaching: a busy port should fail
    // before the target is touched at all.
    let (feed_tx, feed_rx) = watch::channel::<Option<Arc<Snapshot>>>(None);
    let metrics = match options.metrics_addr {
        Some(addr) => Some(
            crate::exporters::metrics::serve(addr, feed_rx.clone(), options.metrics_top_sites)
                .await
                .map_err(|source| SessionError::Metrics { addr, source })?,
        ),
        None => None,
    };

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
        probes: probes.attached_functions(),
    };
    let mut aggregator = Aggregator::new(&walker.layout().wait_reasons);
    let mut symbols = BinarySymbols::new(binary.clone(), bias);

    // Chains that existed before attach: read memory once the probes are in,
    // so nothing falls between the read and the first event.
    let first = {
        let walker = walker.clone();
        tokio::task::spawn_blocking(move || walker.snapshot())
            .await
            .map_err(|e| io::Error::other(e.to_string()))?
            .map_err(|source| SessionError::Memory { pid: target.pid, source })?
    };
    drain(events.get_mut(), &mut aggregator);
    aggregator.apply_memory(&first);

    let stop = Arc::new(Notify::new());
    let tui = (mode == Mode::Tui).then(|| {
        let feed = feed_rx.clone();
        let stop = stop.clone();
        let options = options.clone();
        std::thread::spawn(move || {
            let result = crate::tui::run(feed, &options);
            // However the TUI ended, the session ends with it.
            stop.notify_one();
            result
        })
    });
    drop(feed_rx);

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

    let started = Instant::now();
    let details = mode == Mode::Tui || options.stacks;
    let mut target_exited = false;
    loop {
        tokio::select! {
            guard = events.readable_mut() => {
                let mut guard = guard?;
                drain(guard.get_inner_mut(), &mut aggregator);
                guard.clear_ready();
            }
            Some(snapshot) = mem_rx.recv() => {
                resync_in_flight = false;
                drain(events.get_mut(), &mut aggregator);
                aggregator.apply_memory(&snapshot);
            }
            _ = resync_tick.tick() => {
                if !resync_in_flight {
                    resync_in_flight = true;
                    let walker = walker.clone();
                    let tx = mem_tx.clone();
                    tokio::task::spawn_blocking(move || match walker.snapshot() {
                        Ok(s) => { let _ = tx.blocking_send(s); }
                        Err(e) => log::debug!("memory resync failed: {e}"),
                    });
                }
            }
            _ = output_tick.tick() => {
                if !target.is_alive() {
                    target_exited = true;
                    break;
                }
                drain(events.get_mut(), &mut aggregator);
                aggregator.set_events_lost(probes.counters().events_lost);
                let snapshot = aggregator.snapshot(&info, &mut symbols, &render_options(&options, &probes, started, details));
                print(mode, &snapshot, options.top)?;
                feed_tx.send_replace(Some(Arc::new(snapshot)));
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
    let mut last = aggregator.snapshot(&info, &mut symbols, &render_options(&options, &probes, started, details));
    last.target_exited = target_exited || !target.is_alive();
    print(mode, &last, options.top)?;
    let keep_screen = last.target_exited;
    feed_tx.send_replace(Some(Arc::new(last)));
    // Detach before waiting on the user: the target owes us nothing now.
    drop(events);
    drop(probes);
    if let Some(tui) = tui {
        if !keep_screen {
            // Closing the feed tells the TUI to leave; when the target
            // exited it stays up, showing the last data, until `q`.
            drop(feed_tx);
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

fn render_options(options: &Options, probes: &Probes, started: Instant, details: bool) -> RenderOptions {
    let counters = probes.counters();
    let probe_hits = probes
        .attached()
        .iter()
        .map(|(function, probe)| ProbeHits { function: function.clone(), hits: counters.hits[*probe as usize] })
        .collect();
    RenderOptions {
        time: rfc3339_now(),
        top: None,
        details,
        now_ns: crate::target::monotonic_ns(),
        leak_after_ns: u64::try_from(options.leak_after.as_nanos()).unwrap_or(u64::MAX),
        trace_uptime_s: started.elapsed().as_secs_f64(),
        probe_hits,
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
