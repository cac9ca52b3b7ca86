//! Process-wide set-up the `confab` binary does once, before its runtime starts. It is not part
//! of `start`, so a program embedding Confab (the tests) keeps its own limits and allocator.

/// Makes large allocations (argon2's 19 MiB per password hash) go straight to mmap and back to
/// the kernel when freed. glibc otherwise raises its mmap threshold after the first such free
/// and keeps later ones in per-thread arenas: a burst of logins left ~850 MB resident.
pub fn return_large_allocations() {
    // SAFETY: mallopt only tunes the allocator; called before other threads allocate much.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1024 * 1024);
    }
}

/// Raises the soft open-files limit to the hard limit: thousands of sockets are normal here.
pub fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}
