//! The frame: lays out the sections and draws them. Generic over the
//! backend, so the screens are tested with `TestBackend`.
use ratatui::{
    Frame, Terminal,
    backend::Backend,
    layout::{Alignment, Constraint, Layout, Rect},
    style::{Color, Modifier, Style},
    text::{Line, Span},
    widgets::{Block, Borders, Paragraph},
};

use super::{
    app::{App, Overlay, Panel},
    fleet::FleetApp,
    sections,
};

/// Draws one frame.
pub fn render<B: Backend>(terminal: &mut Terminal<B>, app: &mut App) -> Result<(), B::Error> {
    terminal.draw(|frame| draw(frame, app)).map(|_| ())
}

/// Draws one frame of a multi-process session: the opened process's
/// dashboard, or the process list.
pub fn render_fleet<B: Backend>(terminal: &mut Terminal<B>, fleet: &mut FleetApp) -> Result<(), B::Error> {
    terminal
        .draw(|frame| match &mut fleet.open {
            Some(app) => draw(frame, app),
            None => sections::processes::draw(frame, frame.area(), fleet),
        })
        .map(|_| ())
}

pub fn draw(frame: &mut Frame<'_>, app: &mut App) {
    app.prepare();
    let area = frame.area();
    let header_height = sections::header::height(app);
    let [header, body, footer] =
        Layout::vertical([Constraint::Length(header_height), Constraint::Min(3), Constraint::Length(1)]).areas(area);
    sections::header::draw(frame, header, app);
    draw_footer(frame, footer, app);

    if app.snapshot().is_none() {
        let text = vec![
            Line::from(""),
            Line::from(format!("attaching to process {} …", app.settings.pid)).bold(),
            Line::from("waiting for the first snapshot").dim(),
        ];
        frame.render_widget(
            Paragraph::new(text).alignment(Alignment::Center).block(Block::new().borders(Borders::ALL)),
            body,
        );
        return;
    }

    if app.overlay == Overlay::Detail {
        sections::detail::draw(frame, body, app);
    } else {
        draw_dashboard(frame, body, app);
    }
    if app.overlay == Overlay::Help {
        sections::help::draw(frame, area, app);
    }
}

fn draw_dashboard(frame: &mut Frame<'_>, area: Rect, app: &mut App) {
    let h = area.height;
    let charts = match h {
        36.. => 7,
        24.. => 5,
        _ => 0,
    };
    let panels = match h {
        40.. => 11,
        30.. => 9,
        20.. => 7,
        _ => 0,
    };
    let findings = sections::findings::height(app, h);
    let [findings_area, table, bottom, chart_area] = Layout::vertical([
        Constraint::Length(findings),
        Constraint::Min(5),
        Constraint::Length(panels),
        Constraint::Length(charts),
    ])
    .areas(area);
    if findings > 0 {
        sections::findings::draw(frame, findings_area, app);
    }
    sections::goroutines::draw(frame, table, app);
    if panels > 0 {
        let [leaks, sites] = Layout::horizontal([Constraint::Percentage(60), Constraint::Percentage(40)]).areas(bottom);
        sections::leaks::draw(frame, leaks, app);
        sections::sites::draw(frame, sites, app);
    }
    if charts > 0 {
        sections::charts::draw(frame, chart_area, app);
    }
}

/// A panel's frame; the focused one stands out.
pub fn panel_block(title: Line<'static>, focused: bool) -> Block<'static> {
    let style = if focused { Style::new().fg(Color::Cyan) } else { Style::new().fg(Color::DarkGray) };
    Block::new().borders(Borders::ALL).border_style(style).title(title.style(if focused {
        Style::new().add_modifier(Modifier::BOLD)
    } else {
        Style::new()
    }))
}

/// The style of a selected row: bright in the focused panel, a hint elsewhere.
pub fn selected_style(focused: bool) -> Style {
    if focused {
        Style::new().bg(Color::Cyan).fg(Color::Black)
    } else {
        Style::new().add_modifier(Modifier::REVERSED | Modifier::DIM)
    }
}

pub fn header_style() -> Style {
    Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD)
}

/// ` sort: depth ▼`-style suffix for a column title.
pub fn sorted(title: &str, on: bool) -> String {
    if on { format!("{title}▼") } else { title.to_owned() }
}

