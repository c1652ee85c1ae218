//! The process list of a multi-process session: one row per traced process,
//! with what tells them apart at a glance (goroutines, leaks, deepest chain).
use ratatui::{
    Frame,
    layout::{Alignment, Constraint, Layout, Rect},
    style::{Color, Modifier, Style},
    text::{Line, Span},
    widgets::{Block, Borders, Cell, Paragraph, Row, Table},
};

use crate::tui::{
    fleet::FleetApp,
    format::depth_style,
    ui::{header_style, panel_block, selected_style},
};

pub fn draw(frame: &mut Frame<'_>, area: Rect, app: &FleetApp) {
    let [header, body, footer] =
        Layout::vertical([Constraint::Length(1), Constraint::Min(3), Constraint::Length(1)]).areas(area);
    draw_header(frame, header, app);
    draw_footer(frame, footer);

    if app.rows.is_empty() {
        let text = vec![
            Line::from(""),
            Line::from("no Go process traced yet").style(Style::new().add_modifier(Modifier::BOLD)),
            Line::from("looking for them in /proc every second").style(Style::new().add_modifier(Modifier::DIM)),
        ];
        frame.render_widget(
            Paragraph::new(text).alignment(Alignment::Center).block(Block::new().borders(Borders::ALL)),
            body,
        );
        return;
    }

    let count = app.rows.len();
    let leaking = app.rows.iter().filter(|r| r.leaked > 0).count();
    let title = Line::from(vec![
        Span::raw(format!(" Processes {count}")),
        Span::styled(
            format!(" · {leaking} leaking "),
            if leaking > 0 { Style::new().fg(Color::Red).add_modifier(Modifier::BOLD) } else { Style::new() },
        ),
    ]);
    let header = Row::new(["PID", "NAME", "GO", "GOROUTINES", "LEAKED", "DEEPEST CHAIN", ""]).style(header_style());
    let widths = [
        Constraint::Length(8),
        Constraint::Fill(1),
        Constraint::Length(10),
        Constraint::Length(10),
        Constraint::Length(8),
        Constraint::Length(13),
        Constraint::Length(7),
    ];
    // Only the rows that fit, the selected one among them.
    let height = body.height.saturating_sub(3) as usize;
    let first = (app.selected + 1).saturating_sub(height.max(1));
    let rows: Vec<Row<'_>> = app
        .rows
        .iter()
        .enumerate()
        .skip(first)
        .take(height)
        .map(|(i, r)| {
            let leaked_style =
                if r.leaked > 0 { Style::new().fg(Color::Red).add_modifier(Modifier::BOLD) } else { Style::new() };
            let status = if r.exited { Span::styled("exited", Style::new().fg(Color::Red)) } else { Span::raw("") };
            let style = if i == app.selected { selected_style(true) } else { Style::new() };
            Row::new([
                Cell::from(format!("{:>7}", r.pid)),
                Cell::from(r.name.clone()),
                Cell::from(r.go_version.clone()),
                Cell::from(format!("{:>10}", r.goroutines)),
                Cell::from(Span::styled(format!("{:>6}", r.leaked), leaked_style)),
                Cell::from(Span::styled(format!("{:>13}", r.deepest), depth_style(r.deepest))),
                Cell::from(status),
            ])
            .style(style)
        })
        .collect();
    frame.render_widget(Table::new(rows, widths).header(header).block(panel_block(title, true)), body);
}

fn draw_header(frame: &mut Frame<'_>, area: Rect, app: &FleetApp) {
    let s = &app.settings;
    let mut text = format!(" deferscope │ every {}", humantime::format_duration(s.interval));
    text += &format!(" │ leak after {}", humantime::format_duration(s.leak_after));
    if let Some(addr) = s.metrics_addr {
        text += &format!(" │ metrics http://{addr}/metrics");
    }
    let (badge, badge_style) = if app.feed_closed {
        (" ENDED ", Style::new().bg(Color::DarkGray).fg(Color::White))
    } else {
        (" ● LIVE ", Style::new().bg(Color::Green).fg(Color::Black).add_modifier(Modifier::BOLD))
    };
    let [left, right] =
        Layout::horizontal([Constraint::Min(0), Constraint::Length(badge.chars().count() as u16)]).areas(area);
    let bar = Style::new().bg(Color::Blue).fg(Color::White);
    frame.render_widget(Paragraph::new(text).style(bar), left);
    frame.render_widget(Span::styled(badge, badge_style), right);
}

fn draw_footer(frame: &mut Frame<'_>, area: Rect) {
    let key = |k: &'static str| Span::styled(k, Style::new().fg(Color::Black).bg(Color::Gray));
    let mut spans = Vec::new();
    for (k, what) in [("q", "quit"), ("↑↓ jk", "move"), ("g G", "top/end"), ("Enter", "open")] {
        spans.push(key(k));
        spans.push(Span::raw(format!(" {what}  ")));
    }
    frame.render_widget(Line::from(spans), area);
}
