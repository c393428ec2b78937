//! A tiny AF_PACKET client for tests: whole Ethernet frames of one EtherType on one interface,
//! possibly inside a network namespace.
//!
//! [`RawSocket::open_in_netns`] opens the socket on a short-lived thread that first joins the
//! namespace (`setns(CLONE_NEWNET)` affects only the calling thread); a socket keeps the
//! namespace it was created in, so the returned socket can then be used from any thread while
//! the test's own threads stay in the root namespace.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

/// Receive buffer: larger than any frame at MTU 9000 (and then some, to detect truncation).
const RECV_BUF: usize = 16 * 1024;
/// `SO_RCVBUF` asked for, so that a burst of replies is not dropped before we read it.
const RCVBUF_BYTES: libc::c_int = 4 << 20;

/// A raw packet socket bound to one interface and one EtherType.
#[derive(Debug)]
pub struct RawSocket {
    fd: OwnedFd,
    ifindex: i32,
}

impl RawSocket {
    /// Opens a socket on `ifname` for `ethertype` inside the namespace named `netns` (as in
    /// `ip netns`, i.e. `/var/run/netns/<netns>`).
    pub fn open_in_netns(netns: &str, ifname: &str, ethertype: u16) -> io::Result<RawSocket> {
        let path = format!("/var/run/netns/{netns}");
        std::thread::scope(|s| {
            s.spawn(|| {
                let ns = File::open(&path)?;
                // SAFETY: setns takes a descriptor (valid: owned by `ns`, alive across the call)
                // and a flag; it only changes this thread's network namespace, and this thread
                // does nothing but open the socket and then ends.
                if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    return Err(io::Error::last_os_error());
                }
                RawSocket::open(ifname, ethertype)
            })
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("socket thread panicked")))
        })
    }

    /// Opens a socket on `ifname` for `ethertype` in the calling thread's namespace.
    pub fn open(ifname: &str, ethertype: u16) -> io::Result<RawSocket> {
        let name = std::ffi::CString::new(ifname)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in interface name"))?;
        // SAFETY: `name` is a valid NUL-terminated string that outlives the call.
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
        if ifindex == 0 {
            return Err(io::Error::last_os_error());
        }
        let ifindex = i32::try_from(ifindex).map_err(io::Error::other)?;
        let proto = ethertype.to_be();
        // SAFETY: plain system call with integer arguments; the result is checked and owned
        // at once.
        let raw = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::c_int::from(proto),
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let sock = RawSocket { fd, ifindex };
        // Root may exceed rmem_max; fall back to what the limit allows.
        if sock
            .setsockopt(libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, RCVBUF_BYTES)
            .is_err()
        {
            sock.setsockopt(libc::SOL_SOCKET, libc::SO_RCVBUF, RCVBUF_BYTES)?;
        }
        let addr = sock.sockaddr(proto);
        // SAFETY: `addr` is a fully initialised sockaddr_ll and the length passed is its size.
        let rc = unsafe {
            libc::bind(
                sock.fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        // Between socket() and bind() frames of this type from any interface may have queued.
        sock.drain();
        Ok(sock)
    }

    fn setsockopt(&self, level: i32, name: i32, value: libc::c_int) -> io::Result<()> {
        // SAFETY: `value` is a c_int living across the call, and its size is passed.
        let rc = unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                level,
                name,
                (&value as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    fn sockaddr(&self, proto_be: u16) -> libc::sockaddr_ll {
        // SAFETY: sockaddr_ll is plain old data for which all-zero bytes are a valid value.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = proto_be;
        addr.sll_ifindex = self.ifindex;
        addr
    }

    /// Sends one whole Ethernet frame (headers included, no FCS) as is: no padding is added,
    /// so frames shorter than 60 bytes go out short.
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        // SAFETY: `frame` is valid for reads of `frame.len()` bytes for the whole call.
        let n = unsafe { libc::send(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        if n as usize != frame.len() {
            return Err(io::Error::other(format!(
                "sent {n} of {} bytes",
                frame.len()
            )));
        }
        Ok(())
    }

    /// The next frame that arrived on the interface (not one sent from it), waiting up to
    /// `timeout`; `None` when none came.
    pub fn recv(&self, timeout: Duration) -> io::Result<Option<Vec<u8>>> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let mut pfd = libc::pollfd {
                fd: self.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            let ms = left.as_millis().min(i32::MAX as u128) as libc::c_int;
            // SAFETY: one valid pollfd, count 1.
            let n = unsafe { libc::poll(&mut pfd, 1, ms) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if n == 0 {
                return Ok(None);
            }
            match self.recv_now()? {
                Some(frame) => return Ok(Some(frame)),
                None if Instant::now() >= deadline => return Ok(None),
                None => {}
            }
        }
    }

    /// One queued incoming frame without waiting; `None` when nothing (incoming) is queued.
    fn recv_now(&self) -> io::Result<Option<Vec<u8>>> {
        loop {
            let mut buf = vec![0u8; RECV_BUF];
            // SAFETY: sockaddr_ll is plain old data for which all-zero bytes are a valid value.
            let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            let mut from_len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
            // SAFETY: `buf` is valid for writes of its length, `from`/`from_len` for writes of
            // a sockaddr_ll and a socklen_t; all outlive the call.
            let n = unsafe {
                libc::recvfrom(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT | libc::MSG_TRUNC,
                    (&mut from as *mut libc::sockaddr_ll).cast(),
                    &mut from_len,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                return match e.kind() {
                    io::ErrorKind::WouldBlock => Ok(None),
                    io::ErrorKind::Interrupted => continue,
                    _ => Err(e),
                };
            }
            let n = n as usize;
            if n > buf.len() {
                return Err(io::Error::other(format!(
                    "received a {n}-byte frame, larger than the {RECV_BUF}-byte buffer"
                )));
            }
            if from.sll_pkttype == libc::PACKET_OUTGOING {
                continue;
            }
            buf.truncate(n);
            return Ok(Some(buf));
        }
    }

    /// Discards every frame already queued.
    pub fn drain(&self) {
        while let Ok(Some(_)) = self.recv_now() {}
    }
}
