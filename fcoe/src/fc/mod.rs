//! Fibre Channel over the two personalities: logins keyed per remote, exchanges, ELS and BLS
//! answers, and FCP command execution (in [`fcp`]).
//!
//! Exchange rules we keep as the responder (reference 3.5; iPXE `fc_xchg_rx`, libfc):
//! - EX_CTX on every frame we send in an exchange the initiator opened; never FIRST_SEQ
//!   (iPXE opens a new exchange for any FIRST_SEQ frame with SEQ_CNT 0).
//! - Each sequence starts at SEQ_CNT 0 with SOFi3 and a fresh SEQ_ID, counts up strictly,
//!   and ends with END_SEQ and EOFt; later frames carry SOFn3, earlier ones EOFn.
//! - SEQ_INIT on XFER_RDY and on the last frame of the exchange; LAST_SEQ on the last
//!   sequence (ELS reply, BA_ACC, FCP_RSP).
//! - ELS replies leave RX_ID 0xFFFF (libfc and iPXE do); FCP exchanges get an RX_ID.

pub mod access;
pub mod counters;
pub mod fcp;
pub mod session;
pub mod tx;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use l2san_common::ether::MacAddr;
use l2san_common::io::Transmit;

use crate::fip::p2p::{ptp_ids, PTP_HIGH, PTP_LOW};
use std::sync::Arc;

use crate::scsi::{NexusId, ScsiTarget};
use crate::wire::bls::{BaAccRepr, BaRjtRepr, BlsPacket};
use crate::wire::els::{
    spp_resp, AdiscRepr, BareElsRepr, ElsCommand, ElsPacket, LoginRepr, LogoRepr, LsRjtExplanation,
    LsRjtReason, LsRjtRepr, PrliRepr, RrqRepr, RtvAccRepr,
};
use crate::wire::fc::{FCtl, FcHeaderRepr, FcPacket, FcType, RCtl, RX_ID_UNKNOWN};
use crate::wire::fcoe::{Eof, Sof};
use crate::wire::fip::{fpma, ElsKind, FipEls, FipRepr, VN2VN_FC_MAP};
use crate::wire::{FcId, Wwn};
use access::Access;
use session::{Personality, PlogiOut, Session, IDLE_EVICT, MAX_SESSIONS};
use tx::{fc_frame_vec, last_reply_header, send_fc, send_fip, FrameSpec};

/// R_A_TOV we advertise and keep (ms).
pub const R_A_TOV_MS: u32 = 4000;
/// E_D_TOV we advertise (ms).
pub const E_D_TOV_MS: u32 = 2000;
/// An originated PLOGI is sent again after this long without an answer.
/// How long after our FLOGI LS_ACC our own PLOGI goes out (at the next tick after it).
const PLOGI_DELAY: Duration = Duration::from_millis(20);
const PLOGI_RETRY: Duration = Duration::from_millis(2 * E_D_TOV_MS as u64);
const PLOGI_TRIES: u32 = 5;
/// Aborted exchanges are forgotten after 2 x R_A_TOV even without an RRQ.
const ABORT_HOLD: Duration = Duration::from_millis(2 * R_A_TOV_MS as u64);
/// A write whose data never completes is dropped after this long (the initiator has long
/// since aborted it).
const WRITE_TIMEOUT: Duration = Duration::from_secs(120);

