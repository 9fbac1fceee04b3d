//! The frames waiting for the writer task (stream frames aside), in order, each marked as a
//! call of this side or not: a side stops reading when the peer does not take its *replies*,
//! and its own calls waiting to go out must not count as such (a client that serves callbacks
//! would stop reading the replies to those very calls).

use bytes::Bytes;

/// Frames in the order they were sent, each with whether it is a call.
#[derive(Default)]
pub(super) struct Queue {
    frames: Vec<Bytes>,
    calls: Vec<bool>,
}

impl Queue {
    pub(super) fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    pub(super) fn len(&self) -> usize {
        self.frames.len()
    }

    /// The frames, in order.
    pub(super) fn frames(&self) -> &[Bytes] {
        &self.frames
    }

    pub(super) fn push(&mut self, frame: Bytes, call: bool) {
        self.frames.push(frame);
        self.calls.push(call);
    }

    /// Adds `frames` (all calls or none), emptying it.
    pub(super) fn append(&mut self, frames: &mut Vec<Bytes>, call: bool) {
        self.calls.resize(self.calls.len() + frames.len(), call);
        self.frames.append(frames);
    }

    /// Moves the first `count` frames to the end of `batch`; returns how many of their bytes
    /// are calls.
    pub(super) fn take_into(&mut self, batch: &mut Vec<Bytes>, count: usize) -> usize {
        let count = count.min(self.frames.len());
        let call_bytes = self.call_bytes(count);
        batch.extend(self.frames.drain(..count));
        self.calls.drain(..count);
        call_bytes
    }

    /// Forgets every frame (they were written, or will never be); returns how many of their
    /// bytes were calls. Keeps the allocations.
    pub(super) fn clear(&mut self) -> usize {
        let call_bytes = self.call_bytes(self.frames.len());
        self.frames.clear();
        self.calls.clear();
        call_bytes
    }

    /// Bytes of calls among the first `count` frames.
    fn call_bytes(&self, count: usize) -> usize {
        self.frames
            .iter()
            .zip(&self.calls)
            .take(count)
            .filter(|(_, &call)| call)
            .map(|(frame, _)| frame.len())
            .sum()
    }
}
