//! Command-line options.
use std::time::Duration;

use clap::Parser;

/// Live defer-chain and goroutine tracing of a running Go program.
///
/// Attaches uprobes to the Go runtime of process PID (no restart, no code
/// change) and shows, for every goroutine, how many defer records it holds and
/// where they come from.
#[derive(Debug, Parser, Clone)]
#[command(name = "deferscope", version, about, long_about = None)]
#[command(group(clap::ArgGroup::new("selection").required(true).multiple(true).args(["pid", "exe", "all"])))]
pub struct Options {
    /// Process ID of a Go program to trace (repeatable). With --pid alone,
    /// deferscope stops when every one of them has exited.
    #[arg(long, short = 'p', value_name = "PID")]
    pub pid: Vec<u32>,

    /// Trace every Go process whose executable (the base name of
    /// /proc/PID/exe) is NAME (repeatable), including ones started later and
    /// restarts; runs until stopped.
    #[arg(long, value_name = "NAME")]
    pub exe: Vec<String>,

    /// Trace every Go process deferscope can read, including ones started
    /// later; runs until stopped.
    #[arg(long)]
    pub all: bool,

    /// With --exe or --all: trace at most N processes at once (the rest wait
    /// for a slot, and the log says so).
    #[arg(long, value_name = "N", default_value_t = 64,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(tracer_common::MAX_PROCESSES)))]
    pub max_processes: u32,

    /// Print one JSON snapshot per interval on stdout (one object per line).
    #[arg(long)]
    pub json: bool,

    /// Time between snapshots, like 500ms, 2s or 1m.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_duration)]
    pub interval: Duration,

    /// Stop after this long (then print the last snapshot and exit 0).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub duration: Option<Duration>,

    /// List at most N goroutines in the JSON and text output (deepest defer
    /// chains first); totals, leaks and metrics still cover all of them.
    #[arg(long, value_name = "N")]
    pub top: Option<usize>,

    /// How often goroutines are re-read from the target's memory to pick up
    /// state and resynchronise chains; defaults to --interval.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub resync: Option<Duration>,

    /// A goroutine blocked on a channel, select, lock, cond, WaitGroup or
    /// semaphore without running for this long is stuck; stuck goroutines
    /// whose primitive no running goroutine can reach are leaked.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub leak_after: Duration,

    /// How often the heap is traced to prove leaks (reachability of the
    /// primitives stuck goroutines wait on), or `off`.
    #[arg(long, value_name = "DURATION|off", default_value = "30s", value_parser = parse_leak_scan)]
    pub leak_scan: LeakScanEvery,

    /// Say who holds the primitive of each stuck goroutine found reachable:
    /// one retaining path (global, goroutine stack or special, then heap
    /// objects) in the JSON's `retained_by` and the TUI's detail view.
    /// Costs the leak scan a map entry per marked heap object.
    #[arg(long)]
    pub explain_leaks: bool,

    /// Serve Prometheus/OpenMetrics metrics on http://ADDR/metrics
    /// (e.g. 127.0.0.1:9464), beside the TUI or JSON, or alone with --no-tui.
    /// `:PORT` listens on every IPv4 interface.
    #[arg(long, value_name = "HOST:PORT", value_parser = parse_listen_addr)]
    pub metrics_addr: Option<std::net::SocketAddr>,

    /// TLS and basic auth for --metrics-addr, in the exporter-toolkit web
    /// configuration format of Prometheus exporters (tls_server_config
    /// cert_file/key_file, basic_auth_users with bcrypt hashes). Without it:
    /// plain HTTP, no auth.
    #[arg(long = "web.config.file", value_name = "FILE", requires = "metrics_addr")]
    pub web_config_file: Option<std::path::PathBuf>,

    /// Cap on site-labelled metric series; the rest are folded into
    /// site="other".
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub metrics_top_sites: usize,

    /// Keep the estimated slowdown of the target under PERCENT of its CPU
    /// time: over budget, the costliest probes are detached (heap defers
    /// last) and what they measured is read from memory instead; they are
    /// re-attached when the target's rates fall. `none`: every probe stays
    /// attached and every count is exact.
    #[arg(long, value_name = "PERCENT|none", default_value = "1", value_parser = crate::governor::Budget::parse)]
    pub overhead_budget: crate::governor::Budget,

    /// No terminal UI: with --json print JSON, otherwise only serve
    /// --metrics-addr (run as a service).
    #[arg(long)]
    pub no_tui: bool,

    /// Include each goroutine's symbolised stack and grouped defer chain in
    /// the JSON snapshots.
    #[arg(long)]
    pub stacks: bool,

