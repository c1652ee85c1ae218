//! The dashboard of several processes (`--all`, `--exe`, several `--pid`):
//! a list of the traced processes above the one-process dashboard. Enter
//! opens the selected process's dashboard ([`App`]), Esc goes back to the
//! list. Pure state and keys, like [`super::app`]: no terminal.
use std::sync::Arc;

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use super::{
    app::{App, Overlay, Settings},
    keys::{Action, handle_key},
};
use crate::{aggregate::model::Snapshot, feed::Fleet};

/// One line of the process list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessRow {
    pub pid: u32,
    /// The base name of the executable.
    pub name: String,
    pub go_version: String,
    /// Live goroutines (as `runtime.NumGoroutine`).
    pub goroutines: u64,
    pub leaked: u64,
    /// The deepest defer chain of any goroutine.
    pub deepest: u64,
    /// This is the process's last snapshot: it exited.
    pub exited: bool,
}

impl ProcessRow {
    fn of(s: &Snapshot) -> Self {
        Self {
            pid: s.pid,
            name: s.exe.rsplit('/').next().unwrap_or(&s.exe).to_owned(),
            go_version: s.go_version.clone(),
            goroutines: s.totals.goroutines_live,
            leaked: s.totals.goroutines_leaked,
            // Goroutines come deepest first, but `--top` may cap them: take
            // the maximum rather than trust the order.
            deepest: s.goroutines.iter().map(|g| g.defer_depth).max().unwrap_or(0),
            exited: s.target_exited,
        }
    }
}

pub struct FleetApp {
    /// The session's settings; `pid` is set per opened process.
    pub settings: Settings,
    /// The newest fleet, by PID.
    fleet: Option<Arc<Fleet>>,
    pub rows: Vec<ProcessRow>,
    /// Index into `rows`.
    pub selected: usize,
    /// The selected process, kept selected when others come and go.
    selected_pid: Option<u32>,
    /// The dashboard of the process opened with Enter.
    pub open: Option<App>,
    /// The session ended (the feed is closed).
    pub feed_closed: bool,
}

impl FleetApp {
    pub fn new(settings: Settings) -> Self {
        Self {
            settings,
            fleet: None,
            rows: Vec::new(),
            selected: 0,
            selected_pid: None,
            open: None,
            feed_closed: false,
        }
    }

    /// Every process of the newest fleet exited (the session ends showing
    /// their last data).
    pub fn all_exited(&self) -> bool {
        !self.rows.is_empty() && self.rows.iter().all(|r| r.exited)
    }

    /// The newest snapshots of every process. The opened dashboard takes its
    /// process's; once that process is gone it keeps showing the last one.
    pub(crate) fn on_fleet(&mut self, fleet: Arc<Fleet>) {
        self.rows = fleet.snapshots.iter().map(|s| ProcessRow::of(s)).collect();
        if let Some(pid) = self.selected_pid {
            if let Some(i) = self.rows.iter().position(|r| r.pid == pid) {
                self.selected = i;
            }
        }
        self.selected = self.selected.min(self.rows.len().saturating_sub(1));
        self.selected_pid = self.rows.get(self.selected).map(|r| r.pid);
        if let Some(app) = &mut self.open
            && let Some(snapshot) = snapshot_of(&fleet, app.settings.pid)
        {
            app.on_snapshot(snapshot);
        }
        self.fleet = Some(fleet);
    }

    fn move_by(&mut self, delta: isize) {
        let last = self.rows.len().saturating_sub(1) as isize;
        self.selected = (self.selected as isize).saturating_add(delta).clamp(0, last.max(0)) as usize;
        self.selected_pid = self.rows.get(self.selected).map(|r| r.pid);
    }

    fn open_selected(&mut self) {
        let (Some(row), Some(fleet)) = (self.rows.get(self.selected), &self.fleet) else { return };
        let Some(snapshot) = snapshot_of(fleet, row.pid) else { return };
        let settings = Settings { pid: row.pid, back_to_processes: true, ..self.settings.clone() };
        let mut app = App::new(settings);
        app.on_snapshot(snapshot);
        self.open = Some(app);
    }

    pub fn handle_key(&mut self, key: KeyEvent) -> Action {
        if key.kind == KeyEventKind::Release {
            return Action::None;
        }
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        if ctrl && matches!(key.code, KeyCode::Char('c' | 'C')) {
            return Action::Quit;
        }
        if let Some(app) = &mut self.open {
            // Esc first closes what the dashboard has open (detail, help,
            // filter); on the bare dashboard it goes back to the list.
            let bare = app.overlay == Overlay::None && !app.filter.editing && app.filter.text.is_empty();
            if key.code == KeyCode::Esc && bare {
                self.open = None;
                return Action::Redraw;
            }
            return handle_key(app, key);
        }
        match key.code {
            KeyCode::Char('q') => return Action::Quit,
            KeyCode::Down | KeyCode::Char('j') => self.move_by(1),
            KeyCode::Up | KeyCode::Char('k') => self.move_by(-1),
            KeyCode::Home | KeyCode::Char('g') => self.move_by(isize::MIN / 2),
            KeyCode::End | KeyCode::Char('G') => self.move_by(isize::MAX / 2),
            KeyCode::Enter | KeyCode::Char('l') | KeyCode::Right => self.open_selected(),
            _ => return Action::None,
        }
        Action::Redraw
    }
}

