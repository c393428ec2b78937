//! A worker: owns one receive ring and one transmit path of one interface, routes each frame
//! by ethertype to a handler, and sends the replies in batches. It does not know what the
//! frames mean: the handlers say which ethertypes they serve and, for a fanout over several
//! workers, by which field their frames are steered ([`FrameHandler::steering`]).
//!
//! The worker is the handlers' clock: it reads the time once per received batch and hands
//! that `now` to every handler call of the batch (and to the timers), so the protocol code
//! below never reads a clock. A request's service time runs from that `now` to the reply
//! being handed to the transmit path ([`Transmit::now`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::ether::{EthernetFrame, MacAddr};
use crate::io::sys::packet::Fanout;
use crate::io::sys::xdp::{self, XdpConfig, XdpRx, XdpTx};
use crate::io::sys::{packet, signal, PacketRx, PacketTx};
use crate::io::{FrameRx, FrameTx, Steering, Transmit, TxBatch};
use crate::netif::Interface;

/// Frames handled per wake-up before replies are flushed (bounded batches).
pub const BATCH: usize = 64;
/// How long a worker sleeps in `poll` before it looks at timers and the stop flag.
const POLL: Duration = Duration::from_millis(100);
/// How often the MTU and link state are looked at.
const LINK_CHECK: Duration = Duration::from_secs(1);
/// How often the leader runs the handlers' timers while frames keep it awake (and after
/// every idle `POLL` otherwise): well within the 100 ms [`FrameHandler::tick`] promises.
const TICK: Duration = Duration::from_millis(5);

/// A protocol target as a worker sees it.
pub trait FrameHandler: Send + Sync {
    /// The ethertypes this handler serves.
    fn ethertypes(&self) -> &[u16];
    /// Which field of its frames spreads them over several workers of one interface; frames
    /// of its ethertypes not listed here all go to the first worker. See [`Steering`].
    fn steering(&self) -> &[Steering] {
        &[]
    }
    /// One received frame of one of [`ethertypes`](Self::ethertypes), Ethernet header
    /// included, received at `now` (read once for the whole receive batch).
    fn handle(&self, frame: &[u8], now: Instant, tx: &mut dyn Transmit);
    /// The link came up, the worker started, or the MTU changed: advertise.
    fn link_changed(&self, mtu: u32, tx: &mut dyn Transmit);
    /// Called at least every 100 ms, for timers.
    fn tick(&self, _now: Instant, _tx: &mut dyn Transmit) {}
    /// Whether the handler must hear frames addressed to MACs other than the interface's.
    fn needs_promiscuous(&self) -> bool {
        false
    }
    /// The interface came back (deleted and made again) with another MAC: answer from `mac`
    /// from now on. `Err` says what keeps using the old MAC instead; the worker then logs an
    /// error that names the fix. The leader calls [`link_changed`](Self::link_changed) next.
    fn mac_changed(&self, _mac: MacAddr) -> Result<(), String> {
        Err("it cannot change its MAC while serving".into())
    }
}

/// Tell `handlers` that the interface `name` came back with the MAC `now` instead of `was`.
/// Returns the line to log: `Ok` (a warning) if every handler answers from `now`, `Err` (an
/// error naming the fix) if one keeps `was`.
fn tell_new_mac(
    handlers: &[Arc<dyn FrameHandler>],
    name: &str,
    was: MacAddr,
    now: MacAddr,
) -> Result<String, String> {
    let kept: Vec<String> = handlers
        .iter()
        .filter_map(|h| h.mac_changed(now).err())
        .collect();
    if kept.is_empty() {
        Ok(format!(
            "interface {name} came back with another MAC ({now}, was {was}); answering from \
             {now} now and advertising again"
        ))
    } else {
        Err(format!(
            "interface {name} came back with another MAC ({now}, was {was}), but {}: requests \
             to {now} go unanswered there. Restart l2san, or give {name} its old MAC back with \
             `ip link set dev {name} address {was}`",
            kept.join("; ")
        ))
    }
}

