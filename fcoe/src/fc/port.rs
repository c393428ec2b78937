//! The FC port: its names and receive size, its table of sessions (one per remote port) and
//! the exchange, sequence and nexus IDs it hands out, the routing of each received FC frame
//! to its handler by R_CTL and TYPE, and its timers.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use l2san_common::ether::MacAddr;
use l2san_common::io::Transmit;

use super::access::Access;
use super::counters;
use super::els::Path;
use super::session::{Personality, Session, IDLE_EVICT, MAX_SESSIONS};
use super::stats::FcoeStatsSnapshot;
use crate::scsi::{NexusId, ScsiTarget};
use crate::tx::FrameSpec;
use crate::wire::fc::{FcHeaderRepr, FcPacket, FcType, RCtl, RX_ID_UNKNOWN};
use crate::wire::fcoe::{mfs_for_mtu, Eof, Sof};
use crate::wire::fip::{fpma, FipEls, VN2VN_FC_MAP};
use crate::wire::{FcId, Wwn};

/// R_A_TOV we advertise and keep (ms).
pub const R_A_TOV_MS: u32 = 4000;
/// E_D_TOV we advertise (ms).
pub const E_D_TOV_MS: u32 = 2000;
/// An originated PLOGI is sent again after this long without an answer.
const PLOGI_RETRY: Duration = Duration::from_millis(2 * E_D_TOV_MS as u64);
/// How often an originated PLOGI is sent before we wait for the peer instead.
const PLOGI_TRIES: u32 = 5;
/// Aborted exchanges are forgotten after 2 x R_A_TOV even without an RRQ (FC-LS-3, RRQ).
const ABORT_HOLD: Duration = Duration::from_millis(2 * R_A_TOV_MS as u64);
/// A write whose data never completes is dropped after this long (the initiator has long
/// since aborted it).
const WRITE_TIMEOUT: Duration = Duration::from_secs(120);

/// How a received FC frame reached us.
#[derive(Debug, Clone, Copy)]
pub struct RxContext {
    pub personality: Personality,
    /// Ethernet source of the frame (the FIP ENode MAC for FIP-encapsulated ELS).
    pub src_mac: MacAddr,
    /// Our source MAC for plain FCoE replies in this personality.
    pub local_mac: MacAddr,
    /// Our N_Port ID when it is fixed (VN2VN); None for point-to-point.
    pub vn_id: Option<FcId>,
    pub now: Instant,
}

impl RxContext {
    /// Destination MAC of plain FCoE replies to `s_id`: Linux drops any frame whose
    /// destination MAC's low 24 bits differ from the D_ID (fcoe_rcv), so VN2VN replies go to
    /// `0E:FD:00:<D_ID>`; iPXE learns our MAC from what we send, so it gets its own.
    pub(super) fn reply_mac(&self, s_id: FcId) -> MacAddr {
        match self.personality {
            Personality::Vn2Vn => fpma(VN2VN_FC_MAP, s_id),
            Personality::PointToPoint => self.src_mac,
        }
    }

    /// The session key of a remote: the MAC its FCoE frames come from.
    pub(super) fn key(&self, s_id: FcId) -> MacAddr {
        self.reply_mac(s_id)
    }

    /// A one-frame reply sequence (SOFi3 ... EOFt) with header `hdr`, to its D_ID.
    pub(super) fn reply_frame(&self, hdr: FcHeaderRepr) -> FrameSpec {
        FrameSpec {
            dst: self.reply_mac(hdr.d_id),
            src: self.local_mac,
            hdr,
            sof: Sof::I3,
            eof: Eof::T,
        }
    }
}