/// Counters of one FCoE target. Drops are counted by reason.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FcoeStatsSnapshot {
    /// Frames handed to the target (both ethertypes).
    pub frames: u64,
    pub fip_frames: u64,
    pub fcoe_frames: u64,
    pub rx_bytes: u64,
    pub tx_frames: u64,
    pub tx_bytes: u64,
    /// Shorter than an Ethernet, FCoE, FC or FIP header, or than its own length fields.
    pub drop_truncated: u64,
    pub drop_bad_crc: u64,
    /// SOF other than SOFi3/SOFn3, or EOF other than EOFn/EOFt (class 3 only).
    pub drop_bad_sof_eof: u64,
    /// FCoE version not 0, or an FC frame that is not a multiple of 4 bytes.
    pub drop_malformed: u64,
    /// Ethernet padding after the FCoE trailer (senders must never pad).
    pub drop_padded: u64,
    /// Destination MAC or D_ID that is not ours.
    pub drop_not_for_us: u64,
    /// FCP data or ABTS for an exchange we do not know.
    pub drop_unknown_exchange: u64,
    /// FCP or ELS from a port without a login (answered with LS_RJT "PLOGI required").
    pub drop_no_login: u64,
    /// FCP_CMND from a port without a PRLI.
    pub drop_no_prli: u64,
    /// Write data outside the range we asked for.
    pub drop_bad_data: u64,
    /// R_CTL/TYPE combinations we do not serve, and unexpected replies.
    pub drop_unsupported: u64,
    /// FIP frames that fail to parse.
    pub drop_fip_malformed: u64,
    /// FIP solicitations, VLAN requests, advertisements: not answered by design.
    pub fip_ignored: u64,
    /// Refused for lack of room (sessions, exchanges).
    pub drop_no_resources: u64,
    /// Logins refused because no LUN's allow-list lets the initiator in.
    pub drop_not_allowed: u64,
    pub els_requests: u64,
    pub els_rejects: u64,
    pub abts: u64,
    pub fcp_commands: u64,
    /// Commands answered with CHECK CONDITION or a failed TMF.
    pub fcp_errors: u64,
    pub tmf: u64,
    pub read_bytes: u64,
    pub write_bytes: u64,
    pub logins: u64,
    pub logouts: u64,
    /// Sessions now open.
    pub sessions: u64,
    /// Writes now waiting for data.
    pub exchanges: u64,
    /// VN2VN neighbours now known.
    pub vn2vn_peers: u64,
}

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
    fn reply_mac(&self, s_id: FcId) -> MacAddr {
        match self.personality {
            Personality::Vn2Vn => fpma(VN2VN_FC_MAP, s_id),
            Personality::PointToPoint => self.src_mac,
        }
    }

    /// The session key of a remote: the MAC its FCoE frames come from.
    fn key(&self, s_id: FcId) -> MacAddr {
        self.reply_mac(s_id)
    }
}

/// An ELS reply path: plain FCoE, or FIP-encapsulated (VN2VN FLOGI and LOGO).
#[derive(Debug, Clone, Copy)]
enum Path {
    Fcoe,
    Fip {
        kind: ElsKind,
        /// Our VN MAC, for the MAC descriptor.
        vn_mac: MacAddr,
        enode_src: MacAddr,
    },
}

/// The FC port: every login and exchange of the target.
pub struct FcPort {
    pub(crate) wwpn: Wwn,
    pub(crate) wwnn: Wwn,
    /// Largest FC payload our MTU carries (1452 at 1500, 2112 with baby jumbos).
    pub(crate) mfs: usize,
    pub(crate) sessions: HashMap<MacAddr, Session>,
    pub(crate) scsi: Arc<ScsiTarget>,
    /// The LUNs' allow-lists ([`access`]).
    pub(crate) access: Access,
    next_xid: u16,
    next_seq_id: u8,
    next_nexus: u64,
    /// When we last sent a LOGO to a VN2VN port that talked to us without a login (bounded).
    logo_sent: HashMap<MacAddr, Instant>,
    pub(crate) stats: FcoeStatsSnapshot,
    /// Per-LUN and per-initiator I/O.
    pub(crate) counters: counters::Counters,
}

/// At most one LOGO per stranger per this long.
const STRANGER_LOGO_EVERY: Duration = Duration::from_secs(1);
/// How many strangers' LOGO times we remember.
const MAX_LOGO_SENT: usize = 256;

/// The FC payload size an MTU carries: MTU minus FCoE header and trailer (22), rounded down
/// to a word, minus the FC header; at most 2112 (Linux `fcoe.c`: 1500 -> 1452).
pub fn mfs_for_mtu(mtu: u32) -> usize {
    let frame = (mtu as usize).saturating_sub(22) & !3;
    frame
        .saturating_sub(24)
        .clamp(256, crate::wire::fcoe::MAX_FC_PAYLOAD)
}

