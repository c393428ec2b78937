//! AF_PACKET with a TPACKET_V2 receive ring and `sendmmsg` transmit.
//!
//! TPACKET_V2, not V3: a V3 block reaches user space only when it is full or its timer (at
//! least 1 ms) fires, which adds up to a millisecond to every request at queue depth 1
//! (measured on veth at queue depth 1: 999 µs per request with V3, 20 µs with V2; see
//! DESIGN.md, "The way of a frame"). V2 hands over each frame as soon as it lands.
//!
//! The socket is opened with protocol 0 (it hears nothing), gets a classic-BPF filter that
//! passes only the served ethertypes, gets its ring, and only then is bound to the interface
//! with ETH_P_ALL: no frame of another ethertype is ever queued, not even during set-up.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::{cvt, poll_one, socket_error};
use crate::io::{FieldWidth, FrameRx, FrameTx, Steering, MAX_FRAME_LEN};

/// How recently a frame must have arrived for latency mode to spin rather than sleep.
pub const BUSY_POLL_WINDOW: Duration = Duration::from_millis(20);

/// Bytes of receive ring per socket, whatever the MTU and the image sizes: 16 MiB. A burst
/// must fit while the worker is not running: Linux's FCoE initiator sends a 1 MiB write as
/// 1024 frames at once and never retransmits a lost one (a dropped frame costs an abort and
/// seconds), and a worker can wait milliseconds for a core on a busy machine.
const RING_BYTES: u32 = 16 << 20;
/// What a slot holds besides the frame: the tpacket2 header and the sockaddr_ll, aligned.
const SLOT_OVERHEAD: u32 = 80;

/// Ring slot size for `mtu`: the smallest power of two that holds a frame of that MTU, at
/// least 2 KiB (8192 slots at MTU 1500, 1024 at MTU 9000).
pub fn ring_slot_size(mtu: u32) -> u32 {
    (mtu.min(MAX_FRAME_LEN as u32) + 14 + SLOT_OVERHEAD)
        .next_power_of_two()
        .max(2048)
}
/// How much the kernel may hold for our transmits before `sendmmsg` blocks.
const SNDBUF_BYTES: libc::c_int = 8 << 20;

/// Kernel statistics of a packet socket since the last read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RingStats {
    pub packets: u32,
    pub drops: u32,
}

/// An AF_PACKET socket bound to one interface, hearing only the given ethertypes.
pub struct PacketSocket {
    fd: Arc<OwnedFd>,
}

fn setsockopt<T>(fd: RawFd, level: libc::c_int, name: libc::c_int, value: &T) -> io::Result<()> {
    // SAFETY: `value` is a live, initialised `T` for the duration of the call, and we pass its
    // exact size, so the kernel reads only memory we own. `fd` is borrowed from an OwnedFd.
    cvt(unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (value as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    })
    .map(|_| ())
}

/// A classic-BPF program: accept frames whose ethertype is one of `types`, drop the rest.
fn ethertype_filter(types: &[u16]) -> Vec<libc::sock_filter> {
    const BPF_LD_H_ABS: u16 = (libc::BPF_LD | libc::BPF_H | libc::BPF_ABS) as u16;
    const BPF_JEQ_K: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
    const BPF_RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;
    let n = types.len() as u8;
    let mut prog = vec![libc::sock_filter {
        code: BPF_LD_H_ABS,
        jt: 0,
        jf: 0,
        k: 12,
    }];
    for (i, &t) in types.iter().enumerate() {
        // On a match jump over the remaining compares and the drop, to the accept.
        let jt = n - i as u8;
        prog.push(libc::sock_filter {
            code: BPF_JEQ_K,
            jt,
            jf: 0,
            k: t as u32,
        });
    }
    prog.push(libc::sock_filter {
        code: BPF_RET_K,
        jt: 0,
        jf: 0,
        k: 0,
    });
    prog.push(libc::sock_filter {
        code: BPF_RET_K,
        jt: 0,
        jf: 0,
        k: u32::MAX,
    });
    prog
}

