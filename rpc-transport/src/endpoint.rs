//! Names of endpoints.

use std::fmt;
#[cfg(unix)]
use std::path::PathBuf;

use crate::error::{ConnectError, NameProblem};

/// Longest endpoint name accepted (Unix socket paths are limited to about 100 bytes).
const MAX_NAME: usize = 64;

/// A validated endpoint name: the same type and the same methods on every system. Options
/// that only one system understands are set through its extension trait, which exists on that
/// system only: `unix::EndpointExt` (the socket's directory) and `windows::EndpointExt`
/// (letting other users in).
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
    /// with `.`. On Windows they are pipe names, which ignore case (`Calc` and `calc` are one
    /// endpoint there), and a pipe pair named `x` also takes the names `x.in` and `x.out`.
    ///
    /// # Errors
    ///
    /// [`ConnectError::InvalidName`] if the name breaks these rules.
    pub fn new(name: &str) -> Result<Self, ConnectError> {
        let reason = if name.is_empty() {
            Some(NameProblem::Empty)
        } else if name.len() > MAX_NAME {
            Some(NameProblem::TooLong)
        } else if name.starts_with('.') {
            Some(NameProblem::LeadingDot)
        } else if !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        {
            Some(NameProblem::BadCharacter)
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

    /// The name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether every local user may connect (set on Windows with
    /// [`crate::windows::EndpointExt::allow_other_users`]; always false on Unix).
    pub(crate) fn other_users_allowed(&self) -> bool {
        self.allow_other_users
    }

    /// Sets whether every local user may connect (Windows only; see the extension trait).
    #[cfg_attr(not(windows), allow(dead_code))]
    pub(crate) fn set_other_users_allowed(&mut self, allow: bool) {
        self.allow_other_users = allow;
    }

    /// The directory of the socket, if not the default one (Unix only; see the extension trait).
    #[cfg(unix)]
    pub(crate) fn dir(&self) -> Option<&std::path::Path> {
        self.dir.as_deref()
    }

    /// Sets the directory of the socket (Unix only; see the extension trait).
    #[cfg(unix)]
    pub(crate) fn set_dir(&mut self, dir: PathBuf) {
        self.dir = Some(dir);
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
        let long = "x".repeat(65);
        for (bad, why) in [
            ("", NameProblem::Empty),
            (".hidden", NameProblem::LeadingDot),
            ("a/b", NameProblem::BadCharacter),
            ("a\\b", NameProblem::BadCharacter),
            ("spa ce", NameProblem::BadCharacter),
            ("nul\0", NameProblem::BadCharacter),
            (long.as_str(), NameProblem::TooLong),
            ("é", NameProblem::BadCharacter),
        ] {
            match Endpoint::new(bad) {
                Err(ConnectError::InvalidName { reason, .. }) => assert_eq!(reason, why, "{bad:?}"),
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }
}
