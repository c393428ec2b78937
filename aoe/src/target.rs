//! The AoE protocol layer: turns received frames into replies. Sans-IO: it is handed whole
//! Ethernet frames, the time `now` they were received, and a [`Transmit`] to build replies
//! in; it never touches a socket, a clock or a thread. An ATA command's service time, for the
//! latency histograms, runs from that `now` to the reply handed to [`Transmit::now`].
//!
//! # Validation order
//!
//! Each step reads a field of the AoE header (AoE r11 §2; Error codes §2.4) or of the
//! command's argument (§3.1-§3.4), in this order:
//!
//! 1. Length: Ethernet + AoE header (24 bytes), plus the fixed argument of commands 0–3.
//!    Shorter frames are dropped (`truncated`). Frames shorter than the 60-byte Ethernet
//!    minimum are fine (Linux and iPXE on a tap send 32–36 bytes); trailing bytes are ignored.
//! 2. Version: Ver ≠ 1 is dropped when broadcast-addressed (or a response), else answered with
//!    AoE Error 5.
//! 3. R flag set: a response, never ours to answer; dropped.
//! 4. Address: Major ∈ {ours, 0xffff} and Minor ∈ {ours, 0xff}.
//! 5. Mac Mask List: when an export's list is non-empty, any command from a source MAC not on
//!    it is dropped silently (the device is invisible to that host).
//! 6. Command: unknown 4..=0xEF → AoE Error 1; vendor ≥ 0xF0 → silence (counted).
//! 7. Argument fields, 8. payload length, 9. LBA range (checked 64-bit arithmetic), in the ATA
//!    layer for command 0.
//!
//! # Broadcast policy
//!
//! Broadcast-addressed frames (Major 0xffff or Minor 0xff) are answered only for Query Config
//! (every CCmd: the config string is not data), ATA IDENTIFY and CHECK POWER MODE (WinAoE
//! discovers with a broadcast IDENTIFY), and the *read* forms of Mac Mask List and
//! Reserve/Release. Every other broadcast-addressed command — READ, WRITE, FLUSH, any other ATA
//! opcode, mask and reserve edits, unknown commands — is dropped and counted
//! (`broadcast_refused`): vblade and ggaoed execute broadcast writes on every export, which
//! no initiator needs.
//!
//! # Reservations
//!
//! While an export's reserve list is non-empty, ATA commands other than IDENTIFY and CHECK
//! POWER MODE from a source MAC not on the list get AoE Error 6 (target reserved). vblade
//! exempts IDENTIFY only; CHECK POWER MODE is exempt here too because it reveals and changes
//! nothing. Config, mask and reserve commands are not blocked (a holder-less host can still
//! read the reservation, and RCmd 2 force-set is AoEr11's way to break one).
//!
//! # Replies
//!
//! Ver 1 with R set (first byte 0x18, or 0x1C with E), the request's tag, our own
//! Major/Minor even for broadcast requests, unicast to the requester's source MAC from our
//! MAC. Every byte up to the reply length is written (reserved fields zero); `commit` pads
//! short frames with zeros. ATA failures go in the ATA Status/Error registers, never in the
//! AoE Error field. AoE error replies carry the header plus the request's fixed argument
//! (reserved bytes zeroed, lists left out); config errors carry the current config instead.
//!
//! Tags are opaque and no per-tag state is kept: a retransmit with a new tag is simply
//! executed again (reads and writes are idempotent).

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Instant;

use l2san_common::ether::{emit_header, HEADER_LEN as ETH_LEN};
use l2san_common::io::{FieldWidth, Steering, MAX_FRAME_LEN};
use l2san_common::store::{Backing, ClientKey};
use l2san_common::sync::ReadMostly;
use l2san_common::{EtherType, EthernetFrame, MacAddr, Transmit};

use crate::ata::{self, AtaCommand, AtaDevice, AtaError, AtaOp, Identity, Opcode};
use crate::wire::header::{HEADER_LEN, VERSION};
use crate::wire::{
    self, AtaPacket, AtaRepr, Command, ConfigCommand, ConfigPacket, ConfigRepr, Directive,
    DirectiveCommand, ErrorCode, HeaderPacket, HeaderRepr, MaskCommand, MaskError, MaskPacket,
    MaskRepr, ReserveCommand, ReservePacket, ReserveRepr, WireError,
};

mod clients;
mod manage;
mod stats;

