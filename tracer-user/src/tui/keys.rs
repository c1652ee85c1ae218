//! Keys → state transitions. No terminal: unit-tested with synthetic events.
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use super::app::{App, Overlay};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Nothing to do (a key we ignore, or a release event).
    None,
    /// The state changed: draw.
    Redraw,
    Quit,
}

pub fn handle_key(app: &mut App, key: KeyEvent) -> Action {
    if key.kind == KeyEventKind::Release {
        return Action::None;
    }
    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
    if ctrl && matches!(key.code, KeyCode::Char('c' | 'C')) {
        return Action::Quit;
    }

    let typing = app.filter.editing && matches!(key.code, KeyCode::Char(_) | KeyCode::Backspace) && !ctrl;
    if !typing {
        // Other keys act on up-to-date views.
        app.prepare();
    }
    if app.filter.editing {
        match key.code {
            KeyCode::Esc => app.clear_filter(),
            KeyCode::Enter | KeyCode::Tab => app.filter.editing = false,
            KeyCode::Backspace => app.edit_filter(|t| {
                t.pop();
            }),
            KeyCode::Char('u') if ctrl => app.set_filter(String::new()),
            KeyCode::Char(c) if !ctrl => app.edit_filter(|t| t.push(c)),
            // Moving while typing narrows and picks in one go.
            KeyCode::Down => app.move_by(1),
            KeyCode::Up => app.move_by(-1),
            _ => return Action::None,
        }
        return Action::Redraw;
    }

    match key.code {
        KeyCode::Char('q') => return Action::Quit,
        KeyCode::Char('?') | KeyCode::F(1) => app.toggle_help(),
        KeyCode::Esc | KeyCode::Backspace | KeyCode::Char('h') | KeyCode::Left if app.overlay != Overlay::None => {
            app.close_overlay()
        }
        KeyCode::Esc => app.clear_filter(),
        // Everything below is for the dashboard and the detail view; the
        // help screen only closes.
        _ if app.overlay == Overlay::Help => app.close_overlay(),
        KeyCode::Char('p') | KeyCode::Char(' ') => app.toggle_pause(),
        KeyCode::Down | KeyCode::Char('j') => app.move_by(1),
        KeyCode::Up | KeyCode::Char('k') => app.move_by(-1),
        KeyCode::PageDown => app.page(1),
        KeyCode::PageUp => app.page(-1),
        KeyCode::Char('d') if ctrl => app.page(1),
        KeyCode::Char('u') if ctrl => app.page(-1),
        KeyCode::Home | KeyCode::Char('g') => app.top(),
        KeyCode::End | KeyCode::Char('G') => app.bottom(),
        _ if app.overlay == Overlay::Detail => return Action::None,
        KeyCode::Tab => app.focus = app.focus.next(),
        KeyCode::BackTab => app.focus = app.focus.prev(),
        KeyCode::Char('s') => app.cycle_sort(),
        KeyCode::Char('/') => app.filter.editing = true,
        KeyCode::Enter | KeyCode::Char('l') | KeyCode::Right => app.open_selected(),
        _ => return Action::None,
    }
    Action::Redraw
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::{
        test_support,
        tui::app::{GoroutineSort, Panel},
    };

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    fn ch(c: char) -> KeyEvent {
        key(KeyCode::Char(c))
    }

    fn app() -> App {
        let mut app = App::new(test_support::settings());
        app.on_snapshot(Arc::new(test_support::snapshot()));
        app
    }

    fn press(app: &mut App, keys: &[KeyEvent]) -> Action {
        let action = keys.iter().fold(Action::None, |_, k| handle_key(app, *k));
        app.prepare(); // as drawing does
        action
    }

    #[test]
    fn quit_keys() {
        let mut a = app();
        assert_eq!(handle_key(&mut a, ch('q')), Action::Quit);
        assert_eq!(handle_key(&mut a, KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)), Action::Quit);
        // While typing a filter, q is a letter; Ctrl-C still quits.
        press(&mut a, &[ch('/')]);
        assert_eq!(handle_key(&mut a, ch('q')), Action::Redraw);
        assert_eq!(a.filter.text, "q");
        assert_eq!(handle_key(&mut a, KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)), Action::Quit);
    }

    #[test]
    fn vim_and_arrow_movement() {
        let mut a = app();
        press(&mut a, &[ch('j'), ch('j'), key(KeyCode::Down)]);
        assert_eq!(a.goroutines.nav.selected, 3);
        press(&mut a, &[ch('k'), key(KeyCode::Up)]);
        assert_eq!(a.goroutines.nav.selected, 1);
        press(&mut a, &[ch('G')]);
        assert_eq!(a.goroutines.nav.selected, a.goroutines.rows().len() - 1);
        press(&mut a, &[ch('g')]);
        assert_eq!(a.goroutines.nav.selected, 0);
        a.goroutines.nav.height = 10;
        press(&mut a, &[key(KeyCode::PageDown)]);
        assert_eq!(a.goroutines.nav.selected, 10);
        press(&mut a, &[key(KeyCode::PageUp)]);
        assert_eq!(a.goroutines.nav.selected, 0);
    }

    #[test]
    fn tab_cycles_panels_and_moves_there() {
        let mut a = app();
        press(&mut a, &[key(KeyCode::Tab)]);
        assert_eq!(a.focus, Panel::Leaks);
        press(&mut a, &[key(KeyCode::Tab)]);
        assert_eq!(a.focus, Panel::Sites);
        press(&mut a, &[ch('j')]);
        assert_eq!(a.sites.nav.selected, 1);
        assert_eq!(a.goroutines.nav.selected, 0);
        press(&mut a, &[key(KeyCode::BackTab), key(KeyCode::BackTab)]);
        assert_eq!(a.focus, Panel::Goroutines);
    }

    #[test]
    fn filter_typing_backspace_enter_esc() {
        let mut a = app();
        press(&mut a, &[ch('/'), ch('d'), ch('e'), ch('e'), ch('x')]);
        assert!(a.filter.editing);
        assert_eq!(a.goroutines.rows().len(), 0);
        press(&mut a, &[key(KeyCode::Backspace), ch('p'), key(KeyCode::Enter)]);
        assert!(!a.filter.editing);
        assert_eq!(a.filter.text, "deep");
        assert_eq!(a.goroutines.rows().len(), 1);
        // j moves again once the filter is confirmed.
        assert_eq!(handle_key(&mut a, ch('j')), Action::Redraw);
        press(&mut a, &[key(KeyCode::Esc)]);
        assert_eq!(a.filter.text, "");
        assert!(a.goroutines.rows().len() > 40);
    }

    #[test]
    fn sort_pause_help_detail() {
        let mut a = app();
        press(&mut a, &[ch('s')]);
        assert_eq!(a.goroutines.sort, GoroutineSort::MaxDepth);
        press(&mut a, &[ch('p')]);
        assert!(a.paused);
        press(&mut a, &[ch('p')]);
        assert!(!a.paused);

        press(&mut a, &[ch('?')]);
        assert_eq!(a.overlay, Overlay::Help);
        // Any key closes help without acting.
        press(&mut a, &[ch('j')]);
        assert_eq!(a.overlay, Overlay::None);
        assert_eq!(a.goroutines.nav.selected, 0);

        press(&mut a, &[key(KeyCode::Enter)]);
        assert_eq!(a.overlay, Overlay::Detail);
        press(&mut a, &[ch('j'), ch('j')]);
        assert_eq!(a.detail.as_ref().expect("detail").scroll, 2);
        // Tab and s do nothing in the detail view.
        assert_eq!(handle_key(&mut a, key(KeyCode::Tab)), Action::None);
        press(&mut a, &[key(KeyCode::Esc)]);
        assert_eq!(a.overlay, Overlay::None);
        assert!(a.detail.is_none());
    }

    #[test]
    fn typed_filter_is_applied_once_before_the_next_frame() {
        let mut a = app();
        let all = a.goroutines.rows().len();
        for k in [ch('/'), ch('d'), ch('e'), ch('e'), ch('p')] {
            handle_key(&mut a, k);
        }
        // Not yet: a burst of keys costs one recomputation, not one per key.
        assert_eq!(a.goroutines.rows().len(), all);
        a.prepare();
        assert_eq!(a.goroutines.rows().len(), 1);
        // Any other key sees the current views.
        handle_key(&mut a, ch('x'));
        handle_key(&mut a, key(KeyCode::Enter));
        assert_eq!(a.goroutines.rows().len(), 0);
    }

    #[test]
    fn release_events_are_ignored() {
        let mut a = app();
        let mut k = ch('q');
        k.kind = KeyEventKind::Release;
        assert_eq!(handle_key(&mut a, k), Action::None);
    }
}