/// Counters of one worker; read by anyone, written by the worker alone.
#[derive(Debug, Default)]
pub struct WorkerStats {
    pub frames: AtomicU64,
    pub batches: AtomicU64,
    pub unknown_ethertype: AtomicU64,
    pub runts: AtomicU64,
    pub tx_frames: AtomicU64,
    pub tx_dropped: AtomicU64,
    pub ring_drops: AtomicU64,
    pub io_errors: AtomicU64,
}

/// Add one to a counter that only this worker writes: a plain load and store, without the
/// locked read-modify-write of `fetch_add` on every frame.
fn bump(counter: &AtomicU64) {
    counter.store(counter.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
}

/// Route `frame`, received at `now`, to the handler of its ethertype; count what has none.
pub fn dispatch(
    handlers: &[Arc<dyn FrameHandler>],
    frame: &[u8],
    now: Instant,
    tx: &mut dyn Transmit,
    stats: &WorkerStats,
) {
    bump(&stats.frames);
    let Ok(eth) = EthernetFrame::new_checked(frame) else {
        stats.runts.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let ethertype = u16::from(eth.ethertype());
    for h in handlers {
        if h.ethertypes().contains(&ethertype) {
            h.handle(frame, now, tx);
            return;
        }
    }
    stats.unknown_ethertype.fetch_add(1, Ordering::Relaxed);
}

/// Which of an interface's workers this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerRole {
    /// 0 is the leader: it advertises and runs the handlers' timers.
    pub index: usize,
    /// Workers on the interface; more than one join a fanout group.
    pub count: usize,
    /// The fanout group id, the same for every worker of the interface.
    pub fanout_group: u16,
    /// Latency mode: spin this long for the next frame while traffic flows (AF_PACKET only);
    /// zero sleeps in `poll` between batches.
    pub busy_poll: Duration,
}

impl WorkerRole {
    /// The only worker of an interface.
    pub const SOLE: WorkerRole = WorkerRole {
        index: 0,
        count: 1,
        fanout_group: 0,
        busy_poll: Duration::ZERO,
    };

    fn leader(&self) -> bool {
        self.index == 0
    }
}

/// Which frame backend a worker uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backend {
    /// AF_XDP where it pays off: a zero-copy driver and an AF_XDP socket for every RX queue
    /// (one worker per queue). Elsewhere AF_PACKET, with an info log saying why. Copy-mode
    /// AF_XDP is not chosen: on veth and tap it costs about what AF_PACKET does
    /// (measured on veth: 4.15-4.37 µs of CPU per 60-byte frame received against 4.35-4.82
    /// for AF_PACKET; DESIGN.md, "AF_XDP").
    Auto,
    /// AF_XDP, in copy mode where the driver refuses zero-copy; AF_PACKET only where the
    /// kernel or driver refuses AF_XDP altogether, with a warning saying why.
    Xdp,
    /// AF_PACKET with a TPACKET_V2 ring (and a fanout group for several workers).
    #[default]
    Packet,
}

impl std::str::FromStr for Backend {
    type Err = String;
    fn from_str(s: &str) -> Result<Backend, String> {
        match s {
            "auto" => Ok(Backend::Auto),
            "xdp" => Ok(Backend::Xdp),
            "packet" => Ok(Backend::Packet),
            _ => Err(format!("unknown backend '{s}': use auto, xdp or packet")),
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Backend::Auto => "auto",
            Backend::Xdp => "xdp",
            Backend::Packet => "packet",
        })
    }
}