use clients::Clients;
pub use clients::{ClientStats, ClientStatsSnapshot, MAX_CLIENTS};
pub use l2san_common::stats::{Histogram, HistogramSnapshot, LATENCY_BOUNDS};
use stats::{add, bump};
pub use stats::{AoeStats, AoeStatsSnapshot, ExportStats, ExportStatsSnapshot};

/// Firmware Version in config responses: 0x4c32, "L2" in ASCII. Stable across releases so
/// that initiators and tools that log it see one value per implementation.
pub const FIRMWARE_VERSION: u16 = 0x4c32;
/// Default advertised Buffer Count: Linux uses min(bufcnt, aoe_maxout = 64).
pub const DEFAULT_BUFFER_COUNT: u16 = 64;
/// Smallest Buffer Count advertised: Linux never sends a request with fewer than 2.
pub const MIN_BUFFER_COUNT: u16 = 2;
/// Capacity of each export's Mac Mask List and reserve list (vblade's mask limit).
pub const MAC_LIST_CAP: usize = 32;
/// Ethernet + AoE header + ATA argument: what a frame carries besides sector data.
pub const ATA_OVERHEAD: usize = ETH_LEN + HEADER_LEN + wire::ata::ARG_LEN;

/// Frame offsets of the parts of a reply.
const AOE_START: usize = ETH_LEN;
const ARG_START: usize = ETH_LEN + HEADER_LEN;

/// One disk image exported as eShelf.Slot.
#[derive(Debug, Clone)]
pub struct AoeExport {
    pub shelf: u16,
    pub slot: u8,
    /// An image, or a read-only base with a copy-on-write overlay per client (source MAC).
    pub image: Backing,
    /// Advertised Buffer Count; default 64, clamped to at least 2.
    pub buffer_count: u16,
    /// Initial config string; at most 1024 bytes (longer is cut).
    pub config_string: Vec<u8>,
    /// Source MACs allowed to see this export; empty allows every host. Unlike the Mac Mask
    /// List it comes from the operator, not the wire: a host not on it gets no answer at all,
    /// not even to discovery, and no advert is broadcast.
    pub allow: Vec<MacAddr>,
}

impl AoeExport {
    pub fn new(shelf: u16, slot: u8, image: impl Into<Backing>) -> AoeExport {
        AoeExport {
            shelf,
            slot,
            image: image.into(),
            buffer_count: DEFAULT_BUFFER_COUNT,
            config_string: Vec::new(),
            allow: Vec::new(),
        }
    }
}

/// The protocol state of one export that initiators can change and that outlives a restart:
/// config string, Mac Mask List, reserve list. See [`AoeTarget::state`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExportState {
    pub shelf: u16,
    pub slot: u8,
    pub config: Vec<u8>,
    pub mask: Vec<MacAddr>,
    pub reserve: Vec<MacAddr>,
}

/// A fixed-capacity MAC list (no allocation after construction).
#[derive(Debug, Clone, Copy)]
struct MacList {
    macs: [MacAddr; MAC_LIST_CAP],
    len: usize,
}

impl MacList {
    const fn new() -> MacList {
        MacList {
            macs: [MacAddr::ZERO; MAC_LIST_CAP],
            len: 0,
        }
    }
    fn as_slice(&self) -> &[MacAddr] {
        &self.macs[..self.len]
    }
    fn is_empty(&self) -> bool {
        self.len == 0
    }
    fn contains(&self, mac: MacAddr) -> bool {
        self.as_slice().contains(&mac)
    }
    /// Add unless present; `false` when full.
    fn add(&mut self, mac: MacAddr) -> bool {
        if self.contains(mac) {
            return true;
        }
        if self.len == MAC_LIST_CAP {
            return false;
        }
        self.macs[self.len] = mac;
        self.len += 1;
        true
    }
    fn remove(&mut self, mac: MacAddr) {
        if let Some(i) = self.as_slice().iter().position(|&m| m == mac) {
            self.macs.copy_within(i + 1..self.len, i);
            self.len -= 1;
        }
    }
    fn clear(&mut self) {
        self.len = 0;
    }
}

/// Lock helpers that survive poisoning: the protected data are plain values that a panic
/// elsewhere cannot leave half-written in a way that matters more than staying up.
fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}
fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}