/// The FC port: every login and exchange of the target.
pub struct FcPort {
    pub(crate) wwpn: Wwn,
    pub(crate) wwnn: Wwn,
    /// Largest FC payload our MTU carries (1452 at 1500, 2112 with baby jumbos).
    pub(crate) mfs: usize,
    pub(crate) sessions: HashMap<MacAddr, Session>,
    pub(crate) scsi: Arc<ScsiTarget>,
    /// The LUNs' allow-lists ([`access`](super::access)).
    pub(crate) access: Access,
    next_xid: u16,
    next_seq_id: u8,
    next_nexus: u64,
    /// When we last sent a LOGO to a VN2VN port that talked to us without a login (bounded;
    /// [`els`](super::els)).
    pub(super) logo_sent: HashMap<MacAddr, Instant>,
    pub(crate) stats: FcoeStatsSnapshot,
    /// Per-LUN and per-initiator I/O.
    pub(crate) counters: counters::Counters,
}

/// Who a new session belongs to: the remote's MACs and IDs, its names and receive size, and
/// what the allow-lists let it see.
#[derive(Debug, Clone, Copy)]
pub(super) struct NewSession {
    pub key: MacAddr,
    pub local_id: FcId,
    pub remote_id: FcId,
    pub wwpn: Wwn,
    pub wwnn: Wwn,
    pub max_payload: usize,
    /// The initiator's ENode MAC, which the allow-lists matched.
    pub enode_mac: MacAddr,
    /// The LUNs it may see.
    pub visible: u64,
}

impl FcPort {
    pub fn new(wwpn: Wwn, wwnn: Wwn, mtu: u32, scsi: Arc<ScsiTarget>) -> FcPort {
        FcPort {
            scsi,
            access: Access::default(),
            wwpn,
            wwnn,
            mfs: mfs_for_mtu(mtu),
            sessions: HashMap::new(),
            next_xid: 1,
            next_seq_id: 1,
            next_nexus: 1,
            logo_sent: HashMap::new(),
            stats: FcoeStatsSnapshot::default(),
            counters: counters::Counters::default(),
        }
    }

    pub fn set_mtu(&mut self, mtu: u32) {
        self.mfs = mfs_for_mtu(mtu);
        for s in self.sessions.values_mut() {
            s.max_payload = s.max_payload.min(self.mfs);
        }
    }

    pub(crate) fn seq_id(&mut self) -> u8 {
        let s = self.next_seq_id;
        self.next_seq_id = self.next_seq_id.wrapping_add(1);
        s
    }

    /// A fresh exchange ID (our RX_IDs and our OX_IDs), never 0 or 0xFFFF, not in use by
    /// the exchanges of the session of `key`.
    pub(crate) fn alloc_xid(&mut self, key: &MacAddr) -> u16 {
        loop {
            let x = self.next_xid;
            self.next_xid = match self.next_xid.wrapping_add(1) {
                0 | RX_ID_UNKNOWN => 1,
                n => n,
            };
            let avoid = self.sessions.get(key);
            if avoid.is_none_or(|s| !s.exchanges.values().any(|e| e.rx_id == x)) {
                return x;
            }
        }
    }

    /// A fresh I_T nexus (a login, a new image pair), unknown to the SCSI layer: it sees the
    /// power-on unit attention.
    pub(super) fn new_nexus(&mut self) -> NexusId {
        let n = NexusId(self.next_nexus);
        self.next_nexus += 1;
        n
    }

    /// I/O by LUN, with each LUN's writes waiting for data.
    pub fn lun_stats(&self) -> Vec<(u16, counters::IoStatsSnapshot)> {
        self.counters.luns(|n| {
            self.sessions
                .values()
                .flat_map(|s| s.exchanges.values())
                .filter(|x| crate::scsi::lun::decode_sam_lun(&x.lun) == Some(n))
                .count() as u64
        })
    }

    /// I/O by initiator WWPN, with each one's writes waiting for data.
    pub fn initiator_stats(&self) -> Vec<(Option<Wwn>, counters::IoStatsSnapshot)> {
        self.counters.initiators(|w| {
            self.sessions
                .values()
                .filter(|s| s.wwpn == w)
                .map(|s| s.exchanges.len() as u64)
                .sum()
        })
    }