impl PacketSocket {
    /// Open a socket that will receive only `ethertypes` once bound.
    pub fn open(ethertypes: &[u16]) -> io::Result<PacketSocket> {
        // SAFETY: plain syscall with constant arguments; the returned fd is checked and owned
        // at once.
        let raw =
            cvt(unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) })?;
        // SAFETY: `raw` is a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let sock = PacketSocket { fd: Arc::new(fd) };
        let raw = sock.fd.as_raw_fd();

        let mut filter = ethertype_filter(ethertypes);
        let prog = libc::sock_fprog {
            len: filter.len() as u16,
            filter: filter.as_mut_ptr(),
        };
        setsockopt(raw, libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &prog)?;
        // Our own transmits would otherwise come back to an ETH_P_ALL socket.
        let one: libc::c_int = 1;
        setsockopt(raw, libc::SOL_PACKET, libc::PACKET_IGNORE_OUTGOING, &one)?;
        // SO_SNDBUFFORCE needs CAP_NET_ADMIN, which opening the socket already did.
        if setsockopt(raw, libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, &SNDBUF_BYTES).is_err() {
            setsockopt(raw, libc::SOL_SOCKET, libc::SO_SNDBUF, &SNDBUF_BYTES)?;
        }
        let version: libc::c_int = libc::tpacket_versions::TPACKET_V2 as libc::c_int;
        setsockopt(raw, libc::SOL_PACKET, libc::PACKET_VERSION, &version)?;
        Ok(sock)
    }

    /// Attach a receive ring of `slot_size`-byte slots (a power of two, at least 2 KiB),
    /// bind to the interface and split into halves.
    pub fn bind(self, ifindex: u32, slot_size: u32) -> io::Result<(PacketRx, PacketTx)> {
        self.bind_ring(ifindex, slot_size, RING_BYTES)
    }

    /// [`bind`](Self::bind) with a ring of `ring_bytes` (a multiple of the slot size and of
    /// 4 KiB) instead of the 16 MiB the workers use: for the load generator, which keeps
    /// thousands of jumbo frames in flight.
    pub fn bind_ring(
        self,
        ifindex: u32,
        slot_size: u32,
        ring_bytes: u32,
    ) -> io::Result<(PacketRx, PacketTx)> {
        let raw = self.fd.as_raw_fd();
        let slots = ring_bytes / slot_size;
        // Blocks are whole pages; slots are packed into them back to back, so slot i still
        // sits at i * slot_size in the mapping.
        let block_size = slot_size.max(4096);
        let req = libc::tpacket_req {
            tp_block_size: block_size,
            tp_block_nr: ring_bytes / block_size,
            tp_frame_size: slot_size,
            tp_frame_nr: slots,
        };
        setsockopt(raw, libc::SOL_PACKET, libc::PACKET_RX_RING, &req)?;
        let ring_len = (slot_size as usize) * (slots as usize);
        // SAFETY: mapping the ring the kernel just allocated for this socket: length and
        // offset are the ones PACKET_RX_RING was given, MAP_SHARED as the packet_mmap ABI
        // requires. The result is checked before use and unmapped in PacketRx's Drop.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                ring_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_LOCKED,
                raw,
                0,
            )
        };
        let ptr = if ptr == libc::MAP_FAILED {
            // MAP_LOCKED may be refused by RLIMIT_MEMLOCK; the ring works unlocked too.
            // SAFETY: as above, without MAP_LOCKED.
            let ptr = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    ring_len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_SHARED,
                    raw,
                    0,
                )
            };
            if ptr == libc::MAP_FAILED {
                return Err(io::Error::last_os_error());
            }
            ptr
        } else {
            ptr
        };
        let ring = NonNull::new(ptr.cast::<u8>()).ok_or_else(io::Error::last_os_error)?;
        let rx = PacketRx {
            fd: self.fd.clone(),
            ring,
            ring_len,
            slot_size,
            slots,
            next: 0,
            busy_poll: Duration::ZERO,
            last_frame: None,
        };

        // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
        addr.sll_ifindex = ifindex as i32;
        // SAFETY: `addr` is a valid sockaddr_ll and we pass its exact size.
        cvt(unsafe {
            libc::bind(
                raw,
                (&addr as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        })?;
        let tx = PacketTx { fd: self.fd };
        Ok((rx, tx))
    }
}

