//! The FCoE target of one interface: both personalities, the FC port and the SCSI device
//! behind it, driven by frames and `now`.
//!
//! Which personality answers is decided per frame by where it was sent:
//! - FIP (0x8914) VN2VN frames and FIP-encapsulated FLOGI/LOGO, and FCoE frames to our VN MAC
//!   `0E:FD:00:<id>`: the VN2VN VN_Port (Linux open-fcoe).
//! - FCoE frames to `0E:FC:00:FF:FF:FE` (the non-FIP FLOGI) or to the NIC MAC: the
//!   point-to-point N_Port (iPXE).
//!
//! FCoE is not the AoE fast path: one `Mutex` around the whole state is enough for now.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use l2san_common::ether::{EtherType, EthernetFrame, MacAddr, MIN_FRAME_LEN};
use l2san_common::io::Transmit;
use l2san_common::store::Backing;
use l2san_common::worker::FrameHandler;

use crate::fc::access::Access;
pub use crate::fc::access::{BadAllow, FcoeAllow};
pub use crate::fc::counters::{IoStatsSnapshot, MAX_INITIATORS};
use crate::fc::ptp::FLOGI_MAC;
use crate::fc::session::Personality;
pub use crate::fc::FcoeStatsSnapshot;
use crate::fc::{FcPort, RxContext};
pub use crate::fip::vn2vn::VnState;
use crate::fip::vn2vn::{Vn2VnPort, VnEvent};
use crate::scsi::{LunTable, ScsiTarget};
use crate::wire::fc::FcPacket;
use crate::wire::fcoe::{FcoePacket, FcoeRepr, MAX_LEN, MIN_LEN};
use crate::wire::fip::{fpma, FipPacket, FipRepr, VN2VN_FC_MAP};
use crate::wire::{Error as WireError, FcId, Wwn};

/// What the binary configures.
#[derive(Debug, Clone)]
pub struct FcoeConfig {
    /// The NIC's burned-in MAC: the ENode MAC of VN2VN and our address for iPXE.
    pub mac: MacAddr,
    pub mtu: u32,
    pub wwpn: Wwn,
    pub wwnn: Wwn,
    /// LUN number and what it serves: an image, or a read-only base with a copy-on-write
    /// overlay per initiator WWPN.
    pub luns: Vec<(u64, Backing)>,
    /// Allow-lists by LUN number: initiator WWPNs and/or ENode MACs. A LUN not listed here,
    /// or listed with an empty list, is open to every initiator. An initiator sees only the
    /// LUNs that allow it (the others are absent to it, REPORT LUNS included), and its
    /// FLOGI/PLOGI is refused with LS_RJT if none does ([`crate::fc::access`]).
    pub allow: Vec<(u64, Vec<FcoeAllow>)>,
}

struct Inner {
    mac: MacAddr,
    vn: Vn2VnPort,
    fc: FcPort,
}

/// The FCoE target. `Send + Sync`.
pub struct FcoeTarget {
    inner: Mutex<Inner>,
}

/// Largest FCoE payload an MTU carries, as a VN2VN claim advertises it (2158 with baby
/// jumbos, the MTU itself below that).
fn max_fcoe_size(mtu: u32) -> u16 {
    mtu.min(MAX_LEN as u32) as u16
}

/// A `Transmit` that counts what it commits.
struct Counting<'a> {
    inner: &'a mut dyn Transmit,
    frames: u64,
    bytes: u64,
}

impl Transmit for Counting<'_> {
    fn buffer(&mut self, len: usize) -> &mut [u8] {
        self.inner.buffer(len)
    }
    fn commit(&mut self, len: usize) {
        self.frames += 1;
        self.bytes += len.max(MIN_FRAME_LEN) as u64;
        self.inner.commit(len);
    }
    fn now(&self) -> Instant {
        self.inner.now()
    }
}

/// The LUN table and allow-lists of a configuration; LUNs that cannot be served are logged
/// and left out.
fn lun_table(
    wwpn: Wwn,
    luns: Vec<(u64, Backing)>,
    allow: &[(u64, Vec<FcoeAllow>)],
) -> (LunTable, Access) {
    let mut table = LunTable::new(wwpn.0);
    let mut lists = Vec::new();
    for (number, image) in luns {
        match u16::try_from(number) {
            Ok(n) => match table.insert(n, image) {
                Ok(_) => {
                    let list = allow
                        .iter()
                        .filter(|(l, _)| *l == number)
                        .flat_map(|(_, list)| list.iter().copied())
                        .collect();
                    lists.push((number, list));
                }
                Err(e) => tracing::warn!("FCoE LUN {number} not exported: {e}"),
            },
            Err(_) => {
                tracing::warn!("FCoE LUN {number} not exported: LUN numbers stop at 65535")
            }
        }
    }
    (table, Access::new(lists))
}