pub fn focused(app: &App, panel: Panel) -> bool {
    app.focus == panel && !app.filter.editing
}

fn key(k: &'static str) -> Span<'static> {
    Span::styled(k, Style::new().fg(Color::Black).bg(Color::Gray))
}

fn draw_footer(frame: &mut Frame<'_>, area: Rect, app: &App) {
    let mut spans = Vec::new();
    if app.filter.editing {
        spans.push(Span::styled(" / ", Style::new().fg(Color::Black).bg(Color::Yellow)));
        spans.push(Span::raw(" "));
        spans.push(Span::styled(app.filter.text.clone(), Style::new().fg(Color::Yellow)));
        spans.push(Span::styled("█", Style::new().fg(Color::Yellow).add_modifier(Modifier::SLOW_BLINK)));
        spans.push(Span::styled("   function, file or file:line · Enter keep · Esc clear", Style::new().dim()));
        frame.render_widget(Line::from(spans), area);
        return;
    }
    let hints: &[(&str, &str)] = match app.overlay {
        Overlay::Detail => &[("Esc", "back"), ("↑↓ jk", "scroll"), ("g G", "top/end"), ("p", "pause"), ("q", "quit")],
        _ if app.settings.back_to_processes => &[
            ("Esc", "processes"),
            ("q", "quit"),
            ("?", "help"),
            ("Tab", "panel"),
            ("↑↓ jk", "move"),
            ("s", "sort"),
            ("/", "filter"),
            ("Enter", "details"),
            ("p", "pause"),
        ],
        _ => &[
            ("q", "quit"),
            ("?", "help"),
            ("Tab", "panel"),
            ("↑↓ jk", "move"),
            ("s", "sort"),
            ("/", "filter"),
            ("Enter", "details"),
            ("p", "pause"),
        ],
    };
    for (k, what) in hints {
        spans.push(key(k));
        spans.push(Span::raw(format!(" {what}  ")));
    }
    if !app.filter.text.is_empty() {
        spans.push(Span::styled(
            format!("filter: {} ", app.filter.text),
            Style::new().fg(Color::Black).bg(Color::Yellow),
        ));
        spans.push(Span::styled(" Esc clears", Style::new().dim()));
    }
    frame.render_widget(Line::from(spans), area);
}

trait Styled {
    fn bold(self) -> Self;
    fn dim(self) -> Self;
}

impl Styled for Line<'_> {
    fn bold(self) -> Self {
        self.style(Style::new().add_modifier(Modifier::BOLD))
    }
    fn dim(self) -> Self {
        self.style(Style::new().add_modifier(Modifier::DIM))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use ratatui::{Terminal, backend::TestBackend};

    use super::*;
    use crate::{
        test_support,
        tui::{app::Panel, keys::handle_key},
    };

    use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

    fn app() -> App {
        let mut app = App::new(test_support::settings());
        app.on_snapshot(Arc::new(test_support::snapshot_at(1.0, 2000)));
        app.on_snapshot(Arc::new(test_support::snapshot_at(2.0, 4000)));
        app
    }

    fn screen(app: &mut App, w: u16, h: u16) -> Terminal<TestBackend> {
        let mut terminal = Terminal::new(TestBackend::new(w, h)).expect("terminal");
        render(&mut terminal, app).expect("draw");
        terminal
    }

    /// The key presses a test types: `\n` Enter, `\t` Tab, `\x1b` Esc, other characters as themselves.
    fn key_events(keys: &str) -> impl Iterator<Item = KeyEvent> + '_ {
        keys.chars().map(|c| {
            let code = match c {
                '\n' => KeyCode::Enter,
                '\t' => KeyCode::Tab,
                '\x1b' => KeyCode::Esc,
                c => KeyCode::Char(c),
            };
            KeyEvent::new(code, KeyModifiers::NONE)
        })
    }

    fn keys(app: &mut App, keys: &str) {
        for key in key_events(keys) {
            handle_key(app, key);
        }
    }

    #[test]
    fn dashboard_160x45() {
        let mut app = app();
        insta::assert_snapshot!(screen(&mut app, 160, 45).backend());
    }

    /// Findings above the goroutines, the deferred call beside its site,
    /// open files among the charts.
    #[test]
    fn dashboard_with_findings_160x45() {
        let mut app = App::new(test_support::settings());
        app.on_snapshot(Arc::new(test_support::diagnosed_snapshot_at(1.0, 2000, 1200)));
        app.on_snapshot(Arc::new(test_support::diagnosed_snapshot_at(2.0, 4000, 1250)));
        insta::assert_snapshot!(screen(&mut app, 160, 45).backend());
    }

    #[test]
    fn goroutine_detail_with_deferred_calls_and_findings() {
        let mut app = App::new(test_support::settings());
        app.on_snapshot(Arc::new(test_support::diagnosed_snapshot_at(1.0, 2000, 1200)));
        app.on_snapshot(Arc::new(test_support::diagnosed_snapshot_at(2.0, 4000, 1250)));
        // The deepest goroutine (18, the defer in a loop) is first.
        keys(&mut app, "\n");
        insta::assert_snapshot!(screen(&mut app, 160, 45).backend());
    }

    #[test]
    fn dashboard_100x30() {
        let mut app = app();
        insta::assert_snapshot!(screen(&mut app, 100, 30).backend());
    }

    #[test]
    fn dashboard_80x24() {
        let mut app = app();
        insta::assert_snapshot!(screen(&mut app, 80, 24).backend());
    }

    #[test]
    fn waiting_for_first_snapshot() {
        let mut app = App::new(test_support::settings());
        insta::assert_snapshot!(screen(&mut app, 100, 12).backend());
    }

    #[test]
    fn filtering() {
        let mut app = app();
        keys(&mut app, "/deep");
        insta::assert_snapshot!(screen(&mut app, 160, 45).backend());
    }

    #[test]
    fn goroutine_detail() {
        let mut app = app();
        keys(&mut app, "\n");
        insta::assert_snapshot!(screen(&mut app, 160, 45).backend());
    }

    #[test]
    fn leak_group_detail() {
        let mut app = app();
        keys(&mut app, "\t\n");
        insta::assert_snapshot!(screen(&mut app, 160, 45).backend());
    }

    /// The test snapshot with its leaked goroutines and group turned into
    /// stuck ones found reachable, each with a six-step retaining path.
    fn stuck_with_paths() -> Arc<crate::aggregate::model::Snapshot> {
        let mut s = test_support::snapshot();
        let mut held = vec!["global main.registry+0x18".to_owned()];
        held.extend((1..5).map(|k| format!("heap 0xc0000{k}0000 ({} B) +0x8", 16 * k)));
        held.push("heap 0xc000050000 (96 B) +0x0 (primitive)".to_owned());
        for g in s.goroutines.iter_mut().filter(|g| g.leaked) {
            g.leaked = false;
            g.leak_reason = Some("reachable: could still be woken".into());
            g.unreachable_for_s = None;
            g.details.get_or_insert_default().retained_by = Some(held.clone());
        }
        for l in &mut s.leaks {
            l.verdict = crate::aggregate::model::Verdict::Stuck;
            l.retained_by = Some(held.clone());
        }
        s.totals.goroutines_stuck += s.totals.goroutines_leaked;
        s.totals.goroutines_leaked = 0;
        Arc::new(s)
    }

    #[test]
    fn stuck_group_detail_says_who_holds_it() {
        let mut app = App::new(test_support::settings());
        app.on_snapshot(stuck_with_paths());
        keys(&mut app, "\t\n");
        insta::assert_snapshot!(screen(&mut app, 160, 45).backend());
    }

    #[test]
    fn stuck_goroutine_detail_says_who_holds_it() {
        let mut app = App::new(test_support::settings());
        app.on_snapshot(stuck_with_paths());
        keys(&mut app, "/leakyProducer\n\n");
        insta::assert_snapshot!(screen(&mut app, 160, 45).backend());
    }

    #[test]
    fn help() {
        let mut app = app();
        keys(&mut app, "?");
        insta::assert_snapshot!(screen(&mut app, 100, 30).backend());
    }

    #[test]
    fn target_exited_and_paused() {
        let mut app = app();
        keys(&mut app, "p\tj");
        assert_eq!(app.focus, Panel::Leaks);
        let mut last = test_support::snapshot_at(2.5, 4500);
        last.target_exited = true;
        app.on_snapshot(Arc::new(last));
        insta::assert_snapshot!(screen(&mut app, 100, 30).backend());
    }

    #[test]
    fn no_leaks_yet_and_lost_events() {
        let mut app = App::new(test_support::settings());
        let mut s = test_support::snapshot();
        s.leaks.clear();
        s.totals.goroutines_leaked = 0;
        s.totals.events_lost = 1234;
        for g in &mut s.goroutines {
            g.leaked = false;
            g.stuck = false;
            g.blocked_for_s = None;
        }
        app.on_snapshot(Arc::new(s));
        insta::assert_snapshot!(screen(&mut app, 100, 30).backend());
    }

    fn fleet_app() -> FleetApp {
        let mut app = FleetApp::new(test_support::settings());
        app.on_fleet(Arc::new(test_support::fleet(1.0, 2000)));
        app.on_fleet(Arc::new(test_support::fleet(2.0, 4000)));
        app
    }

    fn fleet_screen(app: &mut FleetApp, w: u16, h: u16) -> Terminal<TestBackend> {
        let mut terminal = Terminal::new(TestBackend::new(w, h)).expect("terminal");
        render_fleet(&mut terminal, app).expect("draw");
        terminal
    }

    fn fleet_keys(app: &mut FleetApp, keys: &str) {
        for key in key_events(keys) {
            app.handle_key(key);
        }
    }

    #[test]
    fn process_list() {
        let mut app = fleet_app();
        fleet_keys(&mut app, "j");
        insta::assert_snapshot!(fleet_screen(&mut app, 100, 12).backend());
    }

    #[test]
    fn process_list_with_an_exited_process() {
        let mut app = fleet_app();
        let mut last = test_support::fleet(3.0, 6000);
        Arc::get_mut(&mut last.snapshots[2]).expect("unshared").target_exited = true;
        app.on_fleet(Arc::new(last));
        insta::assert_snapshot!(fleet_screen(&mut app, 80, 10).backend());
    }

    #[test]
    fn process_list_before_the_first_process() {
        let mut app = FleetApp::new(test_support::settings());
        insta::assert_snapshot!(fleet_screen(&mut app, 80, 10).backend());
    }

    #[test]
    fn process_opened_from_the_list_then_back() {
        let mut app = fleet_app();
        fleet_keys(&mut app, "j\n");
        let opened = fleet_screen(&mut app, 100, 30);
        insta::assert_snapshot!(opened.backend());
        // Esc: back on the list, the opened process still selected.
        fleet_keys(&mut app, "\x1b");
        assert!(app.open.is_none());
        let mut list = fleet_app();
        fleet_keys(&mut list, "j");
        assert_eq!(
            fleet_screen(&mut app, 100, 12).backend().to_string(),
            fleet_screen(&mut list, 100, 12).backend().to_string()
        );
    }

    #[test]
    fn tiny_terminal_does_not_panic() {
        let mut app = app();
        for (w, h) in [(1, 1), (10, 3), (20, 8), (40, 10), (60, 15)] {
            screen(&mut app, w, h);
            keys(&mut app, "\n");
            screen(&mut app, w, h);
            keys(&mut app, "\x1b?");
            screen(&mut app, w, h);
            keys(&mut app, "\x1b");
        }
        let mut fleet = fleet_app();
        for (w, h) in [(1, 1), (10, 3), (20, 8), (40, 10), (60, 15)] {
            fleet_keys(&mut fleet, "G");
            fleet_screen(&mut fleet, w, h);
            fleet_keys(&mut fleet, "\n");
            fleet_screen(&mut fleet, w, h);
            fleet_keys(&mut fleet, "\x1b");
        }
    }

    #[test]
    fn renders_100k_goroutines_quickly() {
        let mut app = App::new(test_support::settings());
        app.on_snapshot(Arc::new(test_support::many(100_000)));
        let mut terminal = Terminal::new(TestBackend::new(160, 45)).expect("terminal");
        let t = std::time::Instant::now();
        for _ in 0..20 {
            keys(&mut app, "j");
            render(&mut terminal, &mut app).expect("draw");
        }
        let per_frame = t.elapsed() / 20;
        // Only visible rows are drawn: a frame costs the same for 100 or
        // 100,000 goroutines (bound generous for debug builds).
        assert!(per_frame < std::time::Duration::from_millis(250), "{per_frame:?} per frame");
    }
}
