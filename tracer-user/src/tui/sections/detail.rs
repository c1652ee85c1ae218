//! Enter: one goroutine (state, findings, defer chain by site with what each
//! site defers and how long its records live, full stack, creation site) or one leak group (its sites and a sample goroutine's stack).
use ratatui::{
    Frame,
    layout::Rect,
    style::{Color, Modifier, Style},
    text::{Line, Span},
    widgets::{Block, Borders, Paragraph},
};

use crate::{
    aggregate::model::{DeferSiteView, Finding, GoroutineView, LeakGroup, Site, Verdict},
    tui::{
        app::{App, DetailSubject},
        format::duration,
    },
};

fn label(name: &str) -> Span<'static> {
    Span::styled(format!("  {name:<13}"), Style::new().fg(Color::Gray))
}

fn section(title: String) -> Line<'static> {
    Line::from(Span::styled(format!(" {title}"), Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD)))
}

fn site_spans(site: &Site, width: usize) -> Vec<Span<'static>> {
    vec![
        Span::styled(format!("{:<width$}", site.function), Style::new().add_modifier(Modifier::BOLD)),
        Span::raw("  "),
        Span::styled(format!("{}:{}", site.file, site.line), Style::new().fg(Color::Cyan)),
    ]
}

fn opt_site(site: &Option<Site>) -> Vec<Span<'static>> {
    match site {
        Some(s) => site_spans(s, 0),
        None => vec![Span::styled("unknown", Style::new().fg(Color::DarkGray))],
    }
}

fn field(name: &str, mut value: Vec<Span<'static>>) -> Line<'static> {
    value.insert(0, label(name));
    Line::from(value)
}

/// Steps of a retaining path shown in full; longer paths keep their root
/// and the objects nearest the primitive, the middle elided.
const HELD_BY_STEPS: usize = 5;

/// The "held by" lines of a stuck goroutine found reachable: who holds its
/// primitive, root first, one step a line (`GoroutineView::retained_by`).
fn held_by(path: Option<&[String]>) -> Vec<Line<'static>> {
    let Some(path) = path.filter(|p| !p.is_empty()) else { return Vec::new() };
    let shown: Vec<String> = if path.len() > HELD_BY_STEPS {
        let tail = HELD_BY_STEPS - 2;
        let mut shown = vec![path[0].clone(), format!("… {} more objects …", path.len() - 1 - tail)];
        shown.extend(path[path.len() - tail..].iter().cloned());
        shown
    } else {
        path.to_vec()
    };
    let style = Style::new().fg(Color::Yellow);
    shown
        .into_iter()
        .enumerate()
        .map(|(k, step)| match k {
            0 => field("held by", vec![Span::styled(step, style)]),
            _ => field("", vec![Span::styled(format!("→ {step}"), style)]),
        })
        .collect()
}

fn stack_lines(lines: &mut Vec<Line<'static>>, g: &GoroutineView) {
    match g.stack() {
        Some(stack) if !stack.is_empty() => {
            let width = stack.iter().map(|s| s.function.chars().count()).max().unwrap_or(0).min(70);
            for (i, frame) in stack.iter().enumerate() {
                let runtime = frame.function.starts_with("runtime.");
                let mut spans = vec![Span::styled(format!("  {i:>3}  "), Style::new().fg(Color::DarkGray))];
                spans.extend(site_spans(frame, width));
                let mut line = Line::from(spans);
                if runtime {
                    line = line.style(Style::new().add_modifier(Modifier::DIM));
                }
                lines.push(line);
            }
        }
        _ => lines.push(Line::from(Span::styled("  (stack not available)", Style::new().fg(Color::DarkGray)))),
    }
}

/// What a chain entry's site defers and how long its records live, from the
/// snapshot's site list.
fn site_facts(site: &DeferSiteView) -> Option<Line<'static>> {
    let mut facts = Vec::new();
    if let Some(d) = &site.deferred {
        facts.push(format!("defers {}", d.function));
    }
    if let Some(l) = &site.lifetime_s {
        facts.push(format!(
            "held p50 {} p99 {} max {} ({} popped)",
            duration(l.p50),
            duration(l.p99),
            duration(l.max),
            l.count
        ));
    }
    if let Some(o) = site.oldest_live_s {
        facts.push(format!("oldest pending {}{}", if site.oldest_live_lower_bound { "≥" } else { "" }, duration(o)));
    }
    (!facts.is_empty())
        .then(|| Line::from(Span::styled(format!("            {}", facts.join(" · ")), Style::new().fg(Color::Gray))))
}

