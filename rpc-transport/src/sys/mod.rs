//! Platform code, one tree per operating system, chosen here and nowhere else.
//!
//! Each tree provides the same items to the portable modules of this crate: `Listener` (bind,
//! accept, address), `connect`, `is_transient_accept_error` and `termination_signal`.

#[cfg(unix)]
mod unix;
#[cfg(unix)]
pub(crate) use self::unix::*;

#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub(crate) use self::windows::*;