/// What [`FcoeTarget::reconfigure`] changed, by LUN number.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FcoeReconfigured {
    pub added: Vec<u16>,
    pub removed: Vec<u16>,
    /// Same LUN, another image or capacity.
    pub resized: Vec<u16>,
    /// The allow-list of a LUN served before and after changed.
    pub access_changed: bool,
}

impl FcoeReconfigured {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty()
            && self.removed.is_empty()
            && self.resized.is_empty()
            && !self.access_changed
    }
}

impl FcoeTarget {
    pub fn new(cfg: FcoeConfig) -> FcoeTarget {
        let (luns, access) = lun_table(cfg.wwpn, cfg.luns, &cfg.allow);
        let scsi = Arc::new(ScsiTarget::new(luns));
        let mut fc = FcPort::new(cfg.wwpn, cfg.wwnn, cfg.mtu, scsi);
        fc.access = access;
        FcoeTarget {
            inner: Mutex::new(Inner {
                mac: cfg.mac,
                vn: Vn2VnPort::new(cfg.mac, cfg.wwpn, cfg.wwnn, max_fcoe_size(cfg.mtu)),
                fc,
            }),
        }
    }

    /// Serve `luns` under the allow-lists `allow` from now on (a live reload), keeping every
    /// login. Initiators learn of it by UNIT ATTENTION: 06/3F/0E REPORTED LUNS DATA HAS
    /// CHANGED when LUNs came or went (Linux rescans), 06/2A/09 CAPACITY DATA HAS CHANGED on
    /// a LUN whose image or size changed. Exchanges under way on a removed LUN end with
    /// LOGICAL UNIT NOT SUPPORTED.
    pub fn reconfigure(
        &self,
        luns: Vec<(u64, Backing)>,
        allow: Vec<(u64, Vec<FcoeAllow>)>,
    ) -> FcoeReconfigured {
        let mut inner = self.lock();
        let old = inner.fc.scsi.clone();
        let (table, access) = lun_table(inner.fc.wwpn, luns, &allow);
        let mut done = FcoeReconfigured::default();
        for lun in table.iter() {
            match old.luns().get(lun.number()) {
                None => done.added.push(lun.number()),
                Some(was)
                    if !was.backing().same_as(lun.backing())
                        || was.capacity_blocks() != lun.capacity_blocks() =>
                {
                    done.resized.push(lun.number())
                }
                Some(_) => {}
            }
        }
        for lun in old.luns().iter() {
            if table.get(lun.number()).is_none() {
                done.removed.push(lun.number());
            }
        }
        // LUNs that came or went are reported as such; the lists of the others may change.
        done.access_changed = table.iter().any(|l| {
            let n = u64::from(l.number());
            old.luns().get(l.number()).is_some() && access.list(n) != inner.fc.access.list(n)
        });
        let scsi = Arc::new(old.with_luns(table));
        for &n in &done.resized {
            scsi.raise_capacity_changed(n);
        }
        if !done.added.is_empty() || !done.removed.is_empty() || done.access_changed {
            scsi.raise_reported_luns_changed();
        }
        inner.fc.reconfigure(scsi, access);
        done
    }

