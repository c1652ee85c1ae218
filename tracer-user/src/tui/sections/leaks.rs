//! Leak groups: goroutines proven leaked (red) and stuck ones (quieter),
//! grouped by verdict, where they block and where they were created.
use ratatui::{
    Frame,
    layout::{Constraint, Rect},
    style::{Color, Modifier, Style},
    text::{Line, Span},
    widgets::{Cell, Row, Table},
};

use crate::aggregate::model::Verdict;
use crate::tui::{
    app::{App, LeakSort, Panel, SortOrder as _},
    format::{duration, opt_site_short},
    ui::{focused, header_style, panel_block, selected_style, sorted},
};

pub fn draw(frame: &mut Frame<'_>, area: Rect, app: &mut App) {
    let focus = focused(app, Panel::Leaks);
    let height = area.height.saturating_sub(3) as usize;
    let shown = app.leaks.rows().len();
    let range = app.leaks.nav.visible(shown, height);
    let Some(snap) = app.snapshot() else { return };
    let count = |v: Verdict| -> u64 {
        app.leaks.rows().iter().map(|&i| &snap.leaks[i as usize]).filter(|l| l.verdict == v).map(|l| l.count).sum()
    };
    let (leaked, stuck) = (count(Verdict::Leaked), count(Verdict::Stuck));
    let count_style = if leaked > 0 { Style::new().fg(Color::Red).add_modifier(Modifier::BOLD) } else { Style::new() };
    let title = Line::from(vec![
        Span::raw(" Leaks "),
        Span::styled(format!("{leaked} leaked"), count_style),
        Span::styled(format!(" · {stuck} stuck"), Style::new().fg(Color::Yellow)),
        Span::raw(format!(" in {shown} group{}", if shown == 1 { "" } else { "s" })),
        Span::raw(format!(" · sort: {} ", app.leaks.sort.label())),
    ]);
    let sort = app.leaks.sort;
    let wide = area.width >= 70;
    let mut header = vec![Cell::from(sorted("COUNT", sort == LeakSort::Count)), Cell::from("VERDICT")];
    let mut widths = vec![Constraint::Length(6), Constraint::Length(13)];
    if wide {
        header.push(Cell::from("WAIT REASON"));
        widths.push(Constraint::Length(13));
    }
    header.extend([
        Cell::from("BLOCKED AT"),
        Cell::from("CREATED BY"),
        Cell::from(sorted("OLDEST", sort == LeakSort::Oldest)),
    ]);
    widths.extend([Constraint::Fill(1), Constraint::Fill(1), Constraint::Length(7)]);

    let rows: Vec<Row<'_>> = range
        .map(|row| {
            let l = &snap.leaks[app.leaks.rows()[row] as usize];
            let (verdict_style, count_style) = match l.verdict {
                Verdict::Leaked => {
                    (Style::new().fg(Color::Red).add_modifier(Modifier::BOLD), Style::new().fg(Color::Red))
                }
                Verdict::Stuck => (Style::new().fg(Color::Yellow), Style::new().fg(Color::Yellow)),
            };
            let growth = if l.growing { format!(" ↑{:.0}/m", l.growth_per_min) } else { String::new() };
            let mut cells = vec![
                Cell::from(Span::styled(format!("{:>5}", l.count), count_style)),
                Cell::from(Span::styled(format!("{}{growth}", l.verdict.as_str()), verdict_style)),
            ];
            if wide {
                cells.push(Cell::from(l.wait_reason.clone()));
            }
            cells.extend([
                Cell::from(opt_site_short(&l.blocked_at)),
                Cell::from(opt_site_short(&l.created_by)),
                Cell::from(format!("{:>7}", duration(l.oldest_blocked_s))),
            ]);
            let style = if row == app.leaks.nav.selected { selected_style(focus) } else { Style::new() };
            Row::new(cells).style(style)
        })
        .collect();
    let empty = rows.is_empty();
    let table =
        Table::new(rows, widths).header(Row::new(header).style(header_style())).block(panel_block(title, focus));
    frame.render_widget(table, area);
    if empty && area.height > 4 {
        let msg = if !app.filter.text.is_empty() && !snap.leaks.is_empty() {
            "no leak group matches the filter".to_owned()
        } else {
            format!("no leaks: no goroutine stuck for {} or more", duration(snap.leak_after_s))
        };
        let r = Rect { x: area.x + 2, y: area.y + 2, width: area.width.saturating_sub(4), height: 1 };
        frame.render_widget(Line::from(msg).style(Style::new().fg(Color::Green)), r);
    }
}
