//! What the crate's unit tests share.

/// A fixed pseudo-random walk (a linear congruential generator): the same steps on every
/// run, so a failing step can be named and replayed.
pub(crate) struct Walk(u64);

impl Walk {
    pub(crate) fn new(seed: u64) -> Walk {
        Walk(seed)
    }

    /// The next step, below `n`.
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}