fn snapshot_of(fleet: &Fleet, pid: u32) -> Option<Arc<Snapshot>> {
    fleet.snapshots.iter().find(|s| s.pid == pid).cloned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{self, fleet};

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    fn fleet_app() -> FleetApp {
        let mut app = FleetApp::new(test_support::settings());
        app.on_fleet(Arc::new(fleet(1.0, 2000)));
        app.on_fleet(Arc::new(fleet(2.0, 4000)));
        app
    }

    #[test]
    fn rows_say_each_process_own_numbers() {
        let app = fleet_app();
        let s = test_support::snapshot();
        let pids: Vec<u32> = app.rows.iter().map(|r| r.pid).collect();
        assert_eq!(pids, [4242, 5151, 6060]);
        let first = &app.rows[0];
        assert_eq!(first.goroutines, s.totals.goroutines_live);
        assert_eq!(first.leaked, s.totals.goroutines_leaked);
        assert_eq!(first.deepest, s.goroutines.iter().map(|g| g.defer_depth).max().expect("goroutines"));
        assert!(app.rows[1].deepest < first.deepest);
        assert_eq!(app.rows[1].leaked, 0);
        assert_eq!(app.rows[1].name, "api");
        assert_eq!(app.rows[1].go_version, "go1.21.13");
    }

    #[test]
    fn enter_opens_the_selected_process_and_esc_goes_back() {
        let mut app = fleet_app();
        assert_eq!(app.handle_key(key(KeyCode::Down)), Action::Redraw);
        assert_eq!(app.handle_key(key(KeyCode::Enter)), Action::Redraw);
        let open = app.open.as_ref().expect("a dashboard");
        assert_eq!(open.snapshot().expect("snapshot").pid, 5151);
        assert_eq!(open.settings.pid, 5151);

        // The opened dashboard follows its process, not the others.
        let mut next = fleet(3.0, 6000);
        Arc::get_mut(&mut next.snapshots[1]).expect("unshared").totals.goroutines_live = 7;
        app.on_fleet(Arc::new(next));
        let open = app.open.as_ref().expect("a dashboard");
        assert_eq!(open.snapshot().expect("snapshot").totals.goroutines_live, 7);
        assert_eq!(open.history.live_records.len(), 2, "two snapshots since it was opened");

        // Esc closes the detail view first, then goes back to the list.
        app.handle_key(key(KeyCode::Enter));
        assert_eq!(app.open.as_ref().expect("a dashboard").overlay, Overlay::Detail);
        app.handle_key(key(KeyCode::Esc));
        assert!(app.open.is_some());
        // q quits from the dashboard as from the list.
        assert_eq!(app.handle_key(key(KeyCode::Char('q'))), Action::Quit);
        app.handle_key(key(KeyCode::Esc));
        assert!(app.open.is_none());
        assert_eq!(app.selected, 1, "back on the process it opened");
        assert_eq!(app.handle_key(key(KeyCode::Char('q'))), Action::Quit);
    }

    #[test]
    fn selection_follows_the_process_when_others_go() {
        let mut app = fleet_app();
        app.handle_key(key(KeyCode::Char('G')));
        assert_eq!(app.rows[app.selected].pid, 6060);
        let mut next = fleet(3.0, 6000);
        next.snapshots.remove(0);
        app.on_fleet(Arc::new(next));
        assert_eq!(app.rows[app.selected].pid, 6060);
        // Its process gone, the selection stays in the list.
        app.on_fleet(Arc::new(Fleet { snapshots: fleet(4.0, 8000).snapshots[..1].to_vec() }));
        assert_eq!(app.selected, 0);
        app.on_fleet(Arc::new(Fleet::default()));
        assert_eq!(app.selected, 0);
        assert_eq!(app.handle_key(key(KeyCode::Enter)), Action::Redraw, "nothing to open, no panic");
        assert!(app.open.is_none());
    }

    #[test]
    fn an_opened_process_that_exits_keeps_its_last_data() {
        let mut app = fleet_app();
        app.handle_key(key(KeyCode::Enter));
        let mut last = fleet(3.0, 6000);
        Arc::get_mut(&mut last.snapshots[0]).expect("unshared").target_exited = true;
        app.on_fleet(Arc::new(last));
        assert!(app.rows[0].exited);
        assert!(!app.all_exited());
        let mut rest = fleet(4.0, 8000);
        rest.snapshots.remove(0);
        app.on_fleet(Arc::new(rest));
        let open = app.open.as_ref().expect("still open");
        assert!(open.target_exited());
        assert_eq!(open.snapshot().expect("snapshot").pid, 4242);
    }
}
