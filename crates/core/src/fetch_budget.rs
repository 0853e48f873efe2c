//! The fetch budget: how many files, and how many of their bytes, the syncs sharing it hold in
//! memory at once. A Lambda invocation syncs every repository of its batch with one budget, so a
//! batch of large models waits its turn instead of exceeding the function's memory.
//!
//! A file is admitted in two steps. [`FetchBudget::admit`] takes one of the file permits; then the
//! Git host adapter charges the file's bytes to the [`Admission`] before it reads them: its size
//! at once when the host announces it (`Content-Length`, [`Admission::announce`]), otherwise as
//! the body comes in ([`Admission::reading`]): a small allowance first, and the largest size a
//! file may have once it passes the allowance. The engine gives back what a body did not use once
//! it is read ([`Admission::settle`]) and the rest when the file is applied (the admission is
//! dropped).
//!
//! The byte pool holds `largest + (files - 1) x allowance`, so small files still go `files` at a
//! time and a file of the largest size goes alone. It cannot deadlock: every reservation past the
//! allowance is made in one step, so a file that waits for bytes holds at most the allowance, and
//! every file holding more is reading or applying, and will give them back. Once they have, the
//! pool has room for the largest file beside the allowances of all the others.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The default [`FetchBudget::concurrency`].
pub const DEFAULT_FETCH_CONCURRENCY: usize = 8;

/// The default [`FetchBudget::allowance`]: what a file whose size is not announced may read before
/// it must reserve the largest size.
pub const DEFAULT_FILE_ALLOWANCE: u64 = 1024 * 1024;

/// The byte pool counts in KiB (a semaphore counts in `u32`): a reservation is rounded up to it.
const UNIT: u64 = 1024;

/// File permits and a pool of bytes, shared by its clones: every sync holding a clone draws on
/// the same ones, so together they never hold more files than [`FetchBudget::concurrency`], nor
/// more bytes of them than [`FetchBudget::byte_capacity`].
#[derive(Debug, Clone)]
pub struct FetchBudget {
    pool: Arc<Pool>,
}

#[derive(Debug)]
struct Pool {
    files: Arc<Semaphore>,
    /// In [`UNIT`]s.
    bytes: Semaphore,
    concurrency: usize,
    largest: u64,
    allowance: u64,
}

impl Pool {
    fn units(bytes: u64) -> u32 {
        u32::try_from(bytes.div_ceil(UNIT)).unwrap_or(u32::MAX)
    }
}

impl FetchBudget {
    /// `concurrency` files at once (at least 1), each up to the default size cap
    /// ([`crate::sync::DEFAULT_MAX_MODEL_BYTES`]).
    pub fn new(concurrency: usize) -> Self {
        Self::with_bytes(
            concurrency,
            crate::sync::DEFAULT_MAX_MODEL_BYTES,
            DEFAULT_FILE_ALLOWANCE,
        )
    }

    /// `concurrency` files at once (at least 1), one of them up to `largest` bytes and the others
    /// up to `allowance` (at most `largest`) when no larger one is being read; a pool of
    /// `largest + (concurrency - 1) x allowance` bytes.
    pub fn with_bytes(concurrency: usize, largest: u64, allowance: u64) -> Self {
        let concurrency = concurrency.max(1);
        let largest = largest.max(UNIT);
        let allowance = allowance.clamp(UNIT, largest);
        let units = u64::from(Pool::units(largest))
            + (concurrency as u64 - 1).saturating_mul(u64::from(Pool::units(allowance)));
        let units = usize::try_from(units).unwrap_or(usize::MAX).min(Semaphore::MAX_PERMITS);
        Self {
            pool: Arc::new(Pool {
                files: Arc::new(Semaphore::new(concurrency)),
                bytes: Semaphore::new(units),
                concurrency,
                largest,
                allowance,
            }),
        }
    }

    /// How many files are fetched and applied at once.
    pub fn concurrency(&self) -> usize {
        self.pool.concurrency
    }

    /// The most bytes one file is charged (a larger one is charged this much).
    pub fn largest(&self) -> u64 {
        self.pool.largest
    }

    /// What a file whose size is not announced reads before it reserves [`FetchBudget::largest`].
    pub fn allowance(&self) -> u64 {
        self.pool.allowance
    }

    /// The bytes the files of this budget may hold together.
    pub fn byte_capacity(&self) -> u64 {
        self.pool.largest + (self.pool.concurrency as u64 - 1) * self.pool.allowance
    }

    /// Waits for a file permit: the file may then be fetched, its bytes charged to the admission.
    pub async fn admit(&self) -> Admission {
        // The semaphore is never closed, so acquiring cannot fail.
        let permit = Arc::clone(&self.pool.files).acquire_owned().await.ok();
        Admission {
            pool: Some(Arc::clone(&self.pool)),
            _permit: permit,
            held: 0,
            announced: false,
        }
    }
}

/// One file's hold on a [`FetchBudget`]: its file permit and the bytes reserved for it, given
/// back when it is dropped. The Git host adapter charges the file's bytes to it before reading
/// them.
#[derive(Debug)]
pub struct Admission {
    /// `None`: [`Admission::unbounded`].
    pool: Option<Arc<Pool>>,
    _permit: Option<OwnedSemaphorePermit>,
    /// Reserved, in [`UNIT`]s.
    held: u32,
    announced: bool,
}