/// An export and its mutable protocol state.
#[derive(Debug)]
struct Export {
    shelf: u16,
    slot: u8,
    image: Backing,
    buffer_count: u16,
    identity: Identity,
    /// Capacity preallocated to 1024: setting it never allocates.
    config: RwLock<Vec<u8>>,
    mask: RwLock<MacList>,
    /// Fast path: `mask` is non-empty. Written under the `mask` write lock.
    masked: AtomicBool,
    reserve: RwLock<MacList>,
    /// Fast path: `reserve` is non-empty. Written under the `reserve` write lock.
    reserved: AtomicBool,
    /// The operator's allow-list; empty allows everyone. Never changes: no lock (a reload
    /// that changes it builds a new `Export`).
    allow: Box<[MacAddr]>,
    /// The config string the operator gave (a reload compares it with the new one).
    initial_config: Box<[u8]>,
    /// Shared with the `Export` a reload builds in this one's place: counters carry on.
    stats: Arc<ExportStats>,
}

impl Export {
    fn new(e: AoeExport, host: &str) -> Export {
        let mut config = Vec::with_capacity(wire::config::MAX_CONFIG_STRING);
        let n = e.config_string.len().min(wire::config::MAX_CONFIG_STRING);
        config.extend_from_slice(&e.config_string[..n]);
        Export {
            shelf: e.shelf,
            slot: e.slot,
            identity: Identity::new(&format!("e{}.{}:{}", e.shelf, e.slot, host)),
            image: e.image,
            buffer_count: e.buffer_count.max(MIN_BUFFER_COUNT),
            initial_config: config.clone().into_boxed_slice(),
            config: RwLock::new(config),
            mask: RwLock::new(MacList::new()),
            masked: AtomicBool::new(false),
            reserve: RwLock::new(MacList::new()),
            reserved: AtomicBool::new(false),
            allow: e.allow.into_boxed_slice(),
            stats: Arc::default(),
        }
    }

    /// Whether `e` asks for exactly what this export is.
    fn same_as(&self, e: &AoeExport) -> bool {
        let n = e.config_string.len().min(wire::config::MAX_CONFIG_STRING);
        self.image.same_as(&e.image)
            && self.buffer_count == e.buffer_count.max(MIN_BUFFER_COUNT)
            && *self.allow == *e.allow
            && *self.initial_config == e.config_string[..n]
    }

    /// Take over what initiators set on `old` (the same shelf.slot before a reload) and its
    /// counters. The config string is the initiators' unless the operator changed it.
    fn inherit(&mut self, old: &Export) {
        if self.initial_config == old.initial_config {
            let mut config = write(&self.config);
            config.clear();
            config.extend_from_slice(&read(&old.config));
        }
        let mask = *read(&old.mask);
        *write(&self.mask) = mask;
        self.masked.store(!mask.is_empty(), Ordering::Release);
        let reserve = *read(&old.reserve);
        *write(&self.reserve) = reserve;
        self.reserved.store(!reserve.is_empty(), Ordering::Release);
        self.stats = old.stats.clone();
    }

    /// The operator's allow-list lets `src` in.
    fn allows(&self, src: MacAddr) -> bool {
        self.allow.is_empty() || self.allow.contains(&src)
    }

    fn addressed_by(&self, major: u16, minor: u8) -> bool {
        (major == self.shelf || major == wire::header::MAJOR_BROADCAST)
            && (minor == self.slot || minor == wire::header::MINOR_BROADCAST)
    }

    /// The Mac Mask List lets `src` in.
    fn admits(&self, src: MacAddr) -> bool {
        !self.masked.load(Ordering::Acquire) || read(&self.mask).contains(src)
    }

    /// Reserved, and not by `src`.
    fn reserved_against(&self, src: MacAddr) -> bool {
        self.reserved.load(Ordering::Acquire) && !read(&self.reserve).contains(src)
    }
}

/// What every handler needs to know about the request.
struct Request<'a> {
    src: MacAddr,
    header: HeaderRepr,
    broadcast: bool,
    /// The AoE header's payload: the argument and what follows.
    arg: &'a [u8],
    /// The source's counters, once the frame is known to address one of our exports.
    client: Option<&'a ClientStats>,
    /// When the frame was received: the start of an ATA command's service time, and the
    /// time an overlay's client was last heard from.
    now: Instant,
}

/// The AoE target: every export served on one interface. `Send + Sync`; share it through an
/// `Arc` among workers.
#[derive(Debug)]
pub struct AoeTarget {
    /// Our interface MAC, the source of every reply, in the low 48 bits: it changes when the
    /// interface comes back with another ([`l2san_common::FrameHandler::mac_changed`]).
    mac: AtomicU64,
    mtu: AtomicU32,
    sector_count: AtomicU8,
    /// Replaced whole by [`reconfigure`](AoeTarget::reconfigure).
    exports: ReadMostly<Vec<Arc<Export>>>,
    stats: AoeStats,
    clients: Clients,
    generation: AtomicU64,
    /// Hostname, for the IDENTIFY serial of exports a reload adds.
    host: String,
    /// A reload changed the exports: the leader worker advertises at its next tick.
    advertise_pending: AtomicBool,
}

