//! How ELS frames leave the port: replies (LS_ACC, LS_RJT) on the path their request came
//! by, plain FCoE or FIP-encapsulated, and the one-frame requests we originate (our PLOGI, a
//! LOGO).

use l2san_common::ether::MacAddr;
use l2san_common::io::Transmit;

use crate::fc::{FcPort, RxContext};
use crate::tx::{fc_frame_vec, send_fc, send_fip, FrameSpec};
use crate::wire::els::{
    AdiscRepr, BareElsRepr, ElsCommand, ElsPacket, LoginRepr, LogoRepr, LsRjtExplanation,
    LsRjtReason, LsRjtRepr, PrliRepr, RtvAccRepr,
};
use crate::wire::fc::{FcHeaderRepr, FcType, RCtl, RX_ID_UNKNOWN};
use crate::wire::fcoe::{Eof, Sof};
use crate::wire::fip::{ElsKind, FipEls, FipRepr};
use crate::wire::FcId;

/// An ELS reply path: plain FCoE, or FIP-encapsulated (VN2VN FLOGI and LOGO, FC-BB-6).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Path {
    Fcoe,
    Fip {
        kind: ElsKind,
        /// Our VN MAC, for the MAC descriptor.
        vn_mac: MacAddr,
        enode_src: MacAddr,
    },
}

/// A received ELS request, as far as its reply needs it: how the frame reached us, its FC
/// header, and the path the reply takes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Request<'a> {
    pub rx: &'a RxContext,
    pub hdr: &'a FcHeaderRepr,
    pub path: Path,
}

/// Why we refuse an ELS request: the LS_RJT reason code and explanation we send (FC-LS-3,
/// LS_RJT).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The payload does not parse as its command: logical error, invalid payload length.
    BadPayload,
    /// A command we do not serve, or a request on a path it never takes: command not
    /// supported (Linux then stops sending REC to this port, `fc_fcp.c`).
    NotSupported,
    /// No room for another session: unable to perform, insufficient resources.
    NoResources,
    /// No LUN's allow-list lets the initiator in: unable to perform, no explanation.
    NotAllowed,
    /// A port without a login: unable to perform, PLOGI required (libfc answers strangers
    /// this way).
    PlogiRequired,
}

impl Refusal {
    fn ls_rjt(self) -> LsRjtRepr {
        let (reason, explanation) = match self {
            Refusal::BadPayload => (
                LsRjtReason::LogicalError,
                LsRjtExplanation::InvalidPayloadLength,
            ),
            Refusal::NotSupported => (LsRjtReason::CommandNotSupported, LsRjtExplanation::None),
            Refusal::NoResources => (
                LsRjtReason::UnableToPerform,
                LsRjtExplanation::InsufficientResources,
            ),
            Refusal::NotAllowed => (LsRjtReason::UnableToPerform, LsRjtExplanation::None),
            Refusal::PlogiRequired => (
                LsRjtReason::UnableToPerform,
                LsRjtExplanation::PlogiRequired,
            ),
        };
        LsRjtRepr {
            reason,
            explanation,
            vendor: 0,
        }
    }
}

/// An ELS payload the port sends: the wire's meaning of an LS_ACC, an LS_RJT, or a request of
/// our own, which knows its length and writes itself into the frame.
pub(crate) trait ElsPayload {
    fn len_bytes(&self) -> usize;
    fn write_to(&self, buf: &mut [u8]);
}

macro_rules! els_payload {
    ($($repr:ty),*) => {$(
        impl ElsPayload for $repr {
            fn len_bytes(&self) -> usize {
                self.buffer_len()
            }
            fn write_to(&self, buf: &mut [u8]) {
                self.emit(&mut ElsPacket::new_unchecked(buf))
            }
        }
    )*};
}

els_payload!(
    BareElsRepr,
    LoginRepr,
    PrliRepr,
    LogoRepr,
    AdiscRepr,
    RtvAccRepr,
    LsRjtRepr
);

/// Send a one-frame ELS request that we originate (our PLOGI, a LOGO): FIRST_SEQ, END_SEQ and
/// SEQ_INIT set, EX_CTX clear (we are the exchange originator), RX_ID unassigned.
pub(crate) fn originate_els(
    tx: &mut dyn Transmit,
    (dst, src): (MacAddr, MacAddr),
    (d_id, s_id): (FcId, FcId),
    (seq_id, ox_id): (u8, u16),
    payload: &impl ElsPayload,
) {
    let spec = FrameSpec {
        dst,
        src,
        hdr: FcHeaderRepr::request(RCtl::ElsRequest, FcType::Els, d_id, s_id, seq_id, ox_id),
        sof: Sof::I3,
        eof: Eof::T,
    };
    let _ = send_fc::<()>(tx, &spec, payload.len_bytes(), |b| {
        payload.write_to(b);
        Ok(())
    });
}

impl FcPort {
    /// Send a single-frame ELS reply (LS_ACC or LS_RJT) whose `len` payload bytes `fill`
    /// writes.
    pub(crate) fn els_reply_with(
        &mut self,
        tx: &mut dyn Transmit,
        req: Request<'_>,
        len: usize,
        fill: impl FnOnce(&mut [u8]),
    ) {
        let (rx, hdr) = (req.rx, req.hdr);
        // The request's own SEQ_ID, as libfc and LIO answer. Linux matches a reply that comes
        // inside FIP (the VN2VN FLOGI's LS_ACC) to its exchange by SEQ_ID: with any other the
        // reply is dropped as "sequence not found", the FLOGI times out and the login stalls
        // for 8 s (seen with a Linux 6.1 guest).
        let reply = FcHeaderRepr::last_reply(
            RCtl::ElsReply,
            FcType::Els,
            hdr.s_id,
            hdr.d_id,
            hdr.seq_id,
            hdr.ox_id,
            RX_ID_UNKNOWN,
        );
        match req.path {
            Path::Fcoe => {
                let _ = send_fc::<()>(tx, &rx.reply_frame(reply), len, |b| {
                    fill(b);
                    Ok(())
                });
            }
            Path::Fip {
                kind,
                vn_mac,
                enode_src,
            } => {
                let frame = fc_frame_vec(&reply, len, fill);
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

    /// Send a single-frame ELS reply carrying `payload`.
    pub(crate) fn els_reply(
        &mut self,
        tx: &mut dyn Transmit,
        req: Request<'_>,
        payload: &impl ElsPayload,
    ) {
        self.els_reply_with(tx, req, payload.len_bytes(), |b| payload.write_to(b));
    }

    /// Refuse `req` with an LS_RJT saying `why`.
    pub(crate) fn ls_rjt(&mut self, tx: &mut dyn Transmit, req: Request<'_>, why: Refusal) {
        self.stats.els_rejects += 1;
        self.els_reply(tx, req, &why.ls_rjt());
    }

    /// Accept `req` with an LS_ACC that carries nothing else (LOGO, RRQ).
    pub(crate) fn ls_acc(&mut self, tx: &mut dyn Transmit, req: Request<'_>) {
        let acc = BareElsRepr {
            command: ElsCommand::LsAcc,
        };
        self.els_reply(tx, req, &acc);
    }
}
