//! The login state of one initiator port towards one target port (FC-LS-3 4.2; FC-BB-6 for
//! the FIP FLOGI of VN2VN):
//!
//! ```text
//! Start --FLOGI LS_ACC--> FabricLoggedIn --PLOGI LS_ACC--> PortLoggedIn --PRLI LS_ACC--> Ready
//!   ^                                                                                     |
//!   +--------------------------------------- LOGO --------------------------------------+
//! ```
//!
//! VN2VN (Linux `fcoe_ctlr` in VN2VN mode): FLOGI inside FIP from the ENode MAC to the
//! target's ENode MAC, with a MAC descriptor naming our VN MAC; its LS_ACC comes back inside
//! FIP. Point-to-point (iPXE, ipxe-fcoe-p2p-boot.pcap frames 8-13): a plain FLOGI from S_ID
//! 00.00.00 to `FF.FF.FE` at `0E:FC:00:FF:FF:FE`. Then PLOGI and PRLI over FCoE, port to
//! port. A target whose WWPN is higher than ours also sends a PLOGI of its own (Linux: the
//! higher WWPN logs in): [`Initiator::answer_plogi`] accepts it.

use std::fmt;

use super::frame::{fc_frame_of, fip_frame, receive, receive_fip_els, Received, FLOGI_MAC};
use super::Port;
use crate::wire::els::{
    fcp_sppf, spp_flags, spp_resp, ElsCommand, ElsPacket, LoginRepr, LogoRepr, LsRjtRepr, PrliRepr,
};
use crate::wire::fc::{FcHeaderRepr, FcPacket, FcType, RCtl, RX_ID_UNKNOWN};
use crate::wire::fip::{ElsKind, Fc4Features, FipEls, FipRepr};
use crate::wire::FcId;

/// The ELS requests an initiator sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElsRequest {
    Flogi,
    Plogi,
    Prli,
    Logo,
}

/// How far the login got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LoginState {
    Start,
    /// FLOGI accepted.
    FabricLoggedIn,
    /// PLOGI accepted.
    PortLoggedIn,
    /// PRLI accepted: FCP commands may go.
    Ready,
}

/// What the target said to one of our ELS requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElsVerdict {
    Accepted,
    /// LS_RJT (its reason, when the payload is whole).
    Rejected(Option<LsRjtRepr>),
    /// PRLI LS_ACC with a response code other than "request executed".
    PrliRefused(u8),
    /// A reply that is neither LS_ACC nor LS_RJT.
    Unexpected(ElsCommand),
}

impl fmt::Display for ElsVerdict {
    /// As the load generator's error messages say it (`: LS_RJT ...`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ElsVerdict::Accepted => Ok(()),
            ElsVerdict::Rejected(Some(r)) => {
                write!(f, ": LS_RJT {:?}/{:?}", r.reason, r.explanation)
            }
            ElsVerdict::Rejected(None) => write!(f, ": LS_RJT"),
            ElsVerdict::PrliRefused(code) => write!(f, ": PRLI response code {code}"),
            ElsVerdict::Unexpected(c) => write!(f, ": ELS reply {c:?}"),
        }
    }
}

/// One initiator port and the target port it logs in to.
#[derive(Debug, Clone)]
pub struct Initiator {
    pub local: Port,
    pub remote: Port,
    /// FLOGI inside FIP (VN2VN) or plain to [`FLOGI_MAC`] (point-to-point).
    pub fip_flogi: bool,
    /// Our receive size (FC payload bytes), as our logins advertise it.
    pub mfs: u16,
    /// The target's receive size, from its PLOGI LS_ACC (ours until then).
    pub peer_mfs: u16,
    /// The FCP service parameters our PRLI asks for.
    pub prli_params: u32,
    pub state: LoginState,
}

impl Initiator {
    /// A VN2VN VN_Port logging in to another (FIP FLOGI).
    pub fn vn2vn(local: Port, remote: Port, mfs: u16) -> Initiator {
        Initiator::new(local, remote, mfs, true)
    }

