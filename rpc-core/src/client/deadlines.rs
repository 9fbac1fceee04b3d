//! One timer for the deadlines of a connection's calls in flight.

use std::pin::Pin;

use tokio::time::{Instant, Sleep};

use crate::client::pending::Conn;

/// The timer, set to the earliest deadline of the calls in flight.
pub(crate) struct Deadlines {
    timer: Pin<Box<Sleep>>,
    armed: bool,
}

impl Deadlines {
    pub(crate) fn new() -> Self {
        Self {
            timer: Box::pin(tokio::time::sleep_until(Instant::now())),
            armed: false,
        }
    }

    /// Waits for the next deadline event of `conn`, a call whose deadline is earlier than the
    /// timer or the timer firing, and handles it: calls whose deadline passed fail. Also wakes
    /// when a call starts on a connection that serves calls of its peer, whose limit depends
    /// on the calls in flight.
    pub(crate) async fn tick(&mut self, conn: &Conn) {
        tokio::select! {
            biased;
            () = conn.deadline_moved.notified() => {
                if let Some(at) = conn.lock().check_at {
                    self.timer.as_mut().reset(at);
                    self.armed = true;
                }
            }
            () = &mut self.timer, if self.armed => {
                let next = conn.lock().expire(Instant::now());
                self.armed = next.is_some();
                if let Some(at) = next {
                    self.timer.as_mut().reset(at);
                }
            }
        }
    }
}