/// Open, filter, ring and bind in one call, with ring slots for any MTU up to 9000.
pub fn open(ifindex: u32, ethertypes: &[u16]) -> io::Result<(PacketRx, PacketTx)> {
    PacketSocket::open(ethertypes)?.bind(ifindex, ring_slot_size(9000))
}

/// A fanout group to join, and how its program picks the socket of a frame.
#[derive(Debug, Clone, Copy)]
pub struct Fanout<'a> {
    /// The group id, the same for every socket of the interface.
    pub group: u16,
    /// What the handlers declared: see [`fanout_program`].
    pub steering: &'a [Steering],
}

/// Like [`open`] with ring slots sized for `mtu`, and, with `fanout` set, join that fanout
/// group: the kernel then hands each frame to one of the group's sockets, chosen by
/// [`fanout_program`] from `fanout.steering`, so that every worker owns its own ring.
pub fn open_sized(
    ifindex: u32,
    ethertypes: &[u16],
    mtu: u32,
    fanout: Option<Fanout<'_>>,
) -> io::Result<(PacketRx, PacketTx)> {
    let Some(fanout) = fanout else {
        return PacketSocket::open(ethertypes)?.bind(ifindex, ring_slot_size(mtu));
    };
    let mut prog = fanout_program(fanout.steering)?;
    let (rx, tx) = PacketSocket::open(ethertypes)?.bind(ifindex, ring_slot_size(mtu))?;
    let raw = rx.fd.as_raw_fd();
    let arg: libc::c_int =
        (fanout.group as libc::c_int) | ((libc::PACKET_FANOUT_CBPF as libc::c_int) << 16);
    setsockopt(raw, libc::SOL_PACKET, libc::PACKET_FANOUT, &arg)?;
    let fprog = libc::sock_fprog {
        len: prog.len() as u16,
        filter: prog.as_mut_ptr(),
    };
    setsockopt(raw, libc::SOL_PACKET, libc::PACKET_FANOUT_DATA, &fprog)?;
    Ok((rx, tx))
}

/// Most steered ethertypes one fanout program takes (its compares jump over one another with
/// 8-bit offsets).
pub const MAX_STEERING: usize = 32;

