//! `?`: the keys, in a box over the dashboard.
use ratatui::{
    Frame,
    layout::{Constraint, Flex, Layout, Rect},
    style::{Color, Modifier, Style},
    text::{Line, Span},
    widgets::{Block, Borders, Clear, Paragraph, Wrap},
};

use crate::tui::app::App;

const KEYS: &[(&str, &str)] = &[
    ("↑ ↓  j k", "move the selection (scroll in details)"),
    ("PgUp PgDn", "move a page (also Ctrl-U / Ctrl-D)"),
    ("g G  Home End", "first / last row"),
    ("Tab  Shift-Tab", "next / previous panel: goroutines, leaks, defer sites"),
    ("s", "cycle the sort column of the focused panel"),
    ("/", "filter by function, file or file:line (Enter keeps, Esc clears)"),
    ("Enter", "details: goroutine stack and defer chain, or leak group;"),
    ("", "on a defer site: filter the goroutines to that site"),
    ("Esc", "back from details, clear the filter"),
    ("p  Space", "pause / resume updates"),
    ("?", "this help"),
    ("q  Ctrl-C", "quit (the target keeps running)"),
];

pub fn draw(frame: &mut Frame<'_>, area: Rect, app: &App) {
    let mut lines: Vec<Line<'_>> = KEYS
        .iter()
        .map(|(k, what)| {
            Line::from(vec![
                Span::styled(format!(" {k:<15}"), Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD)),
                Span::raw(*what),
            ])
        })
        .collect();
    lines.push(Line::from(""));
    let leak_after = humantime::format_duration(app.settings.leak_after).to_string();
    let legend = [
        ("DEFER DEPTH", "live defer records of the goroutine (~: estimated while resyncing)".to_owned()),
        ("LEAKED", format!("blocked on a channel, select, lock or WaitGroup for {leak_after}+")),
        ("BLOCKED", "how long it has been blocked without running".to_owned()),
        ("HELD", "median life of a site's records (≥: oldest still pending)".to_owned()),
    ];
    for (name, what) in legend {
        lines.push(Line::from(vec![
            Span::styled(format!(" {name:<15}"), Style::new().fg(Color::Cyan)),
            Span::styled(what, Style::new().fg(Color::Gray)),
        ]));
    }
    let width = area.width.saturating_sub(4).min(84);
    let height = (lines.len() as u16 + 4).min(area.height);
    let [popup] = Layout::horizontal([Constraint::Length(width)]).flex(Flex::Center).areas(area);
    let [popup] = Layout::vertical([Constraint::Length(height)]).flex(Flex::Center).areas(popup);
    frame.render_widget(Clear, popup);
    frame.render_widget(
        Paragraph::new(lines).wrap(Wrap { trim: false }).block(
            Block::new()
                .borders(Borders::ALL)
                .border_style(Style::new().fg(Color::Cyan))
                .title(" deferscope keys (any key closes) ")
                .padding(ratatui::widgets::Padding::vertical(1)),
        ),
        popup,
    );
}