    pub(crate) fn update_gauges(&mut self) {
        self.stats.sessions = self.sessions.len() as u64;
        self.stats.exchanges = self
            .sessions
            .values()
            .map(|s| s.exchanges.len() as u64)
            .sum();
    }

    /// Serve `scsi` under the allow-lists `access` from now on (a live reload): each
    /// session's visible LUNs follow the new lists; a session that no LUN allows any more
    /// sees none (its commands find no LUN; its next login is refused).
    pub(crate) fn reconfigure(&mut self, scsi: Arc<ScsiTarget>, access: Access) {
        self.scsi = scsi;
        self.access = access;
        for s in self.sessions.values_mut() {
            s.visible = self.access.visible(s.wwpn, s.enode_mac).unwrap_or(0);
        }
    }

    /// End every session `pred` selects: its exchanges go without a response, and its I_T
    /// nexus is forgotten (a new login sees the power-on unit attention again).
    pub(crate) fn remove_sessions(&mut self, pred: impl Fn(&MacAddr, &Session) -> bool) {
        let gone: Vec<MacAddr> = self
            .sessions
            .iter()
            .filter(|(k, s)| pred(k, s))
            .map(|(&k, _)| k)
            .collect();
        for k in gone {
            if let Some(s) = self.sessions.remove(&k) {
                self.scsi.nexus_logout(s.nexus);
                self.stats.logouts += 1;
            }
        }
        self.update_gauges();
    }

    /// End every login of a personality (VN2VN restart).
    pub fn drop_personality(&mut self, p: Personality) {
        self.remove_sessions(|_, s| s.personality == p);
    }

    /// End the login of one VN2VN neighbour (aged out or replaced).
    pub fn drop_vn2vn_peer(&mut self, id: FcId) {
        let key = fpma(VN2VN_FC_MAP, id);
        self.remove_sessions(|&k, s| k == key && s.personality == Personality::Vn2Vn);
    }

    /// Make room for one more session: evict the longest-idle one if it has been idle long
    /// enough. iPXE never logs out, so its sessions only go this way (or by a new FLOGI).
    fn room_for_session(&mut self, now: Instant) -> bool {
        if self.sessions.len() < MAX_SESSIONS {
            return true;
        }
        let oldest = self
            .sessions
            .iter()
            .filter(|(_, s)| now.saturating_duration_since(s.last_seen) >= IDLE_EVICT)
            .min_by_key(|(_, s)| s.last_seen)
            .map(|(&k, _)| k);
        match oldest {
            Some(old) => {
                self.remove_sessions(|&k, _| k == old);
                true
            }
            None => false,
        }
    }

    /// Open (or reopen) the session `new.key`. Any other session with the same WWPN is an
    /// implicit logout (iPXE never sends LOGO; the booted kernel logs in again with the WWPN
    /// iPXE used). Returns false if there is no room.
    pub(super) fn open_session(&mut self, rx: &RxContext, new: NewSession) -> bool {
        let key = new.key;
        self.remove_sessions(|&k, s| k == key || s.wwpn == new.wwpn);
        if !self.room_for_session(rx.now) {
            self.stats.drop_no_resources += 1;
            tracing::warn!(%key, "FCoE session table full; refusing a login");
            return false;
        }
        let nexus = self.new_nexus();
        self.sessions.insert(
            key,
            Session {
                personality: rx.personality,
                remote_mac: key,
                local_mac: rx.local_mac,
                local_id: new.local_id,
                remote_id: new.remote_id,
                wwpn: new.wwpn,
                wwnn: new.wwnn,
                max_payload: new.max_payload.min(self.mfs) & !3,
                plogi: false,
                prli: false,
                plogi_out: None,
                plogi_due: None,
                nexus,
                enode_mac: new.enode_mac,
                visible: new.visible,
                last_seen: rx.now,
                exchanges: Default::default(),
                recent: Default::default(),
                aborted: Default::default(),
            },
        );
        self.stats.logins += 1;
        self.update_gauges();
        true
    }