/// The fanout program for what the handlers declared: which socket of the group gets a frame
/// (the kernel takes the result modulo the number of sockets in the group).
///
/// For a frame whose ethertype one of `steering` names, a hash of its source MAC (bytes 2-5)
/// and of the declared field; for every other frame, and one too short to hold the field, 0.
/// So requests that a handler needs handled in order (same source, same field) always meet
/// one worker, while other sources and values spread over all of them. Neither of the
/// kernel's own modes does that for frames that are not IP: `PACKET_FANOUT_HASH` sends every
/// frame of such an ethertype to one socket (the flow dissector finds no addresses or ports
/// in them, so the flow hash is the same for all), and `PACKET_FANOUT_LB` spreads one
/// source's requests over every socket, where they can overtake one another.
///
/// Loads are relative to the link-layer header (SKF_LL_OFF): the fanout program runs before
/// the kernel pushes the Ethernet header back in front of the data. A load past the end of a
/// short frame ends the program with 0. Of two entries for one ethertype the first counts.
pub fn fanout_program(steering: &[Steering]) -> io::Result<Vec<libc::sock_filter>> {
    const LD_B: u16 = (libc::BPF_LD | libc::BPF_B | libc::BPF_ABS) as u16;
    const LD_H: u16 = (libc::BPF_LD | libc::BPF_H | libc::BPF_ABS) as u16;
    const LD_W: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
    const JEQ: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
    const TAX: u16 = (libc::BPF_MISC | libc::BPF_TAX) as u16;
    const XOR_X: u16 = (libc::BPF_ALU | libc::BPF_XOR | libc::BPF_X) as u16;
    const MUL_K: u16 = (libc::BPF_ALU | libc::BPF_MUL | libc::BPF_K) as u16;
    const RSH_K: u16 = (libc::BPF_ALU | libc::BPF_RSH | libc::BPF_K) as u16;
    const RET_A: u16 = (libc::BPF_RET | libc::BPF_A) as u16;
    const RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;
    /// Instructions of one hash block below.
    const HASH_LEN: usize = 7;
    if steering.len() > MAX_STEERING {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{} steered ethertypes, more than the {MAX_STEERING} a fanout program takes",
                steering.len()
            ),
        ));
    }
    let ll = |off: u32| (libc::SKF_LL_OFF as u32).wrapping_add(off);
    let ins = |code, jt, jf, k| libc::sock_filter { code, jt, jf, k };
    let n = steering.len();
    // The ethertype, then one compare per steered ethertype, then "return 0".
    let mut prog = vec![ins(LD_H, 0, 0, ll(12))];
    for (i, s) in steering.iter().enumerate() {
        // From compare i (instruction 1 + i) over the n - 1 - i compares after it, the
        // return-0 and i hash blocks: at most 32 + 6 * 31 = 218, which fits a u8.
        let jt = (n - 1 - i) + 1 + HASH_LEN * i;
        prog.push(ins(JEQ, jt as u8, 0, u32::from(s.ethertype)));
    }
    prog.push(ins(RET_K, 0, 0, 0));
    // One hash block per steered ethertype: source MAC bytes 2-5 xor the field, mixed
    // (Fibonacci hashing), the high half returned.
    for s in steering {
        let load = match s.width {
            FieldWidth::U8 => LD_B,
            FieldWidth::U16 => LD_H,
            FieldWidth::U32 => LD_W,
        };
        prog.extend([
            ins(LD_W, 0, 0, ll(8)),
            ins(TAX, 0, 0, 0),
            ins(load, 0, 0, ll(u32::from(s.offset))),
            ins(XOR_X, 0, 0, 0),
            ins(MUL_K, 0, 0, 0x9e37_79b1),
            ins(RSH_K, 0, 0, 16),
            ins(RET_A, 0, 0, 0),
        ]);
    }
    Ok(prog)
}

/// The receive half: a TPACKET_V2 ring, read in place.
pub struct PacketRx {
    fd: Arc<OwnedFd>,
    ring: NonNull<u8>,
    ring_len: usize,
    slot_size: u32,
    slots: u32,
    next: u32,
    /// Latency mode: how long to spin for the next frame before sleeping in `poll`.
    busy_poll: Duration,
    /// When a frame last arrived: spinning only pays while traffic flows.
    last_frame: Option<std::time::Instant>,
}

// SAFETY: the ring mapping is owned by this value alone (the transmit half never touches it),
// so moving it to another thread moves sole access with it.
unsafe impl Send for PacketRx {}

// Offsets into struct tpacket2_hdr (linux/if_packet.h).
const TP_STATUS: usize = 0;
const TP_SNAPLEN: usize = 8;
const TP_MAC: usize = 12;

impl PacketRx {
    /// Put interface `ifindex` in promiscuous mode for as long as this socket lives (the
    /// kernel undoes it when the socket closes, even on kill -9). FCoE needs it: VN2VN ports
    /// are addressed at MACs of their own (`0E:FD:00:<port id>`) and iPXE logs in at
    /// 0E:FC:00:FF:FF:FE, none of which the NIC would otherwise accept.
    pub fn set_promiscuous(&self, ifindex: u32) -> io::Result<()> {
        let mreq = libc::packet_mreq {
            mr_ifindex: ifindex as libc::c_int,
            mr_type: libc::PACKET_MR_PROMISC as libc::c_ushort,
            mr_alen: 0,
            mr_address: [0; 8],
        };
        setsockopt(
            self.fd.as_raw_fd(),
            libc::SOL_PACKET,
            libc::PACKET_ADD_MEMBERSHIP,
            &mreq,
        )
    }

