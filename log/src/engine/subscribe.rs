//! Subscriptions: catch up from storage, then follow live appends; no gap, no duplicate, never
//! going back.
//!
//! A subscription is in one of two modes. *Catching up*, it reads storage up to the durable
//! head. When it reaches the head it registers a fresh live receiver and re-reads the head:
//! every group committed after that second read is published after the receiver existed (the
//! writer publishes the head before sending a group), so *live* mode receives all of them, and
//! nothing is both read from storage and received. A live subscriber that falls more than
//! `subscriber_buffer` groups behind is ended with [`Error::Lagged`], naming the offset to
//! resume from: a lagging reader costs the master a bounded buffer, never unbounded memory,
//! and resuming catches up from storage.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::broadcast::{self, error::RecvError};

use super::Log;
use crate::error::{Error, Result};
use crate::record::{Offset, Record};

/// Records read from storage per catch-up step; bounds a subscription's own buffer.
const CATCH_UP_CHUNK: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    CatchingUp,
    Live,
    /// The log closed: yield what is durable, then end.
    Draining,
    Ended,
}

#[derive(Debug)]
pub struct Subscription {
    log: Log,
    next: u64,
    live: broadcast::Receiver<Arc<[Record]>>,
    buffered: VecDeque<Record>,
    mode: Mode,
}

impl Subscription {
    pub(super) fn new(log: Log, from: Offset) -> Result<Self> {
        let shared = &log.shared;
        let limit = shared.config.max_subscribers;
        let taken = shared
            .subscribers
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            });
        if taken.is_err() {
            return Err(Error::TooManySubscribers { limit });
        }
        shared.metrics.subscribers.inc();
        let live = match &*shared.live.lock().expect("live lock") {
            Some(sender) => sender.subscribe(),
            // Already closed: a receiver whose sender is gone reports `Closed` at once.
            None => broadcast::channel(1).1,
        };
        Ok(Self {
            next: from.get(),
            live,
            buffered: VecDeque::new(),
            mode: Mode::CatchingUp,
            log,
        })
    }

    /// The next record; `None` once the log is closed and everything durable was yielded.
    /// `Some(Err(Lagged))` ends the subscription: subscribe again from `resume_from`.
    /// Cancel-safe: dropping the future loses nothing.
    pub async fn next(&mut self) -> Option<Result<Record>> {
        loop {
            if let Some(record) = self.buffered.pop_front() {
                self.next = record.offset.get() + 1;
                return Some(Ok(record));
            }
            match self.mode {
                Mode::Ended => return None,
                Mode::CatchingUp | Mode::Draining if self.next <= self.log.head() => {
                    let from = Offset::new(self.next).expect("positions start at 1");
                    match self.log.read(from, CATCH_UP_CHUNK) {
                        Ok(records) => self.buffered.extend(records),
                        Err(e) => {
                            self.mode = Mode::Ended;
                            return Some(Err(e));
                        }
                    }
                }
                Mode::Draining => self.mode = Mode::Ended,
                Mode::CatchingUp => {
                    // Groups queued while we read storage are stale; start afresh, then
                    // re-check the head (see the module doc for why this order matters).
                    self.live = self.live.resubscribe();
                    if self.next > self.log.head() {
                        self.mode = Mode::Live;
                    }
                }
                Mode::Live => match self.live.recv().await {
                    Ok(group) => self.take_live(&group),
                    Err(RecvError::Lagged(_)) => {
                        self.mode = Mode::Ended;
                        self.log.shared.metrics.lagged_subscribers.inc();
                        let limit = self.log.shared.config.subscriber_buffer;
                        return Some(Err(Error::Lagged {
                            resume_from: self.next,
                            limit,
                        }));
                    }
                    Err(RecvError::Closed) => self.mode = Mode::Draining,
                },
            }
        }
    }

    fn take_live(&mut self, group: &[Record]) {
        let Some(first) = group.first() else { return };
        if first.offset.get() > self.next {
            // Cannot happen by construction; if it did, storage has the missing records.
            self.mode = Mode::CatchingUp;
            return;
        }
        let skip = (self.next - first.offset.get()) as usize;
        self.buffered.extend(group.iter().skip(skip).cloned());
    }
}

/// A subscription for a reader that may fall behind and must not stop: when it lags it goes
/// on from storage where it stopped (a new subscription), so its reader sees every record in
/// order, once, however slow it is.
#[derive(Debug)]
pub struct Follow {
    subscription: Subscription,
}

impl Follow {
    pub(super) fn new(log: Log, from: Offset) -> Result<Self> {
        Ok(Self {
            subscription: Subscription::new(log, from)?,
        })
    }

    /// The next record; `None` once the log is closed and everything durable was yielded.
    pub async fn next(&mut self) -> Option<Result<Record>> {
        loop {
            match self.subscription.next().await? {
                Err(Error::Lagged { resume_from, .. }) => {
                    let from = Offset::new(resume_from).expect("positions start at 1");
                    match Subscription::new(self.subscription.log.clone(), from) {
                        Ok(s) => self.subscription = s,
                        Err(e) => return Some(Err(e)),
                    }
                }
                other => return Some(other),
            }
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.log.shared.subscribers.fetch_sub(1, Ordering::AcqRel);
        self.log.shared.metrics.subscribers.dec();
    }
}
