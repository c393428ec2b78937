//! The ELS a logged-in port may ask besides logins (FC-LS-3): ADISC (our addresses), RTV (our
//! timeouts), ECHO (its payload back) and RRQ (an aborted exchange's OX_ID may be used again).

use l2san_common::io::Transmit;

use super::reply::{Refusal, Request};
use crate::fc::port::{E_D_TOV_MS, R_A_TOV_MS};
use crate::fc::FcPort;
use crate::wire::els::{AdiscRepr, ElsCommand, ElsPacket, RrqRepr, RtvAccRepr};

impl FcPort {
    pub(super) fn adisc(&mut self, tx: &mut dyn Transmit, req: Request<'_>) {
        let Some(s) = self.sessions.get(&req.rx.key(req.hdr.s_id)) else {
            return;
        };
        let acc = AdiscRepr {
            command: ElsCommand::LsAcc,
            hard_address: s.local_id,
            wwpn: self.wwpn,
            wwnn: self.wwnn,
            n_port_id: s.local_id,
        };
        self.els_reply(tx, req, &acc);
    }

    pub(super) fn rtv(&mut self, tx: &mut dyn Transmit, req: Request<'_>) {
        let acc = RtvAccRepr {
            r_a_tov: R_A_TOV_MS,
            e_d_tov: E_D_TOV_MS,
            qualifier: 0,
        };
        self.els_reply(tx, req, &acc);
    }

    /// RRQ: forget the aborted exchange (its recovery qualifier); the ABTS that aborted it
    /// put it on hold ([`abts`](crate::fc::abts)).
    pub(super) fn rrq(&mut self, tx: &mut dyn Transmit, req: Request<'_>, els: &ElsPacket<&[u8]>) {
        let Ok(r) = RrqRepr::parse(els) else {
            return self.ls_rjt(tx, req, Refusal::BadPayload);
        };
        if let Some(s) = self.sessions.get_mut(&req.rx.key(req.hdr.s_id)) {
            s.aborted.retain(|&(ox, _, _)| ox != r.ox_id);
        }
        self.ls_acc(tx, req);
    }

    /// ECHO: the payload back in an LS_ACC, cut to what one frame carries.
    pub(super) fn echo(&mut self, tx: &mut dyn Transmit, req: Request<'_>, els: &ElsPacket<&[u8]>) {
        let data = els.payload();
        let max = self.mfs.saturating_sub(4);
        let data = &data[..data.len().min(max)];
        self.els_reply_with(tx, req, 4 + data.len(), |b| {
            b[..4].copy_from_slice(&[u8::from(ElsCommand::LsAcc), 0, 0, 0]);
            b[4..].copy_from_slice(data);
        });
    }
}
