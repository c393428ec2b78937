//! FCP (FCP-4) on top of the exchanges: FCP_CMND to the SCSI layer, read data streamed out
//! of the image, writes received straight into it, FCP_RSP with residuals, and task
//! management.
//!
//! iPXE receive rules honoured here (iPXE `fcp.c`, within FCP-4): read data carries
//! REL_OFF with strictly increasing offsets and no frame exceeds the peer's receive size
//! (1452 for iPXE); XFER_RDY is exactly 12 bytes at offset 0 for the whole length; with GOOD
//! status exactly FCP_DL bytes have moved unless a residual says otherwise; FCP_RSP is at
//! least 24 bytes.

use l2san_common::ether::MacAddr;
use l2san_common::io::Transmit;

use super::counters::Done;
use super::session::{WriteXchg, MAX_EXCHANGES};
use super::{FcPort, RxContext};
use crate::scsi::{status, Command, Sense, SenseKey};
use crate::tx::{send_fc, FrameSpec};
use crate::wire::fc::{FCtl, FcHeaderRepr, FcType, RCtl, RX_ID_UNKNOWN};
use crate::wire::fcoe::{Eof, Sof};
use crate::wire::fcp::{
    rsp_code, rsp_flags, tmf, FcpCmndPacket, FcpCmndRepr, FcpRspPacket, FcpRspRepr, RspInfo,
    XferRdyPacket, XferRdyRepr,
};
use crate::wire::{FcId, Wwn};
use l2san_common::store::ClientKey;

/// SAM status TASK SET FULL: the answer when a session holds too many writes.
const TASK_SET_FULL: u8 = 0x28;

/// The addressing of one session's frames, copied out so the session is not borrowed while
/// frames are built.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Link {
    pub dst: MacAddr,
    pub src: MacAddr,
    pub local_id: FcId,
    pub remote_id: FcId,
    pub max_payload: usize,
}

impl Link {
    /// A one-frame sequence (SOFi3 ... EOFt) in the FCP exchange `ox_id`/`rx_id`, with the
    /// header of the exchange's last sequence ([`FcHeaderRepr::last_reply`]).
    fn one_frame(&self, r_ctl: RCtl, seq_id: u8, ox_id: u16, rx_id: u16) -> FrameSpec {
        FrameSpec {
            dst: self.dst,
            src: self.src,
            hdr: FcHeaderRepr::last_reply(
                r_ctl,
                FcType::Fcp,
                self.remote_id,
                self.local_id,
                seq_id,
                ox_id,
                rx_id,
            ),
            sof: Sof::I3,
            eof: Eof::T,
        }
    }
}

/// How much moves and what the FCP_RSP says about the rest: FCP_DL against what the command
/// would transfer (FCP-4 9.5.10): less asked than the command has -> send FCP_DL, RESID_OVER;
/// more asked -> send what there is, RESID_UNDER.
pub(crate) fn residual(data_len: u64, fcp_dl: u32) -> (u32, u8, u32) {
    let dl = u64::from(fcp_dl);
    if data_len > dl {
        let over = u32::try_from(data_len - dl).unwrap_or(u32::MAX);
        (fcp_dl, rsp_flags::RESID_OVER, over)
    } else if data_len < dl {
        // data_len < fcp_dl <= u32::MAX.
        (
            data_len as u32,
            rsp_flags::RESID_UNDER,
            fcp_dl - data_len as u32,
        )
    } else {
        (fcp_dl, 0, 0)
    }
}

impl FcPort {
    fn link_of(&self, key: &MacAddr) -> Option<Link> {
        self.sessions.get(key).map(|s| Link {
            dst: s.remote_mac,
            src: s.local_mac,
            local_id: s.local_id,
            remote_id: s.remote_id,
            max_payload: s.max_payload.max(4),
        })
    }

    /// FCP_RSP: the last sequence of the exchange (LAST_SEQ | END_SEQ | SEQ_INIT), one frame.
    fn send_rsp(
        &mut self,
        tx: &mut dyn Transmit,
        link: &Link,
        ox_id: u16,
        rx_id: u16,
        rsp: &FcpRspRepr<'_>,
    ) {
        if rsp.scsi_status != status::GOOD
            || rsp.rsp_info.is_some_and(|i| i.code != rsp_code::COMPLETE)
        {
            self.stats.fcp_errors += 1;
        }
        // Remembered so that a late ABTS (this FCP_RSP lost) gets BA_ACC, not BA_RJT.
        if let Some(s) = self.sessions.get_mut(&link.dst) {
            s.remember_completed(ox_id, rx_id);
        }
        let seq_id = self.seq_id();
        let spec = link.one_frame(RCtl::FcpRsp, seq_id, ox_id, rx_id);
        let _ = send_fc::<()>(tx, &spec, rsp.buffer_len(), |b| {
            rsp.emit(&mut FcpRspPacket::new_unchecked(b));
            Ok(())
        });
    }

