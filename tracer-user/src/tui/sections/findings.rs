//! Findings: the diagnoses drawn from the numbers, one line each, above the
//! goroutines while there are any.
use ratatui::{
    Frame,
    layout::Rect,
    style::{Color, Modifier, Style},
    text::{Line, Span},
    widgets::{Block, Borders, Paragraph},
};

use crate::{aggregate::model::FindingKind, tui::app::App};

/// Findings listed at most (the JSON has them all).
const MAX_LINES: u16 = 4;

/// Rows the strip takes on a screen `screen_height` high: none without
/// findings or room.
pub fn height(app: &App, screen_height: u16) -> u16 {
    let count = app.snapshot().map_or(0, |s| s.findings.len());
    if count == 0 || screen_height < 24 {
        return 0;
    }
    (count as u16).min(MAX_LINES) + 2
}

fn kind_style(kind: FindingKind) -> Style {
    let color = match kind {
        FindingKind::DeferInLoop | FindingKind::FdPressure | FindingKind::GoroutineLeak => Color::Red,
        FindingKind::LongHeld => Color::Yellow,
    };
    Style::new().fg(color).add_modifier(Modifier::BOLD)
}

pub fn draw(frame: &mut Frame<'_>, area: Rect, app: &App) {
    let Some(snap) = app.snapshot() else { return };
    let lines: Vec<Line<'_>> = snap
        .findings
        .iter()
        .take(usize::from(MAX_LINES))
        .map(|f| {
            Line::from(vec![
                Span::styled(format!("{:<15}", f.kind.as_str()), kind_style(f.kind)),
                Span::raw(f.message.clone()),
            ])
        })
        .collect();
    let title = Line::from(vec![
        Span::raw(" Findings "),
        Span::styled(snap.findings.len().to_string(), Style::new().add_modifier(Modifier::BOLD)),
        Span::raw(" "),
    ]);
    let block = Block::new().borders(Borders::ALL).border_style(Style::new().fg(Color::Red)).title(title);
    frame.render_widget(Paragraph::new(lines).block(block), area);
}