/// What [`AoeTarget::reconfigure`] changed, by shelf.slot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reconfigured {
    pub added: Vec<(u16, u8)>,
    pub removed: Vec<(u16, u8)>,
    /// Same shelf.slot, something else changed (image, size, allow-list, buffer count,
    /// config string); the initiators' mask and reserve lists carry over.
    pub changed: Vec<(u16, u8)>,
}

impl Reconfigured {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

/// Sectors per ATA command for `mtu`: ⌊(MTU − 36) / 512⌋, at most 255, and at most what fits
/// a transmit buffer ([`MAX_FRAME_LEN`]: 17 sectors).
pub fn sector_count_for_mtu(mtu: u32) -> u8 {
    let by_mtu = (mtu as usize).saturating_sub(ATA_OVERHEAD) / ata::SECTOR_SIZE;
    let by_buffer = (MAX_FRAME_LEN - ATA_OVERHEAD) / ata::SECTOR_SIZE;
    by_mtu.min(by_buffer).min(255) as u8
}

/// The field AoE frames are steered by over several workers: the ATA argument's LBA bytes 1-2
/// (LBA bits 8-23, little-endian on the wire), after the Ethernet and AoE headers and the
/// argument's first 4 bytes (flags, error/feature, sector count, command/status).
pub const STEERING: Steering = Steering {
    ethertype: EtherType::AOE,
    offset: (ETH_LEN + HEADER_LEN + 4 + 1) as u16,
    width: FieldWidth::U16,
};

/// How a worker drives the target: AoE frames in, replies and adverts out.
impl l2san_common::FrameHandler for AoeTarget {
    fn ethertypes(&self) -> &[u16] {
        &[EtherType::AOE]
    }
    /// Steered by LBA bits 8-23: the requests of one initiator to one 128 KiB region meet
    /// one worker and are handled in order (a delayed write never overtakes a newer one to
    /// the same sectors), while regions and initiators spread over all workers.
    fn steering(&self) -> &[Steering] {
        &[STEERING]
    }
    fn handle(&self, frame: &[u8], now: Instant, tx: &mut dyn Transmit) {
        self.handle_frame(frame, now, tx);
    }
    /// Recompute the Sector Count and advertise (at start, and when the MTU changes).
    fn link_changed(&self, mtu: u32, tx: &mut dyn Transmit) {
        self.set_mtu(mtu);
        self.advertise(tx);
    }
    /// Advertise after a reload (the leader worker ticks).
    fn tick(&self, _now: Instant, tx: &mut dyn Transmit) {
        if self.advertise_pending.swap(false, Ordering::AcqRel) {
            self.advertise(tx);
        }
    }
    /// The interface came back with another MAC: answer from it (the leader advertises next,
    /// in `link_changed`; Linux takes the new MAC as another path to each export).
    fn mac_changed(&self, mac: MacAddr) -> Result<(), String> {
        self.mac.store(mac_bits(mac), Ordering::Relaxed);
        Ok(())
    }
}

/// A MAC in the low 48 bits of a `u64`.
fn mac_bits(mac: MacAddr) -> u64 {
    let mut b = [0u8; 8];
    b[2..].copy_from_slice(&mac.0);
    u64::from_be_bytes(b)
}

impl AoeTarget {
    /// `mac`: our interface MAC (source of every reply); `mtu`: current interface MTU;
    /// `host`: hostname for the IDENTIFY serial.
    pub fn new(mac: MacAddr, mtu: u32, host: &str, exports: Vec<AoeExport>) -> AoeTarget {
        AoeTarget {
            mac: AtomicU64::new(mac_bits(mac)),
            mtu: AtomicU32::new(mtu),
            sector_count: AtomicU8::new(sector_count_for_mtu(mtu)),
            exports: ReadMostly::new(
                exports
                    .into_iter()
                    .map(|e| Arc::new(Export::new(e, host)))
                    .collect(),
            ),
            stats: AoeStats::default(),
            clients: Clients::default(),
            generation: AtomicU64::new(0),
            host: host.to_string(),
            advertise_pending: AtomicBool::new(false),
        }
    }

