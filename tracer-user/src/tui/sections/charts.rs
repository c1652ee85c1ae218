//! Sparklines over time, one sample per snapshot.
use ratatui::{
    Frame,
    layout::{Constraint, Layout, Rect},
    style::{Color, Modifier, Style},
    text::{Line, Span},
    widgets::{Block, Borders, Sparkline},
};

use crate::tui::{
    app::{App, Series},
    format::compact,
};

pub fn draw(frame: &mut Frame<'_>, area: Rect, app: &App) {
    let h = &app.history;
    let mut charts: Vec<(&str, &str, &Series, Color)> = vec![
        ("live defer records", "defers", &h.live_records, Color::Yellow),
        ("pushes/s", "pushes/s", &h.pushes_per_s, Color::Cyan),
        ("live goroutines", "goroutines", &h.goroutines_live, Color::Green),
        ("leaked goroutines", "leaked", &h.goroutines_leaked, Color::Red),
    ];
    // Open files beside the records, so a pile of `Close` defers shows next
    // to the descriptors it holds (when /proc could be read).
    if h.open_fds.latest().is_some() {
        charts.insert(1, ("open files", "fds", &h.open_fds, Color::Magenta));
    }
    let areas = Layout::horizontal(vec![Constraint::Fill(1); charts.len()]).split(area);
    for ((long, short, series, color), area) in charts.into_iter().zip(areas.iter()) {
        let width = area.width.saturating_sub(2) as usize;
        let now = series.latest().map_or_else(|| "–".into(), |v| compact(v as f64));
        let max = series.max_last(width);
        let max_label = format!(" max {} ", compact(max as f64));
        // The long name, the value and the max need room; shorten in order.
        let name = if long.len() + now.len() + max_label.len() + 5 <= width { long } else { short };
        let max_label = if name.len() + now.len() + max_label.len() + 5 <= width { max_label } else { String::new() };
        let block = Block::new()
            .borders(Borders::ALL)
            .border_style(Style::new().fg(Color::DarkGray))
            .title(Line::from(vec![
                Span::raw(format!(" {name} ")),
                Span::styled(format!("{now} "), Style::new().fg(color).add_modifier(Modifier::BOLD)),
            ]))
            .title_top(Line::from(max_label).right_aligned().style(Style::new().fg(Color::Gray)));
        // Newest sample at the right edge, like top's graphs: pad the left
        // with absent bars until there is enough history.
        let pad = width.saturating_sub(series.len());
        let data: Vec<Option<u64>> = std::iter::repeat_n(None, pad).chain(series.last(width).map(Some)).collect();
        frame.render_widget(
            Sparkline::default().block(block).data(data).max(max.max(1)).style(Style::new().fg(color)),
            *area,
        );
    }
}