    #[allow(clippy::too_many_arguments)]
    fn send_status(
        &mut self,
        tx: &mut dyn Transmit,
        link: &Link,
        ox_id: u16,
        rx_id: u16,
        scsi_status: u8,
        flags: u8,
        resid: u32,
        sense: Option<Sense>,
    ) {
        let fixed = sense.map(|s| s.fixed());
        let rsp = FcpRspRepr {
            status_qualifier: 0,
            flags,
            scsi_status,
            resid,
            rsp_info: None,
            sense: fixed.as_ref().map_or(&[][..], |f| &f[..]),
        };
        self.send_rsp(tx, link, ox_id, rx_id, &rsp);
    }

    /// CHECK CONDITION with nothing (more) transferred: the whole FCP_DL is residual.
    #[allow(clippy::too_many_arguments)]
    fn send_check(
        &mut self,
        tx: &mut dyn Transmit,
        link: &Link,
        ox_id: u16,
        rx_id: u16,
        sense: Sense,
        fcp_dl: u32,
        moved: u32,
    ) {
        let resid = fcp_dl.saturating_sub(moved);
        let flags = if resid > 0 { rsp_flags::RESID_UNDER } else { 0 };
        self.send_status(
            tx,
            link,
            ox_id,
            rx_id,
            status::CHECK_CONDITION,
            flags,
            resid,
            Some(sense),
        );
    }

    #[allow(clippy::too_many_arguments)]
    fn data_spec(
        &self,
        link: &Link,
        ox_id: u16,
        rx_id: u16,
        rel_off: u32,
        seq_id: u8,
        seq_cnt: u16,
        seq_end: bool,
    ) -> FrameSpec {
        let mut f_ctl = FCtl::EX_CTX | FCtl::REL_OFF;
        if seq_end {
            f_ctl |= FCtl::END_SEQ;
        }
        FrameSpec {
            dst: link.dst,
            src: link.src,
            hdr: FcHeaderRepr {
                r_ctl: RCtl::FcpData,
                d_id: link.remote_id,
                cs_ctl: 0,
                s_id: link.local_id,
                fc_type: FcType::Fcp,
                f_ctl,
                seq_id,
                df_ctl: 0,
                seq_cnt,
                ox_id,
                rx_id,
                parameter: rel_off,
            },
            sof: if seq_cnt == 0 { Sof::I3 } else { Sof::N3 },
            eof: if seq_end { Eof::T } else { Eof::N },
        }
    }

    /// Stream `len` bytes as FCP_DATA frames no larger than the peer's receive size, in
    /// order, REL_OFF set, in one sequence (split only past 65535 frames). `fill(rel_off,
    /// buf)` writes each payload (straight from the image for a READ). Returns the bytes sent,
    /// or the sense of a failed fill and the bytes sent before it.
    #[allow(clippy::too_many_arguments)]
    fn send_data(
        &mut self,
        tx: &mut dyn Transmit,
        link: &Link,
        ox_id: u16,
        rx_id: u16,
        len: u32,
        mut fill: impl FnMut(u32, &mut [u8]) -> Result<(), Sense>,
    ) -> Result<u32, (Sense, u32)> {
        let max = (link.max_payload & !3).max(4) as u32;
        let mut sent = 0u32;
        let mut seq_cnt = 0u16;
        let mut seq_id = self.seq_id();
        while sent < len {
            let n = max.min(len - sent);
            let last = sent + n == len;
            let seq_end = last || seq_cnt == u16::MAX;
            let spec = self.data_spec(link, ox_id, rx_id, sent, seq_id, seq_cnt, seq_end);
            send_fc(tx, &spec, n as usize, |b| fill(sent, b)).map_err(|s| (s, sent))?;
            sent += n;
            self.stats.read_bytes += u64::from(n);
            if seq_end && !last {
                seq_id = self.seq_id();
                seq_cnt = 0;
            } else {
                seq_cnt = seq_cnt.wrapping_add(1);
            }
        }
        Ok(sent)
    }

