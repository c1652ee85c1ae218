//! The snapshot feeds: the newest snapshot, handed from the session to the
//! views that run beside it (the TUI thread: one process's [`Snapshot`]; the
//! `/metrics` server: a [`Fleet`], every traced process's).
//!
//! One publisher, any number of readers; readers never block the session and
//! only ever see the newest snapshot. Dropping the [`FeedPublisher`] closes
//! the feed, which tells the views the session is over.
use std::sync::Arc;

use tokio::sync::watch;

use crate::aggregate::model::Snapshot;

/// The newest snapshot of every traced process, by PID; a process that exited is in it once more with `target_exited`,
/// then gone.
#[derive(Clone, Debug, Default)]
pub(crate) struct Fleet {
    pub(crate) snapshots: Vec<Arc<Snapshot>>,
}

impl Fleet {
    /// A fleet of one process.
    #[cfg(test)]
    pub(crate) fn of(snapshot: Snapshot) -> Self {
        Self { snapshots: vec![Arc::new(snapshot)] }
    }
}

/// The session's end of the feed.
#[derive(Debug)]
pub(crate) struct FeedPublisher<T = Snapshot>(watch::Sender<Option<Arc<T>>>);

/// A view's end of the feed.
#[derive(Debug)]
pub(crate) struct Feed<T> {
    rx: watch::Receiver<Option<Arc<T>>>,
    closed: bool,
}

// Derived Clone would ask T: Clone; only the Arc is cloned.
impl<T> Clone for Feed<T> {
    fn clone(&self) -> Self {
        Self { rx: self.rx.clone(), closed: self.closed }
    }
}

/// One process's snapshots (the TUI's feed).
pub(crate) type SnapshotFeed = Feed<Snapshot>;

/// Every process's snapshots (the exporter's feed).
pub(crate) type FleetFeed = Feed<Fleet>;

/// A new, empty feed.
pub(crate) fn channel<T>() -> (FeedPublisher<T>, Feed<T>) {
    let (tx, rx) = watch::channel(None);
    (FeedPublisher(tx), Feed { rx, closed: false })
}

impl<T> FeedPublisher<T> {
    /// A new reader of what is published from now on.
    pub(crate) fn subscribe(&self) -> Feed<T> {
        Feed { rx: self.0.subscribe(), closed: false }
    }

    /// Makes `value` the newest one. With no reader left (`--json` or
    /// `--once` without `/metrics`) it is not kept: holding the previous
    /// snapshot while the next is built doubles the peak memory (~33 MiB at
    /// 100k goroutines).
    pub(crate) fn publish(&self, value: T) {
        self.publish_shared(Arc::new(value));
    }

    /// [`Self::publish`] for a value the session holds too (the snapshot it
    /// just printed): shared, never copied.
    pub(crate) fn publish_shared(&self, value: Arc<T>) {
        if self.0.receiver_count() == 0 {
            return;
        }
        self.0.send_replace(Some(value));
    }
}

impl<T> Feed<T> {
    /// The newest snapshot, seen or not (`None` before the first one).
    pub(crate) fn latest(&self) -> Option<Arc<T>> {
        self.rx.borrow().clone()
    }

    /// The newest snapshot this reader has not taken yet. When the session
    /// has ended, a last unseen snapshot is still delivered; after that
    /// [`SnapshotFeed::is_closed`] is true.
    pub(crate) fn next_unseen(&mut self) -> Option<Arc<T>> {
        if self.closed {
            return None;
        }
        match self.rx.has_changed() {
            Ok(true) => self.rx.borrow_and_update().clone(),
            Ok(false) => None,
            Err(_) => {
                self.closed = true;
                let last = self.rx.borrow_and_update();
                if last.has_changed() { last.clone() } else { None }
            }
        }
    }

    /// The session ended and every snapshot was taken.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support;

    #[test]
    fn delivers_the_newest_then_the_end() {
        let (publisher, mut feed) = channel::<Snapshot>();
        assert!(feed.next_unseen().is_none());
        publisher.publish(test_support::snapshot_at(1.0, 1));
        publisher.publish(test_support::snapshot_at(2.0, 2));
        assert_eq!(feed.next_unseen().expect("snapshot").trace_uptime_s, 2.0);
        assert!(feed.next_unseen().is_none());
        assert_eq!(feed.latest().expect("latest").trace_uptime_s, 2.0, "latest is there even when seen");
        let mut last = test_support::snapshot_at(3.0, 3);
        last.target_exited = true;
        publisher.publish(last);
        drop(publisher);
        assert!(feed.next_unseen().expect("last snapshot").target_exited);
        assert!(feed.is_closed());
        assert!(feed.next_unseen().is_none());
    }

    #[test]
    fn closed_after_everything_was_seen() {
        let (publisher, mut feed) = channel::<Snapshot>();
        publisher.publish(test_support::snapshot());
        assert!(feed.next_unseen().is_some());
        drop(publisher);
        assert!(feed.next_unseen().is_none());
        assert!(feed.is_closed());
    }
}
