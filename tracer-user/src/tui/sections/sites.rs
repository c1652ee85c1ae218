//! Defer sites: which `defer` statements push, and which hold records now.
use ratatui::{
    Frame,
    layout::{Constraint, Rect},
    style::{Modifier, Style},
    text::{Line, Span},
    widgets::{Cell, Row, Table},
};

use crate::aggregate::model::DeferSiteView;
use crate::tui::{
    app::{App, Panel, SiteSort, SortOrder as _},
    format::{compact, depth_style, duration, rate, short_function, site_short},
    ui::{focused, header_style, panel_block, selected_style, sorted},
};

/// How long the site's records are held: the median lifetime of those popped
/// while traced, else the age of its oldest pending one (a lower bound: it is
/// not popped yet).
fn held_for(s: &DeferSiteView) -> String {
    match (&s.lifetime_s, s.oldest_live_s) {
        (Some(l), _) => duration(l.p50),
        (None, Some(oldest)) => format!("≥{}", duration(oldest)),
        (None, None) => "–".to_owned(),
    }
}

pub fn draw(frame: &mut Frame<'_>, area: Rect, app: &mut App) {
    let focus = focused(app, Panel::Sites);
    let height = area.height.saturating_sub(3) as usize;
    let shown = app.sites.rows().len();
    let range = app.sites.nav.visible(shown, height);
    let Some(snap) = app.snapshot() else { return };
    let title = Line::from(vec![
        Span::raw(" Defer sites "),
        Span::styled(shown.to_string(), Style::new().add_modifier(Modifier::BOLD)),
        Span::raw(format!(" · sort: {} ", app.sites.sort.label())),
    ]);
    let sort = app.sites.sort;
    // HELD needs room: a narrow panel keeps the site readable instead.
    let held = area.width >= 60;
    let mut header = vec![
        Cell::from(sorted("  LIVE", sort == SiteSort::Live)),
        Cell::from(sorted("PUSH/S", sort == SiteSort::PushRate)),
        Cell::from(sorted("PUSHED", sort == SiteSort::Pushed)),
    ];
    let mut widths = vec![Constraint::Length(7), Constraint::Length(7), Constraint::Length(7)];
    if held {
        header.push(Cell::from("  HELD"));
        widths.push(Constraint::Length(7));
    }
    header.push(Cell::from("SITE"));
    widths.push(Constraint::Fill(1));
    let header = Row::new(header).style(header_style());
    let rows: Vec<Row<'_>> = range
        .map(|row| {
            let i = app.sites.rows()[row] as usize;
            let s = &snap.defer_sites[i];
            let style = if row == app.sites.nav.selected { selected_style(focus) } else { Style::new() };
            let mut cells = vec![
                Cell::from(Span::styled(format!("{:>6}", s.live), depth_style(s.live))),
                Cell::from(format!("{:>6}", rate(app.history.site_rate(i)))),
                Cell::from(format!("{:>6}", compact(s.pushed as f64))),
            ];
            if held {
                cells.push(Cell::from(format!("{:>6}", held_for(s))));
            }
            cells.push(Cell::from(match &s.deferred {
                // What the records will call, after the statement.
                Some(d) => format!("{} → {}", site_short(&s.site), short_function(&d.function)),
                None => site_short(&s.site),
            }));
            Row::new(cells).style(style)
        })
        .collect();
    let empty = rows.is_empty();
    frame.render_widget(Table::new(rows, widths).header(header).block(panel_block(title, focus)), area);
    if empty && area.height > 4 {
        let r = Rect { x: area.x + 2, y: area.y + 2, width: area.width.saturating_sub(4), height: 1 };
        frame.render_widget(Line::from("no defer seen yet").style(Style::new().add_modifier(Modifier::DIM)), r);
    }
}