    /// One XFER_RDY for the whole write: exactly 12 bytes, offset 0, END_SEQ | SEQ_INIT
    /// (LIO `ft_write_pending`; iPXE rejects any other length or offset).
    fn send_xfer_rdy(
        &mut self,
        tx: &mut dyn Transmit,
        link: &Link,
        ox_id: u16,
        rx_id: u16,
        len: u32,
    ) {
        let seq_id = self.seq_id();
        let mut spec = link.one_frame(RCtl::XferRdy, seq_id, ox_id, rx_id);
        // Not the last sequence: the initiator sends the data next.
        spec.hdr.f_ctl = FCtl::EX_CTX | FCtl::END_SEQ | FCtl::SEQ_INIT;
        let x = XferRdyRepr {
            rel_offset: 0,
            burst_len: len,
        };
        let _ = send_fc::<()>(tx, &spec, x.buffer_len(), |b| {
            x.emit(&mut XferRdyPacket::new_unchecked(b));
            Ok(())
        });
    }

    pub(crate) fn fcp_cmnd(
        &mut self,
        tx: &mut dyn Transmit,
        rx: &RxContext,
        hdr: &FcHeaderRepr,
        payload: &[u8],
    ) {
        self.stats.fcp_commands += 1;
        let key = rx.key(hdr.s_id);
        let (logged_in, prli, local_id, nexus, visible, wwpn) = match self.sessions.get(&key) {
            Some(s) => (s.plogi, s.prli, s.local_id, s.nexus, s.visible, s.wwpn),
            None => (
                false,
                false,
                FcId::new(0),
                crate::scsi::NexusId(0),
                0,
                Wwn(0),
            ),
        };
        if !logged_in {
            // FCP from a port without a login gets LS_RJT "PLOGI required" (FC-LS-3; libfc
            // answers so too).
            return self.reject_stranger(tx, rx, hdr);
        }
        if hdr.d_id != local_id {
            self.stats.drop_not_for_us += 1;
            return;
        }
        if !prli {
            self.stats.drop_no_prli += 1;
            return;
        }
        let Some(link) = self.link_of(&key) else {
            return;
        };
        let cmnd = match FcpCmndPacket::new_checked(payload).map(|p| FcpCmndRepr::parse(&p)) {
            Ok(Ok(c)) => c,
            Ok(Err(_)) => {
                // Additional CDB bytes: "FCP_CMND fields invalid".
                let rx_id = self.alloc_xid(&key);
                let rsp = FcpRspRepr {
                    rsp_info: Some(RspInfo {
                        code: rsp_code::CMND_FIELDS_INVALID,
                        len: 8,
                    }),
                    ..FcpRspRepr::status(status::GOOD)
                };
                return self.send_rsp(tx, &link, hdr.ox_id, rx_id, &rsp);
            }
            Err(_) => {
                self.stats.drop_truncated += 1;
                return;
            }
        };
        if let Some(s) = self.sessions.get_mut(&key) {
            // A reused OX_ID ends whatever the old exchange was waiting for.
            s.exchanges.remove(&hdr.ox_id);
        }
        let rx_id = self.alloc_xid(&key);
        if cmnd.tmf_flags != 0 {
            return self.task_management(tx, &link, key, hdr.ox_id, rx_id, &cmnd, nexus, visible);
        }
        let scsi = self.scsi.clone();
        // LUNs the allow-lists hide from this session are absent to it.
        // On an overlay LUN each initiator (by WWPN) reads and writes its own overlay.
        let client = ClientKey::wwpn(wwpn.0);
        // Counted, and heard by its overlays, only on a LUN the initiator may see.
        let lun = scsi.visible_lun(&cmnd.lun, visible);
        if let Some(set) = lun.and_then(|l| l.backing().overlays()) {
            set.client_seen(&client, rx.now, false);
        }
        let lun_no = lun.map(|l| l.number());
        let command = scsi.execute(&cmnd.lun, &cmnd.cdb, nexus, visible, Some(&client));
        let ox_id = hdr.ox_id;
        match command {
            Command::Read {
                offset_bytes,
                len_bytes,
            } => {
                let (xfer, flags, resid) = residual(u64::from(len_bytes), cmnd.fcp_dl);
                let lun = cmnd.lun;
                let res = self.send_data(tx, &link, ox_id, rx_id, xfer, |at, b| {
                    scsi.read_data(&lun, Some(&client), offset_bytes + u64::from(at), b)
                });
                match res {
                    Ok(_) => {
                        self.send_status(tx, &link, ox_id, rx_id, status::GOOD, flags, resid, None);
                        let done = Done::Read {
                            bytes: u64::from(xfer),
                            took: tx.now().saturating_duration_since(rx.now),
                        };
                        self.counters.record(lun_no, wwpn, done);
                    }
                    Err((sense, sent)) => {
                        self.send_check(tx, &link, ox_id, rx_id, sense, cmnd.fcp_dl, sent);
                        self.counters.record(lun_no, wwpn, Done::Error);
                    }
                }
            }
            Command::DataIn(data) => {
                let (xfer, flags, resid) = residual(data.len() as u64, cmnd.fcp_dl);
                let d = data.as_slice();
                let _ = self.send_data(tx, &link, ox_id, rx_id, xfer, |at, b| {
                    let at = at as usize;
                    b.copy_from_slice(&d[at..at + b.len()]);
                    Ok(())
                });
                self.send_status(tx, &link, ox_id, rx_id, status::GOOD, flags, resid, None);
            }
            Command::NoData => {
                let (_, flags, resid) = residual(0, cmnd.fcp_dl);
                self.send_status(tx, &link, ox_id, rx_id, status::GOOD, flags, resid, None);
            }
            Command::Error(sense) => {
                self.send_check(tx, &link, ox_id, rx_id, sense, cmnd.fcp_dl, 0);
                self.counters.record(lun_no, wwpn, Done::Error);
            }
            Command::Write {
                offset_bytes,
                len_bytes,
                fua,
            } => {
                let (xfer, flags, resid) = residual(u64::from(len_bytes), cmnd.fcp_dl);
                if xfer == 0 {
                    let done = match scsi.commit_write(&cmnd.lun, Some(&client), fua) {
                        Ok(()) => {
                            self.send_status(
                                tx,
                                &link,
                                ox_id,
                                rx_id,
                                status::GOOD,
                                flags,
                                resid,
                                None,
                            );
                            Done::Write {
                                bytes: 0,
                                took: tx.now().saturating_duration_since(rx.now),
                            }
                        }
                        Err(sense) => {
                            self.send_check(tx, &link, ox_id, rx_id, sense, cmnd.fcp_dl, 0);
                            Done::Error
                        }
                    };
                    return self.counters.record(lun_no, wwpn, done);
                }
                let full = self
                    .sessions
                    .get(&key)
                    .is_none_or(|s| s.exchanges.len() >= MAX_EXCHANGES);
                if full {
                    self.stats.drop_no_resources += 1;
                    let (_, f, r) = residual(0, cmnd.fcp_dl);
                    return self.send_status(tx, &link, ox_id, rx_id, TASK_SET_FULL, f, r, None);
                }
                if let Some(s) = self.sessions.get_mut(&key) {
                    s.exchanges.insert(
                        ox_id,
                        WriteXchg {
                            rx_id,
                            lun: cmnd.lun,
                            offset: offset_bytes,
                            len: xfer,
                            next: 0,
                            received: 0,
                            resid_flags: flags,
                            resid,
                            fcp_dl: cmnd.fcp_dl,
                            fua,
                            error: None,
                            started: rx.now,
                        },
                    );
                }
                self.update_gauges();
                self.send_xfer_rdy(tx, &link, ox_id, rx_id, xfer);
            }
        }
    }

