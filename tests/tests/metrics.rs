//! The Prometheus exporter, end to end: a Go program with a known number of
//! leaked goroutines and a known deep defer chain, deferscope attached
//! headless with `--metrics-addr`, and a real Prometheus server scraping it,
//! queried over its HTTP API; the same over TLS with basic auth
//! (`--web.config.file`). Plus `promtool` checks of the shipped alert rules.
use deferscope_integration::{
    prometheus::{MetricsExporter, Prometheus, TempDir, http_get, promtool_bin, promtool_check_rules},
    *,
};
use serde_json::Value;

const JOB: &str = "deferscope";

fn as_u64(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// The newest Go toolchain of the matrix: the exporter does not depend on
/// the Go version (the defer-depth tests cover the matrix).
fn newest_toolchain() -> Toolchain {
    toolchains().expect("toolchains").into_iter().max_by_key(Toolchain::minor).expect("a toolchain")
}

/// Escapes a path for a PromQL regex inside a double-quoted string.
fn regex_quote(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push_str("\\\\");
        }
        out.push(c);
    }
    out
}

#[test]
#[ignore = "needs root, the Go toolchains and Debian's prometheus (cargo xtask test runs it)"]
fn prometheus_scrapes_leaks_and_defer_depth() {
    require_root();
    let tc = newest_toolchain();
    eprintln!("== prometheus exporter with {}", tc.full);
    if let Err(e) = run(&tc) {
        panic!("prometheus exporter with {}: {e:#}", tc.full);
    }
}

