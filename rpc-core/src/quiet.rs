//! A future that is polled again only once it has asked to be.
//!
//! A connection's loop waits on several futures at once, and a `select!` polls every one of
//! them each time any is ready; most of them (the writer's failure, the server's shutdown, the
//! deadline timer) are ready once in a connection's life, while the loop runs once per frame.
//! Polling tokio's oneshot, cancellation token or timer again with the same waker costs 100 to
//! 200 instructions each (their locks and wait lists): about 770 per round trip of a call in all
//! (callgrind, latency benchmark).
//! [`Quiet`] hands the inner future a waker of its own and skips polling it until that waker
//! has been woken, for the price of an atomic exchange and a waker comparison.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use futures_util::task::AtomicWaker;

/// Wraps a future so that it is polled only after the waker it last saw was woken, or after
/// [`Quiet::get_mut`] (a change to the future may make it ready).
pub(crate) struct Quiet<F> {
    inner: F,
    /// Made at the first poll: a future that is never polled (a timer that is never armed)
    /// costs no allocation.
    signal: Option<Arc<Signal>>,
    /// The inner future returned `Pending` and has not been touched since.
    idle: bool,
}

/// The inner future's waker: notes the wake and passes it on to the task.
#[derive(Default)]
struct Signal {
    woken: AtomicBool,
    task: AtomicWaker,
}

impl Wake for Signal {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.task.wake();
    }
}

impl<F> Quiet<F> {
    pub(crate) fn new(inner: F) -> Self {
        Self {
            inner,
            signal: None,
            idle: false,
        }
    }

    /// The inner future, to change it (a timer to reset): it is polled at the next poll.
    pub(crate) fn get_mut(&mut self) -> &mut F {
        self.idle = false;
        &mut self.inner
    }
}

impl<F: Future + Unpin> Future for Quiet<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        let signal = this.signal.get_or_insert_with(Arc::default);
        // Registered before the check: a wake that comes after it reaches this task.
        signal.task.register(cx.waker());
        if this.idle && !signal.woken.swap(false, Ordering::AcqRel) {
            return Poll::Pending;
        }
        signal.woken.store(false, Ordering::Release);
        let waker = Waker::from(Arc::clone(signal));
        let polled = Pin::new(&mut this.inner).poll(&mut Context::from_waker(&waker));
        this.idle = polled.is_pending();
        polled
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    /// Counts its polls; ready once `ready` is set, waking the last waker it saw when set.
    #[derive(Default)]
    struct Probe {
        polls: AtomicUsize,
        ready: AtomicBool,
        waker: AtomicWaker,
    }

    impl Probe {
        fn fire(&self) {
            self.ready.store(true, Ordering::SeqCst);
            self.waker.wake();
        }
    }

    struct Polled(Arc<Probe>);

    impl Future for Polled {
        type Output = ();
        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            self.0.polls.fetch_add(1, Ordering::SeqCst);
            self.0.waker.register(cx.waker());
            if self.0.ready.load(Ordering::SeqCst) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        }
    }

    #[derive(Default)]
    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn the_inner_future_is_polled_again_only_once_woken_and_its_wake_reaches_the_task() {
        let probe = Arc::new(Probe::default());
        let mut quiet = Quiet::new(Polled(Arc::clone(&probe)));
        let task = Arc::new(Count::default());
        let waker = Waker::from(Arc::clone(&task));
        let mut cx = Context::from_waker(&waker);
        for _ in 0..5 {
            assert!(Pin::new(&mut quiet).poll(&mut cx).is_pending());
        }
        assert_eq!(
            probe.polls.load(Ordering::SeqCst),
            1,
            "polled once while nothing happened"
        );
        probe.fire();
        assert_eq!(task.0.load(Ordering::SeqCst), 1, "the task is woken");
        assert!(Pin::new(&mut quiet).poll(&mut cx).is_ready());
        assert_eq!(probe.polls.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn a_change_through_get_mut_makes_the_next_poll_reach_the_inner_future() {
        let probe = Arc::new(Probe::default());
        let mut quiet = Quiet::new(Polled(Arc::clone(&probe)));
        let waker = Waker::from(Arc::new(Count::default()));
        let mut cx = Context::from_waker(&waker);
        assert!(Pin::new(&mut quiet).poll(&mut cx).is_pending());
        // Made ready without a wake, as a reset timer may be.
        quiet.get_mut().0.ready.store(true, Ordering::SeqCst);
        assert!(Pin::new(&mut quiet).poll(&mut cx).is_ready());
        assert_eq!(probe.polls.load(Ordering::SeqCst), 2);
    }
}
