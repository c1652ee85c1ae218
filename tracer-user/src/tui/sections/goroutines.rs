//! The goroutine table: one row per goroutine, only the visible ones built.
use ratatui::{
    Frame,
    layout::{Constraint, Rect},
    style::{Color, Modifier, Style},
    text::{Line, Span},
    widgets::{Cell, Row, Table},
};

use crate::{
    goruntime::GoroutineStatus,
    tui::{
        app::{App, GoroutineSort, Panel, SortOrder as _},
        format::{bar, depth_style, duration, opt_site_short},
        ui::{focused, header_style, panel_block, selected_style, sorted},
    },
};

const BAR: usize = 8;

pub fn draw(frame: &mut Frame<'_>, area: Rect, app: &mut App) {
    let focus = focused(app, Panel::Goroutines);
    let height = area.height.saturating_sub(3) as usize; // borders + header row
    let shown = app.goroutines.rows().len();
    let range = app.goroutines.nav.visible(shown, height);
    let Some(snap) = app.snapshot() else { return };
    let total = snap.goroutines.len();

    let count = if app.filter.text.is_empty() { format!("{total}") } else { format!("{shown} of {total} match") };
    let position = if shown > height && height > 0 {
        format!(" · {}/{}", app.goroutines.nav.selected + 1, shown)
    } else {
        String::new()
    };
    let title = Line::from(vec![
        Span::raw(" Goroutines "),
        Span::styled(count, Style::new().add_modifier(Modifier::BOLD)),
        Span::raw(format!(" · sort: {}{position} ", app.goroutines.sort.label())),
    ]);

    let inner_width = area.width.saturating_sub(2);
    let wide = inner_width >= 130;
    let narrow = inner_width < 80;
    let sort = app.goroutines.sort;
    let mut header = vec![Cell::from(sorted("GOID", sort == GoroutineSort::Goid)), Cell::from("STATE")];
    let mut widths = vec![Constraint::Length(7), Constraint::Length(8)];
    if !narrow {
        header.push(Cell::from("WAIT REASON"));
        widths.push(Constraint::Length(if wide { 16 } else { 13 }));
    }
    header.push(Cell::from(Line::from(sorted("DEFER DEPTH", sort == GoroutineSort::Depth))));
    widths.push(Constraint::Length(7 + BAR as u16));
    if !narrow {
        header.push(Cell::from(sorted("MAX", sort == GoroutineSort::MaxDepth)));
        widths.push(Constraint::Length(6));
    }
    header.push(Cell::from("NEWEST DEFER SITE"));
    widths.push(Constraint::Fill(3));
    if wide {
        header.push(Cell::from("CREATED BY"));
        widths.push(Constraint::Fill(2));
    }
    header.push(Cell::from(sorted("BLOCKED", sort == GoroutineSort::BlockedFor)));
    widths.push(Constraint::Length(8));

    let max = app.max_depth;
    let rows = range.clone().filter_map(|row| {
        let g = app.goroutine_at(row)?;
        let state = if g.leaked {
            Span::styled("LEAKED", Style::new().fg(Color::Red).add_modifier(Modifier::BOLD))
        } else if g.stuck {
            Span::styled("stuck", Style::new().fg(Color::Yellow))
        } else {
            let style = match g.state {
                GoroutineStatus::Running => Style::new().fg(Color::Green),
                GoroutineStatus::Runnable => Style::new().fg(Color::Cyan),
                _ => Style::new(),
            };
            Span::styled(g.state.as_str(), style)
        };
        let depth = if g.depth_exact { g.defer_depth.to_string() } else { format!("~{}", g.defer_depth) };
        let style = depth_style(g.defer_depth);
        let mut cells = vec![Cell::from(g.goid.to_string()), Cell::from(state)];
        if !narrow {
            cells.push(Cell::from(g.wait_reason.as_deref().unwrap_or_default().to_owned()));
        }
        cells.push(Cell::from(Line::from(vec![
            Span::styled(format!("{depth:>6} "), style),
            Span::styled(bar(g.defer_depth, max, BAR), style),
        ])));
        if !narrow {
            cells.push(Cell::from(format!("{:>5}", g.max_defer_depth)));
        }
        cells.push(Cell::from(opt_site_short(&g.top_defer_site)));
        if wide {
            cells.push(Cell::from(opt_site_short(&g.created_by)));
        }
        let blocked = g.blocked_for_s.map(duration).unwrap_or_default();
        let blocked_style = if g.leaked {
            Style::new().fg(Color::Red)
        } else if g.stuck {
            Style::new().fg(Color::Yellow)
        } else {
            Style::new()
        };
        cells.push(Cell::from(Span::styled(format!("{blocked:>7}"), blocked_style)));
        let mut row_style = if g.system { Style::new().fg(Color::DarkGray) } else { Style::new() };
        if row == app.goroutines.nav.selected {
            row_style = row_style.patch(selected_style(focus));
        }
        Some(Row::new(cells).style(row_style))
    });
    let rows: Vec<Row<'_>> = rows.collect();
    let empty = rows.is_empty();
    let table =
        Table::new(rows, widths).header(Row::new(header).style(header_style())).block(panel_block(title, focus));
    frame.render_widget(table, area);
    if empty && area.height > 4 {
        let msg =
            if app.filter.text.is_empty() { "no goroutines" } else { "no goroutine matches the filter (Esc clears)" };
        let r = Rect { x: area.x + 2, y: area.y + 2, width: area.width.saturating_sub(4), height: 1 };
        frame.render_widget(Line::from(msg).style(Style::new().add_modifier(Modifier::DIM)), r);
    }
}
