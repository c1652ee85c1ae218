//! Numbers, durations and sites as the dashboard prints them.
use ratatui::style::{Color, Modifier, Style};

use crate::aggregate::model::Site;

/// `950`, `12.3k`, `4.5M`: for rates and big counts in tight spaces.
pub fn compact(v: f64) -> String {
    let a = v.abs();
    if a >= 9_999_500.0 {
        format!("{:.0}M", v / 1e6)
    } else if a >= 999_950.0 {
        format!("{:.1}M", v / 1e6)
    } else if a >= 9_999.5 {
        format!("{:.0}k", v / 1e3)
    } else if a >= 999.5 {
        format!("{:.1}k", v / 1e3)
    } else if a > 0.0 && a < 9.95 && v.fract() != 0.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.0}")
    }
}

pub fn rate(v: Option<f64>) -> String {
    v.map_or_else(|| "–".into(), compact)
}

/// `0.4s`, `42s`, `12m05s`, `2h03m`.
pub fn duration(s: f64) -> String {
    if s < 10.0 {
        format!("{s:.1}s")
    } else if s < 60.0 {
        format!("{:.0}s", s.floor())
    } else if s < 3600.0 {
        let s = s as u64;
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        let s = s as u64;
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    }
}

/// `shop/internal/cart.(*Cart).Close` → `cart.(*Cart).Close`.
pub fn short_function(f: &str) -> &str {
    // The package path ends at the last '/' before the first '.' after it;
    // method receivers may contain '/' only inside generics brackets.
    let end = f.find('[').unwrap_or(f.len());
    match f[..end].rfind('/') {
        Some(i) => &f[i + 1..],
        None => f,
    }
}

pub fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// `main.go:42 main.deepWorker`: the place first, so it survives truncation.
pub fn site_short(site: &Site) -> String {
    format!("{}:{} {}", basename(&site.file), site.line, short_function(&site.function))
}

pub fn opt_site_short(site: &Option<Site>) -> String {
    site.as_ref().map_or_else(String::new, site_short)
}

/// An inline bar of `width` cells for `value` out of `max`, in eighths.
pub fn bar(value: u64, max: u64, width: usize) -> String {
    const PARTS: [char; 8] = ['▏', '▎', '▍', '▌', '▋', '▊', '▉', '█'];
    if max == 0 || value == 0 || width == 0 {
        return String::new();
    }
    let eighths = ((value as u128 * width as u128 * 8).div_ceil(max as u128)).max(1) as usize;
    let eighths = eighths.min(width * 8);
    let mut s = "█".repeat(eighths / 8);
    if !eighths.is_multiple_of(8) {
        s.push(PARTS[eighths % 8 - 1]);
    }
    s
}

/// Colour of a defer depth: deep chains are the story.
pub fn depth_style(depth: u64) -> Style {
    match depth {
        0..100 => Style::new().fg(Color::Green),
        100..1000 => Style::new().fg(Color::Yellow),
        _ => Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_numbers() {
        assert_eq!(compact(0.0), "0");
        assert_eq!(compact(2.5), "2.5");
        assert_eq!(compact(950.0), "950");
        assert_eq!(compact(999.6), "1.0k");
        assert_eq!(compact(12_345.0), "12k");
        assert_eq!(compact(2_000.0), "2.0k");
        assert_eq!(compact(4_500_000.0), "4.5M");
        assert_eq!(rate(None), "–");
    }

    #[test]
    fn durations() {
        assert_eq!(duration(0.42), "0.4s");
        assert_eq!(duration(42.9), "42s");
        assert_eq!(duration(725.0), "12m05s");
        assert_eq!(duration(7380.0), "2h03m");
    }

    #[test]
    fn names() {
        assert_eq!(short_function("github.com/acme/shop/cart.(*Cart).Close"), "cart.(*Cart).Close");
        assert_eq!(short_function("main.main"), "main.main");
        assert_eq!(short_function("pkg.F[go.shape.*a/b.T]"), "pkg.F[go.shape.*a/b.T]");
        assert_eq!(site_short(&Site::new("main.f", "/x/y/main.go", 7)), "main.go:7 main.f");
    }

    #[test]
    fn bars() {
        assert_eq!(bar(0, 10, 8), "");
        assert_eq!(bar(10, 10, 8), "████████");
        assert_eq!(bar(5, 10, 8), "████");
        assert_eq!(bar(1, 2500, 8), "▏");
        assert_eq!(bar(3, 16, 2), "▍");
    }
}
