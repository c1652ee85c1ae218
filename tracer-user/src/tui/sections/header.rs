//! Top lines: the target, how deferscope runs, the totals and rates.
use ratatui::{
    Frame,
    layout::{Constraint, Layout, Rect},
    style::{Color, Modifier, Style},
    text::{Line, Span},
    widgets::Paragraph,
};

use crate::{
    aggregate::model::{Mode, ProbeState},
    tui::{
        app::App,
        format::{duration, rate},
    },
};

pub fn height(app: &App) -> u16 {
    if app.target_exited() { 3 } else { 2 }
}

fn sep() -> Span<'static> {
    Span::styled(" │ ", Style::new().fg(Color::DarkGray))
}

fn label(s: &str) -> Span<'static> {
    Span::styled(s.to_owned(), Style::new().fg(Color::Gray))
}

fn value(s: String) -> Span<'static> {
    Span::styled(s, Style::new().add_modifier(Modifier::BOLD))
}

pub fn draw(frame: &mut Frame<'_>, area: Rect, app: &App) {
    let bar = Style::new().bg(Color::Blue).fg(Color::White);
    let row = |i: u16| Rect { y: area.y + i, height: 1, ..area }.intersection(area);
    let rows = [row(0), row(1), row(2)];

    // Line 1: who and how.
    let (badge, badge_style) = if app.target_exited() {
        (" TARGET EXITED ", Style::new().bg(Color::Red).fg(Color::White).add_modifier(Modifier::BOLD))
    } else if app.paused {
        (" PAUSED ", Style::new().bg(Color::Yellow).fg(Color::Black).add_modifier(Modifier::BOLD))
    } else if app.feed_closed {
        (" ENDED ", Style::new().bg(Color::DarkGray).fg(Color::White))
    } else {
        (" ● LIVE ", Style::new().bg(Color::Green).fg(Color::Black).add_modifier(Modifier::BOLD))
    };
    let [left, right] =
        Layout::horizontal([Constraint::Min(0), Constraint::Length(badge.chars().count() as u16)]).areas(rows[0]);
    let s = &app.settings;
    let mut spans = vec![Span::styled(" deferscope ", Style::new().add_modifier(Modifier::BOLD))];
    let mut push = |text: String| {
        spans.push(Span::styled("│ ", Style::new().fg(Color::Gray)));
        spans.push(Span::raw(text + " "));
    };
    match app.snapshot() {
        Some(snap) => {
            push(format!("pid {} {}", snap.pid, snap.exe));
            push(format!("{} {}", snap.go_version, snap.arch));
            push(format!("traced {}", duration(snap.trace_uptime_s)));
        }
        None => push(format!("pid {}", s.pid)),
    }
    push(format!("every {}", humantime::format_duration(s.interval)));
    push(format!("leak after {}", humantime::format_duration(s.leak_after)));
    if let Some(top) = s.top {
        push(format!("top {top}"));
    }
    if let Some(addr) = s.metrics_addr {
        push(format!("metrics http://{addr}/metrics"));
    }
    // The overhead governor detached probes: say so, and what it estimates.
    if let Some(snap) = app.snapshot().filter(|s| s.mode == Mode::Sampled) {
        let detached = snap.probe_hits.iter().filter(|p| p.state == ProbeState::Detached).count();
        let estimate = snap.overhead.as_ref().map_or(0.0, |o| o.estimate_ratio * 100.0);
        spans.push(Span::styled(
            format!(" SAMPLED: {detached} probes off, overhead {estimate:.1}% "),
            Style::new().bg(Color::Magenta).fg(Color::White).add_modifier(Modifier::BOLD),
        ));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)).style(bar), left);
    frame.render_widget(Paragraph::new(Span::styled(badge, badge_style)), right);

    // Line 2: the numbers.
    if let Some(snap) = app.snapshot() {
        let t = &snap.totals;
        let st = &app.states;
        let r = &app.history.rates;
        let leaked_style = if t.goroutines_leaked > 0 {
            Style::new().fg(Color::Red).add_modifier(Modifier::BOLD)
        } else {
            Style::new().fg(Color::Green)
        };
        let lost_style = if t.events_lost > 0 {
            Style::new().fg(Color::White).bg(Color::Red).add_modifier(Modifier::BOLD)
        } else {
            Style::new().fg(Color::Green)
        };
        let full = area.width >= 150;
        let mut spans = vec![label(" goroutines "), value(t.goroutines_live.to_string())];
        if full {
            spans.push(Span::styled(
                format!(" ({} run, {} runnable, {} waiting)", st.running, st.runnable, st.waiting),
                Style::new().fg(Color::Gray),
            ));
        }
        spans.extend([sep(), label("leaked "), Span::styled(t.goroutines_leaked.to_string(), leaked_style)]);
        if full {
            // Stuck (blocked long, not proven leaked): apart and quieter.
            spans.push(Span::styled(format!(" stuck {}", t.goroutines_stuck), Style::new().fg(Color::DarkGray)));
        }
        spans.extend([
            sep(),
            label(if full { "defer records " } else { "defers " }),
            value(t.defer_records_live.to_string()),
            sep(),
            label("pushes/s "),
            value(rate(r.pushes_per_s)),
        ]);
        if full {
            spans.extend([label("  pops/s "), value(rate(r.pops_per_s))]);
        }
        spans.extend([
            sep(),
            label("events/s "),
            value(rate(r.events_per_s)),
            label(if full { "  probe hits/s " } else { " probes/s " }),
            value(rate(r.probe_hits_per_s)),
            sep(),
            label("lost "),
            Span::styled(t.events_lost.to_string(), lost_style),
        ]);
        if t.unmatched_pops > 0 {
            spans.push(sep());
            spans.push(label("resyncs "));
            spans.push(Span::styled(t.unmatched_pops.to_string(), Style::new().fg(Color::Yellow)));
        }
        frame.render_widget(Paragraph::new(Line::from(spans)), rows[1]);
    }

    if app.target_exited() {
        let pid = app.snapshot().map_or(app.settings.pid, |s| s.pid);
        let text = format!(" ✖ target exited: process {pid} is gone. Showing the last data it had; press q to quit.");
        frame.render_widget(
            Paragraph::new(text).style(Style::new().bg(Color::Red).fg(Color::White).add_modifier(Modifier::BOLD)),
            rows[2],
        );
    }
}
