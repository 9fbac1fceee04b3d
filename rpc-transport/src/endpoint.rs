//! Names of endpoints.

use std::fmt;
#[cfg(unix)]
use std::path::PathBuf;

use crate::error::ConnectError;

/// Longest endpoint name accepted (Unix socket paths are limited to about 100 bytes).
const MAX_NAME: usize = 64;

/// A validated endpoint name, and on Unix optionally the directory its socket lives in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    name: String,
    #[cfg(unix)]
    dir: Option<PathBuf>,
    allow_other_users: bool,
}

impl Endpoint {
    /// An endpoint in the platform's default place for `name`.
    ///
    /// Names are 1 to 64 characters of ASCII letters, digits, `.`, `_` and `-`, not starting
    /// with `.`.
    ///
    /// # Errors
    ///
    /// [`ConnectError::InvalidName`] if the name breaks these rules.
    pub fn new(name: &str) -> Result<Self, ConnectError> {
        let reason = if name.is_empty() {
            Some("empty")
        } else if name.len() > MAX_NAME {
            Some("longer than 64 bytes")
        } else if name.starts_with('.') {
            Some("starts with a dot")
        } else if !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        {
            Some("only ASCII letters, digits, '.', '_' and '-' are allowed")
        } else {
            None
        };
        match reason {
            Some(reason) => Err(ConnectError::InvalidName {
                name: name.to_owned(),
                reason,
            }),
            None => Ok(Self {
                name: name.to_owned(),
                #[cfg(unix)]
                dir: None,
                allow_other_users: false,
            }),
        }
    }

    /// The same name with its socket in `dir` instead of the default directory. The directory
    /// gets the same checks as the default one (created 0700 if missing, a real directory,
    /// owned by the user, closed to others).
    #[cfg(unix)]
    #[must_use]
    pub fn in_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.dir = Some(dir.into());
        self
    }

    /// Lets every local user connect to a server on this endpoint, not just the server's own
    /// user (and SYSTEM and administrators). For a Windows service that runs as SYSTEM and
    /// serves ordinary users: every local process can then call every method, so each handler
    /// must check [`rpc_core::CallContext`]'s peer itself. Windows only: Unix endpoints are
    /// private to the user's directory; serve from a directory given with `in_dir` to share
    /// them.
    #[must_use]
    pub fn allow_other_users(mut self, allow: bool) -> Self {
        self.allow_other_users = allow;
        self
    }

    /// Whether every local user may connect (see [`Endpoint::allow_other_users`]).
    pub fn allows_other_users(&self) -> bool {
        self.allow_other_users
    }

    /// The name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The directory given with [`Endpoint::in_dir`], if any.
    #[cfg(unix)]
    pub fn dir(&self) -> Option<&std::path::Path> {
        self.dir.as_deref()
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_validated() {
        assert!(Endpoint::new("calculator").is_ok());
        assert!(Endpoint::new("my-app_1.0").is_ok());
        for bad in [
            "",
            ".hidden",
            "a/b",
            "a\\b",
            "spa ce",
            "nul\0",
            &"x".repeat(65),
            "é",
        ] {
            assert!(
                matches!(Endpoint::new(bad), Err(ConnectError::InvalidName { .. })),
                "{bad:?} accepted"
            );
        }
    }
}