/// The RX queue a worker binds an AF_XDP socket to, or why it does not use AF_XDP.
///
/// Worker i binds queue i. An AF_XDP socket hears only its own queue, and AoE/FCoE frames
/// cannot be steered by flow hash (their hash is constant; on veth the queue is the sender's),
/// so AF_XDP is used only when every queue gets a socket: with fewer workers than queues every
/// worker stays on AF_PACKET, which hears all queues. Workers beyond the queue count use
/// AF_PACKET: they hear whatever the XDP program passes to the kernel (frames of a queue
/// whose socket is missing, say while a worker reopens it).
pub fn xdp_queue(backend: Backend, role: WorkerRole, rx_queues: u32) -> Result<u32, String> {
    if backend == Backend::Packet {
        return Err("AF_PACKET was asked for".into());
    }
    if rx_queues as usize > role.count {
        return Err(format!(
            "the interface has {rx_queues} RX queues but there are {} workers, and an AF_XDP \
             socket hears only its own queue; run {rx_queues} workers, or reduce the queues \
             with `ethtool -L <interface> combined {}`",
            role.count, role.count
        ));
    }
    if role.index >= rx_queues as usize {
        return Err(format!(
            "worker {} has no RX queue of its own (the interface has {rx_queues}); it serves \
             what the XDP program passes to the kernel",
            role.index
        ));
    }
    Ok(role.index as u32)
}

/// The two halves of whichever backend a worker opened.
enum Halves {
    Packet(PacketRx, PacketTx),
    // Boxed: the AF_XDP halves carry their ring state inline.
    Xdp(Box<XdpRx>, Box<XdpTx>),
}

impl Halves {
    fn split(&mut self) -> (&mut dyn FrameRx, &mut dyn FrameTx) {
        match self {
            Halves::Packet(rx, tx) => (rx, tx),
            Halves::Xdp(rx, tx) => (&mut **rx, &mut **tx),
        }
    }

    fn tx(&mut self) -> &mut dyn FrameTx {
        self.split().1
    }

    fn set_promiscuous(&mut self, ifindex: u32) -> std::io::Result<()> {
        match self {
            Halves::Packet(rx, _) => rx.set_promiscuous(ifindex),
            Halves::Xdp(rx, _) => rx.set_promiscuous(ifindex),
        }
    }

    /// Frames the kernel dropped since the last call.
    fn drops(&mut self) -> std::io::Result<u32> {
        match self {
            Halves::Packet(rx, _) => rx.stats().map(|s| s.drops),
            Halves::Xdp(rx, _) => rx.stats().map(|s| s.drops),
        }
    }

    /// Whether frames of MTU `new` need a new socket, where `old` was fine.
    fn reopen_for_mtu(&self, old: u32, new: u32) -> bool {
        match self {
            Halves::Packet(..) => packet::ring_slot_size(new) != packet::ring_slot_size(old),
            Halves::Xdp(rx, _) => !rx.mode().multi_buffer && new > old,
        }
    }
}

/// Try AF_XDP for this worker as `backend` asks; `Err` says why not.
fn open_xdp(
    iface: &Interface,
    index: u32,
    ethertypes: &[u16],
    role: WorkerRole,
    backend: Backend,
    mtu: u32,
) -> Result<(XdpRx, XdpTx), String> {
    let queues = xdp::rx_queue_count(&iface.name)
        .map_err(|e| format!("cannot count the interface's RX queues in sysfs: {e}"))?;
    let queue = xdp_queue(backend, role, queues)?;
    let config = XdpConfig {
        queue,
        allow_copy: backend == Backend::Xdp,
        max_frame_len: mtu as usize + crate::ether::HEADER_LEN,
    };
    xdp::open(index, ethertypes, config).map_err(|e| e.to_string())
}

/// How many workers an interface gets when the configuration does not say: one per core,
/// except on a machine of two cores or fewer, which gets one.
///
/// Measured on the 2-vCPU CI machine (DESIGN.md, "Workers on small machines"): a second worker
/// there cost more CPU per I/O than it added throughput, because the two workers and the
/// kernel's own network processing take turns on two cores, and each worker then sleeps and
/// wakes (about 2 µs of CPU each time under nested virtualisation) for smaller batches.
pub fn default_count(cores: usize) -> usize {
    if cores <= 2 {
        1
    } else {
        cores
    }
}

/// A fanout group id for `ifindex`, unlikely to meet another process's group.
pub fn fanout_group(ifindex: u32) -> u16 {
    (std::process::id() as u16) ^ ((ifindex as u16) << 11) ^ 0x4c32
}