    /// Serve `exports` from now on (a live reload). An export whose shelf.slot and settings
    /// are unchanged goes on as it is; one with the same shelf.slot and new settings (another
    /// image or size, allow-list, buffer count, config string) keeps the Mac Mask List,
    /// reserve list, config string (unless the operator changed it) and counters that
    /// initiators set. Frames being handled finish on the table they started with. The
    /// leader worker advertises every export at its next tick, so initiators hear of new
    /// and resized ones (Linux takes a new size on `aoe-revalidate`).
    pub fn reconfigure(&self, exports: Vec<AoeExport>) -> Reconfigured {
        let old = self.exports.load();
        let mut done = Reconfigured::default();
        let mut table = Vec::with_capacity(exports.len());
        for e in exports {
            let at = (e.shelf, e.slot);
            match old.iter().find(|x| (x.shelf, x.slot) == at) {
                Some(x) if x.same_as(&e) => table.push(x.clone()),
                Some(x) => {
                    let mut fresh = Export::new(e, &self.host);
                    fresh.inherit(x);
                    table.push(Arc::new(fresh));
                    done.changed.push(at);
                }
                None => {
                    table.push(Arc::new(Export::new(e, &self.host)));
                    done.added.push(at);
                }
            }
        }
        for x in old.iter() {
            if !table.iter().any(|n| (n.shelf, n.slot) == (x.shelf, x.slot)) {
                done.removed.push((x.shelf, x.slot));
            }
        }
        self.exports.replace(table);
        if !done.is_empty() {
            self.state_changed();
            self.advertise_pending.store(true, Ordering::Release);
        }
        done
    }

    /// What is served now, by shelf.slot.
    pub fn images(&self) -> Vec<(u16, u8, Backing)> {
        self.exports
            .read()
            .iter()
            .map(|ex| (ex.shelf, ex.slot, ex.image.clone()))
            .collect()
    }

    pub fn mac(&self) -> MacAddr {
        MacAddr::from_bytes(&self.mac.load(Ordering::Relaxed).to_be_bytes()[2..])
    }

    pub fn mtu(&self) -> u32 {
        self.mtu.load(Ordering::Relaxed)
    }

    /// Record a new interface MTU; the Sector Count follows it.
    pub fn set_mtu(&self, mtu: u32) {
        self.mtu.store(mtu, Ordering::Relaxed);
        self.sector_count
            .store(sector_count_for_mtu(mtu), Ordering::Relaxed);
    }

    /// Max sectors per ATA command at the current MTU (the config Sector Count).
    pub fn sector_count(&self) -> u8 {
        self.sector_count.load(Ordering::Relaxed)
    }

    pub fn stats(&self) -> &AoeStats {
        &self.stats
    }

    /// The counters of every export, in the order the exports were given.
    pub fn export_stats(&self) -> Vec<(u16, u8, ExportStatsSnapshot)> {
        self.exports
            .read()
            .iter()
            .map(|ex| (ex.shelf, ex.slot, ex.stats.snapshot()))
            .collect()
    }

    /// Every client's counters (source MACs that addressed one of our exports), by MAC;
    /// `None` counts those past [`MAX_CLIENTS`].
    pub fn client_stats(&self) -> Vec<(Option<MacAddr>, ClientStatsSnapshot)> {
        self.clients.snapshot()
    }

