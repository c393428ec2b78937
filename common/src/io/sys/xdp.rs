//! AF_XDP: one socket per (interface, RX queue), fed by our own XDP program. Raw syscalls
//! through `libc` only: no libbpf, no libxdp, no C toolchain.
//!
//! Per interface, one XDP program (see `bpf::program`) redirects the served ethertypes to an
//! XSKMAP at the frame's RX queue index and passes everything else to the kernel. It is
//! attached through a BPF link, so it is detached as soon as the last socket of the interface
//! is dropped, and when the process dies in any way (the kernel closes the link fd).
//!
//! Per socket, a UMEM of [`FRAMES`] frames of [`FRAME_SIZE`] bytes: the first half circulates
//! between the fill ring, the kernel and the RX ring and belongs to [`XdpRx`]; the second half
//! circulates between [`XdpTx`]'s free list, the TX ring and the completion ring. The halves
//! share the socket and the mapping but never a frame, so they need no lock.
//!
//! Zero-copy is tried first; copy mode is accepted only if asked ([`XdpConfig::allow_copy`]):
//! veth and tap refuse zero-copy (EOPNOTSUPP), and there copy-mode AF_XDP costs about what
//! AF_PACKET does (measured on veth: 4.15-4.37 µs of CPU per 60-byte frame received against
//! 4.35-4.82 for AF_PACKET; DESIGN.md, "AF_XDP"). Frames larger than one UMEM frame (MTU 9000)
//! use multi-buffer (`XDP_USE_SG`, a frags-aware program): they arrive as several descriptors
//! chained by `XDP_PKT_CONTD`, which [`XdpRx`] joins in a per-socket scratch buffer; frames in
//! one descriptor are handed over in place, straight from the UMEM.

mod bpf;
mod ring;

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use self::ring::{Mmap, Ring};
use super::packet::RingStats;
use super::{cvt, poll_one, socket_error};
use crate::io::{FrameRx, FrameTx, MAX_FRAME_LEN};

/// Size of one UMEM frame (the kernel's "chunk"). A frame's data in copy mode starts after
/// XDP_PACKET_HEADROOM (256) bytes, so 3840 bytes fit in one descriptor.
pub const FRAME_SIZE: usize = 4096;
/// UMEM frames per socket: half for receive, half for transmit (16 MiB).
pub const FRAMES: usize = 4096;
const RX_FRAMES: usize = FRAMES / 2;
const TX_FRAMES: usize = FRAMES - RX_FRAMES;
/// First byte of the transmit half of the UMEM.
const TX_BASE: u64 = (RX_FRAMES * FRAME_SIZE) as u64;
/// Data room of a received frame's first descriptor in copy mode.
const XDP_PACKET_HEADROOM: usize = 256;
/// Ring sizes. The fill ring is twice the RX frames so that recycling a frame never finds it
/// full even while the kernel has taken entries it has not yet published as consumed.
const FILL_RING: u32 = (2 * RX_FRAMES) as u32;
const RX_RING: u32 = RX_FRAMES as u32;
const TX_RING: u32 = TX_FRAMES as u32;
const COMPLETION_RING: u32 = (2 * TX_FRAMES) as u32;
/// How long `send_frames` waits for transmit room before it counts the rest as dropped.
const TX_STALL: Duration = Duration::from_millis(2);

/// What the kernel granted a socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XdpMode {
    /// Frames DMA straight into and out of the UMEM (XDP_ZEROCOPY); else copy mode.
    pub zero_copy: bool,
    /// Frames larger than one UMEM frame are carried (XDP_USE_SG).
    pub multi_buffer: bool,
}

/// How to open an AF_XDP socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XdpConfig {
    /// The RX (and TX) queue of the interface to bind.
    pub queue: u32,
    /// Accept copy mode when the driver refuses zero-copy.
    pub allow_copy: bool,
    /// The largest frame that must arrive whole (MTU + 14). A mode without multi-buffer is
    /// refused when this does not fit one UMEM frame.
    pub max_frame_len: usize,
}

/// Why AF_XDP could not be set up; the message says what the operator can do.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {source}")]
pub struct XdpError {
    pub what: String,
    #[source]
    pub source: io::Error,
}

impl XdpError {
    fn new(what: impl Into<String>, source: io::Error) -> XdpError {
        XdpError {
            what: what.into(),
            source,
        }
    }
}

