//! Large raw bodies and glibc's malloc. A model's bytes are read into one buffer of up to the size
//! cap (32 MiB), freed once the model is written. glibc serves such a block with its own mapping
//! and unmaps it when freed, but then raises its mmap threshold to the freed size (up to 32 MiB):
//! the next models are carved from a heap arena instead, and stay resident after they are freed,
//! up to one per arena (each runtime thread may get its own). The fetch budget keeps one large
//! model in memory at a time; this keeps the process's resident memory to it too.
//!
//! Fixing the mmap threshold also fixes glibc's trim threshold, at 128 KiB: every model's buffer
//! freed at the top of a heap gave its pages back, and the next model faulted them in again, page
//! by page: a full sync of 2,000 models of 10 to 190 KB took about 30,000 page faults, and the
//! faults, trims and heap moves were about 0.24 CPU-s of it (perf; the whole sync's own CPU time
//! is 1.5 to 2 CPU-s). Each heap keeps up to [`TRIM_THRESHOLD`] free instead: the same sync takes
//! 500 to 4,000 faults, about 0.02 CPU-s, and its peak RSS goes from 33 to 39 MiB.

/// The smallest allocation served by its own mapping, given back to the OS when freed.
const MMAP_THRESHOLD: i32 = 1024 * 1024;

/// The free memory at the top of a heap kept for the next allocations rather than given back to
/// the OS: a few models' worth.
const TRIM_THRESHOLD: i32 = 4 * 1024 * 1024;

/// Makes every allocation of 1 MiB or more (a large model's bytes) its own mapping, given back to
/// the OS when it is freed, whatever was freed before, and lets each heap keep up to 4 MiB free
/// (smaller models' buffers are reused rather than faulted in again). A process that syncs (the
/// sync function, `hubsync`) calls it once at start-up. Only glibc needs it; elsewhere it does nothing.
pub fn give_large_bodies_back_to_the_os() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `mallopt` sets one of malloc's parameters (under malloc's own lock); it reads and
    // writes no memory of ours.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
    }
}
