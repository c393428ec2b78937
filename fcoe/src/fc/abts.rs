//! Basic link services (FC-FS-3 clause 15): ABTS, answered with BA_ACC for an exchange we know
//! (open, or recently completed, so a late ABTS after a lost FCP_RSP still succeeds) and
//! BA_RJT for any other. An aborted exchange is held until its RRQ or 2 x R_A_TOV.

use l2san_common::io::Transmit;

use super::{FcPort, RxContext};
use crate::tx::send_fc;
use crate::wire::bls::{BaAccRepr, BaRjtRepr, BlsPacket, BA_ACC_LEN, BA_RJT_LEN};
use crate::wire::fc::{FcHeaderRepr, FcType, RCtl, RX_ID_UNKNOWN};

impl FcPort {
    pub(super) fn abts(&mut self, tx: &mut dyn Transmit, rx: &RxContext, hdr: &FcHeaderRepr) {
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
            Some(_) => (RCtl::BaAcc, BA_ACC_LEN),
            None => {
                self.stats.drop_unknown_exchange += 1;
                (RCtl::BaRjt, BA_RJT_LEN)
            }
        };
        let spec = rx.reply_frame(FcHeaderRepr::last_reply(
            r_ctl,
            FcType::Bls,
            hdr.s_id,
            hdr.d_id,
            seq_id,
            hdr.ox_id,
            rx_id,
        ));
        let _ = send_fc::<()>(tx, &spec, len, |b| {
            let mut p = BlsPacket::new_unchecked(b);
            match found {
                Some(rx_id) => BaAccRepr::abort_exchange(hdr.ox_id, rx_id).emit(&mut p),
                None => BaRjtRepr::unknown_exchange().emit(&mut p),
            }
            Ok(())
        });
    }
}