/// How many RX queues the interface has now (its `queues/rx-*` in sysfs).
pub fn rx_queue_count(ifname: &str) -> io::Result<u32> {
    let dir = std::fs::read_dir(format!("/sys/class/net/{ifname}/queues"))?;
    let mut n = 0;
    for entry in dir {
        if entry?.file_name().to_string_lossy().starts_with("rx-") {
            n += 1;
        }
    }
    Ok(n)
}

fn setsockopt<T>(fd: RawFd, name: libc::c_int, value: &T) -> io::Result<()> {
    // SAFETY: `value` is a live, initialised `T` for the duration of the call, and we pass its
    // exact size, so the kernel reads only memory we own. `fd` is borrowed from an OwnedFd.
    cvt(unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_XDP,
            name,
            (value as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    })
    .map(|_| ())
}

/// getsockopt(SOL_XDP) into a `T` that the kernel must fill completely.
fn getsockopt<T: Copy>(fd: RawFd, name: libc::c_int, value: &mut T) -> io::Result<()> {
    let mut len = std::mem::size_of::<T>() as libc::socklen_t;
    // SAFETY: `value` and `len` are valid for writes of their sizes for the call, and `len`
    // tells the kernel how many bytes it may write. `T: Copy` is plain data, so any bytes
    // the kernel writes leave it valid.
    cvt(unsafe { libc::getsockopt(fd, libc::SOL_XDP, name, (value as *mut T).cast(), &mut len) })?;
    if len as usize != std::mem::size_of::<T>() {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "the kernel's AF_XDP structures are older than 5.4; upgrade the kernel or use AF_PACKET",
        ));
    }
    Ok(())
}

/// The per-interface program, its XSKMAP and the link that keeps it attached.
struct Attachment {
    ifindex: u32,
    ethertypes: Vec<u16>,
    map: OwnedFd,
    // Dropping the link detaches the program; the program fd only keeps it loaded.
    _link: OwnedFd,
    _prog: OwnedFd,
}

/// The attachments of this process, one per interface, shared by that interface's sockets.
static ATTACHED: Mutex<Vec<Weak<Attachment>>> = Mutex::new(Vec::new());

fn attachment(ifindex: u32, ethertypes: &[u16]) -> Result<Arc<Attachment>, XdpError> {
    let mut sorted = ethertypes.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut attached = ATTACHED.lock().unwrap_or_else(|p| p.into_inner());
    attached.retain(|w| w.strong_count() > 0);
    if let Some(a) = attached
        .iter()
        .filter_map(Weak::upgrade)
        .find(|a| a.ifindex == ifindex)
    {
        if a.ethertypes != sorted {
            return Err(XdpError::new(
                "this process already serves other ethertypes with AF_XDP on the interface",
                io::Error::from_raw_os_error(libc::EBUSY),
            ));
        }
        return Ok(a);
    }
    let map = bpf::create_xskmap()
        .map_err(|e| XdpError::new("creating the XSKMAP (are we root or CAP_BPF?)", e))?;
    let insns = bpf::program(map.as_raw_fd(), &sorted);
    let prog = bpf::load_program(&insns).map_err(|e| {
        XdpError::new(
            "loading the XDP program (needs CAP_BPF and CAP_NET_ADMIN, kernel 5.18 or later)",
            e,
        )
    })?;
    // A link of ours that was just dropped may still be on its way out: retry EBUSY briefly.
    let mut tries = 0;
    let link = loop {
        match bpf::attach_xdp(&prog, ifindex) {
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && tries < 20 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            r => break r,
        }
    }
    .map_err(|e| {
        XdpError::new(
            "attaching the XDP program (EBUSY: another XDP program is attached, see `ip link show`; \
             ENOSPC on veth: the peer has more TX queues than we have RX queues; \
             ERANGE/EINVAL: the MTU is too large for the driver's XDP)",
            e,
        )
    })?;
    let a = Arc::new(Attachment {
        ifindex,
        ethertypes: sorted,
        map,
        _link: link,
        _prog: prog,
    });
    attached.push(Arc::downgrade(&a));
    Ok(a)
}

