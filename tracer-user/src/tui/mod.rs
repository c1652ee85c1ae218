//! The live dashboard (ratatui + crossterm), `deferscope --pid PID` in a
//! terminal.
//!
//! - [`app`]: the state (selection, sort, filter, pause, focus, history);
//! - [`fleet`]: the process list of a multi-process session;
//! - [`keys`]: keys → state changes;
//! - [`event`]: terminal input (snapshots come from [`crate::feed`]);
//! - [`ui`] and [`sections`]: drawing, one module per part of the screen;
//! - [`terminal`]: raw mode / alternate screen, always restored.
use std::{
    io,
    sync::Arc,
    time::{Duration, Instant},
};

use ratatui::crossterm::event::KeyEvent;

use crate::{
    aggregate::model::Snapshot,
    cli::Options,
    feed::{Feed, Fleet, FleetFeed, SnapshotFeed},
};

pub mod app;
pub mod event;
pub mod fleet;
pub mod format;
pub mod keys;
pub mod sections;
pub mod terminal;
pub mod ui;

use app::{App, Settings};
use event::{Event, Events, POLL};
use fleet::FleetApp;
use keys::{Action, handle_key};

/// Whether this build has the interactive dashboard.
pub const AVAILABLE: bool = true;

/// Runs the dashboard until the user quits, or until the feed closes
/// (unless the last snapshot says the target exited: then the screen stays,
/// with the last data, until `q`). Blocking: call it on its own thread.
pub(crate) fn run(feed: SnapshotFeed, options: &Options) -> io::Result<()> {
    run_screen(feed, App::new(Settings::from_options(options)))
}

/// [`run`] for several processes: the process list, each process's
/// dashboard a key away. The screen stays after the feed closes only when
/// every process exited.
pub(crate) fn run_fleet(feed: FleetFeed, options: &Options) -> io::Result<()> {
    run_screen(feed, FleetApp::new(Settings::from_options(options)))
}

/// What [`run_screen`] drives: one process's dashboard or the process list.
trait Screen {
    type Update;
    fn update(&mut self, update: Arc<Self::Update>);
    /// The session ended; `true` keeps the screen up until `q`.
    fn on_feed_closed(&mut self) -> bool;
    fn render(&mut self, terminal: &mut terminal::Tty) -> io::Result<()>;
    fn key(&mut self, key: KeyEvent) -> Action;
}

impl Screen for App {
    type Update = Snapshot;
    fn update(&mut self, snapshot: Arc<Snapshot>) {
        self.on_snapshot(snapshot);
    }
    fn on_feed_closed(&mut self) -> bool {
        self.feed_closed = true;
        self.target_exited()
    }
    fn render(&mut self, terminal: &mut terminal::Tty) -> io::Result<()> {
        ui::render(terminal, self)
    }
    fn key(&mut self, key: KeyEvent) -> Action {
        handle_key(self, key)
    }
}

impl Screen for FleetApp {
    type Update = Fleet;
    fn update(&mut self, fleet: Arc<Fleet>) {
        self.on_fleet(fleet);
    }
    fn on_feed_closed(&mut self) -> bool {
        self.feed_closed = true;
        if let Some(app) = &mut self.open {
            app.feed_closed = true;
        }
        self.all_exited()
    }
    fn render(&mut self, terminal: &mut terminal::Tty) -> io::Result<()> {
        ui::render_fleet(terminal, self)
    }
    fn key(&mut self, key: KeyEvent) -> Action {
        self.handle_key(key)
    }
}

fn run_screen<S: Screen>(mut feed: Feed<S::Update>, mut screen: S) -> io::Result<()> {
    let mut guard = terminal::TerminalGuard::enter()?;
    let mut feed_closed = false;
    let mut dirty = true;
    let mut last_draw = Instant::now();
    loop {
        // Take every snapshot that arrived; only the newest matters.
        if let Some(update) = feed.next_unseen() {
            screen.update(update);
            dirty = true;
        }
        if feed.is_closed() && !feed_closed {
            feed_closed = true;
            dirty = true;
            if !screen.on_feed_closed() {
                return Ok(());
            }
        }
        // Redraw on change, and once a second anyway (uptime, blinking).
        if dirty || last_draw.elapsed().as_secs() >= 1 {
            screen.render(&mut guard.terminal)?;
            dirty = false;
            last_draw = Instant::now();
        }
        // Wait for input; then take everything already queued (key repeat,
        // pasted filters) before drawing again.
        let mut timeout = POLL;
        while let Some(event) = Events::poll_terminal(timeout)? {
            timeout = Duration::ZERO;
            match event {
                Event::Key(key) => match screen.key(key) {
                    Action::Quit => return Ok(()),
                    Action::Redraw => dirty = true,
                    Action::None => {}
                },
                Event::Redraw => {
                    guard.terminal.autoresize()?;
                    dirty = true;
                }
            }
        }
    }
}
