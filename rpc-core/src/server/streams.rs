//! The streams of one connection: the credit of the streams it sends (results) and the items
//! of the streams it receives (arguments), by the id of the call that opened them.

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::Semaphore;

use crate::error::ProtocolError;
use crate::protocol::WireError;
use crate::stream::produce::overflows;
use crate::stream::Inbound;

/// A result stream, as the server sends it: the credit its client grants, and the gate its
/// items pass, which a shutdown closes before it sends the stream's end, so that no item a
/// producer was sending on another thread follows the end.
#[derive(Clone)]
pub(super) struct Sending {
    pub(super) credit: Arc<Semaphore>,
    pub(super) gate: Arc<Mutex<bool>>,
    /// The call's reply went out: the stream is open on the client's side. Changed and read
    /// with the gate held, so that a shutdown either answers the call or ends its stream.
    pub(super) replied: Arc<AtomicBool>,
}

/// A connection's open streams. Dropped with the connection, it cuts the streams from the
/// client that are still open.
#[derive(Default)]
pub(super) struct Streams {
    /// Result streams (opening or open), with the credit their client has granted.
    sending: HashMap<u64, Sending>,
    /// Argument streams, from the credit the server granted until the client's end.
    receiving: HashMap<u64, Arc<Inbound>>,
}

impl Streams {
    /// How many calls have a stream open, either way.
    pub(super) fn open(&self) -> usize {
        self.sending.len()
            + self
                .receiving
                .keys()
                .filter(|id| !self.sending.contains_key(id))
                .count()
    }

    /// How many streams from the client are open, of calls that send no stream back and for
    /// which `running` holds (their handler runs).
    pub(super) fn receiving_only(&self, running: impl Fn(u64) -> bool) -> usize {
        self.receiving
            .keys()
            .filter(|&&id| !self.sending.contains_key(&id) && running(id))
            .count()
    }

    /// How many result streams are open: their tasks are not calls in flight.
    pub(super) fn sending(&self) -> usize {
        self.sending.len()
    }

    /// Opens result stream `id`; returns its credit (which the client grants) and its gate.
    pub(super) fn send(&mut self, id: u64) -> Sending {
        let sending = Sending {
            credit: Arc::new(Semaphore::new(0)),
            gate: Arc::new(Mutex::new(true)),
            replied: Arc::new(AtomicBool::new(false)),
        };
        self.sending.insert(id, sending.clone());
        sending
    }

    /// Opens argument stream `id`, whose client has just been granted its first credit.
    pub(super) fn receive(&mut self, id: u64, slot: Arc<Inbound>) {
        slot.open();
        self.receiving.insert(id, slot);
    }

    /// Whether argument stream `id` is open: its id is still in use.
    pub(super) fn receives(&self, id: u64) -> bool {
        self.receiving.contains_key(&id)
    }

    /// The result stream `id` has ended or was cancelled (or its task ended otherwise): it is
    /// forgotten; returns it, if it was a result stream.
    pub(super) fn sent(&mut self, id: u64) -> Option<Sending> {
        self.sending.remove(&id)
    }

    /// The call `id` is cancelled: both of its streams are forgotten, and its stream from the
    /// client is cut for a task that still holds it.
    pub(super) fn forget(&mut self, id: u64) {
        self.sending.remove(&id);
        if let Some(slot) = self.receiving.remove(&id) {
            slot.cut();
        }
    }

    /// The client granted `bytes` more on result stream `id`. Credit for a stream that has
    /// just ended (it raced with the end) is ignored.
    ///
    /// # Errors
    ///
    /// [`ProtocolError::CreditOverflow`] if the credit cannot be counted.
    pub(super) fn credit(&self, id: u64, bytes: u32) -> Result<(), ProtocolError> {
        if let Some(Sending { credit, .. }) = self.sending.get(&id) {
            if overflows(credit.available_permits(), bytes) {
                return Err(ProtocolError::CreditOverflow { stream: id });
            }
            credit.add_permits(usize::try_from(bytes).unwrap_or(usize::MAX));
        }
        Ok(())
    }

    /// An item of argument stream `id` arrived.
    ///
    /// # Errors
    ///
    /// [`ProtocolError::UnknownStream`] if the stream is not open (never opened or already
    /// ended), [`ProtocolError::CreditExceeded`] if the client had no credit for it,
    /// [`ProtocolError::ItemTooLarge`] if it ends an item in parts longer than the maximum
    /// frame.
    pub(super) fn item(&self, id: u64, frame: Bytes, body_at: usize) -> Result<(), ProtocolError> {
        let slot = self
            .receiving
            .get(&id)
            .ok_or(ProtocolError::UnknownStream { stream: id })?;
        slot.push(frame, body_at).map_err(|e| e.at(id))
    }

    /// A part of an item of argument stream `id` arrived, in `frame` from `body_at`.
    ///
    /// # Errors
    ///
    /// [`ProtocolError::UnknownStream`] if the stream is not open,
    /// [`ProtocolError::CreditExceeded`] if the part starts an item and the client had no
    /// credit for it, [`ProtocolError::ItemTooLarge`] if the item's parts are already longer
    /// than the maximum frame.
    pub(super) fn part(&self, id: u64, frame: &Bytes, body_at: usize) -> Result<(), ProtocolError> {
        let slot = self
            .receiving
            .get(&id)
            .ok_or(ProtocolError::UnknownStream { stream: id })?;
        slot.push_part(frame.slice(body_at..), body_at)
            .map_err(|e| e.at(id))
    }

    /// The client ended argument stream `id`: cleanly, or with `error` (its side of the stream
    /// failed), which fails the call with it.
    ///
    /// # Errors
    ///
    /// [`ProtocolError::UnknownStream`] if the stream is not open,
    /// [`ProtocolError::EndInsideItem`] if it ended cleanly while an item of it was arriving
    /// in parts.
    pub(super) fn end(&mut self, id: u64, error: Option<WireError>) -> Result<(), ProtocolError> {
        let slot = self
            .receiving
            .remove(&id)
            .ok_or(ProtocolError::UnknownStream { stream: id })?;
        match error {
            None => slot.end().map_err(|e| e.at(id)),
            Some(error) => {
                slot.end_with(error);
                Ok(())
            }
        }
    }

    /// The client is gone: every stream is forgotten, and those from the client are cut.
    pub(super) fn clear(&mut self) {
        self.sending.clear();
        for (_, slot) in self.receiving.drain() {
            slot.cut();
        }
    }

    /// The result streams, taken out: the server is shutting down and ends them (or answers
    /// the calls that have not opened theirs).
    pub(super) fn drain_sending(&mut self) -> Vec<(u64, Sending)> {
        self.sending.drain().collect()
    }
}

impl Drop for Streams {
    fn drop(&mut self) {
        self.clear();
    }
}