    /// Task management (FCP_CMND with TMF flags): FCP_RSP with RSP_LEN_VALID and a response
    /// code (Linux `fc_lun_reset` waits for exactly this). Aborted commands get no FCP_RSP.
    #[allow(clippy::too_many_arguments)]
    fn task_management(
        &mut self,
        tx: &mut dyn Transmit,
        link: &Link,
        key: MacAddr,
        ox_id: u16,
        rx_id: u16,
        cmnd: &FcpCmndRepr,
        nexus: crate::scsi::NexusId,
        visible: u64,
    ) {
        self.stats.tmf += 1;
        let lun = cmnd.lun;
        let scsi = self.scsi.clone();
        let code = match cmnd.tmf_flags {
            tmf::LUN_RESET => {
                // A LUN hidden from this session is as absent for a reset as for a command.
                if scsi.visible_lun(&lun, visible).is_some() && scsi.lun_reset(&lun, nexus) {
                    for s in self.sessions.values_mut() {
                        s.exchanges.retain(|_, x| x.lun != lun);
                    }
                    rsp_code::COMPLETE
                } else {
                    rsp_code::TMF_INCORRECT_LUN
                }
            }
            tmf::ABORT_TASK_SET | tmf::CLEAR_TASK_SET => {
                if let Some(s) = self.sessions.get_mut(&key) {
                    s.exchanges.retain(|_, x| x.lun != lun);
                }
                rsp_code::COMPLETE
            }
            tmf::TARGET_RESET => {
                // It resets only what the issuer may see.
                scsi.target_reset(nexus, visible);
                for s in self.sessions.values_mut() {
                    s.exchanges
                        .retain(|_, x| scsi.visible_lun(&x.lun, visible).is_none());
                }
                rsp_code::COMPLETE
            }
            tmf::CLEAR_ACA => rsp_code::COMPLETE,
            _ => rsp_code::TMF_NOT_SUPPORTED,
        };
        self.update_gauges();
        self.send_rsp(tx, link, ox_id, rx_id, &FcpRspRepr::task_management(code));
    }