/// A socket with its UMEM and rings, before it is split into halves.
struct Socket {
    fd: Arc<OwnedFd>,
    umem: Arc<Mmap>,
    fill: Ring<u64>,
    rx: Ring<libc::xdp_desc>,
    tx: Ring<libc::xdp_desc>,
    completion: Ring<u64>,
}

impl Socket {
    /// Socket, UMEM, rings and a full fill ring, then bind with `flags`.
    fn open(ifindex: u32, queue: u32, flags: u16) -> io::Result<Socket> {
        // SAFETY: plain syscall with constant arguments; the returned fd is checked and owned
        // at once.
        let raw =
            cvt(unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) })?;
        // SAFETY: `raw` is a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let umem = Mmap::anonymous(FRAMES * FRAME_SIZE)?;
        let reg = libc::xdp_umem_reg {
            addr: umem.as_ptr() as u64,
            len: umem.len() as u64,
            chunk_size: FRAME_SIZE as u32,
            headroom: 0,
            flags: 0,
            tx_metadata_len: 0,
        };
        // The kernel pins the UMEM pages; `umem` outlives the socket's use of them because
        // both halves hold it until they are dropped, and the pages stay pinned (never freed
        // under the kernel) even if it were unmapped first.
        setsockopt(raw, libc::XDP_UMEM_REG, &reg)?;
        setsockopt(raw, libc::XDP_UMEM_FILL_RING, &FILL_RING)?;
        setsockopt(raw, libc::XDP_UMEM_COMPLETION_RING, &COMPLETION_RING)?;
        setsockopt(raw, libc::XDP_RX_RING, &RX_RING)?;
        setsockopt(raw, libc::XDP_TX_RING, &TX_RING)?;
        let zero = libc::xdp_ring_offset {
            producer: 0,
            consumer: 0,
            desc: 0,
            flags: 0,
        };
        let mut off = libc::xdp_mmap_offsets {
            rx: zero,
            tx: zero,
            fr: zero,
            cr: zero,
        };
        getsockopt(raw, libc::XDP_MMAP_OFFSETS, &mut off)?;
        let mut fill = Ring::map(raw, &off.fr, FILL_RING, libc::XDP_UMEM_PGOFF_FILL_RING)?;
        let completion = Ring::map(
            raw,
            &off.cr,
            COMPLETION_RING,
            libc::XDP_UMEM_PGOFF_COMPLETION_RING,
        )?;
        let rx = Ring::map(raw, &off.rx, RX_RING, libc::XDP_PGOFF_RX_RING as u64)?;
        let tx = Ring::map(raw, &off.tx, TX_RING, libc::XDP_PGOFF_TX_RING as u64)?;
        // Every receive frame goes to the kernel before the bind, so that a zero-copy driver
        // fills its hardware ring at once.
        for i in 0..RX_FRAMES {
            fill.push((i * FRAME_SIZE) as u64);
        }
        fill.submit();

        let addr = libc::sockaddr_xdp {
            sxdp_family: libc::AF_XDP as u16,
            sxdp_flags: flags,
            sxdp_ifindex: ifindex,
            sxdp_queue_id: queue,
            sxdp_shared_umem_fd: 0,
        };
        // SAFETY: `addr` is a valid sockaddr_xdp and we pass its exact size.
        cvt(unsafe {
            libc::bind(
                raw,
                (&addr as *const libc::sockaddr_xdp).cast(),
                std::mem::size_of::<libc::sockaddr_xdp>() as libc::socklen_t,
            )
        })?;
        Ok(Socket {
            fd: Arc::new(fd),
            umem: Arc::new(umem),
            fill,
            rx,
            tx,
            completion,
        })
    }
}

