//! What the server loop does at its limits: refuse clients over them, share slots between
//! users, and keep its log readable when accepting keeps failing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rpc_core::frame::{FrameRead, FrameWrite};
use rpc_core::protocol::Rejection;
use rpc_core::{refuse_connection, turn_away_shutting_down, PeerInfo};
use tokio::task::JoinSet;
use tokio::time::Instant;

/// Clients being refused at once (each for at most two seconds); past this, a client over the
/// limit is disconnected without an answer.
pub(crate) const MAX_REFUSALS: usize = 16;

/// How often a repeated accept error is logged.
pub(crate) const ACCEPT_ERROR_LOG_EVERY: Duration = Duration::from_secs(10);

/// The clients being answered without being served: told that the server is busy (over a
/// limit) or shutting down, each on a task of its own, at most [`MAX_REFUSALS`] at once (past
/// that a client's connection is closed without an answer), each for at most two seconds.
#[derive(Default)]
pub(crate) struct Answering {
    tasks: JoinSet<()>,
}

impl Answering {
    /// Whether another client can be answered now; forgets the answers that are done.
    fn room(&mut self) -> bool {
        while self.tasks.try_join_next().is_some() {}
        self.tasks.len() < MAX_REFUSALS
    }

    /// Tells a client over a limit of `limit` connections that the server is busy.
    pub(crate) fn refuse<R: FrameRead, W: FrameWrite>(
        &mut self,
        reader: R,
        writer: W,
        limit: usize,
    ) {
        if !self.room() {
            tracing::debug!("too many clients over the limit at once; closing without an answer");
            return;
        }
        tracing::debug!(limit, "connection limit reached; refusing a client");
        let rejection = Rejection::ServerBusy {
            max_connections: u32::try_from(limit).unwrap_or(u32::MAX),
        };
        self.tasks
            .spawn(async move { refuse_connection(reader, writer, rejection).await });
    }

    /// Tells a client that comes while the server's connections drain that it is shutting
    /// down.
    pub(crate) fn turn_away<R: FrameRead, W: FrameWrite>(&mut self, reader: R, writer: W) {
        if self.room() {
            self.tasks
                .spawn(async move { turn_away_shutting_down(reader, writer).await });
        }
    }

    /// Waits until the answer to one client is done; `false` at once if no client is being
    /// answered.
    pub(crate) async fn next_done(&mut self) -> bool {
        self.tasks.join_next().await.is_some()
    }

    /// Waits until every client being answered has its answer (two seconds at most).
    pub(crate) async fn finish(&mut self) {
        while self.tasks.join_next().await.is_some() {}
    }
}

/// Connections held per user, on an endpoint that lets other users in.
pub(crate) struct Shares {
    held: Arc<Mutex<HashMap<String, usize>>>,
    per_user: usize,
}

/// One connection's share; returned when dropped.
pub(crate) struct Share {
    held: Arc<Mutex<HashMap<String, usize>>>,
    user: String,
}

impl Shares {
    pub(crate) fn new(per_user: usize) -> Self {
        Self {
            held: Arc::default(),
            per_user,
        }
    }

    /// A share for the peer's user, or `None` if that user holds its maximum already. A peer
    /// whose user the transport cannot tell counts as one user, "unknown".
    pub(crate) fn take(&mut self, peer: &PeerInfo) -> Option<Share> {
        let user = match (&peer.sid, peer.uid) {
            (Some(sid), _) => sid.clone(),
            (None, Some(uid)) => format!("uid {uid}"),
            (None, None) => "unknown".to_owned(),
        };
        let mut held = lock(&self.held);
        let count = held.entry(user.clone()).or_insert(0);
        if *count >= self.per_user {
            return None;
        }
        *count += 1;
        Some(Share {
            held: Arc::clone(&self.held),
            user,
        })
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        let mut held = lock(&self.held);
        if let Some(count) = held.get_mut(&self.user) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                held.remove(&self.user);
            }
        }
    }
}

fn lock(held: &Mutex<HashMap<String, usize>>) -> MutexGuard<'_, HashMap<String, usize>> {
    // Every update is complete before anything that could panic.
    held.lock().unwrap_or_else(|e| e.into_inner())
}

/// Lets an event through at most once per period, counting the ones held back.
pub(crate) struct RateLimited {
    every: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl RateLimited {
    pub(crate) fn new(every: Duration) -> Self {
        Self {
            every,
            last: None,
            suppressed: 0,
        }
    }

    /// `Some(how many were held back since the last one let through)` if this one may go
    /// through, else `None`.
    pub(crate) fn allow(&mut self) -> Option<u64> {
        let now = Instant::now();
        if self.last.is_some_and(|last| now < last + self.every) {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn repeated_events_go_through_once_per_period() {
        let mut limited = RateLimited::new(Duration::from_secs(10));
        assert_eq!(limited.allow(), Some(0));
        let through = (0..1000).filter(|_| limited.allow().is_some()).count();
        assert_eq!(through, 0);
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(limited.allow(), Some(1000));
        assert_eq!(limited.allow(), None);
    }

    #[test]
    fn one_user_cannot_take_every_share() {
        let mut shares = Shares::new(2);
        let alice = PeerInfo::windows(Some(1), Some("S-1-5-21-1".into()));
        let bob = PeerInfo::windows(Some(2), Some("S-1-5-21-2".into()));
        let first = shares.take(&alice).expect("a share");
        let _second = shares.take(&alice).expect("a share");
        assert!(shares.take(&alice).is_none(), "alice holds her maximum");
        let _bobs = shares.take(&bob).expect("bob still gets in");
        drop(first);
        assert!(shares.take(&alice).is_some(), "a share came back");
    }
}