    /// FCP_DATA of a write: straight into the image at the relative offset. Data outside the
    /// range we asked for, or for an exchange we do not know, is dropped and counted. The
    /// frame that hands back the sequence initiative ends the data phase: FCP_RSP follows.
    pub(crate) fn fcp_data(
        &mut self,
        tx: &mut dyn Transmit,
        rx: &RxContext,
        hdr: &FcHeaderRepr,
        payload: &[u8],
    ) {
        let key = rx.key(hdr.s_id);
        let scsi = self.scsi.clone();
        let Some(s) = self.sessions.get_mut(&key) else {
            self.stats.drop_unknown_exchange += 1;
            return;
        };
        let client = ClientKey::wwpn(s.wwpn.0);
        let Some(x) = s.exchanges.get_mut(&hdr.ox_id) else {
            self.stats.drop_unknown_exchange += 1;
            return;
        };
        if hdr.f_ctl.contains(FCtl::EX_CTX) || (hdr.rx_id != RX_ID_UNKNOWN && hdr.rx_id != x.rx_id)
        {
            self.stats.drop_unknown_exchange += 1;
            return;
        }
        let offset = if hdr.f_ctl.contains(FCtl::REL_OFF) {
            hdr.parameter
        } else {
            x.next
        };
        let len = payload.len() as u64;
        if u64::from(offset) + len <= u64::from(x.len) {
            if x.error.is_none() {
                let at = x.offset + u64::from(offset);
                if let Err(sense) = scsi.write_data(&x.lun, Some(&client), at, payload) {
                    x.error = Some(sense);
                }
            }
            // len <= x.len <= u32::MAX here.
            let len = len as u32;
            if offset == x.next {
                x.next += len;
            }
            x.received = x.received.saturating_add(len);
            self.stats.write_bytes += u64::from(len);
        } else {
            self.stats.drop_bad_data += 1;
        }
        let done = hdr.f_ctl.contains(FCtl::SEQ_INIT)
            || (hdr.f_ctl.contains(FCtl::END_SEQ) && x.next == x.len);
        if !done {
            return;
        }
        let Some(x) = s.exchanges.remove(&hdr.ox_id) else {
            return;
        };
        s.remember_completed(hdr.ox_id, x.rx_id);
        let wwpn = s.wwpn;
        let lun_no = scsi.lun(&x.lun).map(|l| l.number());
        let Some(link) = self.link_of(&key) else {
            return;
        };
        self.update_gauges();
        if let Some(sense) = x.error {
            self.counters.record(lun_no, wwpn, Done::Error);
            return self.send_check(tx, &link, hdr.ox_id, x.rx_id, sense, x.fcp_dl, 0);
        }
        if x.next != x.len || x.received != x.len {
            // The initiator gave the initiative back before sending everything: DATA PHASE
            // ERROR, never a GOOD status over missing data.
            self.counters.record(lun_no, wwpn, Done::Error);
            let sense = Sense::new(SenseKey::AbortedCommand, 0x4b, 0x00);
            return self.send_check(tx, &link, hdr.ox_id, x.rx_id, sense, x.fcp_dl, 0);
        }
        match scsi.commit_write(&x.lun, Some(&client), x.fua) {
            Ok(()) => {
                self.send_status(
                    tx,
                    &link,
                    hdr.ox_id,
                    x.rx_id,
                    status::GOOD,
                    x.resid_flags,
                    x.resid,
                    None,
                );
                let done = Done::Write {
                    bytes: u64::from(x.len),
                    took: tx.now().saturating_duration_since(x.started),
                };
                self.counters.record(lun_no, wwpn, done);
            }
            Err(sense) => {
                self.counters.record(lun_no, wwpn, Done::Error);
                self.send_check(tx, &link, hdr.ox_id, x.rx_id, sense, x.fcp_dl, 0)
            }
        }
    }
}