/// Open an AF_XDP socket on `config.queue` of interface `ifindex` that receives `ethertypes`
/// (attaching the interface's XDP program if this is its first socket), and split it into
/// halves. Zero-copy first; then copy mode if `config.allow_copy`.
pub fn open(
    ifindex: u32,
    ethertypes: &[u16],
    config: XdpConfig,
) -> Result<(XdpRx, XdpTx), XdpError> {
    if config.queue >= bpf::XSKMAP_ENTRIES {
        return Err(XdpError::new(
            format!(
                "queue {} is beyond the {} queues l2san's AF_XDP serves",
                config.queue,
                bpf::XSKMAP_ENTRIES
            ),
            io::Error::from_raw_os_error(libc::ERANGE),
        ));
    }
    let needs_sg = config.max_frame_len > FRAME_SIZE - XDP_PACKET_HEADROOM;
    let attachment = attachment(ifindex, ethertypes)?;
    let wakeup = libc::XDP_USE_NEED_WAKEUP;
    let mut modes = vec![
        (libc::XDP_ZEROCOPY | libc::XDP_USE_SG | wakeup, true, true),
        (libc::XDP_ZEROCOPY | wakeup, true, false),
    ];
    if config.allow_copy {
        modes.push((libc::XDP_COPY | libc::XDP_USE_SG | wakeup, false, true));
        modes.push((libc::XDP_COPY | wakeup, false, false));
    }
    let mut errors = Vec::new();
    for (flags, zero_copy, multi_buffer) in modes {
        if needs_sg && !multi_buffer {
            continue;
        }
        let name = match (zero_copy, multi_buffer) {
            (true, true) => "zero-copy multi-buffer",
            (true, false) => "zero-copy",
            (false, true) => "copy multi-buffer",
            (false, false) => "copy",
        };
        let sock = match Socket::open(ifindex, config.queue, flags) {
            Ok(s) => s,
            Err(e) => {
                errors.push(format!("{name}: {e}"));
                continue;
            }
        };
        bpf::xskmap_set(&attachment.map, config.queue, sock.fd.as_raw_fd())
            .map_err(|e| XdpError::new("putting the socket into the XSKMAP", e))?;
        let mode = XdpMode {
            zero_copy,
            multi_buffer,
        };
        let rx = XdpRx {
            fd: sock.fd.clone(),
            umem: sock.umem.clone(),
            fill: sock.fill,
            rx: sock.rx,
            scratch: vec![0u8; MAX_FRAME_LEN].into_boxed_slice(),
            scratch_len: 0,
            in_frame: false,
            oversize: false,
            recycle: Vec::with_capacity(RX_FRAMES),
            mode,
            handed: 0,
            malformed: 0,
            last_kernel_drops: 0,
            promiscuous: None,
            _attachment: attachment,
        };
        let tx = XdpTx {
            fd: sock.fd,
            umem: sock.umem,
            tx: sock.tx,
            completion: sock.completion,
            free: (0..TX_FRAMES)
                .map(|i| TX_BASE + (i * FRAME_SIZE) as u64)
                .collect(),
            mode,
        };
        return Ok((rx, tx));
    }
    let what = format!(
        "binding an AF_XDP socket to queue {}{} ({})",
        config.queue,
        if config.allow_copy {
            ""
        } else {
            " in zero-copy mode (the driver refuses it; veth and tap always do)"
        },
        errors.join("; ")
    );
    let code = if config.allow_copy {
        libc::EINVAL
    } else {
        libc::EOPNOTSUPP
    };
    Err(XdpError::new(what, io::Error::from_raw_os_error(code)))
}

/// The bytes of a received descriptor, if it lies inside one receive frame of `umem`.
///
/// Only for descriptors just popped from the RX ring whose frame has not been given back to
/// the fill ring yet: that is what makes the frame ours for the borrow.
fn rx_data<'a>(umem: &'a Mmap, desc: &libc::xdp_desc) -> Option<&'a [u8]> {
    let start = usize::try_from(desc.addr).ok()?;
    let chunk = start & !(FRAME_SIZE - 1);
    let end = start.checked_add(desc.len as usize)?;
    if chunk >= RX_FRAMES * FRAME_SIZE
        || end > chunk + FRAME_SIZE
        || umem.len() < FRAMES * FRAME_SIZE
    {
        return None;
    }
    // SAFETY: [start, end) lies inside one receive frame, inside the mapping (checked just
    // above), which the borrow of `umem` keeps alive. The kernel wrote this frame before
    // publishing its descriptor on the RX ring and gets it back only when `XdpRx` pushes it
    // onto the fill ring, after every use of the slice in `recv_batch`; the transmit half
    // never touches receive frames. So nobody writes these bytes while the slice lives.
    Some(unsafe { std::slice::from_raw_parts(umem.as_ptr().add(start), desc.len as usize) })
}

