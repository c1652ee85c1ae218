//! The dashboard end to end: the real deferscope binary in a real terminal
//! (tmux, 160×45) against a Go program with a known deep chain and a known
//! leak. Checks the numbers on screen, filtering, the detail view, the
//! target-exited banner, and that `q` exits 0 with the shell restored. With
//! several processes (`--exe`), the process list: each row has its program's
//! own numbers, Enter opens its dashboard, Esc goes back.
use deferscope_integration::{tmux::Tmux, *};
use serde_json::Value;

fn as_u64(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// The goroutine table's row for `goid` (rows start with the goid right
/// after the border; leak-panel rows start with spaces).
fn goroutine_row(screen: &str, goid: u64) -> Option<&str> {
    let prefix = format!("│{goid} ");
    screen.lines().find(|l| l.starts_with(&prefix))
}

fn tokens(line: &str) -> Vec<&str> {
    line.split(|c: char| c.is_whitespace() || c == '│').filter(|t| !t.is_empty()).collect()
}

fn deep_row(screen: &str, goid: u64, depth: u64, deep_line: u32) -> Result<(), String> {
    let row = goroutine_row(screen, goid).ok_or(format!("no row for goroutine {goid}"))?;
    if !tokens(row).contains(&depth.to_string().as_str()) {
        return Err(format!("goroutine {goid} row has no depth {depth}: {row:?}"));
    }
    if !row.contains(&format!("main.go:{deep_line} main.deepWorker")) {
        return Err(format!("goroutine {goid} row does not show its defer site main.go:{deep_line}: {row:?}"));
    }
    Ok(())
}

/// A leak-panel row: `│   40  chan send  main.go:52 main.leakyProducer  main.go:76 main.main ...`.
fn leak_row(screen: &str, count: u64, block_line: u32, create_line: u32) -> Result<(), String> {
    let found = screen.lines().any(|l| {
        let t = tokens(l);
        t.first() == Some(&count.to_string().as_str())
            && l.contains(&format!("main.go:{block_line} main.leaky"))
            && l.contains(&format!("main.go:{create_line} main.main"))
    });
    if found {
        Ok(())
    } else {
        Err(format!("no leak group of {count} blocked at main.go:{block_line}, created at main.go:{create_line}"))
    }
}

#[test]
#[ignore = "needs root, the Go toolchains and tmux (cargo xtask test runs it)"]
fn dashboard_shows_depth_leaks_filter_detail_and_quits_cleanly() {
    require_root();
    tmux::ensure_installed().expect("tmux");
    let tc = toolchains().expect("toolchains").into_iter().max_by_key(Toolchain::minor).expect("a toolchain");
    eprintln!("== dashboard with {}", tc.full);
    let deep_line = marker_line("tui", "SITE:deep");
    let block_line = marker_line("tui", "SITE:leak-block");
    let create_line = marker_line("tui", "SITE:leak-create");
    let screens = workspace_root().join("target/tui-e2e");

    let binary = build_go("tui", &tc, &[]).expect("build the Go program");
    let mut program = GoProgram::start(&binary).expect("start the Go program");
    let ready = program.expect("ready").expect("ready line");
    let deep = as_u64(&ready["deep_goid"]);
    let depth = as_u64(&ready["deep_depth"]);
    let leak_count = as_u64(&ready["leak_count"]);
    let leaked: Vec<u64> = ready["leak_goids"].as_array().expect("goids").iter().map(as_u64).collect();
    assert_eq!(leaked.len() as u64, leak_count);

    let bin = deferscope_bin().expect("deferscope binary");
    let tmux = Tmux::start("tui", 160, 45, "env PS1='$ ' sh").expect("tmux");
    // capture-pane drops trailing blanks: the prompt `$ ` shows as `$`.
    tmux.wait_for("the shell prompt", |s| {
        if s.lines().any(|l| l.trim_end() == "$") { Ok(()) } else { Err("no prompt".into()) }
    })
    .expect("shell");
    tmux.type_text(&format!(
        "'{}' --pid {} --leak-after 1s --leak-scan off --interval 200ms; echo EXIT=$?",
        bin.display(),
        program.pid
    ))
    .expect("type");
    tmux.keys(&["Enter"]).expect("enter");

    // The deep chain, exactly, with its site.
    tmux.wait_for("the deep goroutine with its depth", |s| deep_row(s, deep, depth, deep_line)).expect("deep row");
    // The leak: one group with every blocked goroutine, once --leak-after
    // passed; without reachability scans (--leak-scan off) they are stuck,
    // not proven leaked.
    let screen = tmux
        .wait_for("the leak group", |s| {
            leak_row(s, leak_count, block_line, create_line)?;
            let row = goroutine_row(s, leaked[0]);
            if let Some(row) = row
                && !row.contains("stuck")
            {
                return Err(format!("goroutine {} is not marked stuck: {row:?}", leaked[0]));
            }
            if !s.contains(&format!("leaked 0 stuck {leak_count}")) {
                return Err("the header does not count them stuck".into());
            }
            Ok(())
        })
        .expect("leak group");
    assert!(screen.contains(&format!("pid {}", program.pid)), "header names the target:\n{screen}");
    assert!(screen.contains(&tc.full), "header shows the Go version:\n{screen}");
    tmux.save(&screens.join("dashboard.txt")).expect("save");

    // `/` filters the table down to the deep goroutine.
    tmux.type_text("/deepWorker").expect("type");
    tmux.keys(&["Enter"]).expect("enter");
    tmux.wait_for("the filtered table", |s| {
        deep_row(s, deep, depth, deep_line)?;
        if !s.contains("Goroutines 1 of ") {
            return Err("the title does not say 1 match".into());
        }
        if leaked.iter().any(|g| goroutine_row(s, *g).is_some()) {
            return Err("leaked goroutines are still listed".into());
        }
        // The table narrows while typing: wait for Enter to be taken too.
        if !s.contains("filter: deepWorker") {
            return Err("the footer does not show the kept filter".into());
        }
        Ok(())
    })
    .expect("filter");
    tmux.save(&screens.join("filtered.txt")).expect("save");

    // Enter: the detail view of the (only, selected) deep goroutine.
    tmux.keys(&["Enter"]).expect("enter");
    tmux.wait_for("the detail view", |s| {
        if !s.contains(&format!("Goroutine {deep}")) {
            return Err("no detail title".into());
        }
        let chain = s
            .lines()
            .find(|l| l.contains(" × ") && l.contains(&format!("tests/go/tui/main.go:{deep_line}")))
            .ok_or(format!("no defer chain line for main.go:{deep_line}"))?;
        if !tokens(chain).contains(&depth.to_string().as_str()) {
            return Err(format!("the chain line does not count {depth} records: {chain:?}"));
        }
        if !s.contains("main.deepWorker") || !s.contains("Stack") {
            return Err("no stack".into());
        }
        Ok(())
    })
    .expect("detail");
    tmux.save(&screens.join("detail.txt")).expect("save");

    // Back, clear the filter: the leaked goroutines are listed again.
    tmux.keys(&["Escape"]).expect("esc");
    tmux.keys(&["Escape"]).expect("esc");
    tmux.wait_for("the unfiltered table", |s| {
        if s.contains("filter: ") || s.contains(" of ") && s.contains(" match ") {
            return Err("still filtered".into());
        }
        leak_row(s, leak_count, block_line, create_line)
    })
    .expect("unfiltered");

    // The target exits: a banner says so and the last data stays.
    program.wait_exit().expect("Go program exit");
    tmux.wait_for("the target-exited banner", |s| {
        if !s.to_lowercase().contains("target exited") {
            return Err("no banner".into());
        }
        deep_row(s, deep, depth, deep_line)
    })
    .expect("target exited");
    tmux.save(&screens.join("exited.txt")).expect("save");

    // q: exit status 0, and the shell is back to normal.
    tmux.keys(&["q"]).expect("q");
    let after = tmux
        .wait_for("deferscope's exit status", |s| {
            if s.lines().any(|l| l.trim() == "EXIT=0") {
                Ok(())
            } else if let Some(l) = s.lines().find(|l| l.starts_with("EXIT=")) {
                Err(format!("deferscope exited with {l}"))
            } else {
                Err("no EXIT line yet".into())
            }
        })
        .expect("exit 0");
    assert!(!after.contains("Goroutines"), "the dashboard is gone from the screen:\n{after}");
    assert_eq!(tmux.display("#{alternate_on}").expect("tmux"), "0", "the alternate screen was left");
    assert_eq!(tmux.display("#{cursor_flag}").expect("tmux"), "1", "the cursor is visible again");
    // A cooked terminal: Enter ends the line and the shell runs it (in raw
    // mode it would stay a carriage return in the input).
    tmux.type_text("echo RESTORED-$((40+2))").expect("type");
    tmux.keys(&["Enter"]).expect("enter");
    tmux.wait_for("a working shell", |s| if s.contains("RESTORED-42") { Ok(()) } else { Err("no echo".into()) })
        .expect("shell restored");
}

/// The process list's row for `pid`: `│  PID  NAME  GO  GOROUTINES  LEAKED  DEEPEST`.
fn process_row(screen: &str, pid: u32) -> Option<Vec<&str>> {
    screen.lines().map(tokens).find(|t| t.first() == Some(&pid.to_string().as_str()))
}

/// A `fleet` program (tests/go/fleet) under a name of its own, so that no
/// other test's programs match `--exe`.
struct Member {
    program: GoProgram,
    name: String,
    go: String,
    num_goroutine: u64,
    depth: u64,
    deep_goid: u64,
}

impl Member {
    fn start(tc: &Toolchain, dir: &std::path::Path, depth: u64) -> anyhow::Result<Self> {
        let built = build_go("fleet", tc, &[])?;
        let name = format!("fleet{}-tui-{}", tc.minor(), std::process::id());
        let path = dir.join(&name);
        std::fs::copy(&built, &path)?;
        let mut program = GoProgram::start_with_args(&path, &[&depth.to_string(), "2"])?;
        let ready = program.expect("ready")?;
        Ok(Self {
            program,
            name,
            go: ready["go"].as_str().unwrap_or_default().to_owned(),
            num_goroutine: as_u64(&ready["num_goroutine"]),
            depth: as_u64(&ready["deep_depth"]),
            deep_goid: as_u64(&ready["deep_goid"]),
        })
    }

    /// Its row shows its own numbers.
    fn row_matches(&self, screen: &str) -> Result<(), String> {
        let pid = self.program.pid;
        let row = process_row(screen, pid).ok_or(format!("no row for {pid}"))?;
        let want = [&self.name, &self.go, &self.num_goroutine.to_string()];
        if row.len() < 6 || row[1..4] != want.map(String::as_str) || row[5] != self.depth.to_string() {
            return Err(format!("row of {pid}: {row:?}, want {want:?} and deepest {}", self.depth));
        }
        Ok(())
    }

    /// Its dashboard is open: the header names it, its deep goroutine shows
    /// its depth.
    fn dashboard_open(&self, screen: &str) -> Result<(), String> {
        if !screen.contains(&format!("pid {} ", self.program.pid)) {
            return Err(format!("the header does not name {}", self.program.pid));
        }
        let row = goroutine_row(screen, self.deep_goid).ok_or(format!("no row for goroutine {}", self.deep_goid))?;
        if !tokens(row).contains(&self.depth.to_string().as_str()) {
            return Err(format!("goroutine {} row has no depth {}: {row:?}", self.deep_goid, self.depth));
        }
        if !screen.contains("Esc processes") {
            return Err("the footer does not offer the way back".into());
        }
        Ok(())
    }
}

#[test]
#[ignore = "needs root, the Go toolchains and tmux (cargo xtask test runs it)"]
fn process_list_opens_each_process_and_goes_back() {
    require_root();
    tmux::ensure_installed().expect("tmux");
    let mut tcs = toolchains().expect("toolchains");
    tcs.sort_by_key(Toolchain::minor);
    let dir = prometheus::TempDir::new("deferscope-tui-fleet").expect("temp dir");
    let members = [
        Member::start(&tcs[0], dir.path(), 150).expect("first program"),
        Member::start(tcs.last().expect("a toolchain"), dir.path(), 320).expect("second program"),
    ];
    let bin = deferscope_bin().expect("deferscope binary");
    let tmux = Tmux::start("tui-fleet", 120, 40, "env PS1='$ ' sh").expect("tmux");
    tmux.wait_for("the shell prompt", |s| {
        if s.lines().any(|l| l.trim_end() == "$") { Ok(()) } else { Err("no prompt".into()) }
    })
    .expect("shell");
    tmux.type_text(&format!(
        "'{}' --exe {} --exe {} --leak-scan off --interval 200ms; echo EXIT=$?",
        bin.display(),
        members[0].name,
        members[1].name
    ))
    .expect("type");
    tmux.keys(&["Enter"]).expect("enter");

    // The list: one row per program, each with its own numbers.
    let list = tmux
        .wait_for("both programs in the list", |s| {
            if !s.contains("Processes 2") {
                return Err("not two processes".into());
            }
            members.iter().try_for_each(|m| m.row_matches(s))
        })
        .expect("process list");
    tmux.save(&workspace_root().join("target/tui-e2e/processes.txt")).expect("save");
    // The rows come by PID: open the first, then the second.
    let row_of = |m: &Member| list.lines().position(|l| tokens(l).first() == Some(&m.program.pid.to_string().as_str()));
    let mut order: Vec<&Member> = members.iter().collect();
    order.sort_by_key(|m| row_of(m));
    for (i, m) in order.iter().enumerate() {
        if i > 0 {
            tmux.keys(&["j"]).expect("j");
        }
        tmux.keys(&["Enter"]).expect("enter");
        tmux.wait_for("the opened process's dashboard", |s| m.dashboard_open(s)).expect("dashboard");
        tmux.keys(&["Escape"]).expect("esc");
        tmux.wait_for("the list again", |s| {
            if s.contains("Goroutines ") {
                return Err("still on the dashboard".into());
            }
            members.iter().try_for_each(|m| m.row_matches(s))
        })
        .expect("back on the list");
    }

    tmux.keys(&["q"]).expect("q");
    tmux.wait_for("deferscope's exit status", |s| {
        if s.lines().any(|l| l.trim() == "EXIT=0") { Ok(()) } else { Err("no EXIT=0 line yet".into()) }
    })
    .expect("exit 0");
}
