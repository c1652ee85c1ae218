//! The event loop's terminal input; the loop polls it in turn with the
//! snapshot feed, from one thread (no async runtime needed here).
use std::{io, time::Duration};

use ratatui::crossterm::event::{self, Event as TermEvent, KeyEvent};

/// How long to wait for a key before looking at the feed again.
pub const POLL: Duration = Duration::from_millis(50);

#[derive(Debug)]
pub enum Event {
    Key(KeyEvent),
    /// The terminal changed size (or needs a redraw for another reason).
    Redraw,
}

/// Terminal input (the feed is read through [`SnapshotFeed`] directly).
pub struct Events;

impl Events {
    /// A key or resize, waiting at most `timeout`.
    pub fn poll_terminal(timeout: Duration) -> io::Result<Option<Event>> {
        if !event::poll(timeout)? {
            return Ok(None);
        }
        Ok(match event::read()? {
            TermEvent::Key(k) => Some(Event::Key(k)),
            TermEvent::Resize(..) | TermEvent::FocusGained => Some(Event::Redraw),
            _ => None,
        })
    }
}
