//! A real Prometheus server for the exporter's end-to-end test: started on a
//! free loopback port with a temporary config and data directory, queried
//! over its HTTP API, killed (and its directory removed) on drop. Plus
//! deferscope run headless as a metrics exporter, and a tiny HTTP client.
//!
//! Prometheus is Debian's `prometheus` package (`cargo xtask setup` installs
//! it); `PROMETHEUS_BIN` / `PROMTOOL_BIN` override the binaries.
use std::{
    fs,
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context as _, anyhow, bail};
use serde_json::Value;

use crate::{STEP_TIMEOUT, deferscope_bin};

/// How often queries are retried while waiting for a condition.
const POLL: Duration = Duration::from_millis(250);

fn binary(env: &str, default: &str) -> anyhow::Result<PathBuf> {
    let path = std::env::var_os(env).map(PathBuf::from).unwrap_or_else(|| PathBuf::from(default));
    if !path.is_file() {
        bail!(
            "{} not found: install Debian's prometheus package (`cargo xtask setup` does) or set {env}",
            path.display()
        );
    }
    Ok(path)
}

pub fn prometheus_bin() -> anyhow::Result<PathBuf> {
    binary("PROMETHEUS_BIN", "/usr/bin/prometheus")
}

pub fn promtool_bin() -> anyhow::Result<PathBuf> {
    binary("PROMTOOL_BIN", "/usr/bin/promtool")
}

/// A loopback address with a port that was free a moment ago.
pub fn free_loopback_addr() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").context("binding a free port")?;
    Ok(listener.local_addr()?)
}

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(prefix: &str) -> anyhow::Result<Self> {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        let path = std::env::temp_dir().join(format!("{prefix}-{}-{nanos}", std::process::id()));
        fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Self(path))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// An HTTP response, headers with lower-cased names.