    /// What is served now, by LUN number.
    pub fn images(&self) -> Vec<(u16, Backing)> {
        self.lock()
            .fc
            .scsi
            .luns()
            .iter()
            .map(|l| (l.number(), l.backing().clone()))
            .collect()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // The state stays usable whatever panicked while holding it.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One received frame (ethertype 0x8906 or 0x8914), Ethernet header included.
    pub fn handle_frame(&self, frame: &[u8], now: Instant, tx: &mut dyn Transmit) {
        let mut inner = self.lock();
        let mut tx = Counting {
            inner: tx,
            frames: 0,
            bytes: 0,
        };
        inner.handle(frame, now, &mut tx);
        inner.fc.stats.tx_frames += tx.frames;
        inner.fc.stats.tx_bytes += tx.bytes;
    }

    /// Timers: VN2VN probing, claiming, beacons and neighbour ageing; PLOGI retries, RRQ hold.
    /// Call at least every 100 ms.
    pub fn tick(&self, now: Instant, tx: &mut dyn Transmit) {
        let mut inner = self.lock();
        let mut tx = Counting {
            inner: tx,
            frames: 0,
            bytes: 0,
        };
        let events = inner.vn.tick(now, &mut tx);
        inner.apply(events);
        inner.fc.tick(now, &mut tx);
        inner.fc.stats.vn2vn_peers = inner.vn.peer_count() as u64;
        inner.fc.stats.tx_frames += tx.frames;
        inner.fc.stats.tx_bytes += tx.bytes;
    }

    pub fn set_mtu(&self, mtu: u32) {
        let mut inner = self.lock();
        inner.fc.set_mtu(mtu);
        inner.vn.set_max_fcoe_size(max_fcoe_size(mtu));
    }

    pub fn stats(&self) -> FcoeStatsSnapshot {
        self.lock().fc.stats.clone()
    }

    /// I/O by LUN (LUNs that served something), with writes waiting for data.
    pub fn lun_stats(&self) -> Vec<(u16, IoStatsSnapshot)> {
        self.lock().fc.lun_stats()
    }

    /// I/O by initiator WWPN (`None`: those past the table's bound), with writes waiting for
    /// data.
    pub fn initiator_stats(&self) -> Vec<(Option<Wwn>, IoStatsSnapshot)> {
        self.lock().fc.initiator_stats()
    }

    /// The VN2VN VN_Port's state and N_Port ID (its MAC is `0E:FD:00:<id>`).
    pub fn vn2vn(&self) -> (VnState, FcId) {
        let inner = self.lock();
        (inner.vn.state(), inner.vn.port_id())
    }

    /// Sessions now open.
    pub fn session_count(&self) -> usize {
        self.lock().fc.sessions.len()
    }
}

impl Inner {
    fn apply(&mut self, events: Vec<VnEvent>) {
        for e in events {
            match e {
                VnEvent::Restarted => self.fc.drop_personality(Personality::Vn2Vn),
                VnEvent::PeerGone(id) => self.fc.drop_vn2vn_peer(id),
            }
        }
        self.fc.stats.vn2vn_peers = self.vn.peer_count() as u64;
    }

    fn handle(&mut self, frame: &[u8], now: Instant, tx: &mut dyn Transmit) {
        let st = &mut self.fc.stats;
        st.frames += 1;
        st.rx_bytes += frame.len() as u64;
        let Ok(eth) = EthernetFrame::new_checked(frame) else {
            st.drop_truncated += 1;
            return;
        };
        match eth.ethertype() {
            EtherType::Fip => {
                st.fip_frames += 1;
                self.fip(eth.src(), eth.dst(), eth.payload(), now, tx);
            }
            EtherType::Fcoe => {
                st.fcoe_frames += 1;
                self.fcoe(eth.src(), eth.dst(), eth.payload(), now, tx);
            }
            _ => st.drop_unsupported += 1,
        }
    }

    fn fip(
        &mut self,
        src: MacAddr,
        dst: MacAddr,
        payload: &[u8],
        now: Instant,
        tx: &mut dyn Transmit,
    ) {
        let st = &mut self.fc.stats;
        if src == self.mac || src == self.vn.vn_mac() {
            // Our own frame looped back: it must not look like a neighbour claiming our ID.
            st.fip_ignored += 1;
            return;
        }
        if dst != self.mac && !dst.is_multicast() {
            st.drop_not_for_us += 1;
            return;
        }
        let Ok(packet) = FipPacket::new_checked(payload) else {
            st.drop_truncated += 1;
            return;
        };
        match FipRepr::parse(&packet) {
            Ok(FipRepr::Vn2Vn(v)) => {
                // A neighbour with a VN2VN login keeps its place in a full neighbour table.
                let fc = &self.fc;
                let established = |id: FcId| {
                    fc.sessions
                        .get(&fpma(VN2VN_FC_MAP, id))
                        .is_some_and(|s| s.personality == Personality::Vn2Vn)
                };
                let events = self.vn.handle(&v, now, tx, &established);
                self.apply(events);
            }
            Ok(FipRepr::ElsRequest(els)) => {
                if !self.vn.is_addressable() {
                    st.drop_not_for_us += 1;
                    return;
                }
                let rx = RxContext {
                    personality: Personality::Vn2Vn,
                    src_mac: src,
                    local_mac: self.vn.vn_mac(),
                    vn_id: Some(self.vn.port_id()),
                    now,
                };
                let vn_mac = self.vn.vn_mac();
                self.fc.handle_fip_els(&rx, &els, vn_mac, self.mac, tx);
            }
            // VLAN requests and solicitations (iPXE), advertisements, ELS replies: we are no
            // FCF (FC-BB-6: discovery is an FCF's to answer) and send no FIP ELS requests.
            // iPXE then falls back to a non-FIP FLOGI (`fc::ptp`).
            Ok(_) | Err(WireError::Unsupported(_)) => st.fip_ignored += 1,
            Err(WireError::Truncated) => st.drop_truncated += 1,
            Err(_) => st.drop_fip_malformed += 1,
        }
    }