    /// Latency mode: while frames keep coming (one in the last [`BUSY_POLL_WINDOW`]), spin up
    /// to `spin` for the next one instead of sleeping in `poll` and being woken for it. A
    /// queue-depth-1 initiator (iPXE booting) then gets its answer without a wake-up per
    /// request; an idle target still sleeps. Zero (the default) never spins.
    pub fn set_busy_poll(&mut self, spin: Duration) {
        self.busy_poll = spin;
    }

    /// Spin until the next slot is ready or `busy_poll` runs out; whether it became ready.
    fn spin_for_frame(&self) -> bool {
        let active = self
            .last_frame
            .is_some_and(|t| t.elapsed() < BUSY_POLL_WINDOW);
        if self.busy_poll.is_zero() || !active {
            return false;
        }
        let slot = self.slot(self.next);
        let start = std::time::Instant::now();
        while start.elapsed() < self.busy_poll {
            if self.status(slot).load(Ordering::Acquire) & libc::TP_STATUS_USER != 0 {
                return true;
            }
            std::hint::spin_loop();
        }
        false
    }

    fn slot(&self, index: u32) -> *mut u8 {
        // (The arithmetic: index < slots, so the offset stays inside the mapping of
        // slots * slot_size bytes.)
        self.ring
            .as_ptr()
            .wrapping_add(index as usize * self.slot_size as usize)
    }

    fn status(&self, slot: *mut u8) -> &AtomicU32 {
        // SAFETY: every slot starts with a 4-byte aligned u32 tp_status that the kernel and
        // we hand back and forth; it lives as long as the mapping, which outlives `&self`.
        unsafe { AtomicU32::from_ptr(slot.add(TP_STATUS).cast()) }
    }

    fn wait(&self, timeout: Duration) -> io::Result<bool> {
        let revents = poll_one(self.fd.as_raw_fd(), libc::POLLIN, timeout)?;
        if revents & libc::POLLERR != 0 {
            // ENETDOWN and friends are reported as a pending socket error.
            socket_error(self.fd.as_raw_fd())?;
        }
        Ok(revents != 0)
    }

    /// Frames received and dropped by the kernel (ring full) since the last call.
    pub fn stats(&self) -> io::Result<RingStats> {
        let mut st = libc::tpacket_stats {
            tp_packets: 0,
            tp_drops: 0,
        };
        let mut len = std::mem::size_of::<libc::tpacket_stats>() as libc::socklen_t;
        // SAFETY: `st` and `len` are valid for writes of their sizes.
        cvt(unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_STATISTICS,
                (&mut st as *mut libc::tpacket_stats).cast(),
                &mut len,
            )
        })?;
        Ok(RingStats {
            packets: st.tp_packets,
            drops: st.tp_drops,
        })
    }
}

impl FrameRx for PacketRx {
    fn recv_batch(
        &mut self,
        timeout: Duration,
        max: usize,
        on_frame: &mut dyn FnMut(&[u8]),
    ) -> io::Result<usize> {
        let mut handed = 0;
        while handed < max {
            let slot = self.slot(self.next);
            let status = self.status(slot).load(Ordering::Acquire);
            if status & libc::TP_STATUS_USER == 0 {
                if handed > 0 {
                    break;
                }
                if !self.spin_for_frame() && !self.wait(timeout)? {
                    break;
                }
                continue;
            }
            // SAFETY: the kernel set TP_STATUS_USER, so it has finished writing this slot and
            // will not touch it until we store TP_STATUS_KERNEL. tp_mac and tp_snaplen are
            // written by the kernel and bounded by the slot, but we clamp them to the slot
            // anyway so that a bad value can never make us read outside the mapping.
            let frame = unsafe {
                let snaplen = std::ptr::read(slot.add(TP_SNAPLEN).cast::<u32>()) as usize;
                let mac = std::ptr::read(slot.add(TP_MAC).cast::<u16>()) as usize;
                let mac = mac.min(self.slot_size as usize);
                let len = snaplen
                    .min(self.slot_size as usize - mac)
                    .min(MAX_FRAME_LEN);
                std::slice::from_raw_parts(slot.add(mac), len)
            };
            on_frame(frame);
            self.status(slot)
                .store(libc::TP_STATUS_KERNEL, Ordering::Release);
            self.next = (self.next + 1) % self.slots;
            handed += 1;
        }
        if handed > 0 && !self.busy_poll.is_zero() {
            self.last_frame = Some(std::time::Instant::now());
        }
        Ok(handed)
    }
}

