//! Promiscuous mode for as long as a value lives: simulated clients use source MACs the NIC
//! does not own, and a real NIC drops replies to them unless it is promiscuous. (veth and tap
//! deliver them anyway.) Held through a packet-socket membership, so the kernel undoes it when
//! the socket closes, even if this process is killed.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};

pub struct Promisc {
    _fd: OwnedFd,
}

impl Promisc {
    pub fn enable(ifindex: u32) -> io::Result<Promisc> {
        // SAFETY: plain syscall with constant arguments; the result is checked and owned at once.
        let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let mreq = libc::packet_mreq {
            mr_ifindex: ifindex as libc::c_int,
            mr_type: libc::PACKET_MR_PROMISC as libc::c_ushort,
            mr_alen: 0,
            mr_address: [0; 8],
        };
        // SAFETY: `mreq` is a live packet_mreq and we pass its exact size; `raw` is open.
        let ret = unsafe {
            libc::setsockopt(
                raw,
                libc::SOL_PACKET,
                libc::PACKET_ADD_MEMBERSHIP,
                (&mreq as *const libc::packet_mreq).cast(),
                std::mem::size_of::<libc::packet_mreq>() as libc::socklen_t,
            )
        };
        if ret < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Promisc { _fd: fd })
    }
}