    /// One Ethernet frame (whole frame, Ethernet header included, ethertype 0x88A2),
    /// received at `now`. Replies go to `tx`; ATA service times (`now` to [`Transmit::now`]
    /// after the reply) go to the latency histograms.
    pub fn handle_frame(&self, frame: &[u8], now: Instant, tx: &mut dyn Transmit) {
        bump(&self.stats.frames);
        let Ok(eth) = EthernetFrame::new_checked(frame) else {
            bump(&self.stats.truncated);
            return;
        };
        if eth.ethertype() != EtherType::Aoe {
            bump(&self.stats.not_aoe);
            return;
        }
        let Ok(packet) = HeaderPacket::new_checked(eth.payload()) else {
            bump(&self.stats.truncated);
            return;
        };
        let Ok(header) = HeaderRepr::parse(&packet) else {
            bump(&self.stats.truncated);
            return;
        };
        // 1. The fixed argument of the command must be there.
        let arg_len = match header.command {
            Command::IssueAta => wire::ata::ARG_LEN,
            Command::QueryConfig => wire::config::ARG_LEN,
            Command::MacMask => wire::mask::ARG_LEN,
            Command::ReserveRelease => wire::reserve::ARG_LEN,
            Command::Vendor(_) | Command::Unknown(_) => 0,
        };
        if packet.payload().len() < arg_len {
            bump(&self.stats.truncated);
            tracing::trace!(len = frame.len(), "aoe: truncated frame dropped");
            return;
        }
        // A frame for another station (a bridge port, a promiscuous NIC, a veth or tap hands
        // those up too) is not ours to answer, whatever its shelf.slot says.
        let dst = eth.dst();
        if dst != self.mac() && !dst.is_broadcast() {
            bump(&self.stats.not_addressed);
            return;
        }
        let src = eth.src();
        if src.is_multicast() {
            // Never answer to a group address: one request would reach every host.
            bump(&self.stats.not_addressed);
            return;
        }
        let req = Request {
            src,
            header,
            broadcast: packet.broadcast_addressed(),
            arg: packet.payload(),
            client: None,
            now,
        };
        // 2. Version.
        if header.version != VERSION {
            bump(&self.stats.bad_version);
            if header.response || req.broadcast {
                return;
            }
            for ex in self.exports.read().iter() {
                if ex.addressed_by(header.major, header.minor) && ex.allows(src) && ex.admits(src) {
                    self.error_reply(ex, &req, ErrorCode::UnsupportedVersion, &[], tx);
                }
            }
            return;
        }
        // 3. Responses are not ours to answer; but one from another MAC for one of our own
        //    addresses means two targets claim it, and Linux would interleave I/O between them.
        if header.response {
            bump(&self.stats.response_flag);
            self.check_conflict(src, &header);
            return;
        }
        // 4. Address, 5. mask, then the command.
        let exports = self.exports.read();
        let mut addressed = exports
            .iter()
            .filter(|ex| ex.addressed_by(header.major, header.minor))
            .peekable();
        if addressed.peek().is_none() {
            bump(&self.stats.not_addressed);
            return;
        }
        let client = self.clients.get(src);
        let req = Request {
            client: Some(&client),
            ..req
        };
        for ex in addressed {
            if !ex.allows(src) {
                bump(&self.stats.not_allowed);
                bump(&client.not_allowed);
                continue;
            }
            if !ex.admits(src) {
                bump(&self.stats.masked);
                bump(&client.masked);
                continue;
            }
            self.dispatch(ex, &req, tx);
        }
    }

    /// Unsolicited Query Config responses (adverts), one per export, to broadcast — or, when
    /// an export has an allow-list or a non-empty mask list, one to each host on them (on
    /// both, when it has both): a host that may not see the export hears nothing of it.
    pub fn advertise(&self, tx: &mut dyn Transmit) {
        for ex in self.exports.read().iter() {
            let config = read(&ex.config);
            let mask = *read(&ex.mask);
            if mask.is_empty() && ex.allow.is_empty() {
                self.config_reply(
                    ex,
                    MacAddr::BROADCAST,
                    0,
                    ConfigCommand::Read,
                    None,
                    &config,
                    tx,
                );
                continue;
            }
            let hosts = if ex.allow.is_empty() {
                mask.as_slice()
            } else {
                &ex.allow[..]
            };
            for &mac in hosts.iter().filter(|&&m| ex.allows(m) && ex.admits(m)) {
                self.config_reply(ex, mac, 0, ConfigCommand::Read, None, &config, tx);
            }
        }
    }

    /// Log, loudly but rate-limited, a response from another MAC for one of our addresses.
    fn check_conflict(&self, src: MacAddr, header: &HeaderRepr) {
        if src == self.mac() {
            return;
        }
        for ex in self.exports.read().iter() {
            if header.major == ex.shelf && header.minor == ex.slot {
                // Rate-limited without a clock: the 1st, 2nd, 4th, 8th ... such response.
                let n = bump(&self.stats.conflicts);
                if n.is_power_of_two() {
                    tracing::error!(
                        "another target ({src}) answers for e{}.{}, which l2san serves ({n} such responses so far): initiators will mix I/O between the two; give one of them another shelf.slot",
                        ex.shelf,
                        ex.slot
                    );
                }
            }
        }
    }

    /// A change counter of the persistent protocol state (config strings, mask and reserve
    /// lists): when it moves, [`state`](Self::state) is worth saving.
    pub fn state_generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The persistent protocol state of every export.
    pub fn state(&self) -> Vec<ExportState> {
        self.exports
            .read()
            .iter()
            .map(|ex| ExportState {
                shelf: ex.shelf,
                slot: ex.slot,
                config: read(&ex.config).clone(),
                mask: read(&ex.mask).as_slice().to_vec(),
                reserve: read(&ex.reserve).as_slice().to_vec(),
            })
            .collect()
    }

