//! Stream credit as the consumer counts it, in bytes of item frames (each frame's length as its
//! length prefix gives it: header and body).
//!
//! The producer may start an item while the credit it holds is positive, and spends the item's
//! whole length on it (so its last item may overdraw the credit by less than one frame). The
//! consumer grants `window` bytes when the stream opens and grants back what its user takes,
//! half a window at a time. So a consumer holds at most `window` plus one frame of items that
//! arrived and were not taken.

use crate::stream::produce::MAX_CREDIT;

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

    /// An item frame of `len` bytes arrived.
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
            .saturating_sub(i64::try_from(len).unwrap_or(i64::MAX));
        Ok(())
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

    /// An item frame of `len` bytes was taken: returns the credit to grant back, once half a
    /// window or more was taken.
    pub(crate) fn take(&mut self, len: usize) -> Option<u32> {
        self.bytes = self
            .bytes
            .saturating_add(u32::try_from(len).unwrap_or(u32::MAX));
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

    #[test]
    fn the_last_item_may_overdraw_and_the_next_waits_for_credit() {
        let mut granted = Granted::new(100);
        granted.spend(60).expect("within the window");
        granted.spend(60).expect("the credit was positive");
        assert!(
            granted.spend(1).is_err(),
            "nothing left: 20 bytes overdrawn"
        );
        granted.grant(20);
        assert!(
            granted.spend(1).is_err(),
            "the overdraft is paid, nothing more"
        );
        granted.grant(1);
        granted
            .spend(500)
            .expect("one byte of credit starts any item");
    }

    #[test]
    fn credit_goes_back_half_a_window_at_a_time() {
        let mut taken = Taken::new(100);
        assert_eq!(taken.take(30), None);
        assert_eq!(taken.take(30), Some(60));
        assert_eq!(taken.take(49), None);
        assert_eq!(taken.take(1), Some(50));
        assert_eq!(
            taken.take(1000),
            Some(1000),
            "an item larger than the window"
        );
    }
}
