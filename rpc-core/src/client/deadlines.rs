//! One timer for the deadlines of a connection's calls in flight.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use futures_util::task::AtomicWaker;
use tokio::time::{Instant, Sleep};

use crate::client::pending::Conn;
use crate::quiet::Quiet;

/// Tells the one task that watches a connection's deadlines that something changed: a call
/// whose deadline is earlier than the timer, or (on a connection that serves calls of its peer)
/// a call that started. A signal given while the task is busy is kept for its next wait.
#[derive(Default)]
pub(crate) struct Moved {
    set: AtomicBool,
    waker: AtomicWaker,
}

impl Moved {
    /// Wakes the watching task, now or at its next wait.
    pub(crate) fn notify(&self) {
        self.set.store(true, Ordering::Release);
        self.waker.wake();
    }

    /// Takes the signal if it was given; else wakes `cx` when it is.
    fn poll_take(&self, cx: &Context<'_>) -> Poll<()> {
        // Checked before registering too: a signal already given costs no waker.
        if self.set.swap(false, Ordering::Acquire) {
            return Poll::Ready(());
        }
        self.waker.register(cx.waker());
        if self.set.swap(false, Ordering::Acquire) {
            return Poll::Ready(());
        }
        Poll::Pending
    }
}

/// The timer, set to the earliest deadline of the calls in flight.
pub(crate) struct Deadlines {
    /// Polled only once it fired or was reset: the reader polls it beside every frame.
    timer: Quiet<Pin<Box<Sleep>>>,
    armed: bool,
}

impl Deadlines {
    pub(crate) fn new() -> Self {
        Self {
            timer: Quiet::new(Box::pin(tokio::time::sleep_until(Instant::now()))),
            armed: false,
        }
    }

    /// Waits for the next deadline event of `conn`, a call whose deadline is earlier than the
    /// timer or the timer firing, and handles it: calls whose deadline passed fail. Also wakes
    /// when a call starts on a connection that serves calls of its peer, whose limit depends
    /// on the calls in flight. Only one task may wait on a connection's deadlines.
    ///
    /// Polled in place (no future to build and drop at each wait), because the reader of a
    /// connection waits on it beside every frame it reads.
    pub(crate) fn poll_tick(&mut self, conn: &Conn, cx: &mut Context<'_>) -> Poll<()> {
        if conn.deadline_moved.poll_take(cx).is_ready() {
            if let Some(at) = conn.lock().check_at {
                self.timer.get_mut().as_mut().reset(at);
                self.armed = true;
            }
            return Poll::Ready(());
        }
        if self.armed && Pin::new(&mut self.timer).poll(cx).is_ready() {
            let next = conn.lock().expire(Instant::now());
            self.armed = next.is_some();
            if let Some(at) = next {
                self.timer.get_mut().as_mut().reset(at);
            }
            return Poll::Ready(());
        }
        Poll::Pending
    }

    /// Fails the calls of `conn` whose deadline has passed, without waiting for the timer to
    /// fire: for a reader that always finds a frame to read, and so may not poll the timer for
    /// a long time.
    pub(crate) fn expire_due(&mut self, conn: &Conn) {
        let now = Instant::now();
        let mut pending = conn.lock();
        if pending.check_at.is_some_and(|at| at <= now) {
            let next = pending.expire(now);
            drop(pending);
            self.armed = next.is_some();
            if let Some(at) = next {
                self.timer.get_mut().as_mut().reset(at);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::task::Wake;

    #[derive(Default)]
    struct Count(std::sync::atomic::AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_signal_wakes_the_waiter_once_and_is_kept_for_a_busy_one() {
        let moved = Moved::default();
        let count = Arc::new(Count::default());
        let waker = std::task::Waker::from(Arc::clone(&count));
        let cx = Context::from_waker(&waker);
        assert!(moved.poll_take(&cx).is_pending());
        moved.notify();
        assert_eq!(count.0.load(Ordering::SeqCst), 1, "the waiter is woken");
        assert!(moved.poll_take(&cx).is_ready());
        assert!(moved.poll_take(&cx).is_pending(), "taken once");
        // Given while the waiter is not waiting: kept for its next wait.
        moved.notify();
        moved.notify();
        assert!(moved.poll_take(&cx).is_ready());
        assert!(moved.poll_take(&cx).is_pending());
    }
}
