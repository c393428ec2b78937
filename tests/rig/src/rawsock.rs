//! A small AF_PACKET client for tests: whole Ethernet frames of one EtherType on one interface
//! inside a network namespace.
//!
//! It is l2san's own [`PacketSocket`] (a classic-BPF filter on the EtherType set before the
//! socket is bound, so nothing else is ever queued; our own transmits ignored; a TPACKET_V2
//! receive ring), opened by [`in_netns`] on a short-lived thread that joined the namespace: a
//! socket keeps the namespace it was created in, so it can then be used from any thread while
//! the test's own threads stay in the root namespace.

use std::fmt;
use std::io;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use l2san_common::io::sys::netns::in_netns;
use l2san_common::io::sys::packet::ring_slot_size;
use l2san_common::io::sys::{PacketRx, PacketSocket, PacketTx};
use l2san_common::io::{FrameRx, FrameTx};
use l2san_common::Interface;

/// The largest MTU a test uses: ring slots hold a whole frame of it.
const MAX_MTU: u32 = 9000;

/// A raw packet socket bound to one interface, hearing one EtherType.
pub struct RawSocket {
    rx: Mutex<PacketRx>,
    tx: Mutex<PacketTx>,
}

impl fmt::Debug for RawSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RawSocket")
    }
}

impl RawSocket {
    /// Opens a socket on `ifname` for `ethertype` inside the namespace named `netns` (as in
    /// `ip netns`, i.e. `/var/run/netns/<netns>`).
    pub fn open_in_netns(netns: &str, ifname: &str, ethertype: u16) -> io::Result<RawSocket> {
        let ns = Path::new("/var/run/netns").join(netns);
        let (rx, tx) = in_netns(&ns, || -> io::Result<(PacketRx, PacketTx)> {
            // Looked up inside the namespace (netlink), where the interface is.
            let iface = Interface::by_name(ifname).map_err(io::Error::other)?;
            PacketSocket::open(&[ethertype])?.bind(iface.index, ring_slot_size(MAX_MTU))
        })??;
        Ok(RawSocket {
            rx: Mutex::new(rx),
            tx: Mutex::new(tx),
        })
    }

    fn rx(&self) -> MutexGuard<'_, PacketRx> {
        self.rx
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Sends one whole Ethernet frame (headers included, no FCS) as is: no padding is added,
    /// so frames shorter than 60 bytes go out short.
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        let mut tx = self.tx.lock().unwrap_or_else(|p| p.into_inner());
        match tx.send_frames(&[frame])? {
            1 => Ok(()),
            _ => Err(io::Error::other(format!(
                "the kernel did not take a {}-byte frame",
                frame.len()
            ))),
        }
    }

    /// The next frame that arrived on the interface (not one sent from it), waiting up to
    /// `timeout`; `None` when none came.
    pub fn recv(&self, timeout: Duration) -> io::Result<Option<Vec<u8>>> {
        let deadline = Instant::now() + timeout;
        let mut rx = self.rx();
        loop {
            let mut frame = None;
            let left = deadline.saturating_duration_since(Instant::now());
            rx.recv_batch(left, 1, &mut |f| frame = Some(f.to_vec()))?;
            if frame.is_some() || Instant::now() >= deadline {
                return Ok(frame);
            }
        }
    }

    /// Discards every frame already queued.
    pub fn drain(&self) {
        let mut rx = self.rx();
        while let Ok(n) = rx.recv_batch(Duration::ZERO, usize::MAX, &mut |_| {}) {
            if n == 0 {
                break;
            }
        }
    }
}