    fn fcoe(
        &mut self,
        src: MacAddr,
        dst: MacAddr,
        payload: &[u8],
        now: Instant,
        tx: &mut dyn Transmit,
    ) {
        let st = &mut self.fc.stats;
        let (personality, local_mac, vn_id) = if self.vn.is_addressable() && dst == self.vn.vn_mac()
        {
            (Personality::Vn2Vn, dst, Some(self.vn.port_id()))
        } else if dst == self.mac || dst == FLOGI_MAC {
            (Personality::PointToPoint, self.mac, None)
        } else {
            st.drop_not_for_us += 1;
            return;
        };
        let Ok(packet) = FcoePacket::new_checked(payload) else {
            st.drop_truncated += 1;
            return;
        };
        match FcoeRepr::parse(&packet) {
            Ok(r) if r.sof.is_class3() && r.eof.is_class3() => {}
            Ok(_) => {
                st.drop_bad_sof_eof += 1;
                return;
            }
            Err(e) => {
                if is_padded(payload) {
                    st.drop_padded += 1;
                } else {
                    match e {
                        WireError::Truncated => st.drop_truncated += 1,
                        WireError::BadCrc { .. } => st.drop_bad_crc += 1,
                        _ => st.drop_malformed += 1,
                    }
                }
                return;
            }
        }
        // FcoeRepr::parse checked the length: a whole 24-byte FC header is there.
        let Ok(fc) = FcPacket::new_checked(packet.fc_frame()) else {
            st.drop_truncated += 1;
            return;
        };
        let rx = RxContext {
            personality,
            src_mac: src,
            local_mac,
            vn_id,
            now,
        };
        self.fc.handle_fc(&rx, &fc, tx);
    }
}

/// True if `payload` is a valid FCoE frame followed by zero padding. Senders must never pad
/// (iPXE reads the trailer at the very end of the frame); we count such frames apart.
fn is_padded(payload: &[u8]) -> bool {
    let mut len = payload.len();
    let floor = payload.len().saturating_sub(64).max(MIN_LEN);
    while len > floor && payload[len - 1] == 0 {
        len -= 1;
        if len % 4 == 2 {
            // FCoE header (14) + FC frame (4k) + trailer (8) is 2 mod 4.
            let p = FcoePacket::new_unchecked(&payload[..len]);
            if FcoeRepr::parse(&p).is_ok() {
                return true;
            }
        }
    }
    false
}

/// The worker's view: the worker reads `now` once per receive batch and hands it here.
impl FrameHandler for FcoeTarget {
    fn ethertypes(&self) -> &[u16] {
        &[EtherType::FCOE, EtherType::FIP]
    }
    /// FCoE frames are steered by OX_ID, so that every frame of an exchange (a command and
    /// its write data) meets the same worker; FIP is not steered (all on the first worker).
    fn steering(&self) -> &[l2san_common::io::Steering] {
        /// The FC header's OX_ID (its bytes 16-17), after the Ethernet and FCoE headers.
        const OX_ID: l2san_common::io::Steering = l2san_common::io::Steering {
            ethertype: EtherType::FCOE,
            offset: (l2san_common::ether::HEADER_LEN + crate::wire::fcoe::HEADER_LEN + 16) as u16,
            width: l2san_common::io::FieldWidth::U16,
        };
        &[OX_ID]
    }
    fn handle(&self, frame: &[u8], now: Instant, tx: &mut dyn Transmit) {
        self.handle_frame(frame, now, tx);
    }
    fn link_changed(&self, mtu: u32, _tx: &mut dyn Transmit) {
        self.set_mtu(mtu);
    }
    fn tick(&self, now: Instant, tx: &mut dyn Transmit) {
        FcoeTarget::tick(self, now, tx);
    }
    /// VN2VN frames go to our VN_Port MAC and iPXE's FLOGI to 0E:FC:00:FF:FF:FE.
    fn needs_promiscuous(&self) -> bool {
        true
    }
    /// Not followed: the MAC names our ENode, our point-to-point address and (by default) our
    /// WWPN, and Linux keys its logins by them; moving them means a new VN2VN port, which is
    /// what a restart of l2san makes.
    fn mac_changed(&self, mac: MacAddr) -> Result<(), String> {
        let ours = self.lock().mac;
        if mac == ours {
            return Ok(());
        }
        Err(format!(
            "FCoE keeps {ours} as its ENode and point-to-point address (its WWPN may be named \
             after it too)"
        ))
    }
}
