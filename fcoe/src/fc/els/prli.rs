//! Process login (FC-LS-3 PRLI and PRLO): the FCP image pair (FCP-4) that lets a logged-in
//! port send commands. A new image pair is a new I_T nexus for the SCSI layer.

use l2san_common::io::Transmit;

use super::reply::{Refusal, Request};
use crate::fc::FcPort;
use crate::wire::els::{spp_resp, ElsCommand, ElsPacket, PrliRepr};
use crate::wire::fc::FcType;

impl FcPort {
    pub(super) fn prli(&mut self, tx: &mut dyn Transmit, req: Request<'_>, els: &ElsPacket<&[u8]>) {
        let Ok(p) = PrliRepr::parse(els) else {
            return self.ls_rjt(tx, req, Refusal::BadPayload);
        };
        let key = req.rx.key(req.hdr.s_id);
        let acc = if p.fc4_type == u8::from(FcType::Fcp) {
            let nexus = self.new_nexus();
            if let Some(s) = self.sessions.get_mut(&key) {
                s.prli = true;
                // A new image pair is a new I_T nexus: it gets its power-on unit attention.
                let old = std::mem::replace(&mut s.nexus, nexus);
                self.scsi.nexus_logout(old);
                s.exchanges.clear();
            }
            PrliRepr::fcp_target_acc()
        } else {
            // Any other FC-4: accepted with the page marked invalid (we serve only FCP).
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
        self.els_reply(tx, req, &acc);
    }

    /// PRLO: the image pair ends; its exchanges go without a response and its nexus is
    /// forgotten.
    pub(super) fn prlo(&mut self, tx: &mut dyn Transmit, req: Request<'_>, els: &ElsPacket<&[u8]>) {
        let Ok(p) = PrliRepr::parse(els) else {
            return self.ls_rjt(tx, req, Refusal::BadPayload);
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
        self.els_reply(tx, req, &acc);
        let key = req.rx.key(req.hdr.s_id);
        if let Some(s) = self.sessions.get_mut(&key) {
            s.prli = false;
            s.exchanges.clear();
            self.scsi.nexus_logout(s.nexus);
        }
        self.update_gauges();
    }
}
