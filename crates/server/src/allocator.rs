//! The process allocator. Every forward pass allocates and frees activation buffers of megabytes.
//! glibc returns them to the kernel each time and the next pass faults them in again (page faults
//! took ~15% of CPU samples in a bench profile); mimalloc reuses them. Its default purges freed
//! memory after 10 ms, which under load still refaults pages between passes (6% of bf16 forward
//! throughput); never purging kept every transient peak (a burst of large requests) resident for
//! good, so RSS only ever grew. Two seconds sits between: memory a busy server reuses every few
//! milliseconds stays, a burst's extra memory goes back to the kernel once the burst is over.

pub type Allocator = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc v3's include/mimalloc.h (the bindings name no constant).
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// How long freed memory stays reserved for reuse before it is returned to the kernel.
const PURGE_DELAY_MS: std::ffi::c_long = 2000;

/// Call first thing in `main`.
pub fn keep_freed_memory() {
    // SAFETY: setting an option is allowed at any time.
    unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, PURGE_DELAY_MS) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Guards the hard-coded index against a mimalloc upgrade renumbering its options: purge_delay
    /// is the only option whose default is 1000 (ms).
    #[test]
    fn purge_delay_is_the_option_we_set() {
        // SAFETY: reading an option is allowed at any time.
        assert_eq!(unsafe { libmimalloc_sys::mi_option_get(PURGE_DELAY) }, 1000);
    }
}
