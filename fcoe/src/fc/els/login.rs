//! Port logins (FC-LS-3): FLOGI (point-to-point from iPXE, FIP-encapsulated in VN2VN), PLOGI
//! received and, in VN2VN when our WWPN is the higher, originated (with its retries and its
//! LS_ACC), and LOGO. A login is admitted only if some LUN's allow-list lets the initiator in.

use std::time::{Duration, Instant};

use l2san_common::ether::MacAddr;
use l2san_common::io::Transmit;
use l2san_common::store::ClientKey;

use super::reply::{originate_els, Path, Refusal, Request};
use crate::fc::port::{NewSession, R_A_TOV_MS};
use crate::fc::ptp::{ptp_ids, PTP_HIGH, PTP_LOW};
use crate::fc::session::{Personality, PlogiOut};
use crate::fc::{FcPort, RxContext};
use crate::wire::els::{ElsCommand, ElsPacket, LoginRepr, LogoRepr};
use crate::wire::fc::{FCtl, FcHeaderRepr};
use crate::wire::fip::{fpma, VN2VN_FC_MAP};
use crate::wire::{FcId, Wwn};

/// How long after our FLOGI LS_ACC our own PLOGI goes out (at the next tick after it).
const PLOGI_DELAY: Duration = Duration::from_millis(20);

impl FcPort {
    /// Our service parameters, as an N_Port, in a FLOGI/PLOGI or its LS_ACC.
    fn local_login(&self, command: ElsCommand) -> LoginRepr {
        LoginRepr::n_port(command, self.wwpn, self.wwnn, self.mfs as u16)
    }

    /// `wwpn` starts a boot: every overlay LUN hears of it.
    fn boot_start(&self, wwpn: Wwn, now: Instant) {
        let client = ClientKey::wwpn(wwpn.0);
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

    /// The allow-lists' verdict on a login of `wwpn` from `enode_mac` (the session of `key`):
    /// the LUNs it may see, or `None` after ending any session of `key` and answering LS_RJT
    /// (no LUN allows it).
    fn admit(
        &mut self,
        tx: &mut dyn Transmit,
        req: Request<'_>,
        key: MacAddr,
        wwpn: Wwn,
        enode_mac: MacAddr,
    ) -> Option<u64> {
        if let Some(visible) = self.access.visible(wwpn, enode_mac) {
            return Some(visible);
        }
        tracing::debug!(%wwpn, mac = %enode_mac, "FCoE login refused: no LUN allows it");
        self.stats.drop_not_allowed += 1;
        self.remove_sessions(|&k, _| k == key);
        self.ls_rjt(tx, req, Refusal::NotAllowed);
        None
    }

    pub(super) fn flogi(&mut self, tx: &mut dyn Transmit, req: Request<'_>, login: &LoginRepr) {
        let (rx, hdr) = (req.rx, req.hdr);
        let (key, local_id, remote_id) = match (rx.personality, req.path) {
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
            _ => return self.ls_rjt(tx, req, Refusal::NotSupported),
        };
        // The ENode MAC: the FIP FLOGI's Ethernet source (VN2VN), the initiator's MAC (PTP).
        let enode_mac = rx.src_mac;
        let Some(visible) = self.admit(tx, req, key, login.wwpn, enode_mac) else {
            return;
        };
        // iPXE's point-to-point FLOGI starts a boot: a `reset` overlay of this initiator is
        // discarded after a silence. Not a VN2VN FLOGI: Linux sends one again after a link
        // outage, with its disk in use.
        if rx.personality == Personality::PointToPoint {
            self.boot_start(login.wwpn, rx.now);
        }
        let new = NewSession {
            key,
            local_id,
            remote_id,
            wwpn: login.wwpn,
            wwnn: login.wwnn,
            max_payload: login.max_payload(self.mfs as u16) as usize,
            enode_mac,
            visible,
        };
        if !self.open_session(rx, new) {
            return self.ls_rjt(tx, req, Refusal::NoResources);
        }
        // An N_Port's answer: F_PORT clear (iPXE then goes point-to-point; Linux VN2VN
        // rejects an LS_ACC with F_PORT set), R_A_TOV/E_D_TOV, class 3, our receive size.
        let mut acc = self.local_login(ElsCommand::LsAcc);
        acc.set_r_a_tov(R_A_TOV_MS);
        self.els_reply(tx, req, &acc);
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
    pub(crate) fn send_plogi(&mut self, tx: &mut dyn Transmit, key: MacAddr, now: Instant) {
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
        originate_els(
            tx,
            (s.remote_mac, s.local_mac),
            (s.remote_id, s.local_id),
            (seq_id, ox_id),
            &plogi,
        );
    }

    /// An ELS reply: the answer to a PLOGI we originated.
    pub(crate) fn plogi_reply(&mut self, rx: &RxContext, hdr: &FcHeaderRepr, payload: &[u8]) {
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

    pub(super) fn plogi(&mut self, tx: &mut dyn Transmit, req: Request<'_>, login: &LoginRepr) {
        let (rx, hdr) = (req.rx, req.hdr);
        let key = rx.key(hdr.s_id);
        // A VN2VN session keeps the ENode MAC of its FIP FLOGI.
        let enode_mac = self.sessions.get(&key).map_or(rx.src_mac, |s| s.enode_mac);
        let Some(visible) = self.admit(tx, req, key, login.wwpn, enode_mac) else {
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
                let new = NewSession {
                    key,
                    local_id: hdr.d_id,
                    remote_id: hdr.s_id,
                    wwpn: login.wwpn,
                    wwnn: login.wwnn,
                    max_payload: max,
                    enode_mac,
                    visible,
                };
                if !self.open_session(rx, new) {
                    return self.ls_rjt(tx, req, Refusal::NoResources);
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
        self.els_reply(tx, req, &acc);
    }

    /// LOGO: always accepted (libfc answers LS_ACC even to ports it does not know); the
    /// session ends.
    pub(super) fn logo(&mut self, tx: &mut dyn Transmit, req: Request<'_>, els: &ElsPacket<&[u8]>) {
        if LogoRepr::parse(els).is_err() {
            return self.ls_rjt(tx, req, Refusal::BadPayload);
        }
        self.ls_acc(tx, req);
        let key = req.rx.key(req.hdr.s_id);
        self.remove_sessions(|&k, _| k == key);
    }
}