/// The receive half: the fill and RX rings and the receive frames of the UMEM.
pub struct XdpRx {
    fd: Arc<OwnedFd>,
    umem: Arc<Mmap>,
    fill: Ring<u64>,
    rx: Ring<libc::xdp_desc>,
    /// Where a frame spanning several descriptors is joined.
    scratch: Box<[u8]>,
    scratch_len: usize,
    /// The last descriptor had XDP_PKT_CONTD: the next one continues the frame.
    in_frame: bool,
    /// The frame being joined is larger than MAX_FRAME_LEN: drop it at its end.
    oversize: bool,
    /// Frames the fill ring had no room for (never expected), given back on the next call.
    recycle: Vec<u64>,
    mode: XdpMode,
    handed: u64,
    malformed: u64,
    last_kernel_drops: u64,
    /// An AF_PACKET socket that hears nothing and keeps the interface promiscuous.
    promiscuous: Option<OwnedFd>,
    // Last: the socket leaves the XSKMAP when `fd` closes, before the program may detach.
    _attachment: Arc<Attachment>,
}

impl XdpRx {
    /// What the kernel granted this socket.
    pub fn mode(&self) -> XdpMode {
        self.mode
    }

    /// Put interface `ifindex` in promiscuous mode for as long as this socket lives (the
    /// kernel undoes it when the socket closes, even on kill -9), as
    /// [`PacketRx::set_promiscuous`](super::PacketRx::set_promiscuous) does. The NIC's
    /// address filter runs before XDP, so FCoE needs this with AF_XDP too. An AF_XDP socket
    /// cannot hold the membership, so an AF_PACKET socket of protocol 0 (which receives
    /// nothing) holds it.
    pub fn set_promiscuous(&mut self, ifindex: u32) -> io::Result<()> {
        // SAFETY: plain syscall with constant arguments; the returned fd is checked and owned
        // at once.
        let raw =
            cvt(unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) })?;
        // SAFETY: `raw` is a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let mreq = libc::packet_mreq {
            mr_ifindex: ifindex as libc::c_int,
            mr_type: libc::PACKET_MR_PROMISC as libc::c_ushort,
            mr_alen: 0,
            mr_address: [0; 8],
        };
        // SAFETY: `mreq` is a live packet_mreq and we pass its exact size; the kernel only
        // reads it. `fd` is owned above.
        cvt(unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_ADD_MEMBERSHIP,
                (&mreq as *const libc::packet_mreq).cast(),
                std::mem::size_of::<libc::packet_mreq>() as libc::socklen_t,
            )
        })?;
        self.promiscuous = Some(fd);
        Ok(())
    }

    /// Frames handed over, and frames lost (kernel: no fill frame or RX ring full; ours:
    /// malformed descriptors, oversize frames), since the last call.
    pub fn stats(&mut self) -> io::Result<RingStats> {
        let mut st = libc::xdp_statistics {
            rx_dropped: 0,
            rx_invalid_descs: 0,
            tx_invalid_descs: 0,
            rx_ring_full: 0,
            rx_fill_ring_empty_descs: 0,
            tx_ring_empty_descs: 0,
        };
        getsockopt(self.fd.as_raw_fd(), libc::XDP_STATISTICS, &mut st)?;
        let kernel = st.rx_dropped + st.rx_ring_full + st.rx_invalid_descs;
        let drops = kernel.wrapping_sub(self.last_kernel_drops) + self.malformed;
        self.last_kernel_drops = kernel;
        let packets = self.handed;
        self.handed = 0;
        self.malformed = 0;
        Ok(RingStats {
            packets: packets.min(u32::MAX as u64) as u32,
            drops: drops.min(u32::MAX as u64) as u32,
        })
    }

    fn give_back(&mut self, addr: u64) {
        let chunk = addr & !(FRAME_SIZE as u64 - 1);
        if chunk < TX_BASE && !self.fill.push(chunk) {
            self.recycle.push(chunk);
        }
    }

    fn wait(&self, timeout: Duration) -> io::Result<bool> {
        // poll also wakes a zero-copy driver that waits for fill frames (need_wakeup).
        let ready = poll_one(self.fd.as_raw_fd(), libc::POLLIN, timeout)? != 0;
        if !ready {
            socket_error(self.fd.as_raw_fd())?;
        }
        Ok(ready)
    }
}