impl Admission {
    /// An admission charged to no budget, for a read outside a sync (tools, tests).
    pub fn unbounded() -> Self {
        Self {
            pool: None,
            _permit: None,
            held: 0,
            announced: false,
        }
    }

    /// The body will hold `size` bytes (announced before any of it is read): waits until they
    /// are reserved (at most [`FetchBudget::largest`]). Nothing more is charged for this body.
    pub async fn announce(&mut self, size: u64) {
        self.announced = true;
        if let Some(largest) = self.pool.as_ref().map(|p| p.largest) {
            self.reserve(Pool::units(size.min(largest))).await;
        }
    }

    /// A body of unannounced size will hold `total` bytes once the chunk in hand is kept: waits
    /// until they are covered, reserving the allowance first, then [`FetchBudget::largest`] at
    /// once (never in pieces, so that a file waiting for bytes holds no more than the allowance).
    /// Charges nothing after [`Admission::announce`].
    pub async fn reading(&mut self, total: u64) {
        let Some(pool) = self.pool.as_ref() else {
            return;
        };
        if self.announced || u64::from(self.held) * UNIT >= total {
            return;
        }
        let target = if total <= pool.allowance {
            pool.allowance
        } else {
            pool.largest
        };
        self.reserve(Pool::units(target)).await;
    }

    /// The body is read whole and holds `size` bytes: gives back what was reserved beyond them.
    pub fn settle(&mut self, size: u64) {
        let keep = Pool::units(size).min(self.held);
        self.release(self.held - keep);
    }

    /// The bytes reserved now.
    pub fn reserved(&self) -> u64 {
        u64::from(self.held) * UNIT
    }

    async fn reserve(&mut self, units: u32) {
        let Some(pool) = self.pool.as_ref() else {
            return;
        };
        if units <= self.held {
            return;
        }
        // Never closed, so acquiring cannot fail; the permits are given back by `release`.
        if let Ok(permits) = pool.bytes.acquire_many(units - self.held).await {
            permits.forget();
            self.held = units;
        }
    }

    fn release(&mut self, units: u32) {
        if let Some(pool) = self.pool.as_ref()
            && units > 0
        {
            pool.bytes.add_permits(units as usize);
            self.held -= units;
        }
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.release(self.held);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KIB: u64 = 1024;

    fn budget() -> FetchBudget {
        FetchBudget::with_bytes(3, 16 * KIB, 2 * KIB)
    }

    #[test]
    fn the_pool_holds_the_largest_file_beside_the_allowance_of_every_other() {
        assert_eq!(budget().byte_capacity(), 20 * KIB);
        assert_eq!(FetchBudget::new(8).byte_capacity(), 39 * 1024 * KIB);
    }

    #[tokio::test]
    async fn an_announced_size_is_reserved_whole_and_given_back_when_the_file_is_done() {
        // Arrange
        let budget = budget();
        let mut admission = budget.admit().await;

        // Act
        admission.announce(5 * KIB + 1).await;
        admission.reading(15 * KIB).await;

        // Assert
        assert_eq!(admission.reserved(), 6 * KIB, "rounded up, and no more once announced");
        assert_eq!(budget.pool.bytes.available_permits(), 14);
        drop(admission);
        assert_eq!(budget.pool.bytes.available_permits(), 20);
    }

    #[tokio::test]
    async fn an_unannounced_body_takes_the_allowance_then_the_largest_size_then_settles() {
        // Arrange
        let budget = budget();
        let mut admission = budget.admit().await;

        // Act / Assert
        admission.reading(100).await;
        assert_eq!(admission.reserved(), 2 * KIB);
        admission.reading(2 * KIB + 1).await;
        assert_eq!(admission.reserved(), 16 * KIB);
        admission.settle(3 * KIB);
        assert_eq!(admission.reserved(), 3 * KIB);
        assert_eq!(budget.pool.bytes.available_permits(), 17);
    }

    #[tokio::test]
    async fn a_file_larger_than_the_largest_is_charged_the_largest() {
        let budget = budget();
        let mut admission = budget.admit().await;

        admission.announce(1 << 40).await;

        assert_eq!(admission.reserved(), 16 * KIB);
    }

    #[tokio::test]
    async fn a_file_waits_until_the_bytes_it_announces_are_free() {
        // Arrange: one file holds most of the pool.
        let budget = budget();
        let mut big = budget.admit().await;
        big.announce(16 * KIB).await;
        let mut next = budget.admit().await;

        // Act
        let mut waiting = std::pin::pin!(next.announce(8 * KIB));
        let before = futures::poll!(waiting.as_mut());
        drop(big);
        let after = futures::poll!(waiting.as_mut());

        // Assert
        assert!(before.is_pending(), "4 KiB free: the file waits");
        assert!(after.is_ready(), "admitted once the large file is done");
    }

    #[tokio::test]
    async fn an_unbounded_admission_charges_nothing() {
        let mut admission = Admission::unbounded();
        admission.announce(1 << 40).await;
        admission.reading(1 << 41).await;
        assert_eq!(admission.reserved(), 0);
    }
}
