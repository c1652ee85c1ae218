//! The event loop's inputs: the snapshot feed and the keyboard/terminal,
//! polled in turn from one thread (no async runtime needed here).
use std::{io, sync::Arc, time::Duration};

use ratatui::crossterm::event::{self, Event as TermEvent, KeyEvent};

use crate::{aggregate::model::Snapshot, session::SnapshotFeed};

/// How long to wait for a key before looking at the feed again.
pub const POLL: Duration = Duration::from_millis(50);

#[derive(Debug)]
pub enum Event {
    Key(KeyEvent),
    /// The terminal changed size (or needs a redraw for another reason).
    Redraw,
}

pub struct Events {
    feed: SnapshotFeed,
    closed: bool,
}

impl Events {
    pub fn new(feed: SnapshotFeed) -> Self {
        Self { feed, closed: false }
    }

    /// The newest snapshot not seen yet. When the session ends, a last
    /// unseen value is still delivered; then [`Events::feed_closed`] is true.
    pub fn poll_feed(&mut self) -> Option<Arc<Snapshot>> {
        if self.closed {
            return None;
        }
        match self.feed.has_changed() {
            Ok(true) => self.feed.borrow_and_update().clone(),
            Ok(false) => None,
            Err(_) => {
                self.closed = true;
                let last = self.feed.borrow_and_update();
                if last.has_changed() { last.clone() } else { None }
            }
        }
    }

    pub fn feed_closed(&self) -> bool {
        self.closed
    }

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

#[cfg(test)]
mod tests {
    use tokio::sync::watch;

    use super::*;
    use crate::tui::fixtures;

    #[test]
    fn feed_delivers_newest_then_end() {
        let (tx, rx) = watch::channel(None);
        let mut events = Events::new(rx);
        assert!(events.poll_feed().is_none());
        tx.send_replace(Some(Arc::new(fixtures::snapshot_at(1.0, 1))));
        tx.send_replace(Some(Arc::new(fixtures::snapshot_at(2.0, 2))));
        assert_eq!(events.poll_feed().expect("snapshot").trace_uptime_s, 2.0);
        assert!(events.poll_feed().is_none());
        let mut last = fixtures::snapshot_at(3.0, 3);
        last.target_exited = true;
        tx.send_replace(Some(Arc::new(last)));
        drop(tx);
        assert!(events.poll_feed().expect("last snapshot").target_exited);
        assert!(events.feed_closed());
        assert!(events.poll_feed().is_none());
    }

    #[test]
    fn feed_closed_after_everything_was_seen() {
        let (tx, rx) = watch::channel(None);
        let mut events = Events::new(rx);
        tx.send_replace(Some(Arc::new(fixtures::snapshot())));
        assert!(events.poll_feed().is_some());
        drop(tx);
        assert!(events.poll_feed().is_none());
        assert!(events.feed_closed());
    }
}