fn goroutine_lines(
    lines: &mut Vec<Line<'static>>,
    g: &GoroutineView,
    leak_after: f64,
    sites: &[DeferSiteView],
    findings: &[Finding],
) {
    let mut state = vec![Span::styled(g.state.as_str(), Style::new().add_modifier(Modifier::BOLD))];
    if let Some(w) = &g.wait_reason {
        state.push(Span::raw(format!(" ({w})")));
    }
    if g.system {
        state.push(Span::styled("  runtime goroutine", Style::new().fg(Color::DarkGray)));
    }
    lines.push(field("state", state));
    if let Some(b) = g.blocked_for_s {
        let mut v = vec![Span::raw(duration(b))];
        if let Some(at) = &g.blocked_at {
            v.push(Span::raw(" at "));
            v.extend(site_spans(at, 0));
        }
        lines.push(field("blocked for", v));
    }
    let reason = g.leak_reason.clone().unwrap_or_default();
    let verdict = if g.leaked {
        let since = g.unreachable_for_s.map(|s| format!(" for {}", duration(s))).unwrap_or_default();
        Span::styled(format!("LEAKED: {reason}{since}"), Style::new().fg(Color::Red).add_modifier(Modifier::BOLD))
    } else if g.stuck {
        Span::styled(
            format!("stuck: blocked for {} or more; {reason}", duration(leak_after)),
            Style::new().fg(Color::Yellow),
        )
    } else {
        Span::styled("no", Style::new().fg(Color::Green))
    };
    lines.push(field("leaked", vec![verdict]));
    lines.extend(held_by(g.retained_by()));
    let exact = if g.depth_exact { "" } else { "  (estimated: resyncing from memory)" };
    lines.push(field(
        "defer depth",
        vec![
            Span::styled(g.defer_depth.to_string(), crate::tui::format::depth_style(g.defer_depth)),
            Span::raw(format!("  (max seen {}){exact}", g.max_defer_depth)),
        ],
    ));
    if let Some(f) = &g.start_function {
        lines.push(field("started in", vec![Span::raw(f.to_string())]));
    }
    let mut created = opt_site(&g.created_by);
    if let Some(p) = g.parent_goid {
        created.push(Span::styled(format!("  by goroutine {p}"), Style::new().fg(Color::Gray)));
    }
    lines.push(field("created by", created));
    for f in findings.iter().filter(|f| f.goroutine == Some(g.goid)) {
        lines.push(field(
            "finding",
            vec![
                Span::styled(
                    format!("{}: ", f.kind.as_str()),
                    Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
                ),
                Span::raw(f.message.clone()),
            ],
        ));
    }
    lines.push(Line::from(""));

    let records: u64 = g.defer_chain().map_or(0, |c| c.iter().map(|e| e.count).sum());
    lines.push(section(format!("Defer chain: {records} records by site, newest first")));
    match g.defer_chain() {
        Some(chain) if !chain.is_empty() => {
            let width = chain
                .iter()
                .filter_map(|e| e.site.as_ref())
                .map(|s| s.function.chars().count())
                .max()
                .unwrap_or(0)
                .min(70);
            for e in chain {
                let mut spans =
                    vec![Span::styled(format!("  {:>7} × ", e.count), crate::tui::format::depth_style(e.count))];
                match &e.site {
                    Some(s) => spans.extend(site_spans(s, width)),
                    None => spans.push(Span::styled("unknown site", Style::new().fg(Color::DarkGray))),
                }
                lines.push(Line::from(spans));
                let view = e.site.as_ref().and_then(|s| sites.iter().find(|v| v.site == *s));
                lines.extend(view.and_then(site_facts));
            }
        }
        Some(_) => lines.push(Line::from(Span::styled("  (empty)", Style::new().fg(Color::DarkGray)))),
        None => lines.push(Line::from(Span::styled("  (not available)", Style::new().fg(Color::DarkGray)))),
    }
    lines.push(Line::from(""));
    lines.push(section("Stack, innermost first".into()));
    stack_lines(lines, g);
}

