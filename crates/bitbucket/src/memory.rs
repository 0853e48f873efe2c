//! Large raw bodies and glibc's malloc. A model's bytes are read into one buffer of up to the size
//! cap (32 MiB), freed once the model is written. glibc serves such a block with its own mapping
//! and unmaps it when freed, but then raises its mmap threshold to the freed size (up to 32 MiB):
//! the next models are carved from a heap arena instead, and stay resident after they are freed,
//! up to one per arena (each runtime thread may get its own). The fetch budget keeps one large
//! model in memory at a time; this keeps the process's resident memory to it too.

/// The smallest allocation served by its own mapping, given back to the OS when freed.
const MMAP_THRESHOLD: i32 = 1024 * 1024;

/// Makes every allocation of 1 MiB or more (a large model's bytes) its own mapping, given back to
/// the OS when it is freed, whatever was freed before. A process that syncs (the sync function,
/// `hubsync`) calls it once at start-up. Only glibc needs it; elsewhere it does nothing.
pub fn give_large_bodies_back_to_the_os() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `mallopt` sets one of malloc's parameters (under malloc's own lock); it reads and
    // writes no memory of ours.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
    }
}