impl Drop for PacketRx {
    fn drop(&mut self) {
        // SAFETY: the mapping was created in `bind` with exactly this address and length and
        // no frame slice borrowed from it outlives `recv_batch`.
        unsafe { libc::munmap(self.ring.as_ptr().cast(), self.ring_len) };
    }
}

/// The transmit half: `sendmmsg` of whole frames on the bound socket.
pub struct PacketTx {
    fd: Arc<OwnedFd>,
}

impl FrameTx for PacketTx {
    fn send_frames(&mut self, frames: &[&[u8]]) -> io::Result<usize> {
        const MAX: usize = 64;
        let mut iov: [libc::iovec; MAX] = [libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        }; MAX];
        // SAFETY: mmsghdr is plain old data; all-zero is a valid (empty) value.
        let mut msgs: [libc::mmsghdr; MAX] = unsafe { std::mem::zeroed() };
        let mut total = 0;
        for chunk in frames.chunks(MAX) {
            for (i, f) in chunk.iter().enumerate() {
                iov[i] = libc::iovec {
                    iov_base: f.as_ptr() as *mut _,
                    iov_len: f.len(),
                };
                msgs[i].msg_hdr.msg_iov = &mut iov[i];
                msgs[i].msg_hdr.msg_iovlen = 1;
            }
            let mut done = 0;
            while done < chunk.len() {
                // SAFETY: msgs[done..chunk.len()] point at iovecs that point at the caller's
                // frames, all alive for this call; the kernel only reads them.
                let n = unsafe {
                    libc::sendmmsg(
                        self.fd.as_raw_fd(),
                        msgs[done..].as_mut_ptr(),
                        (chunk.len() - done) as libc::c_uint,
                        0,
                    )
                };
                if n < 0 {
                    let e = io::Error::last_os_error();
                    if e.kind() == io::ErrorKind::Interrupted {
                        continue;
                    }
                    if total + done == 0 {
                        return Err(e);
                    }
                    return Ok(total + done);
                }
                done += n as usize;
            }
            total += done;
        }
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What AoE and FCoE declare (`AoeTarget` and `FcoeTarget` test their own): the ATA
    /// argument's LBA bytes 1-2 (14 + 10 + 4 + 1) and the FC header's OX_ID (14 + 14 + 16).
    const AOE: Steering = Steering {
        ethertype: 0x88a2,
        offset: 29,
        width: FieldWidth::U16,
    };
    const FCOE: Steering = Steering {
        ethertype: 0x8906,
        offset: 44,
        width: FieldWidth::U16,
    };