    /// A point-to-point N_Port (plain FLOGI), iPXE style.
    pub fn p2p(local: Port, remote: Port, mfs: u16) -> Initiator {
        Initiator::new(local, remote, mfs, false)
    }

    fn new(local: Port, remote: Port, mfs: u16, fip_flogi: bool) -> Initiator {
        Initiator {
            local,
            remote,
            fip_flogi,
            mfs,
            peer_mfs: mfs,
            // Initiator function, no XFER_RDY for reads (what Linux and iPXE ask for).
            prli_params: fcp_sppf::INIT_FCN | fcp_sppf::RD_XRDY_DIS,
            state: LoginState::Start,
        }
    }

    /// The header of a request that opens exchange `ox` from us to the target.
    pub fn header(&self, r_ctl: RCtl, fc_type: FcType, ox: u16) -> FcHeaderRepr {
        FcHeaderRepr::request(r_ctl, fc_type, self.remote.id, self.local.id, 0, ox)
    }

    /// The ELS payload of `kind` (zero bytes where the ELS has nothing to say).
    pub fn els_payload(&self, kind: ElsRequest) -> Vec<u8> {
        let l = &self.local;
        match kind {
            ElsRequest::Flogi | ElsRequest::Plogi => {
                let cmd = if kind == ElsRequest::Flogi {
                    ElsCommand::Flogi
                } else {
                    ElsCommand::Plogi
                };
                let r = LoginRepr::n_port(cmd, l.wwpn, l.wwnn, self.mfs);
                emit_els(r.buffer_len(), |p| r.emit(p))
            }
            ElsRequest::Prli => {
                let r = PrliRepr {
                    command: ElsCommand::Prli,
                    fc4_type: Fc4Features::TYPE_FCP,
                    type_ext: 0,
                    flags: spp_flags::EST_IMG_PAIR,
                    originator_pa: 0,
                    responder_pa: 0,
                    service_params: self.prli_params,
                };
                emit_els(r.buffer_len(), |p| r.emit(p))
            }
            ElsRequest::Logo => {
                let r = LogoRepr {
                    n_port_id: l.id,
                    wwpn: l.wwpn,
                };
                emit_els(r.buffer_len(), |p| r.emit(p))
            }
        }
    }

    /// The whole frame of request `kind` on exchange `ox`.
    pub fn request(&self, kind: ElsRequest, ox: u16) -> Vec<u8> {
        let payload = self.els_payload(kind);
        let hdr = self.header(RCtl::ElsRequest, FcType::Els, ox);
        match kind {
            ElsRequest::Flogi if self.fip_flogi => {
                let mut fc = vec![0u8; hdr.buffer_len() + payload.len()];
                hdr.emit(&mut FcPacket::new_unchecked(&mut fc[..hdr.buffer_len()]));
                fc[hdr.buffer_len()..].copy_from_slice(&payload);
                let repr = FipRepr::ElsRequest(FipEls {
                    kind: ElsKind::Flogi,
                    fc_frame: &fc,
                    mac: Some(self.local.mac),
                });
                fip_frame(self.remote.enode, self.local.enode, &repr)
            }
            ElsRequest::Flogi => {
                let hdr = FcHeaderRepr {
                    d_id: FcId::FLOGI,
                    s_id: FcId::UNIDENTIFIED,
                    ..hdr
                };
                fc_frame_of(FLOGI_MAC, self.local.mac, hdr, &payload)
            }
            _ => fc_frame_of(self.remote.mac, self.local.mac, hdr, &payload),
        }
    }

    /// Whether `rx` was sent to us: to our FCoE MAC or our ENode MAC.
    fn to_us(&self, rx: &Received<'_>) -> bool {
        rx.dst == self.local.mac || rx.dst == self.local.enode
    }