impl FrameRx for XdpRx {
    fn recv_batch(
        &mut self,
        timeout: Duration,
        max: usize,
        on_frame: &mut dyn FnMut(&[u8]),
    ) -> io::Result<usize> {
        while let Some(&addr) = self.recycle.last() {
            if !self.fill.push(addr) {
                break;
            }
            self.recycle.pop();
        }
        let mut handed = 0;
        let mut waited = false;
        while handed < max {
            let Some(desc) = self.rx.pop() else {
                // Give the kernel back what we have consumed before sleeping.
                self.rx.release();
                self.fill.submit();
                if handed > 0 || waited || !self.wait(timeout)? {
                    break;
                }
                waited = true;
                continue;
            };
            let contd = desc.options & libc::XDP_PKT_CONTD != 0;
            if !self.in_frame && !contd {
                // The common case: a whole frame in one descriptor, handed over in place.
                match rx_data(&self.umem, &desc) {
                    Some(frame) => {
                        on_frame(frame);
                        handed += 1;
                    }
                    None => self.malformed += 1,
                }
            } else {
                // One part of a frame spanning several descriptors: join it in `scratch`.
                let at = self.scratch_len;
                match rx_data(&self.umem, &desc) {
                    Some(part) if at + part.len() <= self.scratch.len() => {
                        self.scratch[at..at + part.len()].copy_from_slice(part);
                        self.scratch_len += part.len();
                    }
                    _ => self.oversize = true,
                }
                self.in_frame = contd;
                if !contd {
                    if self.oversize {
                        self.malformed += 1;
                    } else {
                        on_frame(&self.scratch[..self.scratch_len]);
                        handed += 1;
                    }
                    self.scratch_len = 0;
                    self.oversize = false;
                }
            }
            self.give_back(desc.addr);
        }
        self.rx.release();
        self.fill.submit();
        self.handed += handed as u64;
        Ok(handed)
    }
}

/// The transmit half: the TX and completion rings and the transmit frames of the UMEM.
pub struct XdpTx {
    fd: Arc<OwnedFd>,
    umem: Arc<Mmap>,
    tx: Ring<libc::xdp_desc>,
    completion: Ring<u64>,
    /// Transmit frames that are ours to fill: not in the TX ring, not awaiting completion.
    free: Vec<u64>,
    mode: XdpMode,
}

impl XdpTx {
    /// What the kernel granted this socket.
    pub fn mode(&self) -> XdpMode {
        self.mode
    }

    /// Take back the frames the kernel has finished sending.
    fn reap(&mut self) {
        while let Some(addr) = self.completion.pop() {
            let chunk = addr & !(FRAME_SIZE as u64 - 1);
            // Only ever our own transmit frames; anything else would be a kernel bug, and
            // keeping it out of `free` keeps the copy in `send_frames` inside the TX half.
            if (TX_BASE..(FRAMES * FRAME_SIZE) as u64).contains(&chunk)
                && self.free.len() < TX_FRAMES
            {
                self.free.push(chunk);
            }
        }
        self.completion.release();
    }

    /// Publish the TX ring and, where the kernel needs it, make it send. EAGAIN (copy mode
    /// sends at most 32 frames per call), EBUSY and ENOBUFS all mean "call again".
    fn kick(&mut self) -> io::Result<()> {
        self.tx.submit();
        if self.mode.zero_copy && !self.tx.needs_wakeup() {
            return Ok(());
        }
        // SAFETY: sendto with no data and no address: only the socket is used.
        let ret = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                std::ptr::null(),
                0,
                libc::MSG_DONTWAIT,
                std::ptr::null(),
                0,
            )
        };
        if ret < 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::EAGAIN) | Some(libc::EBUSY) | Some(libc::ENOBUFS)
                | Some(libc::EINTR) => Ok(()),
                _ => Err(e),
            };
        }
        Ok(())
    }

    /// Kick until the kernel has taken every descriptor (copy mode only progresses inside
    /// sendto), or until it stops making progress for a while.
    fn drain(&mut self) -> io::Result<()> {
        let mut last = u32::MAX;
        let mut stalled = 0;
        loop {
            self.kick()?;
            self.reap();
            if self.mode.zero_copy {
                // The driver sends on its own once woken.
                return Ok(());
            }
            let left = self.tx.outstanding();
            if left == 0 {
                return Ok(());
            }
            if left < last {
                last = left;
                stalled = 0;
            } else {
                stalled += 1;
                if stalled > 64 {
                    // Left in the ring: the next send kicks again.
                    return Ok(());
                }
                std::thread::yield_now();
            }
        }
    }

    /// Make room for a frame of `ndesc` descriptors: reap and kick until there are enough
    /// free frames and TX ring slots, or until TX_STALL passes.
    fn room(&mut self, ndesc: usize) -> io::Result<bool> {
        let mut since: Option<Instant> = None;
        loop {
            if self.free.len() < ndesc {
                self.reap();
            }
            if self.free.len() >= ndesc && self.tx.free(ndesc as u32) as usize >= ndesc {
                return Ok(true);
            }
            self.kick()?;
            self.reap();
            let start = *since.get_or_insert_with(Instant::now);
            if start.elapsed() > TX_STALL {
                return Ok(false);
            }
            std::thread::yield_now();
        }
    }
}