#[derive(Clone, Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// A minimal HTTP/1.0 GET (no chunked encoding to undo).
pub fn http_get(addr: SocketAddr, path_and_query: &str) -> anyhow::Result<HttpResponse> {
    let mut stream =
        TcpStream::connect_timeout(&addr, Duration::from_secs(5)).with_context(|| format!("connecting to {addr}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(stream, "GET {path_and_query} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n")?;
    stream.flush()?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let raw = String::from_utf8(raw).context("response is not UTF-8")?;
    let (head, body) = raw.split_once("\r\n\r\n").ok_or_else(|| anyhow!("malformed HTTP response: {raw:?}"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("bad status line {status_line:?}"))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Ok(HttpResponse { status, headers, body: body.to_owned() })
}

/// Percent-encodes a query-string value.
pub fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// One element of an instant-query result vector.
#[derive(Clone, Debug)]
pub struct Sample {
    pub labels: serde_json::Map<String, Value>,
    pub value: f64,
}

impl Sample {
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels.get(name).and_then(Value::as_str)
    }
}

/// A Prometheus server scraping one target, with its own config and TSDB.
pub struct Prometheus {
    child: Child,
    pub addr: SocketAddr,
    pub job: String,
    dir: TempDir,
}

impl Prometheus {
    /// Starts Prometheus scraping `target` every second as job `job`, and
    /// waits until it is ready to serve queries.
    pub fn start(target: SocketAddr, job: &str) -> anyhow::Result<Self> {
        Self::start_jobs(&[(job, target, "")])
    }

    /// Starts Prometheus with several scrape jobs, each `(name, target,
    /// extra)`: `extra` is more YAML for the job, each line indented by 4
    /// (`scheme: https`, `tls_config`, `basic_auth`). `job` is the first.
    pub fn start_jobs(jobs: &[(&str, SocketAddr, &str)]) -> anyhow::Result<Self> {
        let bin = prometheus_bin()?;
        let dir = TempDir::new("deferscope-prometheus")?;
        let config = dir.path().join("prometheus.yml");
        let mut yaml =
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\nscrape_configs:\n"
                .to_owned();
        for (job, target, extra) in jobs {
            yaml += &format!(
                "  - job_name: {job}\n    metrics_path: /metrics\n    static_configs:\n      - targets: ['{target}']\n{extra}"
            );
        }
        fs::write(&config, yaml)?;
        let job = jobs.first().map_or("", |j| j.0);
        let data = dir.path().join("data");
        let addr = free_loopback_addr()?;
        let log = fs::File::create(dir.path().join("prometheus.log"))?;
        let child = Command::new(&bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", data.display()))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let mut prometheus = Self { child, addr, job: job.to_owned(), dir };
        prometheus.wait_ready()?;
        Ok(prometheus)
    }

    /// The Prometheus server's own PID (a real, stripped Go program).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The last lines of Prometheus's own log, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + STEP_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("prometheus exited ({status}) while starting:\n{}", self.log_tail());
            }
            if http_get(self.addr, "/-/ready").is_ok_and(|r| r.status == 200) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("prometheus on {} not ready within {STEP_TIMEOUT:?}:\n{}", self.addr, self.log_tail());
            }
            thread::sleep(POLL);
        }
    }

    /// An instant query; the result vector (scalars come back as one
    /// sample without labels).
    pub fn query(&self, promql: &str) -> anyhow::Result<Vec<Sample>> {
        let HttpResponse { status, body, .. } =
            http_get(self.addr, &format!("/api/v1/query?query={}", url_encode(promql)))?;
        let reply: Value = serde_json::from_str(&body).with_context(|| format!("HTTP {status}: {body}"))?;
        if reply["status"] != "success" {
            bail!("query {promql:?} failed (HTTP {status}): {}", reply["error"]);
        }
        let number = |v: &Value| -> anyhow::Result<f64> {
            v[1].as_str().and_then(|s| s.parse().ok()).ok_or_else(|| anyhow!("bad sample value {v}"))
        };
        let data = &reply["data"];
        match data["resultType"].as_str() {
            Some("vector") => data["result"]
                .as_array()
                .context("result")?
                .iter()
                .map(|s| {
                    Ok(Sample {
                        labels: s["metric"].as_object().cloned().unwrap_or_default(),
                        value: number(&s["value"])?,
                    })
                })
                .collect(),
            Some("scalar") => Ok(vec![Sample { labels: Default::default(), value: number(&data["result"])? }]),
            other => bail!("unexpected result type {other:?} for {promql:?}"),
        }
    }

    /// The single value of `promql`, or None when its result is empty.
    pub fn value(&self, promql: &str) -> anyhow::Result<Option<f64>> {
        let samples = self.query(promql)?;
        match samples.as_slice() {
            [] => Ok(None),
            [one] => Ok(Some(one.value)),
            many => bail!("{promql:?} returned {} series, expected one: {many:?}", many.len()),
        }
    }

    /// Polls until `check` accepts (returns its value) or the step times
    /// out; the error names `what` and shows `check`'s last complaint.
    pub fn wait_for<T>(&self, what: &str, mut check: impl FnMut(&Self) -> Result<T, String>) -> anyhow::Result<T> {
        let deadline = Instant::now() + STEP_TIMEOUT;
        loop {
            let verdict = check(self);
            match verdict {
                Ok(v) => return Ok(v),
                Err(e) if Instant::now() > deadline => {
                    bail!("{what}: not seen within {STEP_TIMEOUT:?}; last: {e}\nprometheus log:\n{}", self.log_tail())
                }
                Err(_) => thread::sleep(POLL),
            }
        }
    }

    /// Waits until `promql` has exactly the value `want`.
    pub fn wait_value(&self, promql: &str, want: f64) -> anyhow::Result<()> {
        self.wait_for(&format!("{promql} == {want}"), |p| match p.value(promql) {
            Ok(Some(v)) if v == want => Ok(()),
            Ok(v) => Err(format!("{promql} is {v:?}")),
            Err(e) => Err(format!("{e:#}")),
        })
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `promtool check rules FILE`: Ok, or its output as the error.
pub fn promtool_check_rules(file: &Path) -> anyhow::Result<String> {
    let output =
        Command::new(promtool_bin()?).args(["check", "rules"]).arg(file).output().context("running promtool")?;
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    if !output.status.success() {
        bail!("promtool check rules {} failed ({}):\n{text}", file.display(), output.status);
    }
    Ok(text)
}

/// deferscope attached headless (`--no-tui --metrics-addr`): nothing on
/// stdout, metrics on `addr`; its stderr is kept for failure messages.
pub struct MetricsExporter {
    child: Child,
    pub addr: SocketAddr,
    log: PathBuf,
    _dir: TempDir,
}

impl MetricsExporter {
    pub fn attach(pid: u32, extra: &[&str]) -> anyhow::Result<Self> {
        let addr = free_loopback_addr()?;
        let dir = TempDir::new("deferscope-exporter")?;
        let log = dir.path().join("stderr.log");
        let child = Command::new(deferscope_bin()?)
            .args(["--pid", &pid.to_string(), "--no-tui", "--metrics-addr", &addr.to_string()])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log)?)
            .spawn()
            .context("starting deferscope")?;
        let mut exporter = Self { child, addr, log, _dir: dir };
        exporter.wait_listening()?;
        Ok(exporter)
    }

    pub fn stderr(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn wait_listening(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + STEP_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("deferscope exited ({status}) before serving metrics; stderr:\n{}", self.stderr());
            }
            if TcpStream::connect_timeout(&self.addr, Duration::from_secs(1)).is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("deferscope did not listen on {} within {STEP_TIMEOUT:?}; stderr:\n{}", self.addr, self.stderr());
            }
            thread::sleep(POLL);
        }
    }

    /// Fails with deferscope's stderr if it is no longer running.
    pub fn check_running(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("deferscope exited ({status}); stderr:\n{}", self.stderr());
        }
        Ok(())
    }

    /// SIGINT, then its exit status.
    pub fn interrupt(&mut self) -> anyhow::Result<std::process::ExitStatus> {
        // SAFETY: kill on our own child's PID.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let deadline = Instant::now() + STEP_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                bail!("deferscope did not exit within {STEP_TIMEOUT:?} of SIGINT");
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for MetricsExporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
