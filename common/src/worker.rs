//! A worker: owns one receive ring and one transmit path of one interface, routes each frame
//! by ethertype to a handler, and sends the replies in batches. It does not know what the
//! frames mean.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::ether::EthernetFrame;
use crate::io::sys::{packet, signal};
use crate::io::{FrameRx, Transmit, TxBatch};
use crate::netif::Interface;

/// Frames handled per wake-up before replies are flushed (bounded batches).
pub const BATCH: usize = 64;
/// How long a worker sleeps in `poll` before it looks at timers and the stop flag.
const POLL: Duration = Duration::from_millis(100);
/// How often the MTU and link state are looked at.
const LINK_CHECK: Duration = Duration::from_secs(1);

/// A protocol target as a worker sees it.
pub trait FrameHandler: Send + Sync {
    /// The ethertypes this handler serves.
    fn ethertypes(&self) -> &[u16];
    /// One received frame of one of [`ethertypes`](Self::ethertypes), Ethernet header included.
    fn handle(&self, frame: &[u8], tx: &mut dyn Transmit);
    /// The link came up, the worker started, or the MTU changed: advertise.
    fn link_changed(&self, mtu: u32, tx: &mut dyn Transmit);
    /// Called at least every 100 ms, for timers.
    fn tick(&self, _now: Instant, _tx: &mut dyn Transmit) {}
    /// Whether the handler must hear frames addressed to MACs other than the interface's.
    fn needs_promiscuous(&self) -> bool {
        false
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

/// Route `frame` to the handler of its ethertype; count what has none.
pub fn dispatch(
    handlers: &[Arc<dyn FrameHandler>],
    frame: &[u8],
    tx: &mut dyn Transmit,
    stats: &WorkerStats,
) {
    stats.frames.fetch_add(1, Ordering::Relaxed);
    let Ok(eth) = EthernetFrame::new_checked(frame) else {
        stats.runts.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let ethertype = u16::from(eth.ethertype());
    for h in handlers {
        if h.ethertypes().contains(&ethertype) {
            h.handle(frame, tx);
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
}

impl WorkerRole {
    /// The only worker of an interface.
    pub const SOLE: WorkerRole = WorkerRole {
        index: 0,
        count: 1,
        fanout_group: 0,
    };

    fn leader(&self) -> bool {
        self.index == 0
    }
}

/// A fanout group id for `ifindex`, unlikely to meet another process's group.
pub fn fanout_group(ifindex: u32) -> u16 {
    (std::process::id() as u16) ^ ((ifindex as u16) << 11) ^ 0x4c32
}

/// Serve `iface` with `handlers` on the calling thread until a stop is requested.
///
/// With `role.count` > 1 this worker owns one socket of a fanout group: the kernel spreads the
/// interface's frames over the group's rings (see [`packet::fanout_program`]). Only the leader
/// (`role.index` 0) advertises and runs timers.
///
/// Socket errors never end it: ENETDOWN, ENOBUFS and a vanished interface are logged
/// (at most once per 10 s per kind) and the socket is reopened until it works again.
pub fn run(
    iface: &Interface,
    handlers: &[Arc<dyn FrameHandler>],
    stats: &WorkerStats,
    role: WorkerRole,
) {
    let ethertypes: Vec<u16> = handlers
        .iter()
        .flat_map(|h| h.ethertypes().iter().copied())
        .collect();
    let mut batch = TxBatch::new(BATCH);
    let mut last_warn: Option<Instant> = None;
    let mut warn = |msg: &dyn std::fmt::Display| {
        if last_warn.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
            tracing::warn!(iface = %iface.name, "{msg}");
            last_warn = Some(Instant::now());
        }
    };
    'reopen: while !signal::stop_requested() {
        // The index changes when an interface is deleted and made again: look it up anew.
        let index = Interface::by_name(&iface.name).map_or(iface.index, |i| i.index);
        let mut mtu = iface.mtu().unwrap_or(1500);
        let fanout = (role.count > 1).then_some(role.fanout_group);
        let opened = packet::open_sized(index, &ethertypes, mtu, fanout);
        let (mut rx, mut tx) = match opened {
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
        if handlers.iter().any(|h| h.needs_promiscuous()) {
            if let Err(e) = rx.set_promiscuous(index) {
                warn(&format_args!(
                    "cannot make the interface promiscuous: {e}; FCoE initiators may not reach us"
                ));
            }
        }
        if role.leader() {
            let mut t = batch.with(&mut tx);
            for h in handlers {
                h.link_changed(mtu, &mut t);
            }
            t.flush();
        }
        let mut last_check = Instant::now();
        while !signal::stop_requested() {
            let result = {
                let mut t = batch.with(&mut tx);
                let r = rx.recv_batch(POLL, BATCH, &mut |frame| {
                    dispatch(handlers, frame, &mut t, stats);
                });
                if role.leader() {
                    let now = Instant::now();
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
                r
            };
            stats.tx_frames.store(batch.sent, Ordering::Relaxed);
            stats.tx_dropped.store(batch.dropped, Ordering::Relaxed);
            match result {
                Ok(n) if n > 0 => {
                    stats.batches.fetch_add(1, Ordering::Relaxed);
                }
                Ok(_) => {}
                Err(e) => {
                    stats.io_errors.fetch_add(1, Ordering::Relaxed);
                    warn(&format_args!("receive failed: {e}; reopening the socket"));
                    std::thread::sleep(Duration::from_millis(500));
                    continue 'reopen;
                }
            }
            if last_check.elapsed() >= LINK_CHECK {
                last_check = Instant::now();
                if let Ok(st) = rx.stats() {
                    if st.drops > 0 {
                        stats
                            .ring_drops
                            .fetch_add(st.drops as u64, Ordering::Relaxed);
                        warn(&format_args!(
                            "{} frames dropped: the receive ring was full; the machine is too busy for the traffic (more --workers, or fewer other jobs)",
                            st.drops
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
                            let mut t = batch.with(&mut tx);
                            for h in handlers {
                                h.link_changed(now_mtu, &mut t);
                            }
                            t.flush();
                        }
                        if packet::ring_slot_size(now_mtu) != packet::ring_slot_size(mtu) {
                            // Frames of the new MTU need other ring slots: a new socket.
                            continue 'reopen;
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