    /// One plain FCoE FC frame (already checked: CRC, SOF/EOF, our MAC).
    pub fn handle_fc(&mut self, rx: &RxContext, packet: &FcPacket<&[u8]>, tx: &mut dyn Transmit) {
        let Ok(hdr) = FcHeaderRepr::parse(packet) else {
            self.stats.drop_truncated += 1;
            return;
        };
        let payload = packet.data();
        if let Some(id) = rx.vn_id {
            if hdr.d_id != id {
                self.stats.drop_not_for_us += 1;
                return;
            }
        }
        if let Some(s) = self.sessions.get_mut(&rx.key(hdr.s_id)) {
            s.last_seen = rx.now;
        }
        match (hdr.r_ctl, hdr.fc_type) {
            (RCtl::ElsRequest, FcType::Els) => self.els_request(tx, rx, &hdr, payload, Path::Fcoe),
            (RCtl::ElsReply, FcType::Els) => self.plogi_reply(rx, &hdr, payload),
            (RCtl::Abts, FcType::Bls) => self.abts(tx, rx, &hdr),
            (RCtl::FcpCmnd, FcType::Fcp) => self.fcp_cmnd(tx, rx, &hdr, payload),
            (RCtl::FcpData, FcType::Fcp) => self.fcp_data(tx, rx, &hdr, payload),
            _ => self.stats.drop_unsupported += 1,
        }
    }

    /// A FIP-encapsulated ELS request (VN2VN FLOGI or LOGO), received from `rx.src_mac`.
    pub fn handle_fip_els(
        &mut self,
        rx: &RxContext,
        els: &FipEls<'_>,
        vn_mac: MacAddr,
        enode_mac: MacAddr,
        tx: &mut dyn Transmit,
    ) {
        let Ok(packet) = FcPacket::new_checked(els.fc_frame) else {
            self.stats.drop_truncated += 1;
            return;
        };
        let Ok(hdr) = FcHeaderRepr::parse(&packet) else {
            self.stats.drop_truncated += 1;
            return;
        };
        if rx.vn_id != Some(hdr.d_id) {
            self.stats.drop_not_for_us += 1;
            return;
        }
        if (hdr.r_ctl, hdr.fc_type) != (RCtl::ElsRequest, FcType::Els) {
            self.stats.drop_unsupported += 1;
            return;
        }
        let path = Path::Fip {
            kind: els.kind,
            vn_mac,
            enode_src: enode_mac,
        };
        self.els_request(tx, rx, &hdr, packet.data(), path);
    }

    /// Timers: PLOGI retries, RRQ hold, stalled writes.
    pub fn tick(&mut self, now: Instant, tx: &mut dyn Transmit) {
        let mut retry = Vec::new();
        for (k, s) in self.sessions.iter_mut() {
            s.aborted
                .retain(|&(_, _, t)| now.saturating_duration_since(t) < ABORT_HOLD);
            s.exchanges
                .retain(|_, x| now.saturating_duration_since(x.started) < WRITE_TIMEOUT);
            if s.plogi_due.is_some_and(|t| now >= t) {
                s.plogi_due = None;
                retry.push(*k);
            }
            if let Some(p) = s.plogi_out {
                if now.saturating_duration_since(p.sent) >= PLOGI_RETRY {
                    if p.tries < PLOGI_TRIES {
                        retry.push(*k);
                    } else {
                        s.plogi_out = None;
                        tracing::warn!(peer = %s.remote_id, "no answer to our PLOGI; waiting for the peer to log in again");
                    }
                }
            }
        }
        // In a fixed order, not the HashMap's: the same input gives the same frames.
        retry.sort_unstable();
        for k in retry {
            self.send_plogi(tx, k, now);
        }
        self.update_gauges();
    }
}