    /// Run a fanout program over `frame` as the kernel does (the subset of classic BPF it is
    /// built from): the socket index it returns, before the modulo.
    fn run(prog: &[libc::sock_filter], frame: &[u8]) -> u32 {
        let class = |c: u16| u32::from(c) & 0x07;
        let (mut a, mut x, mut pc) = (0u32, 0u32, 0usize);
        loop {
            let ins = prog[pc];
            pc += 1;
            match class(ins.code) {
                libc::BPF_LD => {
                    let at = ins.k.wrapping_sub(libc::SKF_LL_OFF as u32) as usize;
                    let len = match u32::from(ins.code) & 0x18 {
                        libc::BPF_W => 4,
                        libc::BPF_H => 2,
                        _ => 1,
                    };
                    let Some(bytes) = frame.get(at..at + len) else {
                        return 0;
                    };
                    a = bytes.iter().fold(0, |v, &b| (v << 8) | u32::from(b));
                }
                libc::BPF_JMP => {
                    assert_eq!(
                        u32::from(ins.code),
                        libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K
                    );
                    pc += usize::from(if a == ins.k { ins.jt } else { ins.jf });
                }
                libc::BPF_MISC => x = a,
                libc::BPF_ALU => match u32::from(ins.code) & 0xf0 {
                    libc::BPF_XOR => a ^= x,
                    libc::BPF_MUL => a = a.wrapping_mul(ins.k),
                    libc::BPF_RSH => a >>= ins.k,
                    op => panic!("ALU op {op:#x} not in our programs"),
                },
                libc::BPF_RET if u32::from(ins.code) & 0x18 == libc::BPF_A => return a,
                libc::BPF_RET => return ins.k,
                c => panic!("instruction class {c:#x} not in our programs"),
            }
        }
    }

    /// The hash the program computes for a frame from `src` whose field is `field`.
    fn hash(src: [u8; 6], field: u32) -> u32 {
        let mac = u32::from_be_bytes([src[2], src[3], src[4], src[5]]);
        (mac ^ field).wrapping_mul(0x9e37_79b1) >> 16
    }