/// Serve `iface` with `handlers` on the calling thread until a stop is requested, on the
/// frame backend `backend` asks for (see [`Backend`] and [`xdp_queue`]); AF_PACKET wherever
/// AF_XDP is not used.
///
/// With `role.count` > 1 this worker owns one socket of a fanout group: the kernel spreads the
/// interface's frames over the group's rings by the fields the handlers declare (see
/// [`FrameHandler::steering`] and [`packet::fanout_program`]). Only the leader (`role.index`
/// 0) advertises and runs timers.
///
/// Socket errors never end it: ENETDOWN, ENOBUFS and a vanished interface are logged
/// (at most once per 10 s per kind) and the socket is reopened until it works again.
pub fn run(
    iface: &Interface,
    handlers: &[Arc<dyn FrameHandler>],
    stats: &WorkerStats,
    role: WorkerRole,
    backend: Backend,
) {
    let ethertypes: Vec<u16> = handlers
        .iter()
        .flat_map(|h| h.ethertypes().iter().copied())
        .collect();
    let steering: Vec<Steering> = handlers
        .iter()
        .flat_map(|h| h.steering().iter().copied())
        .collect();
    let mut batch = TxBatch::new(BATCH);
    let mut last_warn: Option<Instant> = None;
    let mut xdp_fallback_logged = false;
    let mut warn = |msg: &dyn std::fmt::Display| {
        if last_warn.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
            tracing::warn!(iface = %iface.name, "{msg}");
            last_warn = Some(Instant::now());
        }
    };
    // The MAC the handlers answer from: the one read at start until the interface comes back
    // with another.
    let mut mac = iface.mac;
    'reopen: while !signal::stop_requested() {
        // The index (and maybe the MAC) changes when an interface is deleted and made again:
        // look it up anew.
        let found = Interface::by_name(&iface.name).ok();
        let index = found.as_ref().map_or(iface.index, |i| i.index);
        let mut mtu = iface.mtu().unwrap_or(1500);
        let xdp = if backend == Backend::Packet {
            None
        } else {
            match open_xdp(iface, index, &ethertypes, role, backend, mtu) {
                Ok((rx, tx)) => {
                    let mode = rx.mode();
                    tracing::info!(
                        iface = %iface.name,
                        worker = role.index,
                        zero_copy = mode.zero_copy,
                        multi_buffer = mode.multi_buffer,
                        "serving RX queue {} with AF_XDP",
                        role.index
                    );
                    Some(Halves::Xdp(Box::new(rx), Box::new(tx)))
                }
                Err(why) => {
                    if !xdp_fallback_logged {
                        xdp_fallback_logged = true;
                        if backend == Backend::Xdp {
                            tracing::warn!(iface = %iface.name, worker = role.index, "AF_XDP not used: {why}; using AF_PACKET");
                        } else {
                            tracing::info!(iface = %iface.name, worker = role.index, "AF_XDP not used: {why}; using AF_PACKET");
                        }
                    }
                    None
                }
            }
        };
        let opened = match xdp {
            Some(halves) => Ok(halves),
            None => {
                let fanout = (role.count > 1).then_some(Fanout {
                    group: role.fanout_group,
                    steering: &steering,
                });
                packet::open_sized(index, &ethertypes, mtu, fanout).map(|(mut rx, tx)| {
                    rx.set_busy_poll(role.busy_poll);
                    Halves::Packet(rx, tx)
                })
            }
        };
        let mut halves = match opened {
            Ok(halves) => halves,
            Err(e) => {
                stats.io_errors.fetch_add(1, Ordering::Relaxed);
                warn(&format_args!(
                    "cannot open a packet socket: {e}; retrying (is the interface up, and are we root or CAP_NET_RAW?)"
                ));
                std::thread::sleep(Duration::from_secs(1));
                continue;
            }
        };
        if let Some(now_mac) = found.map(|i| i.mac).filter(|&m| m != mac) {
            // Every worker tells the handlers (whichever serves frames first must answer from
            // the new MAC); the leader logs it, once per change.
            let said = tell_new_mac(handlers, &iface.name, mac, now_mac);
            if role.leader() {
                match said {
                    Ok(line) => tracing::warn!(iface = %iface.name, "{line}"),
                    Err(line) => tracing::error!(iface = %iface.name, "{line}"),
                }
            }
            mac = now_mac;
        }
        if handlers.iter().any(|h| h.needs_promiscuous()) {
            if let Err(e) = halves.set_promiscuous(index) {
                warn(&format_args!(
                    "cannot make the interface promiscuous: {e}; FCoE initiators may not reach us"
                ));
            }
        }
        if role.leader() {
            let mut t = batch.with(halves.tx());
            for h in handlers {
                h.link_changed(mtu, &mut t);
            }
            t.flush();
        }
        let mut last_check = Instant::now();
        let mut last_tick: Option<Instant> = None;
        while !signal::stop_requested() {
            // The batch's time, read at its first frame (after the wait, not before it).
            let mut received: Option<Instant> = None;
            let (result, now) = {
                let (rx, tx) = halves.split();
                let mut t = batch.with(tx);
                let r = rx.recv_batch(POLL, BATCH, &mut |frame| {
                    let now = *received.get_or_insert_with(Instant::now);
                    dispatch(handlers, frame, now, &mut t, stats);
                });
                // An empty wake-up (the poll timed out) reads the clock here instead.
                let now = received.unwrap_or_else(Instant::now);
                // Timers at most every TICK, not after every batch: under load a batch ends
                // every few microseconds, and the FCoE tick takes a lock and walks sessions.
                if role.leader()
                    && last_tick.is_none_or(|t| now.saturating_duration_since(t) >= TICK)
                {
                    last_tick = Some(now);
                    for h in handlers {
                        h.tick(now, &mut t);
                    }
                }
                t.flush();
                if let Some(e) = t.error.take() {
                    stats.io_errors.fetch_add(1, Ordering::Relaxed);
                    warn(&format_args!(
                        "transmit failed: {e}; replies dropped, initiators will retransmit"
                    ));
                }
                (r, now)
            };
            stats.tx_frames.store(batch.sent, Ordering::Relaxed);
            stats.tx_dropped.store(batch.dropped, Ordering::Relaxed);
            match result {
                Ok(n) if n > 0 => {
                    bump(&stats.batches);
                }
                Ok(_) => {}
                Err(e) => {
                    stats.io_errors.fetch_add(1, Ordering::Relaxed);
                    warn(&format_args!("receive failed: {e}; reopening the socket"));
                    std::thread::sleep(Duration::from_millis(500));
                    continue 'reopen;
                }
            }
            if now.saturating_duration_since(last_check) >= LINK_CHECK {
                last_check = now;
                if let Ok(drops) = halves.drops() {
                    if drops > 0 {
                        stats.ring_drops.fetch_add(drops as u64, Ordering::Relaxed);
                        warn(&format_args!(
                            "{drops} frames dropped: the receive ring was full; the machine is too busy for the traffic (more --workers, or fewer other jobs)"
                        ));
                    }
                }
                match iface.mtu() {
                    None => {
                        warn(&"interface vanished; waiting for it to come back");
                        std::thread::sleep(Duration::from_secs(1));
                        continue 'reopen;
                    }
                    Some(now_mtu) if now_mtu != mtu => {
                        if role.leader() {
                            tracing::info!(iface = %iface.name, old = mtu, new = now_mtu, "MTU changed; re-advertising");
                        }
                        if halves.reopen_for_mtu(mtu, now_mtu) {
                            // Frames of the new MTU need other ring slots: a new socket. The
                            // leader advertises once it has it (at the top of the loop), so
                            // initiators hear the new sector count when we can serve it.
                            continue 'reopen;
                        }
                        if role.leader() {
                            let mut t = batch.with(halves.tx());
                            for h in handlers {
                                h.link_changed(now_mtu, &mut t);
                            }
                            t.flush();
                        }
                        mtu = now_mtu;
                    }
                    Some(_) => {}
                }
            }
        }
        break;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn role(index: usize, count: usize) -> WorkerRole {
        WorkerRole {
            index,
            count,
            fanout_group: 0,
            busy_poll: Duration::ZERO,
        }
    }

    #[test]
    fn xdp_only_when_every_queue_gets_a_socket() {
        assert!(xdp_queue(Backend::Packet, role(0, 1), 1).is_err());
        assert_eq!(xdp_queue(Backend::Auto, role(0, 1), 1), Ok(0));
        assert_eq!(xdp_queue(Backend::Xdp, role(3, 4), 4), Ok(3));
        // More queues than workers: a queue would go unheard, so nobody uses AF_XDP.
        for i in 0..2 {
            let why = xdp_queue(Backend::Xdp, role(i, 2), 4).unwrap_err();
            assert!(why.contains("4 RX queues"), "{why}");
        }
        // More workers than queues: the extra ones stay on AF_PACKET.
        assert_eq!(xdp_queue(Backend::Auto, role(0, 2), 1), Ok(0));
        assert!(xdp_queue(Backend::Auto, role(1, 2), 1).is_err());
    }

    #[test]
    fn one_worker_on_two_cores_or_fewer() {
        assert_eq!(default_count(1), 1);
        assert_eq!(default_count(2), 1);
        assert_eq!(default_count(4), 4);
    }

    #[test]
    fn backend_names_round_trip() {
        for b in [Backend::Auto, Backend::Xdp, Backend::Packet] {
            assert_eq!(b.to_string().parse::<Backend>(), Ok(b));
        }
        assert!("af_xdp".parse::<Backend>().is_err());
        assert_eq!(Backend::default(), Backend::Packet);
    }

    /// A handler that records the MAC it was told, and follows it or not.
    struct Told {
        follows: bool,
        mac: std::sync::Mutex<Option<MacAddr>>,
    }

    impl FrameHandler for Told {
        fn ethertypes(&self) -> &[u16] {
            &[0x88b5]
        }
        fn handle(&self, _frame: &[u8], _now: Instant, _tx: &mut dyn Transmit) {}
        fn link_changed(&self, _mtu: u32, _tx: &mut dyn Transmit) {}
        fn mac_changed(&self, mac: MacAddr) -> Result<(), String> {
            *self.mac.lock().unwrap() = Some(mac);
            if self.follows {
                Ok(())
            } else {
                Err("the test handler keeps the old one".into())
            }
        }
    }

    /// An interface back with another MAC: every handler is told; if one keeps the old MAC
    /// the line is an error that names both fixes, otherwise a warning.
    #[test]
    fn a_new_mac_is_told_to_every_handler() {
        let was: MacAddr = "02:00:00:00:00:01".parse().unwrap();
        let now: MacAddr = "02:00:00:00:00:02".parse().unwrap();
        let told = |follows| {
            Arc::new(Told {
                follows,
                mac: Default::default(),
            })
        };
        let (a, b) = (told(true), told(false));
        let handlers: Vec<Arc<dyn FrameHandler>> = vec![a.clone(), b.clone()];
        let line = tell_new_mac(&handlers, "eth1", was, now).unwrap_err();
        assert_eq!(*a.mac.lock().unwrap(), Some(now));
        assert_eq!(*b.mac.lock().unwrap(), Some(now));
        assert!(
            line.contains("the test handler keeps the old one"),
            "{line}"
        );
        assert!(line.contains("Restart l2san"), "{line}");
        assert!(
            line.contains("`ip link set dev eth1 address 02:00:00:00:00:01`"),
            "{line}"
        );

        let handlers: Vec<Arc<dyn FrameHandler>> = vec![a.clone()];
        let line = tell_new_mac(&handlers, "eth1", now, was).unwrap();
        assert_eq!(*a.mac.lock().unwrap(), Some(was));
        assert!(line.contains("answering from 02:00:00:00:00:01"), "{line}");
    }
}