    /// Log what deferscope does (attach points, resyncs): on stderr, or to
    /// --log-file (with the TUI, only there: stderr is the screen).
    #[arg(long, short = 'v')]
    pub verbose: bool,

    /// Write the log to this file instead of stderr.
    #[arg(long, value_name = "PATH")]
    pub log_file: Option<std::path::PathBuf>,
}

impl Options {
    /// Whether processes are discovered (`--exe`, `--all`) rather than only
    /// the `--pid`s given: then processes come and go and the session runs
    /// until stopped.
    pub fn discovers(&self) -> bool {
        self.all || !self.exe.is_empty()
    }
}

/// `--leak-scan`: an interval, or off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeakScanEvery(pub Option<Duration>);

fn parse_leak_scan(s: &str) -> Result<LeakScanEvery, String> {
    if s.trim() == "off" {
        return Ok(LeakScanEvery(None));
    }
    parse_duration(s).map(|d| LeakScanEvery(Some(d)))
}

/// `HOST:PORT` with an IP address, or `:PORT` (every IPv4 interface, as
/// Prometheus exporters write it).
pub fn parse_listen_addr(s: &str) -> Result<std::net::SocketAddr, String> {
    let s = s.trim();
    let full = match s.strip_prefix(':') {
        Some(port) => format!("0.0.0.0:{port}"),
        None => s.to_owned(),
    };
    full.parse().map_err(|e| format!("invalid address {s:?}: {e} (use e.g. 127.0.0.1:9464 or :9464)"))
}

/// Parses `500ms`, `2s`, `1m`, `1h30m`; rejects zero.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s.trim())
        .map_err(|e| format!("invalid duration {s:?}: {e} (use e.g. 500ms, 2s, 1m)"))?;
    if d.is_zero() {
        return Err(format!("duration {s:?} must be greater than zero"));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn options_parse() {
        let o = Options::try_parse_from(["deferscope", "--pid", "12", "--json", "--interval", "250ms", "--top", "5"])
            .expect("parse");
        assert_eq!(o.pid, vec![12]);
        assert!(!o.discovers());
        assert!(o.json);
        assert_eq!(o.interval, Duration::from_millis(250));
        assert_eq!(o.top, Some(5));
        assert_eq!(o.overhead_budget, crate::governor::Budget::Ratio(0.01), "governed by default");
        let exact = Options::try_parse_from(["deferscope", "-p", "1", "--overhead-budget", "none"]).expect("parse");
        assert_eq!(exact.overhead_budget, crate::governor::Budget::Unlimited);
        assert!(Options::try_parse_from(["deferscope"]).is_err());
        assert_eq!(o.leak_scan, LeakScanEvery(Some(Duration::from_secs(30))));
        let off = Options::try_parse_from(["deferscope", "-p", "1", "--leak-scan", "off"]).expect("parse");
        assert_eq!(off.leak_scan, LeakScanEvery(None));
        assert!(Options::try_parse_from(["deferscope", "-p", "1", "--leak-scan", "never"]).is_err());
    }

    #[test]
    fn listen_addresses() {
        assert_eq!(parse_listen_addr(":9464").map(|a| a.to_string()), Ok("0.0.0.0:9464".into()));
        assert_eq!(parse_listen_addr("127.0.0.1:1").map(|a| a.to_string()), Ok("127.0.0.1:1".into()));
        assert_eq!(parse_listen_addr("[::1]:9464").map(|a| a.to_string()), Ok("[::1]:9464".into()));
        assert!(parse_listen_addr(":").is_err());
        assert!(parse_listen_addr("localhost:9464").is_err());
    }

    #[test]
    fn selections() {
        let many = Options::try_parse_from(["deferscope", "-p", "1", "--pid", "2", "--exe", "api", "--exe", "worker"])
            .expect("parse");
        assert_eq!(many.pid, vec![1, 2]);
        assert_eq!(many.exe, vec!["api", "worker"]);
        assert!(many.discovers());
        assert_eq!(many.max_processes, 64);
        let all = Options::try_parse_from(["deferscope", "--all", "--max-processes", "3"]).expect("parse");
        assert!(all.all && all.discovers() && all.pid.is_empty());
        assert_eq!(all.max_processes, 3);
        assert!(Options::try_parse_from(["deferscope", "--all", "--max-processes", "0"]).is_err());
        assert!(Options::try_parse_from(["deferscope", "--all", "--max-processes", "5000"]).is_err());
        assert!(Options::try_parse_from(["deferscope", "--json"]).is_err(), "something must be selected");
    }
}
