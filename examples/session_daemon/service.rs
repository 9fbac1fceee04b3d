//! The interface of the session daemon, shared by the daemon, its clients and the tests.

use serde::{Deserialize, Serialize};

/// What the daemon reports.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// The daemon's process id: a restarted daemon has another.
    pub pid: u32,
    /// Jobs run since the daemon started.
    pub jobs_done: u64,
    /// Counts up with every status the daemon sends on a watch.
    pub tick: u64,
}

/// The daemon's interface.
#[rpc_core::service(name = "SessionDaemon")]
pub trait SessionDaemon {
    /// The status now. Asking twice is harmless, so a session asks again after a reconnect.
    #[rpc(idempotent)]
    async fn status(&self) -> Status;
    /// Runs a job for `ms` milliseconds and answers the jobs done. Not idempotent: a session
    /// never sends it twice.
    async fn run_job(&self, ms: u64) -> u64;
    /// The status now, then again every `every_ms` milliseconds, until the client drops it.
    /// Opening it twice is harmless, so a session opens it again after a reconnect.
    #[rpc(idempotent)]
    async fn watch(&self, every_ms: u64) -> rpc_core::Stream<Status>;
}

/// Another service on the same endpoint name: what an incompatible daemon serves. (Another
/// version of `SessionDaemon` itself would be welcomed, its methods bound one by one.)
#[rpc_core::service(name = "OtherDaemon")]
pub trait OtherSessionDaemon {
    /// The status as text: another result type than [`SessionDaemon::status`].
    async fn status(&self) -> String;
}