fn run(tc: &Toolchain) -> anyhow::Result<()> {
    let deep_line = marker_line("metrics", "SITE:deep");
    let recv_line = marker_line("metrics", "BLOCK:recv");
    let go_recv_line = marker_line("metrics", "GO:recv");
    let main_go = regex_quote(&workspace_root().join("tests/go/metrics/main.go").display().to_string());

    let binary = build_go("metrics", tc, &[])?;
    let mut program = GoProgram::start(&binary)?;
    let ready = program.expect("ready")?;
    let (leaked, leaked_recv, leaked_send) =
        (as_u64(&ready["leaked"]), as_u64(&ready["leaked_recv"]), as_u64(&ready["leaked_send"]));
    let deep_depth = as_u64(&ready["deep_depth"]);
    let num_goroutine = as_u64(&ready["num_goroutine"]);

    // Top 1: the two leak groups (25 receivers, 10 senders) become one
    // group plus "other", exercising the cap end to end. `--top 1` caps only
    // printed listings: the metrics must still cover every goroutine.
    let mut exporter = MetricsExporter::attach(
        program.pid,
        // Without reachability scans the blocked goroutines are all "stuck"
        // (tests/leaks.rs covers the proofs).
        &["--leak-after", "1s", "--interval", "200ms", "--metrics-top-sites", "1", "--top", "1", "--leak-scan", "off"],
    )?;

    // The endpoint itself: OpenMetrics, once the first snapshot is in.
    let deadline = std::time::Instant::now() + STEP_TIMEOUT;
    let metrics = loop {
        exporter.check_running()?;
        let r = http_get(exporter.addr, "/metrics")?;
        anyhow::ensure!(r.status == 200, "GET /metrics: HTTP {}: {}", r.status, r.body);
        if r.body.contains("deferscope_up{") {
            break r;
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "no snapshot on /metrics within {STEP_TIMEOUT:?}: {}",
            r.body
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert_eq!(metrics.header("content-type"), Some("application/openmetrics-text; version=1.0.0; charset=utf-8"));
    assert!(metrics.body.ends_with("# EOF\n"), "{}", metrics.body);
    let index = http_get(exporter.addr, "/")?;
    assert!(index.status == 200 && index.body.contains("/metrics"), "GET /: {index:?}");

    let prometheus = Prometheus::start(exporter.addr, JOB)?;
    eprintln!("   prometheus on {} scraping deferscope on {}", prometheus.addr, exporter.addr);

    // Scraped, and healthy.
    prometheus.wait_value(&format!(r#"up{{job="{JOB}"}}"#), 1.0)?;
    prometheus.wait_value(&format!(r#"deferscope_up{{job="{JOB}"}}"#), 1.0)?;
    let up = prometheus.query(&format!(r#"deferscope_up{{job="{JOB}"}}"#))?;
    assert_eq!(up[0].label("pid"), Some(program.pid.to_string().as_str()), "{up:?}");
    assert_eq!(up[0].label("exe"), Some("metrics"), "{up:?}");
    prometheus.wait_for("probe hits", |p| {
        match p.value(&format!(r#"count(deferscope_probe_hits_total{{job="{JOB}"}})"#)) {
            Ok(Some(n)) if n >= 1.0 => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })?;

    // Every goroutine, as runtime.NumGoroutine() counts them, by state.
    prometheus.wait_value(&format!(r#"sum(deferscope_goroutines{{job="{JOB}"}})"#), num_goroutine as f64)?;

    // The deep chain: exact depth, and its site.
    prometheus.wait_value(&format!(r#"max(deferscope_defer_depth_max{{job="{JOB}"}})"#), deep_depth as f64)?;
    let site = format!(r#"deferscope_defer_site_live{{job="{JOB}",site=~"main\\.deep {main_go}:{deep_line}"}}"#);
    prometheus.wait_value(&site, deep_depth as f64)?;
    prometheus.wait_for("the depth histogram", |p| {
        let q = format!(r#"sum(deferscope_goroutine_defer_depth_bucket{{job="{JOB}",le="1024.0"}}) < sum(deferscope_goroutine_defer_depth_bucket{{job="{JOB}",le="2048.0"}})"#);
        match p.value(&q) {
            Ok(Some(_)) => Ok(()),
            other => Err(format!("{q}: {other:?}")),
        }
    })?;

    // Stuck goroutines: needs the aggregator's leak detection (--leak-after 1s).
    exporter.check_running()?;
    prometheus.wait_value(&format!(r#"sum(deferscope_goroutines_stuck{{job="{JOB}"}})"#), leaked as f64)?;
    prometheus.wait_value(&format!(r#"count(deferscope_goroutines_stuck{{job="{JOB}"}})"#), 2.0)?;
    let receivers = format!(
        r#"deferscope_goroutines_stuck{{job="{JOB}",wait_reason="chan receive",blocked_at=~"main\\.receiver {main_go}:{recv_line}",created_by=~"main\\.main {main_go}:{go_recv_line}"}}"#
    );
    prometheus.wait_value(&receivers, leaked_recv as f64)?;
    let other = format!(
        r#"deferscope_goroutines_stuck{{job="{JOB}",wait_reason="other",created_by="other",blocked_at="other"}}"#
    );
    prometheus.wait_value(&other, leaked_send as f64)?;

    prometheus.wait_value(&format!(r#"sum(deferscope_leak_groups_growing{{job="{JOB}",verdict="leaked"}})"#), 0.0)?;
    prometheus.wait_value(&format!(r#"count(deferscope_goroutines_leaked{{job="{JOB}"}}) or vector(0)"#), 0.0)?;

    // The target exits: deferscope follows, and Prometheus sees it go.
    program.wait_exit()?;
    let deadline = std::time::Instant::now() + STEP_TIMEOUT;
    loop {
        match exporter.check_running() {
            Err(_) => break,
            Ok(()) if std::time::Instant::now() > deadline => {
                anyhow::bail!("deferscope still running after the target exited")
            }
            Ok(()) => std::thread::sleep(std::time::Duration::from_millis(100)),
        }
    }
    prometheus.wait_value(&format!(r#"up{{job="{JOB}"}}"#), 0.0)?;
    Ok(())
}

#[test]
#[ignore = "needs promtool, from Debian's prometheus (cargo xtask test runs it)"]
fn alert_rules_pass_promtool() {
    promtool_bin().unwrap_or_else(|e| panic!("{e:#}"));
    let rules = workspace_root().join("deploy/prometheus/deferscope-alerts.yml");
    let out = promtool_check_rules(&rules).unwrap_or_else(|e| panic!("{e:#}"));
    assert!(out.contains("SUCCESS"), "{out}");
    // And they fire when they should: promtool's rule unit tests.
    let tests = workspace_root().join("deploy/prometheus/deferscope-alerts.test.yml");
    let output = std::process::Command::new(promtool_bin().expect("promtool"))
        .args(["test", "rules"])
        .arg(&tests)
        .output()
        .expect("running promtool test rules");
    assert!(
        output.status.success(),
        "promtool test rules failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The password of the `prometheus` user in the test's web config, and its
/// bcrypt hash (cost 10, as `htpasswd -nbBC 10` makes them).
const SCRAPE_PASSWORD: &str = "scrape-me";
const SCRAPE_HASH: &str = "$2b$10$DOliNnYMMW378qUYOm/mPeV52qdyERHos4hjLQPBeZ4/eL94krD9a";

#[test]
#[ignore = "needs root, the Go toolchains and Prometheus (cargo xtask test runs it)"]
fn prometheus_scrapes_over_tls_with_basic_auth() {
    require_root();
    let tc = newest_toolchain();
    if let Err(e) = run_tls(&tc) {
        panic!("{}: {e:#}", tc.full);
    }
}

fn run_tls(tc: &Toolchain) -> anyhow::Result<()> {
    // A certificate for localhost/127.0.0.1 from a test CA.
    let testdata = workspace_root().join("tracer-user/src/exporters/testdata");
    let dir = TempDir::new("deferscope-web-config")?;
    let web_config = dir.path().join("web.yml");
    std::fs::write(
        &web_config,
        format!(
            "tls_server_config:\n  cert_file: {}\n  key_file: {}\nbasic_auth_users:\n  prometheus: {SCRAPE_HASH}\n",
            testdata.join("server.crt").display(),
            testdata.join("server.key").display()
        ),
    )?;

    let binary = build_go("metrics", tc, &[])?;
    let mut program = GoProgram::start(&binary)?;
    let ready = program.expect("ready")?;
    let num_goroutine = as_u64(&ready["num_goroutine"]);
    let mut exporter = MetricsExporter::attach(
        program.pid,
        &["--web.config.file", &web_config.display().to_string(), "--interval", "200ms", "--leak-scan", "off"],
    )?;

    // Plain HTTP gets nothing from the TLS port.
    anyhow::ensure!(http_get(exporter.addr, "/metrics").is_err(), "plain HTTP answered on the TLS port");

    // One Prometheus, three jobs on the one exporter: with the password,
    // with a wrong one, and without TLS.
    let ca = testdata.join("ca.crt");
    let tls =
        format!("    scheme: https\n    tls_config:\n      ca_file: {}\n      server_name: localhost\n", ca.display());
    let good = format!("{tls}    basic_auth:\n      username: prometheus\n      password: {SCRAPE_PASSWORD}\n");
    let wrong = format!("{tls}    basic_auth:\n      username: prometheus\n      password: not-it\n");
    let prometheus = Prometheus::start_jobs(&[
        (JOB, exporter.addr, &good),
        ("wrong-password", exporter.addr, &wrong),
        ("plain-http", exporter.addr, ""),
    ])?;
    eprintln!("   prometheus on {} scraping deferscope on https://{}", prometheus.addr, exporter.addr);
    prometheus.wait_value(&format!(r#"up{{job="{JOB}"}}"#), 1.0)?;
    prometheus.wait_value(&format!(r#"sum(deferscope_goroutines{{job="{JOB}"}})"#), num_goroutine as f64)?;
    prometheus.wait_value(r#"up{job="wrong-password"}"#, 0.0)?;
    prometheus.wait_value(r#"up{job="plain-http"}"#, 0.0)?;
    anyhow::ensure!(
        prometheus.value(r#"count(deferscope_up{job=~"wrong-password|plain-http"})"#)?.is_none(),
        "a scrape without the password or TLS got metrics"
    );
    exporter.check_running()?;
    let status = exporter.interrupt()?;
    anyhow::ensure!(status.success(), "deferscope exited with {status}");
    drop(program);
    Ok(())
}