    fn frame(src: [u8; 6], ethertype: u16, len: usize, field_at: usize, field: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; len];
        f[..6].fill(0xff);
        f[6..12].copy_from_slice(&src);
        f[12..14].copy_from_slice(&ethertype.to_be_bytes());
        if field_at + field.len() <= len {
            f[field_at..field_at + field.len()].copy_from_slice(field);
        }
        f
    }

    /// Built from what AoE and FCoE declare, the program is instruction for instruction the
    /// one the fanout always had (AoE by LBA bits 8-23, FCoE by OX_ID, the rest to worker 0),
    /// so every frame meets the worker it met before.
    #[test]
    fn declared_fields_build_the_program_the_fanout_always_had() {
        let ll = |off: u32| (libc::SKF_LL_OFF as u32).wrapping_add(off);
        let ins = |code: u32, jt, jf, k| libc::sock_filter {
            code: code as u16,
            jt,
            jf,
            k,
        };
        let (ld_h, ld_w) = (
            libc::BPF_LD | libc::BPF_H | libc::BPF_ABS,
            libc::BPF_LD | libc::BPF_W | libc::BPF_ABS,
        );
        let hash = |field| {
            [
                ins(ld_w, 0, 0, ll(8)),
                ins(libc::BPF_MISC | libc::BPF_TAX, 0, 0, 0),
                ins(ld_h, 0, 0, ll(field)),
                ins(libc::BPF_ALU | libc::BPF_XOR | libc::BPF_X, 0, 0, 0),
                ins(
                    libc::BPF_ALU | libc::BPF_MUL | libc::BPF_K,
                    0,
                    0,
                    0x9e37_79b1,
                ),
                ins(libc::BPF_ALU | libc::BPF_RSH | libc::BPF_K, 0, 0, 16),
                ins(libc::BPF_RET | libc::BPF_A, 0, 0, 0),
            ]
        };
        let jeq = libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K;
        let mut before = vec![
            ins(ld_h, 0, 0, ll(12)),
            ins(jeq, 2, 0, 0x88a2),
            ins(jeq, 8, 0, 0x8906),
            ins(libc::BPF_RET | libc::BPF_K, 0, 0, 0),
        ];
        before.extend(hash(29));
        before.extend(hash(44));
        let built = fanout_program(&[AOE, FCOE]).unwrap();
        let key = |p: &[libc::sock_filter]| -> Vec<(u16, u8, u8, u32)> {
            p.iter().map(|i| (i.code, i.jt, i.jf, i.k)).collect()
        };
        assert_eq!(key(&built), key(&before));
    }

    /// Run over frames: AoE by source and LBA bits 8-23, FCoE by source and OX_ID, FIP,
    /// unsteered ethertypes and frames too short for their field to 0.
    #[test]
    fn built_program_steers_by_the_declared_fields() {
        let prog = fanout_program(&[AOE, FCOE]).unwrap();
        let a = [0x52, 0x54, 0, 0x12, 0x34, 0x56];
        let b = [0x52, 0x54, 0, 0x12, 0x34, 0x57];
        // AoE READ of LBA 0x0a_bc_de (little-endian at frame offset 28): field 0xbc0a.
        let lba = [0xde, 0xbc, 0x0a];
        let aoe = frame(a, 0x88a2, 60, 28, &lba);
        assert_eq!(run(&prog, &aoe), hash(a, 0xbc0a));
        // Another sector of the same 128 KiB region: the same worker; another source: not.
        let same_region = frame(a, 0x88a2, 60, 28, &[0x07, 0xbc, 0x0a]);
        assert_eq!(run(&prog, &same_region), run(&prog, &aoe));
        assert_eq!(run(&prog, &frame(b, 0x88a2, 60, 28, &lba)), hash(b, 0xbc0a));
        assert_ne!(hash(a, 0xbc0a), hash(b, 0xbc0a));
        let fcoe = frame(a, 0x8906, 80, 44, &[0x12, 0x34]);
        assert_eq!(run(&prog, &fcoe), hash(a, 0x1234));
        assert_eq!(
            run(&prog, &frame(a, 0x8914, 80, 44, &[0x12, 0x34])),
            0,
            "FIP"
        );
        assert_eq!(run(&prog, &frame(a, 0x88b5, 80, 44, &[0x12, 0x34])), 0);
        assert_eq!(run(&prog, &frame(a, 0x88a2, 30, 28, &lba)), 0, "runt");
        assert_eq!(run(&prog, &frame(a, 0x8906, 45, 44, &[0x12])), 0, "runt");
    }

    /// Any number of steered ethertypes and every field width: each compare reaches its own
    /// hash block.
    #[test]
    fn every_compare_reaches_its_own_hash() {
        let widths = [FieldWidth::U8, FieldWidth::U16, FieldWidth::U32];
        let steering: Vec<Steering> = (0..MAX_STEERING as u16)
            .map(|i| Steering {
                ethertype: 0x9000 + i,
                offset: 14 + i,
                width: widths[usize::from(i) % 3],
            })
            .collect();
        let prog = fanout_program(&steering).unwrap();
        assert_eq!(prog.len(), 1 + MAX_STEERING + 1 + 7 * MAX_STEERING);
        let src = [2, 0, 0xde, 0xad, 0xbe, 0xef];
        for s in &steering {
            let at = usize::from(s.offset);
            let field = [0x11, 0x22, 0x33, 0x44];
            let f = frame(src, s.ethertype, 80, at, &field);
            let want = match s.width {
                FieldWidth::U8 => 0x11,
                FieldWidth::U16 => 0x1122,
                FieldWidth::U32 => 0x1122_3344,
            };
            assert_eq!(run(&prog, &f), hash(src, want), "{s:?}");
        }
        let too_many = vec![AOE; MAX_STEERING + 1];
        assert!(fanout_program(&too_many).is_err());
        // Nothing steered: everything to worker 0.
        let none = fanout_program(&[]).unwrap();
        assert_eq!(run(&none, &frame(src, 0x88a2, 60, 28, &[1, 2, 3])), 0);
    }

    #[test]
    fn filter_jumps_land_on_accept() {
        let prog = ethertype_filter(&[0x88a2, 0x8906, 0x8914]);
        assert_eq!(prog.len(), 6);
        let accept = prog.len() - 1;
        for (i, ins) in prog.iter().enumerate().skip(1).take(3) {
            assert_eq!(i + 1 + ins.jt as usize, accept);
        }
        assert_eq!(prog[accept].k, u32::MAX);
        assert_eq!(prog[accept - 1].k, 0);
    }
}