    /// Restore state saved by [`state`](Self::state) (say, before a restart). Entries for
    /// exports that no longer exist are ignored; lists are cut to their capacity.
    pub fn restore(&self, saved: &[ExportState]) {
        let exports = self.exports.load();
        for st in saved {
            let Some(ex) = exports
                .iter()
                .find(|e| e.shelf == st.shelf && e.slot == st.slot)
            else {
                continue;
            };
            {
                let mut config = write(&ex.config);
                config.clear();
                let n = st.config.len().min(wire::config::MAX_CONFIG_STRING);
                config.extend_from_slice(&st.config[..n]);
            }
            {
                let mut mask = write(&ex.mask);
                mask.clear();
                for &m in &st.mask {
                    mask.add(m);
                }
                ex.masked.store(!mask.is_empty(), Ordering::Release);
            }
            {
                let mut reserve = write(&ex.reserve);
                reserve.clear();
                for &m in &st.reserve {
                    reserve.add(m);
                }
                ex.reserved.store(!reserve.is_empty(), Ordering::Release);
            }
        }
    }

    /// Note that persistent state changed.
    fn state_changed(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    fn dispatch(&self, ex: &Export, req: &Request, tx: &mut dyn Transmit) {
        bump(&ex.stats.requests);
        if let Some(c) = req.client {
            bump(&c.requests);
        }
        match req.header.command {
            Command::IssueAta => self.ata(ex, req, tx),
            Command::QueryConfig => self.config(ex, req, tx),
            Command::MacMask => self.mask(ex, req, tx),
            Command::ReserveRelease => self.reserve(ex, req, tx),
            Command::Vendor(_) => {
                bump(&self.stats.vendor);
            }
            Command::Unknown(_) if req.broadcast => {
                bump(&self.stats.broadcast_refused);
            }
            Command::Unknown(_) => {
                self.error_reply(ex, req, ErrorCode::UnrecognizedCommand, &[], tx);
            }
        }
    }

    /// A transmit buffer of `len` bytes with the Ethernet and AoE headers written.
    #[allow(clippy::too_many_arguments)]
    fn reply_buffer<'t>(
        &self,
        tx: &'t mut dyn Transmit,
        ex: &Export,
        dst: MacAddr,
        command: Command,
        tag: u32,
        error: Option<ErrorCode>,
        len: usize,
    ) -> &'t mut [u8] {
        let buf = &mut tx.buffer(len)[..len];
        emit_header(buf, dst, self.mac(), EtherType::Aoe);
        let header = HeaderRepr::response(ex.shelf, ex.slot, command, tag, error);
        header.emit(&mut HeaderPacket::new_unchecked(
            &mut buf[AOE_START..ARG_START],
        ));
        buf
    }

    fn commit(&self, tx: &mut dyn Transmit, len: usize) {
        tx.commit(len);
        bump(&self.stats.replies);
    }

    /// An AoE error reply: the header with E set and `arg` (a fixed argument, already
    /// cleaned of reserved bits) after it.
    fn error_reply(
        &self,
        ex: &Export,
        req: &Request,
        code: ErrorCode,
        arg: &[u8],
        tx: &mut dyn Transmit,
    ) {
        let len = ARG_START + arg.len();
        let h = &req.header;
        let buf = self.reply_buffer(tx, ex, req.src, h.command, h.tag, Some(code), len);
        buf[ARG_START..].copy_from_slice(arg);
        self.commit(tx, len);
        bump(&self.stats.aoe_errors);
        if let Some(c) = req.client {
            bump(&c.aoe_errors);
        }
        tracing::trace!(src = %req.src, ?code, "aoe: error reply");
    }

    // ---- Command 0: Issue ATA Command --------------------------------------------------

