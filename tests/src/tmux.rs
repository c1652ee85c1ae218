//! Driving a real terminal for the dashboard's end-to-end test: a private
//! tmux server (its own socket, no user config), keys in, screen text out.
use std::{
    path::Path,
    process::{Command, Output},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use crate::STEP_TIMEOUT;

/// How often the screen is captured while waiting for something on it.
const POLL: Duration = Duration::from_millis(100);

/// Installs tmux with apt when it is missing (the test runs as root).
pub fn ensure_installed() -> anyhow::Result<()> {
    if Command::new("tmux").arg("-V").output().is_ok_and(|o| o.status.success()) {
        return Ok(());
    }
    eprintln!("tmux is missing: installing it with apt-get");
    let status = Command::new("apt-get")
        .args(["install", "-y", "--no-install-recommends", "tmux"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .context("running apt-get")?;
    if !status.success() {
        let _ = Command::new("apt-get").arg("update").status();
        let status = Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends", "tmux"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()?;
        if !status.success() {
            bail!("cannot install tmux: apt-get install tmux failed ({status})");
        }
    }
    Ok(())
}

/// One tmux server with one session, killed on drop.
pub struct Tmux {
    socket: String,
    target: String,
}

impl Tmux {
    /// Starts `command` (a shell command line) in a detached session of
    /// `width`×`height` cells.
    pub fn start(name: &str, width: u16, height: u16, command: &str) -> anyhow::Result<Self> {
        let tmux = Self { socket: format!("deferscope-{name}-{}", std::process::id()), target: format!("{name}:0.0") };
        tmux.run(&["new-session", "-d", "-s", name, "-x", &width.to_string(), "-y", &height.to_string(), command])?;
        // Keep the pane (and its last screen) if the command exits early.
        tmux.run(&["set-option", "-t", name, "remain-on-exit", "on"])?;
        Ok(tmux)
    }

    fn run(&self, args: &[&str]) -> anyhow::Result<Output> {
        let out = Command::new("tmux")
            .args(["-L", &self.socket, "-f", "/dev/null"])
            .args(args)
            .env_remove("TMUX")
            .output()
            .context("running tmux")?;
        if !out.status.success() {
            bail!("tmux {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
        }
        Ok(out)
    }

    /// Key names as tmux knows them: `Enter`, `Escape`, `Tab`, `q`, `C-c`.
    pub fn keys(&self, keys: &[&str]) -> anyhow::Result<()> {
        let mut args = vec!["send-keys", "-t", &self.target];
        args.extend_from_slice(keys);
        self.run(&args).map(drop)
    }

    /// Types `text` literally.
    pub fn type_text(&self, text: &str) -> anyhow::Result<()> {
        self.run(&["send-keys", "-t", &self.target, "-l", text]).map(drop)
    }

    /// The visible screen, one string per line.
    pub fn capture(&self) -> anyhow::Result<String> {
        let out = self.run(&["capture-pane", "-p", "-t", &self.target])?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// A tmux format about the pane, like `#{alternate_on}`.
    pub fn display(&self, format: &str) -> anyhow::Result<String> {
        let out = self.run(&["display-message", "-p", "-t", &self.target, format])?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// Captures the screen until `check` accepts it (returns that screen) or
    /// the step times out (the error shows the last screen and `check`'s
    /// last complaint).
    pub fn wait_for(&self, what: &str, mut check: impl FnMut(&str) -> Result<(), String>) -> anyhow::Result<String> {
        let deadline = Instant::now() + STEP_TIMEOUT;
        loop {
            let screen = self.capture()?;
            let verdict = check(&screen);
            match verdict {
                Ok(()) => return Ok(screen),
                Err(e) if Instant::now() >= deadline => {
                    bail!("{what}: not on screen within {STEP_TIMEOUT:?} ({e}); screen:\n{screen}")
                }
                Err(_) => std::thread::sleep(POLL),
            }
        }
    }

    /// Saves the current screen to `path` (for humans reviewing a run).
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, self.capture()?)?;
        Ok(())
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}