fn group_lines(lines: &mut Vec<Line<'static>>, l: &LeakGroup, sample: Option<&GoroutineView>) {
    lines.push(field(
        "goroutines",
        vec![match l.verdict {
            Verdict::Leaked => Span::styled(
                format!("{} leaked: proven, nothing can wake them", l.count),
                Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
            ),
            Verdict::Stuck => Span::styled(
                format!("{} stuck: blocked long, not proven leaked", l.count),
                Style::new().fg(Color::Yellow),
            ),
        }],
    ));
    if l.growing {
        lines.push(field("growing", vec![Span::raw(format!("{:+.1} per minute", l.growth_per_min))]));
    }
    lines.extend(held_by(l.retained_by.as_deref()));
    lines.push(field("wait reason", vec![Span::raw(l.wait_reason.clone())]));
    lines.push(field("blocked at", opt_site(&l.blocked_at)));
    lines.push(field("created by", opt_site(&l.created_by)));
    lines.push(field("oldest", vec![Span::raw(format!("blocked for {}", duration(l.oldest_blocked_s)))]));
    let ids: Vec<String> = l.sample_goids.iter().map(u64::to_string).collect();
    lines.push(field("some goids", vec![Span::raw(ids.join(" "))]));
    lines.push(Line::from(""));
    match sample {
        Some(g) => {
            lines.push(section(format!("Stack of goroutine {} (one of the group), innermost first", g.goid)));
            stack_lines(lines, g);
            if g.defer_depth > 0 {
                lines.push(Line::from(""));
                lines.push(section(format!("Its defer chain: {} records", g.defer_depth)));
                for e in g.defer_chain().unwrap_or_default() {
                    let mut spans = vec![Span::raw(format!("  {:>7} × ", e.count))];
                    spans.extend(opt_site(&e.site));
                    lines.push(Line::from(spans));
                }
            }
        }
        None => lines.push(Line::from(Span::styled(
            "  (no goroutine of the group in this snapshot)",
            Style::new().fg(Color::DarkGray),
        ))),
    }
}

pub fn draw(frame: &mut Frame<'_>, area: Rect, app: &mut App) {
    let leak_after = app.snapshot().map_or(app.settings.leak_after.as_secs_f64(), |s| s.leak_after_s);
    let snapshot = app.shared_snapshot();
    let (sites, findings) = snapshot.as_deref().map_or((&[][..], &[][..]), |s| (&s.defer_sites[..], &s.findings[..]));
    let Some(detail) = app.detail.as_mut() else {
        return;
    };
    let mut lines = Vec::new();
    let mut title = match &detail.subject {
        DetailSubject::Goroutine(goid) => format!(" Goroutine {goid} "),
        DetailSubject::Leak(_) => " Leak group ".to_owned(),
    };
    if detail.gone {
        title.push_str(match detail.subject {
            DetailSubject::Goroutine(_) => "· exited: last data shown ",
            DetailSubject::Leak(_) => "· gone from the leak list: last data shown ",
        });
    }
    match (&detail.subject, &detail.goroutine, &detail.group) {
        (DetailSubject::Goroutine(_), Some(g), _) => goroutine_lines(&mut lines, g, leak_after, sites, findings),
        (DetailSubject::Leak(_), sample, Some(l)) => group_lines(&mut lines, l, sample.as_ref()),
        _ => lines.push(Line::from("  no longer in the snapshot")),
    }
    let height = area.height.saturating_sub(2) as usize;
    detail.height = height;
    detail.scroll = detail.scroll.min(lines.len().saturating_sub(height));
    let more = if lines.len() > height {
        format!(" lines {}-{} of {} ", detail.scroll + 1, (detail.scroll + height).min(lines.len()), lines.len())
    } else {
        String::new()
    };
    let block = Block::new()
        .borders(Borders::ALL)
        .border_style(Style::new().fg(Color::Cyan))
        .title(Line::from(title).style(Style::new().add_modifier(Modifier::BOLD)))
        .title_bottom(Line::from(more).right_aligned());
    frame.render_widget(
        Paragraph::new(lines).block(block).scroll((detail.scroll.min(u16::MAX as usize) as u16, 0)),
        area,
    );
}
