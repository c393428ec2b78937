//! Linux raw-socket backends and the few other system calls the workers and the test rig need.
//! The only socket, signal and process `unsafe` in l2san lives below this module.

pub mod netns;
pub mod packet;
pub mod privilege;
pub mod process;
pub mod signal;
pub mod xdp;

pub use packet::{PacketRx, PacketSocket, PacketTx, RingStats};

use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

/// The result of a system call that returns a negative value and sets `errno` on failure
/// (`-1` from libc's wrappers and from `syscall(2)`): the error `errno` names, or the value.
pub(crate) fn cvt<T: Default + PartialOrd>(ret: T) -> std::io::Result<T> {
    if ret < T::default() {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Wait for `events` on `fd` up to `timeout`: the events that came (`revents`), 0 on timeout
/// or EINTR.
pub(crate) fn poll_one(
    fd: RawFd,
    events: libc::c_short,
    timeout: Duration,
) -> io::Result<libc::c_short> {
    let mut pfd = libc::pollfd {
        fd,
        events,
        revents: 0,
    };
    let ms = timeout.as_millis().min(i32::MAX as u128) as libc::c_int;
    // SAFETY: one valid pollfd, count 1.
    let n = unsafe { libc::poll(&mut pfd, 1, ms) };
    if n < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            return Ok(0);
        }
        return Err(e);
    }
    // One fd: poll counts it (n = 1) exactly when its revents are not empty.
    Ok(if n > 0 { pfd.revents } else { 0 })
}

/// A pending error on the socket (ENETDOWN when the interface goes away), if any.
pub(crate) fn socket_error(fd: RawFd) -> io::Result<()> {
    let mut err: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `err` and `len` are valid for writes of their sizes.
    cvt(unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            (&mut err as *mut libc::c_int).cast(),
            &mut len,
        )
    })?;
    if err != 0 {
        return Err(io::Error::from_raw_os_error(err));
    }
    Ok(())
}

/// The unit of the CPU times in `/proc/<pid>/stat` (`sysconf(_SC_CLK_TCK)`), for tools that
/// measure CPU per I/O.
pub fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf takes a constant and touches no memory of ours.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}
