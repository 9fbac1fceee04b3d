//! Stream credit as the consumer counts it, in bytes: an item costs its frame's length (header
//! and body, as the length prefix gives it) plus [`STREAM_ITEM_OVERHEAD`], what keeping an item
//! apart costs the receiver beyond its bytes.
//!
//! The producer may start an item while the credit it holds is positive, and spends the item's
//! whole cost on it (so its last item may overdraw the credit by less than one item). The
//! consumer grants `window` bytes when the stream opens and grants back what its user takes,
//! half a window at a time. So a consumer holds at most `window` plus one item of items that
//! arrived and were not taken, their keeping included.

use crate::protocol::STREAM_ITEM_OVERHEAD;
use crate::stream::produce::MAX_CREDIT;

/// The credit an item whose frame is `len` bytes long costs.
pub(crate) fn cost(len: usize) -> u64 {
    u64::try_from(len)
        .unwrap_or(u64::MAX)
        .saturating_add(u64::from(STREAM_ITEM_OVERHEAD))
}

/// The stream window of clients and servers unless configured: 1 MiB.
pub(crate) const DEFAULT_WINDOW: u32 = 1 << 20;

/// `bytes` as a stream window: at least 1 byte, at most [`MAX_CREDIT`] bytes.
pub(crate) fn clamp_window(bytes: u32) -> u32 {
    let max = u32::try_from(MAX_CREDIT).unwrap_or(u32::MAX);
    bytes.clamp(1, max)
}

/// What the consumer has granted and the producer not spent yet.
#[derive(Debug)]
pub(crate) struct Granted {
    /// Bytes the producer may still start items on; negative while an item overdrew it.
    unspent: i64,
}

/// The producer started an item with no credit left.
#[derive(Debug)]
pub(crate) struct OverCredit;

impl Granted {
    /// The credit of a stream just opened with a window of `window` bytes.
    pub(crate) fn new(window: u32) -> Self {
        Self {
            unspent: i64::from(window),
        }
    }

    /// An item whose frame is `len` bytes long arrived.
    ///
    /// # Errors
    ///
    /// [`OverCredit`] if the producer had no credit left for it.
    pub(crate) fn spend(&mut self, len: usize) -> Result<(), OverCredit> {
        if self.unspent <= 0 {
            return Err(OverCredit);
        }
        self.unspent = self
            .unspent
            .saturating_sub(i64::try_from(cost(len)).unwrap_or(i64::MAX));
        Ok(())
    }

    /// A part of an item sent in parts arrived, `len` bytes of its body; `first` if it starts
    /// the item. Its last frame is spent with [`Granted::spend_last`]: an item costs the same
    /// whole or in parts.
    ///
    /// # Errors
    ///
    /// [`OverCredit`] if the part starts an item and the producer had no credit left for it.
    pub(crate) fn spend_part(&mut self, len: usize, first: bool) -> Result<(), OverCredit> {
        if first && self.unspent <= 0 {
            return Err(OverCredit);
        }
        self.unspent = self
            .unspent
            .saturating_sub(i64::try_from(len).unwrap_or(i64::MAX));
        Ok(())
    }

    /// The last frame, `len` bytes long, of an item that started in parts arrived.
    pub(crate) fn spend_last(&mut self, len: usize) {
        self.unspent = self
            .unspent
            .saturating_sub(i64::try_from(cost(len)).unwrap_or(i64::MAX));
    }

    /// `bytes` more were granted.
    pub(crate) fn grant(&mut self, bytes: u32) {
        self.unspent = self.unspent.saturating_add(i64::from(bytes));
    }
}

/// What the consumer's user has taken since credit was last granted back.
#[derive(Debug)]
pub(crate) struct Taken {
    window: u32,
    bytes: u32,
}

impl Taken {
    /// Nothing taken yet of a stream with a window of `window` bytes.
    pub(crate) fn new(window: u32) -> Self {
        Self { window, bytes: 0 }
    }

    /// An item whose frame is `len` bytes long was taken: returns the credit to grant back,
    /// once half a window or more was taken.
    pub(crate) fn take(&mut self, len: usize) -> Option<u32> {
        self.bytes = self
            .bytes
            .saturating_add(u32::try_from(cost(len)).unwrap_or(u32::MAX));
        (self.bytes >= self.window.div_ceil(2)).then(|| std::mem::take(&mut self.bytes))
    }

    /// The window, in bytes.
    pub(crate) fn window(&self) -> u32 {
        self.window
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OVER: u32 = STREAM_ITEM_OVERHEAD;

    #[test]
    fn the_last_item_may_overdraw_and_the_next_waits_for_credit() {
        let mut granted = Granted::new(2 * OVER + 100);
        granted.spend(60).expect("within the window");
        granted.spend(60).expect("the credit was positive");
        assert!(granted.spend(1).is_err(), "nothing left: 20 overdrawn");
        granted.grant(20);
        assert!(granted.spend(1).is_err(), "the overdraft is paid, no more");
        granted.grant(1);
        granted
            .spend(500)
            .expect("one byte of credit starts any item");
    }

    #[test]
    fn an_item_in_parts_costs_what_it_would_whole() {
        // An item of 300 bytes of frame, 10 of them header, sent as two parts of 100 and a
        // last frame of 10 + 90.
        let mut whole = Granted::new(1000);
        whole.spend(300).expect("credit");
        let mut parts = Granted::new(1000);
        parts.spend_part(100, true).expect("credit");
        parts.spend_part(100, false).expect("within the item");
        parts.spend_last(100);
        assert_eq!(parts.unspent, whole.unspent);
        assert_eq!(whole.unspent, 1000 - 300 - i64::from(OVER));

        let mut spent = Granted::new(10);
        spent
            .spend_part(100, true)
            .expect("positive credit starts an item");
        spent
            .spend_part(100, false)
            .expect("the item goes on without credit");
        spent.spend_last(10);
        assert!(spent.spend_part(1, true).is_err(), "no credit for the next");
        assert!(spent.spend(1).is_err());
    }

    #[test]
    fn credit_goes_back_half_a_window_at_a_time() {
        let mut taken = Taken::new(2 * (OVER + 30));
        assert_eq!(taken.take(20), None);
        assert_eq!(taken.take(10), Some(2 * OVER + 30));
        assert_eq!(taken.take(29), None);
        assert_eq!(taken.take(1), Some(2 * OVER + 30));
        let large = taken.take(10_000);
        assert_eq!(large, Some(10_000 + OVER), "an item larger than the window");
    }
}