    fn ata(&self, ex: &Export, req: &Request, tx: &mut dyn Transmit) {
        let packet = AtaPacket::new_unchecked(req.arg);
        let Ok(arg) = AtaRepr::parse(&packet) else {
            bump(&self.stats.truncated);
            return;
        };
        let opcode = Opcode::from(arg.cmd_status);
        if req.broadcast && !opcode.is_inquiry() {
            bump(&self.stats.broadcast_refused);
            if let Some(c) = req.client {
                bump(&c.broadcast_refused);
            }
            tracing::trace!(src = %req.src, ?opcode, "aoe: broadcast-addressed ATA command refused");
            return;
        }
        if !opcode.is_inquiry() && ex.reserved_against(req.src) {
            if let Some(c) = req.client {
                bump(&c.reserved);
            }
            let mut echo = [0u8; wire::ata::ARG_LEN];
            arg.emit(&mut AtaPacket::new_unchecked(&mut echo[..]));
            self.error_reply(ex, req, ErrorCode::TargetReserved, &echo, tx);
            return;
        }
        let cmd = AtaCommand {
            opcode,
            features: arg.err_feature,
            sector_count: arg.sector_count,
            lba: arg.lba,
        };
        // The requester's own overlay, on an overlay export; a new boot (IDENTIFY after a
        // silence) of a `reset` client discards it first.
        let client = ClientKey::mac(req.src);
        let volume = ex.image.volume(&client);
        if let Some(set) = ex.image.overlays() {
            if set.client_seen(&client, req.now, opcode == Opcode::IdentifyDevice) {
                tracing::info!(
                    "e{}.{}: {} booted again: its overlay was reset",
                    ex.shelf,
                    ex.slot,
                    req.src
                );
            }
        }
        let dev = AtaDevice {
            image: &volume,
            identity: &ex.identity,
        };
        let decoded = cmd.decode(dev.capacity(), self.sector_count(), packet.data().len());
        let len = ATA_OVERHEAD + decoded.as_ref().map_or(0, AtaOp::data_in_len);
        let h = &req.header;
        let buf = self.reply_buffer(tx, ex, req.src, h.command, h.tag, None, len);
        let (head, data_in) = buf.split_at_mut(ATA_OVERHEAD);
        // The read lands straight in the transmit buffer; the write comes straight from the
        // received frame.
        let outcome = decoded.and_then(|op| {
            dev.execute(&op, packet.data(), data_in)
                .map(|done| (op, done))
        });
        let mut reply = AtaRepr {
            aflags: arg.aflags,
            err_feature: 0,
            sector_count: 0,
            cmd_status: ata::status::DRDY,
            lba: arg.lba,
        };
        let data_len = match outcome {
            Ok((op, done)) => {
                self.count_done(ex, req, &op);
                reply.sector_count = done.sector_count;
                done.data_len
            }
            Err(e) => {
                self.count_error(ex, req, &cmd, &e);
                let (status, error) = e.registers();
                reply.cmd_status = status;
                reply.err_feature = error;
                // Nothing was transferred: the whole count remains.
                reply.sector_count = arg.sector_count;
                0
            }
        };
        reply.emit(&mut AtaPacket::new_unchecked(&mut head[ARG_START..]));
        self.commit(tx, ATA_OVERHEAD + data_len);
        let took = tx.now().saturating_duration_since(req.now);
        ex.stats.latency.record(took);
        if let Some(c) = req.client {
            c.latency.record(took);
        }
    }

    fn count_done(&self, ex: &Export, req: &Request, op: &AtaOp) {
        match op {
            AtaOp::Read { count, .. } => {
                let bytes = usize::from(*count) * ata::SECTOR_SIZE;
                bump(&self.stats.reads);
                add(&self.stats.bytes_read, bytes);
                bump(&ex.stats.reads);
                add(&ex.stats.bytes_read, bytes);
                if let Some(c) = req.client {
                    bump(&c.reads);
                    add(&c.bytes_read, bytes);
                }
            }
            AtaOp::Write { count, .. } => {
                let bytes = usize::from(*count) * ata::SECTOR_SIZE;
                bump(&self.stats.writes);
                add(&self.stats.bytes_written, bytes);
                bump(&ex.stats.writes);
                add(&ex.stats.bytes_written, bytes);
                if let Some(c) = req.client {
                    bump(&c.writes);
                    add(&c.bytes_written, bytes);
                }
            }
            AtaOp::Flush => {
                bump(&self.stats.flushes);
            }
            AtaOp::Identify | AtaOp::CheckPowerMode => {}
        }
    }

    fn count_error(&self, ex: &Export, req: &Request, cmd: &AtaCommand, e: &AtaError) {
        bump(&self.stats.ata_errors);
        bump(&ex.stats.ata_errors);
        if let Some(c) = req.client {
            bump(&c.ata_errors);
        }
        if matches!(e, AtaError::Uncorrectable) {
            // Rate-limited without a clock: the 1st, 2nd, 4th, 8th ... I/O error.
            let n = bump(&self.stats.io_errors);
            if n.is_power_of_two() {
                tracing::warn!(
                    "e{}.{}: I/O error on {} ({n} so far); check the disk and the kernel log",
                    ex.shelf,
                    ex.slot,
                    ex.image.image().path().display()
                );
            }
        } else {
            tracing::trace!(src = %req.src, ?cmd, error = %e, "aoe: ATA command failed");
        }
    }
}

#[cfg(test)]
mod tests;
