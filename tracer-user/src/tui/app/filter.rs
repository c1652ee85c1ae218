//! `/` filter: a case-insensitive substring of a function name or file path,
//! or `file:line` (`main.go:42`), matched against every site a goroutine,
//! leak group or defer site shows.
use crate::aggregate::model::{GoroutineView, LeakGroup, Site};

/// The filter as typed. Change it through [`super::App::set_filter`] or
/// [`super::App::edit_filter`], which keep the views in step.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    pub text: String,
    /// The user is typing it (keys go to the text).
    pub editing: bool,
}

/// The filter, prepared for matching many sites.
#[derive(Clone, Debug)]
pub struct Matcher {
    needle: Vec<u8>,
    /// `file:line` form.
    file_line: Option<(Vec<u8>, u32)>,
}

/// Case-insensitive substring test; `needle` is lowercase.
fn contains_ci(haystack: &str, needle: &[u8]) -> bool {
    let Some((&first, rest)) = needle.split_first() else { return true };
    let h = haystack.as_bytes();
    if h.len() < needle.len() {
        return false;
    }
    // Cheap first-byte scan, full comparison only on a hit: this runs over
    // every site of every goroutine when the filter changes.
    (0..=h.len() - needle.len())
        .any(|i| h[i].to_ascii_lowercase() == first && h[i + 1..i + needle.len()].eq_ignore_ascii_case(rest))
}

impl Matcher {
    pub fn new(text: &str) -> Option<Self> {
        let text = text.trim();
        if text.is_empty() {
            return None;
        }
        let file_line = text
            .rsplit_once(':')
            .and_then(|(file, line)| Some((file.as_bytes().to_ascii_lowercase(), line.parse().ok()?)));
        Some(Self { needle: text.as_bytes().to_ascii_lowercase(), file_line })
    }

    pub fn str(&self, s: &str) -> bool {
        contains_ci(s, &self.needle)
    }

    pub fn site(&self, site: &Site) -> bool {
        if let Some((f, l)) = &self.file_line
            && *l == site.line
            && contains_ci(&site.file, f)
        {
            return true;
        }
        contains_ci(&site.function, &self.needle) || contains_ci(&site.file, &self.needle)
    }

    fn opt_site(&self, site: &Option<Site>) -> bool {
        site.as_ref().is_some_and(|s| self.site(s))
    }

    pub fn goroutine(&self, g: &GoroutineView) -> bool {
        self.opt_site(&g.top_defer_site)
            || self.opt_site(&g.created_by)
            || self.opt_site(&g.blocked_at)
            || g.start_function.as_deref().is_some_and(|f| self.str(f))
            || g.stack().is_some_and(|s| s.iter().any(|f| self.site(f)))
            || g.defer_chain().is_some_and(|c| c.iter().any(|e| self.opt_site(&e.site)))
    }

    pub fn leak(&self, l: &LeakGroup) -> bool {
        self.opt_site(&l.created_by) || self.opt_site(&l.blocked_at) || self.str(&l.wait_reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matcher_by_function_file_and_line() {
        let site = Site::new("main.deepWorker", "/src/app/main.go", 42);
        assert!(Matcher::new("deepworker").expect("m").site(&site));
        assert!(Matcher::new("app/main").expect("m").site(&site));
        assert!(Matcher::new("main.go:42").expect("m").site(&site));
        assert!(!Matcher::new("main.go:43").expect("m").site(&site));
        assert!(!Matcher::new("leak").expect("m").site(&site));
        assert!(Matcher::new("  ").is_none());
    }
}
