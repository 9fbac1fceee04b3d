//! Where in a value the codec is, for error messages.

use std::fmt::Write;

use serde_json::Value;

/// A path such as `args[1].point.x`: a root name, then `.field` and `[index]` segments.
///
/// Segments are pushed going in and cut off coming out; the formatting lives in small functions
/// of their own so that the recursive encoder and decoder keep small stack frames.
#[derive(Debug)]
pub(super) struct Path(String);

impl Path {
    pub(super) fn new(root: &str) -> Self {
        Path(root.to_owned())
    }

    /// Appends `.name`; returns the mark to [`cut`](Self::cut) back to.
    #[inline(never)]
    pub(super) fn field(&mut self, name: &str) -> usize {
        let mark = self.0.len();
        self.0.push('.');
        self.0.push_str(name);
        mark
    }

    /// Appends `[index]`.
    #[inline(never)]
    pub(super) fn index(&mut self, index: usize) -> usize {
        let mark = self.0.len();
        let _ = write!(self.0, "[{index}]");
        mark
    }

    /// Appends `["key"]`, the key quoted as JSON.
    #[inline(never)]
    pub(super) fn key(&mut self, key: &str) -> usize {
        let mark = self.0.len();
        let _ = write!(self.0, "[{}]", Value::String(key.to_owned()));
        mark
    }

    pub(super) fn cut(&mut self, mark: usize) {
        self.0.truncate(mark);
    }

    /// The path as errors hold it.
    pub(super) fn text(&self) -> String {
        self.0.clone()
    }

    pub(super) fn as_str(&self) -> &str {
        &self.0
    }
}
