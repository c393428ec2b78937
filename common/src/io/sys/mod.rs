//! Linux raw-socket backends and the few other system calls the workers and the test rig need.
//! The only socket, signal and process `unsafe` in l2san lives below this module.

pub mod netns;
pub mod packet;
pub mod privilege;
pub mod process;
pub mod signal;
pub mod xdp;

pub use packet::{PacketRx, PacketSocket, PacketTx, RingStats};

/// The result of a system call that returns a negative value and sets `errno` on failure
/// (`-1` from libc's wrappers and from `syscall(2)`): the error `errno` names, or the value.
pub(crate) fn cvt<T: Default + PartialOrd>(ret: T) -> std::io::Result<T> {
    if ret < T::default() {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(ret)
    }
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