impl FrameTx for XdpTx {
    fn send_frames(&mut self, frames: &[&[u8]]) -> io::Result<usize> {
        self.reap();
        let mut sent = 0;
        for frame in frames {
            let ndesc = frame.len().div_ceil(FRAME_SIZE);
            if frame.is_empty()
                || frame.len() > MAX_FRAME_LEN
                || (ndesc > 1 && !self.mode.multi_buffer)
            {
                // Not sendable here: counted by the caller as dropped.
                continue;
            }
            if !self.room(ndesc)? {
                break;
            }
            let mut parts = frame.chunks(FRAME_SIZE).peekable();
            while let Some(part) = parts.next() {
                let Some(addr) = self.free.pop() else {
                    unreachable!("room() checked the free frames");
                };
                // SAFETY: `addr` came from `free`, which holds only frame-aligned addresses
                // of the transmit half (checked in `reap`), so `addr + part.len()` (at most
                // FRAME_SIZE) stays inside the mapping that `self.umem` keeps alive. A free
                // frame is in no ring: the kernel neither reads nor writes it until we publish
                // its descriptor below, and the receive half never touches transmit frames.
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        part.as_ptr(),
                        self.umem.as_ptr().add(addr as usize),
                        part.len(),
                    )
                };
                let options = if parts.peek().is_some() {
                    libc::XDP_PKT_CONTD
                } else {
                    0
                };
                let pushed = self.tx.push(libc::xdp_desc {
                    addr,
                    len: part.len() as u32,
                    options,
                });
                debug_assert!(pushed, "room() checked the TX ring");
            }
            sent += 1;
        }
        self.drain()?;
        Ok(sent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};

    // libc's definitions against linux/if_xdp.h.
    #[test]
    fn libc_layouts_match_linux_if_xdp_h() {
        assert_eq!(size_of::<libc::sockaddr_xdp>(), 16);
        assert_eq!(offset_of!(libc::sockaddr_xdp, sxdp_queue_id), 8);
        assert_eq!(size_of::<libc::xdp_desc>(), 16);
        assert_eq!(offset_of!(libc::xdp_desc, options), 12);
        assert_eq!(size_of::<libc::xdp_umem_reg>(), 32);
        assert_eq!(offset_of!(libc::xdp_umem_reg, chunk_size), 16);
        assert_eq!(size_of::<libc::xdp_ring_offset>(), 32);
        assert_eq!(size_of::<libc::xdp_mmap_offsets>(), 128);
        assert_eq!(size_of::<libc::xdp_statistics>(), 48);
        assert_eq!(libc::SOL_XDP, 283);
        assert_eq!(libc::XDP_PKT_CONTD, 1);
        assert_eq!(libc::XDP_USE_SG, 16);
    }

    #[test]
    fn umem_halves_and_rings_fit() {
        assert!(FRAME_SIZE.is_power_of_two());
        assert!(FILL_RING as usize >= RX_FRAMES && FILL_RING.is_power_of_two());
        assert!(COMPLETION_RING as usize >= TX_FRAMES && COMPLETION_RING.is_power_of_two());
        assert!(RX_RING.is_power_of_two() && TX_RING.is_power_of_two());
        // A jumbo frame fits the scratch buffer and the transmit frames.
        assert!(MAX_FRAME_LEN.div_ceil(FRAME_SIZE) <= TX_FRAMES);
    }
}
