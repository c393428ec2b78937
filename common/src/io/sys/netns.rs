//! Network namespaces: run a closure on a thread of its own that has joined one.
//!
//! `setns(CLONE_NEWNET)` moves only the calling thread, and a socket keeps the namespace it was
//! created in. So a socket (or a TCP connection) made inside [`in_netns`] works from any thread
//! afterwards, while the caller's own threads never leave the namespace they are in.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::path::Path;

/// Runs `f` on a new thread that first joins the network namespace `ns` (a namespace file: a
/// bind mount such as `/var/run/netns/NAME` that `ip netns add` makes, or `/proc/PID/ns/net`),
/// and returns what `f` returned. The thread ends when `f` returns, so nothing else ever runs
/// in that namespace by accident. A panic in `f` is resumed on the calling thread.
///
/// Joining a network namespace needs `CAP_SYS_ADMIN`.
pub fn in_netns<T: Send>(ns: &Path, f: impl FnOnce() -> T + Send) -> io::Result<T> {
    let file = File::open(ns)?;
    std::thread::scope(|s| {
        s.spawn(|| {
            join_netns(file.as_fd())?;
            Ok(f())
        })
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// Moves the calling thread into the network namespace behind `ns`.
fn join_netns(ns: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: setns(2) takes a descriptor and a flag and reads or writes no memory of ours. The
    // descriptor is borrowed, so it stays open for the whole call. Its one effect, a new network
    // namespace for the calling thread, breaks no invariant Rust relies on; this function is
    // private and called only from the thread `in_netns` spawns for `f` alone, which ends
    // when `f` returns.
    if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_that_is_no_namespace_is_refused() {
        // Whatever our privileges, /dev/null is no namespace: EINVAL (or EPERM unprivileged).
        let r = in_netns(Path::new("/dev/null"), || 7);
        assert!(r.is_err(), "{r:?}");
        assert!(in_netns(Path::new("/nonexistent/netns"), || 7).is_err());
    }

    #[test]
    fn the_closure_runs_and_its_value_comes_back() {
        // Our own namespace: joining it changes nothing, and needs CAP_SYS_ADMIN.
        match in_netns(Path::new("/proc/self/ns/net"), || 7) {
            Ok(v) => assert_eq!(v, 7),
            Err(e) => assert_eq!(e.raw_os_error(), Some(libc::EPERM), "{e}"),
        }
    }
}
