//! Options that only Unix understands.

use std::path::{Path, PathBuf};

use crate::Endpoint;

/// Unix-only settings of an [`Endpoint`].
///
/// ```no_run
/// use rpc_transport::unix::EndpointExt;
/// # fn demo() -> Result<(), rpc_transport::ConnectError> {
/// let endpoint = rpc_transport::Endpoint::new("calculator")?.in_dir("/run/my-app");
/// # Ok(()) }
/// ```
pub trait EndpointExt: sealed::Sealed {
    /// The same name with its socket in `dir` instead of the default directory. The directory
    /// gets the same checks as the default one (created 0700 if missing, a real directory,
    /// owned by the user (a client also accepts one of root's), closed to others).
    #[must_use]
    fn in_dir(self, dir: impl Into<PathBuf>) -> Self;

    /// The directory given with [`EndpointExt::in_dir`], if any.
    fn dir(&self) -> Option<&Path>;
}

impl EndpointExt for Endpoint {
    fn in_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.set_dir(dir.into());
        self
    }

    fn dir(&self) -> Option<&Path> {
        Endpoint::dir(self)
    }
}

mod sealed {
    /// Only this crate's types take the extension.
    pub trait Sealed {}
    impl Sealed for crate::Endpoint {}
}