/// Send a one-frame ELS request that we originate (our PLOGI, a LOGO): FIRST_SEQ, END_SEQ and
/// SEQ_INIT set, EX_CTX clear (we are the exchange originator), RX_ID unassigned.
#[allow(clippy::too_many_arguments)]
fn originate_els(
    tx: &mut dyn Transmit,
    dst: MacAddr,
    src: MacAddr,
    d_id: FcId,
    s_id: FcId,
    seq_id: u8,
    ox_id: u16,
    len: usize,
    fill: impl FnOnce(&mut [u8]),
) {
    let spec = FrameSpec {
        dst,
        src,
        hdr: FcHeaderRepr {
            r_ctl: RCtl::ElsRequest,
            d_id,
            cs_ctl: 0,
            s_id,
            fc_type: FcType::Els,
            f_ctl: FCtl::FIRST_SEQ | FCtl::END_SEQ | FCtl::SEQ_INIT,
            seq_id,
            df_ctl: 0,
            seq_cnt: 0,
            ox_id,
            rx_id: RX_ID_UNKNOWN,
            parameter: 0,
        },
        sof: Sof::I3,
        eof: Eof::T,
    };
    let _ = send_fc::<()>(tx, &spec, len, |b| {
        fill(b);
        Ok(())
    });
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

    fn local_login(&self, command: ElsCommand) -> LoginRepr {
        LoginRepr::n_port(command, self.wwpn, self.wwnn, self.mfs as u16)
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

    /// `wwpn` starts a boot: every overlay LUN hears of it.
    fn boot_start(&self, wwpn: Wwn, now: Instant) {
        let client = l2san_common::store::ClientKey::wwpn(wwpn.0);
        for lun in self.scsi.luns().iter() {
            if let Some(set) = lun.backing().overlays() {
                if set.client_seen(&client, now, true) {
                    tracing::info!(
                        "FCoE LUN {}: {wwpn} booted again: its overlay was reset",
                        lun.number()
                    );
                }
            }
        }
    }

    pub(crate) fn update_gauges(&mut self) {
        self.stats.sessions = self.sessions.len() as u64;
        self.stats.exchanges = self
            .sessions
            .values()
            .map(|s| s.exchanges.len() as u64)
            .sum();
    }

    /// End every session `pred` selects: its exchanges go without a response, and its I_T
    /// nexus is forgotten (a new login sees the power-on unit attention again).
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

    /// Open (or reopen) the session of `key`. Any other session with the same WWPN is an
    /// implicit logout (iPXE never sends LOGO; the booted kernel logs in again with the WWPN
    /// iPXE used). Returns false if there is no room.
    #[allow(clippy::too_many_arguments)]
    fn open_session(
        &mut self,
        rx: &RxContext,
        key: MacAddr,
        local_id: FcId,
        remote_id: FcId,
        wwpn: Wwn,
        wwnn: Wwn,
        max_payload: usize,
        (enode_mac, visible): (MacAddr, u64),
    ) -> bool {
        self.remove_sessions(|&k, s| k == key || s.wwpn == wwpn);
        if !self.room_for_session(rx.now) {
            self.stats.drop_no_resources += 1;
            tracing::warn!(%key, "FCoE session table full; refusing a login");
            return false;
        }
        let nexus = NexusId(self.next_nexus);
        self.next_nexus += 1;
        self.sessions.insert(
            key,
            Session {
                personality: rx.personality,
                remote_mac: key,
                local_mac: rx.local_mac,
                local_id,
                remote_id,
                wwpn,
                wwnn,
                max_payload: max_payload.min(self.mfs) & !3,
                plogi: false,
                prli: false,
                plogi_out: None,
                plogi_due: None,
                nexus,
                enode_mac,
                visible,
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

    /// The allow-lists' verdict on a login of `wwpn` from `enode_mac` (the session of `key`):
    /// the LUNs it may see, or `None` after ending any session of `key` and answering LS_RJT
    /// (no LUN allows it).
    #[allow(clippy::too_many_arguments)]
    fn admit(
        &mut self,
        tx: &mut dyn Transmit,
        rx: &RxContext,
        hdr: &FcHeaderRepr,
        path: Path,
        key: MacAddr,
        wwpn: Wwn,
        enode_mac: MacAddr,
    ) -> Option<(MacAddr, u64)> {
        if let Some(visible) = self.access.visible(wwpn, enode_mac) {
            return Some((enode_mac, visible));
        }
        tracing::debug!(%wwpn, mac = %enode_mac, "FCoE login refused: no LUN allows it");
        self.stats.drop_not_allowed += 1;
        self.remove_sessions(|&k, _| k == key);
        self.ls_rjt(
            tx,
            rx,
            hdr,
            path,
            LsRjtReason::UnableToPerform,
            LsRjtExplanation::None,
        );
        None
    }

    /// Send a single-frame ELS reply (LS_ACC or LS_RJT) whose payload `fill` writes.
    fn els_reply(
        &mut self,
        tx: &mut dyn Transmit,
        rx: &RxContext,
        req: &FcHeaderRepr,
        path: Path,
        len: usize,
        fill: impl FnOnce(&mut [u8]),
    ) {
        // The request's own SEQ_ID, as libfc and LIO answer. Linux matches a reply that comes
        // inside FIP (the VN2VN FLOGI's LS_ACC) to its exchange by SEQ_ID: with any other the
        // reply is dropped as "sequence not found", the FLOGI times out and the login stalls
        // for 8 s (seen with a Linux 6.1 guest).
        let seq_id = req.seq_id;
        let hdr = last_reply_header(
            RCtl::ElsReply,
            FcType::Els,
            req.s_id,
            req.d_id,
            seq_id,
            req.ox_id,
            RX_ID_UNKNOWN,
        );
        match path {
            Path::Fcoe => {
                let spec = FrameSpec {
                    dst: rx.reply_mac(req.s_id),
                    src: rx.local_mac,
                    hdr,
                    sof: Sof::I3,
                    eof: Eof::T,
                };
                let _ = send_fc::<()>(tx, &spec, len, |b| {
                    fill(b);
                    Ok(())
                });
            }
            Path::Fip {
                kind,
                vn_mac,
                enode_src,
            } => {
                let frame = fc_frame_vec(&hdr, len, fill);
                // Linux fcoe_ctlr_encaps: an LS_RJT carries no MAC descriptor.
                let is_rjt = frame.get(24) == Some(&u8::from(ElsCommand::LsRjt));
                let repr = FipRepr::ElsReply(FipEls {
                    kind,
                    fc_frame: &frame,
                    mac: (!is_rjt).then_some(vn_mac),
                });
                send_fip(tx, rx.src_mac, enode_src, &repr);
            }
        }
    }

    fn ls_rjt(
        &mut self,
        tx: &mut dyn Transmit,
        rx: &RxContext,
        req: &FcHeaderRepr,
        path: Path,
        reason: LsRjtReason,
        explanation: LsRjtExplanation,
    ) {
        self.stats.els_rejects += 1;
        let r = LsRjtRepr {
            reason,
            explanation,
            vendor: 0,
        };
        self.els_reply(tx, rx, req, path, r.buffer_len(), |b| {
            r.emit(&mut ElsPacket::new_unchecked(b))
        });
    }

    fn ls_acc_bare(
        &mut self,
        tx: &mut dyn Transmit,
        rx: &RxContext,
        req: &FcHeaderRepr,
        path: Path,
    ) {
        let r = BareElsRepr {
            command: ElsCommand::LsAcc,
        };
        self.els_reply(tx, rx, req, path, r.buffer_len(), |b| {
            r.emit(&mut ElsPacket::new_unchecked(b))
        });
    }

    /// LS_RJT "PLOGI required": the answer to ELS and FCP from ports without a login
    /// (libfc answers strangers this way).
    pub(crate) fn reject_stranger(
        &mut self,
        tx: &mut dyn Transmit,
        rx: &RxContext,
        req: &FcHeaderRepr,
    ) {
        self.stats.drop_no_login += 1;
        self.ls_rjt(
            tx,
            rx,
            req,
            Path::Fcoe,
            LsRjtReason::UnableToPerform,
            LsRjtExplanation::PlogiRequired,
        );
        self.logo_stranger(tx, rx, req);
    }

    /// A VN2VN port that sends us commands without a login believes in a session we do not
    /// have (l2san restarted under it). Linux ignores an LS_RJT on an FCP exchange and waits
    /// for its 30 s SCSI timeout, LUN reset and host reset (80 s, seen with a 6.1 guest); a
    /// LOGO (FC-LS: the answer to a frame from a port that is not logged in) makes it drop the
    /// session and log in again at once. Rate limited per port.
    fn logo_stranger(&mut self, tx: &mut dyn Transmit, rx: &RxContext, req: &FcHeaderRepr) {
        if rx.personality != Personality::Vn2Vn {
            return;
        }
        let key = rx.key(req.s_id);
        if self
            .logo_sent
            .get(&key)
            .is_some_and(|&t| rx.now.saturating_duration_since(t) < STRANGER_LOGO_EVERY)
        {
            return;
        }
        if self.logo_sent.len() >= MAX_LOGO_SENT {
            self.logo_sent
                .retain(|_, t| rx.now.saturating_duration_since(*t) < STRANGER_LOGO_EVERY);
            if self.logo_sent.len() >= MAX_LOGO_SENT {
                return;
            }
        }
        self.logo_sent.insert(key, rx.now);
        let ox_id = self.alloc_xid(&key);
        let seq_id = self.seq_id();
        let logo = crate::wire::els::LogoRepr {
            n_port_id: req.d_id,
            wwpn: self.wwpn,
        };
        self.stats.logouts += 1;
        let (dst, src) = (rx.reply_mac(req.s_id), rx.local_mac);
        originate_els(
            tx,
            dst,
            src,
            req.s_id,
            req.d_id,
            seq_id,
            ox_id,
            logo.buffer_len(),
            |b| logo.emit(&mut ElsPacket::new_unchecked(b)),
        );
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
            (RCtl::ElsReply, FcType::Els) => self.els_reply_rx(rx, &hdr, payload),
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

    fn els_request(
        &mut self,
        tx: &mut dyn Transmit,
        rx: &RxContext,
        hdr: &FcHeaderRepr,
        payload: &[u8],
        path: Path,
    ) {
        self.stats.els_requests += 1;
        let Ok(els) = ElsPacket::new_checked(payload) else {
            self.stats.drop_truncated += 1;
            return;
        };
        let key = rx.key(hdr.s_id);
        let logged_in = self.sessions.get(&key).is_some_and(|s| s.plogi);
        match els.command() {
            ElsCommand::Flogi => self.flogi(tx, rx, hdr, &els, path),
            ElsCommand::Plogi => self.plogi(tx, rx, hdr, &els, path),
            ElsCommand::Logo => {
                // Always accepted (libfc answers LS_ACC even to ports it does not know).
                if LogoRepr::parse(&els).is_err() {
                    return self.ls_rjt(
                        tx,
                        rx,
                        hdr,
                        path,
                        LsRjtReason::LogicalError,
                        LsRjtExplanation::InvalidPayloadLength,
                    );
                }
                self.ls_acc_bare(tx, rx, hdr, path);
                self.remove_sessions(|&k, _| k == key);
            }
            _ if !logged_in => self.reject_stranger(tx, rx, hdr),
            ElsCommand::Prli => self.prli(tx, rx, hdr, &els, path, key),
            ElsCommand::Prlo => {
                let Ok(p) = PrliRepr::parse(&els) else {
                    return self.ls_rjt(
                        tx,
                        rx,
                        hdr,
                        path,
                        LsRjtReason::LogicalError,
                        LsRjtExplanation::InvalidPayloadLength,
                    );
                };
                let acc = PrliRepr {
                    command: ElsCommand::LsAcc,
                    fc4_type: p.fc4_type,
                    type_ext: 0,
                    flags: spp_resp::ACK,
                    originator_pa: 0,
                    responder_pa: 0,
                    service_params: 0,
                };
                self.els_reply(tx, rx, hdr, path, acc.buffer_len(), |b| {
                    acc.emit(&mut ElsPacket::new_unchecked(b))
                });
                if let Some(s) = self.sessions.get_mut(&key) {
                    s.prli = false;
                    s.exchanges.clear();
                    self.scsi.nexus_logout(s.nexus);
                }
                self.update_gauges();
            }
            ElsCommand::Adisc => {
                let Some(s) = self.sessions.get(&key) else {
                    return;
                };
                let acc = AdiscRepr {
                    command: ElsCommand::LsAcc,
                    hard_address: s.local_id,
                    wwpn: self.wwpn,
                    wwnn: self.wwnn,
                    n_port_id: s.local_id,
                };
                self.els_reply(tx, rx, hdr, path, acc.buffer_len(), |b| {
                    acc.emit(&mut ElsPacket::new_unchecked(b))
                });
            }
            ElsCommand::Rtv => {
                let acc = RtvAccRepr {
                    r_a_tov: R_A_TOV_MS,
                    e_d_tov: E_D_TOV_MS,
                    qualifier: 0,
                };
                self.els_reply(tx, rx, hdr, path, acc.buffer_len(), |b| {
                    acc.emit(&mut ElsPacket::new_unchecked(b))
                });
            }
            ElsCommand::Rrq => {
                let Ok(r) = RrqRepr::parse(&els) else {
                    return self.ls_rjt(
                        tx,
                        rx,
                        hdr,
                        path,
                        LsRjtReason::LogicalError,
                        LsRjtExplanation::InvalidPayloadLength,
                    );
                };
                if let Some(s) = self.sessions.get_mut(&key) {
                    s.aborted.retain(|&(ox, _, _)| ox != r.ox_id);
                }
                self.ls_acc_bare(tx, rx, hdr, path);
            }
            ElsCommand::Echo => {
                let data = els.payload();
                let max = self.mfs.saturating_sub(4);
                let data = &data[..data.len().min(max)];
                self.els_reply(tx, rx, hdr, path, 4 + data.len(), |b| {
                    b[..4].copy_from_slice(&[u8::from(ElsCommand::LsAcc), 0, 0, 0]);
                    b[4..].copy_from_slice(data);
                });
            }
            // REC: "not supported" makes Linux stop using it for this rport (fc_fcp.c).
            _ => self.ls_rjt(
                tx,
                rx,
                hdr,
                path,
                LsRjtReason::CommandNotSupported,
                LsRjtExplanation::None,
            ),
        }
    }

    fn flogi(
        &mut self,
        tx: &mut dyn Transmit,
        rx: &RxContext,
        hdr: &FcHeaderRepr,
        els: &ElsPacket<&[u8]>,
        path: Path,
    ) {
        let Ok(login) = LoginRepr::parse(els) else {
            return self.ls_rjt(
                tx,
                rx,
                hdr,
                path,
                LsRjtReason::LogicalError,
                LsRjtExplanation::InvalidPayloadLength,
            );
        };
        let (key, local_id, remote_id) = match (rx.personality, path) {
            (Personality::PointToPoint, Path::Fcoe) => {
                if hdr.d_id != FcId::FLOGI {
                    self.stats.drop_not_for_us += 1;
                    return;
                }
                let (ours, theirs) = ptp_ids(self.wwpn, login.wwpn);
                (rx.src_mac, ours, theirs)
            }
            (Personality::Vn2Vn, Path::Fip { .. }) => {
                (fpma(VN2VN_FC_MAP, hdr.s_id), hdr.d_id, hdr.s_id)
            }
            // A plain FLOGI to our VN MAC: VN2VN FLOGIs travel in FIP.
            _ => {
                return self.ls_rjt(
                    tx,
                    rx,
                    hdr,
                    path,
                    LsRjtReason::CommandNotSupported,
                    LsRjtExplanation::None,
                );
            }
        };
        // The ENode MAC: the FIP FLOGI's Ethernet source (VN2VN), the initiator's MAC (PTP).
        let Some(who) = self.admit(tx, rx, hdr, path, key, login.wwpn, rx.src_mac) else {
            return;
        };
        // iPXE's point-to-point FLOGI starts a boot: a `reset` overlay of this initiator is
        // discarded after a silence. Not a VN2VN FLOGI: Linux sends one again after a link
        // outage, with its disk in use.
        if rx.personality == Personality::PointToPoint {
            self.boot_start(login.wwpn, rx.now);
        }
        let max = login.max_payload(self.mfs as u16) as usize;
        if !self.open_session(
            rx, key, local_id, remote_id, login.wwpn, login.wwnn, max, who,
        ) {
            return self.ls_rjt(
                tx,
                rx,
                hdr,
                path,
                LsRjtReason::UnableToPerform,
                LsRjtExplanation::InsufficientResources,
            );
        }
        // An N_Port's answer: F_PORT clear (iPXE then goes point-to-point; Linux VN2VN
        // rejects an LS_ACC with F_PORT set), R_A_TOV/E_D_TOV, class 3, our receive size.
        let mut acc = self.local_login(ElsCommand::LsAcc);
        acc.set_r_a_tov(R_A_TOV_MS);
        self.els_reply(tx, rx, hdr, path, acc.buffer_len(), |b| {
            acc.emit(&mut ElsPacket::new_unchecked(b))
        });
        // Linux (fc_rport_flogi_resp / recv_flogi_req): the port with the higher WWPN sends
        // the PLOGI; the other waits for it forever.
        //
        // Not at once, though: Linux handles a FIP frame (our LS_ACC) in a work queue and an
        // FCoE frame (a PLOGI) straight away, so a PLOGI sent with the LS_ACC can overtake it;
        // Linux then gives up on its FLOGI only after 8 s (seen with a 6.1 guest). LIO waits
        // about 9 ms; we send it from the next timer tick, at least PLOGI_DELAY later.
        if rx.personality == Personality::Vn2Vn && self.wwpn > login.wwpn {
            if let Some(s) = self.sessions.get_mut(&key) {
                s.plogi_due = Some(rx.now + PLOGI_DELAY);
            }
        }
    }

    /// Originate a PLOGI to the session of `key` (VN2VN, our WWPN being the higher).
    fn send_plogi(&mut self, tx: &mut dyn Transmit, key: MacAddr, now: Instant) {
        if !self.sessions.contains_key(&key) {
            return;
        }
        let ox_id = self.alloc_xid(&key);
        let seq_id = self.seq_id();
        let plogi = self.local_login(ElsCommand::Plogi);
        let Some(s) = self.sessions.get_mut(&key) else {
            return;
        };
        let tries = s.plogi_out.map_or(0, |p| p.tries) + 1;
        s.plogi_out = Some(PlogiOut {
            ox_id,
            sent: now,
            tries,
        });
        let (dst, src, d_id, s_id) = (s.remote_mac, s.local_mac, s.remote_id, s.local_id);
        originate_els(
            tx,
            dst,
            src,
            d_id,
            s_id,
            seq_id,
            ox_id,
            plogi.buffer_len(),
            |b| plogi.emit(&mut ElsPacket::new_unchecked(b)),
        );
    }

    fn plogi(
        &mut self,
        tx: &mut dyn Transmit,
        rx: &RxContext,
        hdr: &FcHeaderRepr,
        els: &ElsPacket<&[u8]>,
        path: Path,
    ) {
        let Ok(login) = LoginRepr::parse(els) else {
            return self.ls_rjt(
                tx,
                rx,
                hdr,
                path,
                LsRjtReason::LogicalError,
                LsRjtExplanation::InvalidPayloadLength,
            );
        };
        let key = rx.key(hdr.s_id);
        // A VN2VN session keeps the ENode MAC of its FIP FLOGI.
        let enode_mac = self.sessions.get(&key).map_or(rx.src_mac, |s| s.enode_mac);
        let Some(who) = self.admit(tx, rx, hdr, path, key, login.wwpn, enode_mac) else {
            return;
        };
        let max = login.max_payload(self.mfs as u16) as usize;
        let existing = self
            .sessions
            .get(&key)
            .map(|s| (s.wwpn, s.local_id, s.remote_id));
        match existing {
            // Same port logging in again (after FLOGI, or a re-PLOGI): keep the session,
            // end its exchanges.
            Some((wwpn, local_id, remote_id))
                if wwpn == login.wwpn && local_id == hdr.d_id && remote_id == hdr.s_id => {}
            _ => {
                if rx.personality == Personality::PointToPoint
                    && hdr.d_id != PTP_LOW
                    && hdr.d_id != PTP_HIGH
                {
                    self.stats.drop_not_for_us += 1;
                    return;
                }
                if !self.open_session(
                    rx, key, hdr.d_id, hdr.s_id, login.wwpn, login.wwnn, max, who,
                ) {
                    return self.ls_rjt(
                        tx,
                        rx,
                        hdr,
                        path,
                        LsRjtReason::UnableToPerform,
                        LsRjtExplanation::InsufficientResources,
                    );
                }
            }
        }
        // Another session of the same WWPN elsewhere is stale now.
        self.remove_sessions(|&k, s| k != key && s.wwpn == login.wwpn);
        let mfs = self.mfs;
        if let Some(s) = self.sessions.get_mut(&key) {
            s.plogi = true;
            s.prli = false;
            s.exchanges.clear();
            s.wwnn = login.wwnn;
            s.max_payload = max.min(mfs) & !3;
        }
        self.update_gauges();
        let acc = self.local_login(ElsCommand::LsAcc);
        self.els_reply(tx, rx, hdr, path, acc.buffer_len(), |b| {
            acc.emit(&mut ElsPacket::new_unchecked(b))
        });
    }

    #[allow(clippy::too_many_arguments)]
    fn prli(
        &mut self,
        tx: &mut dyn Transmit,
        rx: &RxContext,
        hdr: &FcHeaderRepr,
        els: &ElsPacket<&[u8]>,
        path: Path,
        key: MacAddr,
    ) {
        let Ok(p) = PrliRepr::parse(els) else {
            return self.ls_rjt(
                tx,
                rx,
                hdr,
                path,
                LsRjtReason::LogicalError,
                LsRjtExplanation::InvalidPayloadLength,
            );
        };
        let acc = if p.fc4_type == 0x08 {
            let nexus = NexusId(self.next_nexus);
            self.next_nexus += 1;
            if let Some(s) = self.sessions.get_mut(&key) {
                s.prli = true;
                // A new image pair is a new I_T nexus: it gets its power-on unit attention.
                let old = std::mem::replace(&mut s.nexus, nexus);
                self.scsi.nexus_logout(old);
                s.exchanges.clear();
            }
            PrliRepr::fcp_target_acc()
        } else {
            PrliRepr {
                command: ElsCommand::LsAcc,
                fc4_type: p.fc4_type,
                type_ext: p.type_ext,
                flags: spp_resp::INVL,
                originator_pa: 0,
                responder_pa: 0,
                service_params: 0,
            }
        };
        self.update_gauges();
        self.els_reply(tx, rx, hdr, path, acc.buffer_len(), |b| {
            acc.emit(&mut ElsPacket::new_unchecked(b))
        });
    }

    /// An ELS reply: the answer to a PLOGI we originated.
    fn els_reply_rx(&mut self, rx: &RxContext, hdr: &FcHeaderRepr, payload: &[u8]) {
        let key = rx.key(hdr.s_id);
        let mfs = self.mfs;
        let Some(s) = self.sessions.get_mut(&key) else {
            self.stats.drop_unsupported += 1;
            return;
        };
        let Some(out) = s.plogi_out else {
            self.stats.drop_unsupported += 1;
            return;
        };
        if !hdr.f_ctl.contains(FCtl::EX_CTX) || hdr.ox_id != out.ox_id {
            self.stats.drop_unknown_exchange += 1;
            return;
        }
        let Ok(els) = ElsPacket::new_checked(payload) else {
            self.stats.drop_truncated += 1;
            return;
        };
        match (els.command(), LoginRepr::parse(&els)) {
            (ElsCommand::LsAcc, Ok(login)) => {
                s.plogi_out = None;
                if !s.plogi {
                    s.plogi = true;
                    s.prli = false;
                }
                s.wwnn = login.wwnn;
                s.max_payload = (login.max_payload(mfs as u16) as usize).min(mfs) & !3;
            }
            _ => {
                // LS_RJT (or garbage): the retry timer sends the PLOGI again.
                tracing::debug!(peer = %s.remote_id, "PLOGI rejected; will retry");
            }
        }
    }

    fn abts(&mut self, tx: &mut dyn Transmit, rx: &RxContext, hdr: &FcHeaderRepr) {
        self.stats.abts += 1;
        let key = rx.key(hdr.s_id);
        let found = self.sessions.get_mut(&key).and_then(|s| {
            let rx_id = if let Some(x) = s.exchanges.remove(&hdr.ox_id) {
                x.rx_id
            } else {
                let at = s.recent.iter().position(|&(ox, _)| ox == hdr.ox_id)?;
                s.recent.remove(at)?.1
            };
            if hdr.rx_id != RX_ID_UNKNOWN && hdr.rx_id != rx_id {
                return None;
            }
            s.remember_aborted(hdr.ox_id, rx_id, rx.now);
            Some(rx_id)
        });
        self.update_gauges();
        let seq_id = self.seq_id();
        let rx_id = found.unwrap_or(hdr.rx_id);
        let (r_ctl, len) = match found {
            Some(_) => (RCtl::BaAcc, crate::wire::bls::BA_ACC_LEN),
            None => {
                self.stats.drop_unknown_exchange += 1;
                (RCtl::BaRjt, crate::wire::bls::BA_RJT_LEN)
            }
        };
        let spec = FrameSpec {
            dst: rx.reply_mac(hdr.s_id),
            src: rx.local_mac,
            hdr: last_reply_header(
                r_ctl,
                FcType::Bls,
                hdr.s_id,
                hdr.d_id,
                seq_id,
                hdr.ox_id,
                rx_id,
            ),
            sof: Sof::I3,
            eof: Eof::T,
        };
        let _ = send_fc::<()>(tx, &spec, len, |b| {
            let mut p = BlsPacket::new_unchecked(b);
            match found {
                Some(rx_id) => BaAccRepr::abort_exchange(hdr.ox_id, rx_id).emit(&mut p),
                None => BaRjtRepr::unknown_exchange().emit(&mut p),
            }
            Ok(())
        });
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