    /// The reply on exchange `ox` to our request `kind`, if `frame` is one: sent to us, from
    /// the target (or from `FF.FF.FE` to a point-to-point FLOGI), an ELS reply.
    pub fn els_reply<'a>(
        &self,
        kind: ElsRequest,
        ox: u16,
        frame: &'a [u8],
    ) -> Option<Received<'a>> {
        let rx = if kind == ElsRequest::Flogi && self.fip_flogi {
            receive_fip_els(frame)?
        } else {
            receive(frame, true)?
        };
        if !self.to_us(&rx) || rx.fc.ox_id() != ox || rx.fc.r_ctl() != RCtl::ElsReply {
            return None;
        }
        if rx.fip {
            return Some(rx);
        }
        let from_target = rx.fc.s_id() == self.remote.id && rx.fc.d_id() == self.local.id;
        let flogi_acc = kind == ElsRequest::Flogi && rx.fc.s_id() == FcId::FLOGI;
        (from_target || flogi_acc).then_some(rx)
    }

    /// What the reply payload `data` to our request `kind` says; an acceptance moves the
    /// login state on (and a PLOGI LS_ACC gives the target's receive size).
    pub fn verdict(&mut self, kind: ElsRequest, data: &[u8]) -> ElsVerdict {
        let Ok(els) = ElsPacket::new_checked(data) else {
            return ElsVerdict::Unexpected(ElsCommand::Unknown(0));
        };
        match els.command() {
            ElsCommand::LsAcc => {}
            ElsCommand::LsRjt => return ElsVerdict::Rejected(LsRjtRepr::parse(&els).ok()),
            other => return ElsVerdict::Unexpected(other),
        }
        match kind {
            ElsRequest::Flogi => self.state = LoginState::FabricLoggedIn,
            ElsRequest::Plogi => {
                if let Ok(acc) = LoginRepr::parse(&els) {
                    self.peer_mfs = acc.max_payload(self.mfs);
                }
                self.state = LoginState::PortLoggedIn;
            }
            ElsRequest::Prli => match PrliRepr::parse(&els) {
                Ok(p) if p.response_code() == spp_resp::ACK => self.state = LoginState::Ready,
                Ok(p) => return ElsVerdict::PrliRefused(p.response_code()),
                Err(_) => return ElsVerdict::PrliRefused(0),
            },
            ElsRequest::Logo => self.state = LoginState::Start,
        }
        ElsVerdict::Accepted
    }

    /// [`els_reply`](Self::els_reply) and [`verdict`](Self::verdict) in one.
    pub fn on_els_reply(&mut self, kind: ElsRequest, ox: u16, frame: &[u8]) -> Option<ElsVerdict> {
        let rx = self.els_reply(kind, ox, frame)?;
        Some(self.verdict(kind, rx.data))
    }

    /// The LS_ACC to a PLOGI the target originated to us, or `None` if `frame` is not one.
    pub fn answer_plogi(&self, frame: &[u8]) -> Option<Vec<u8>> {
        let rx = receive(frame, true)?;
        let fc = &rx.fc;
        if fc.r_ctl() != RCtl::ElsRequest
            || fc.fc_type() != FcType::Els
            || fc.s_id() != self.remote.id
            || !self.to_us(&rx)
            || ElsPacket::new_checked(rx.data).ok()?.command() != ElsCommand::Plogi
        {
            return None;
        }
        let hdr = FcHeaderRepr::last_reply(
            RCtl::ElsReply,
            FcType::Els,
            self.remote.id,
            self.local.id,
            fc.seq_id(),
            fc.ox_id(),
            RX_ID_UNKNOWN,
        );
        let acc = LoginRepr::n_port(
            ElsCommand::LsAcc,
            self.local.wwpn,
            self.local.wwnn,
            self.mfs,
        );
        let payload = emit_els(acc.buffer_len(), |p| acc.emit(p));
        Some(fc_frame_of(self.remote.mac, self.local.mac, hdr, &payload))
    }
}

fn emit_els(len: usize, emit: impl FnOnce(&mut ElsPacket<&mut [u8]>)) -> Vec<u8> {
    let mut b = vec![0u8; len];
    emit(&mut ElsPacket::new_unchecked(&mut b[..]));
    b
}
