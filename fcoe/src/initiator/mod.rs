//! A sans-IO FCoE initiator: what a host does to find an FCoE target, log in and send it SCSI
//! commands, as frames in and frames out. No sockets, no clock (timers take `now`), no thread;
//! built only on [`crate::wire`].
//!
//! The pieces, each usable alone:
//! - [`frame`]: Ethernet + FCoE + FC framing of what we send (CRC, fill bytes, delimiters) and
//!   the reading of what we receive; the receive size an MTU allows.
//! - [`vn2vn`]: a VN_Port joining a VN2VN segment (FC-BB-6): probe, claim, beacon, the
//!   neighbours heard, the claim responses and defending claims that name a target.
//! - [`login`]: the login state of one initiator port towards one target port: FLOGI (inside
//!   FIP for VN2VN, plain to `0E:FC:00:FF:FF:FE` point-to-point as iPXE does), PLOGI, PRLI,
//!   LOGO, and the LS_ACC to a PLOGI the target originates.
//! - [`fcp`]: FCP exchanges: FCP_CMND frames, replies matched by OX_ID and source, multi-frame
//!   data in, XFER_RDY-driven data out, FCP_RSP decoding; in-place templates for a load
//!   generator's preallocated frames.
//! - [`scsi`]: the CDBs an initiator sends (READ/WRITE(10/16), READ CAPACITY, INQUIRY, TEST
//!   UNIT READY, REPORT LUNS) and the parsing of what they return, sense and unit attention.
//!
//! Users: the load generator (`bench/src/load/fcoe.rs`), `l2san probe`'s VN2VN discovery and
//! the end-to-end tests' hand-driven initiators.

use l2san_common::ether::MacAddr;

use crate::wire::fip::{fpma, VN2VN_FC_MAP};
use crate::wire::{FcId, Wwn};

pub mod fcp;
pub mod frame;
pub mod login;
pub mod scsi;
pub mod vn2vn;

pub use fcp::{Command, DataDirection, Exchange, ExchangeStep, Outcome, Reply, Response};
pub use login::{ElsRequest, ElsVerdict, Initiator, LoginState};
pub use vn2vn::{Join, JoinConfig, Neighbour, Vn2VnPort};

/// One end of an FC conversation as the initiator sees it: where its FCoE frames go (`mac`),
/// where its FIP frames go (`enode`), its address and its names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Port {
    /// The ENode (burned-in) MAC: source and destination of FIP frames.
    pub enode: MacAddr,
    /// The MAC of its FCoE frames: the VN MAC `0E:FD:00:<id>` in VN2VN, the NIC MAC
    /// point-to-point.
    pub mac: MacAddr,
    pub id: FcId,
    pub wwpn: Wwn,
    pub wwnn: Wwn,
}

impl Port {
    /// A VN2VN VN_Port: FCoE frames from and to the FPMA `0E:FD:00:<id>`.
    pub fn vn2vn(enode: MacAddr, id: FcId, wwpn: Wwn, wwnn: Wwn) -> Port {
        Port {
            enode,
            mac: fpma(VN2VN_FC_MAP, id),
            id,
            wwpn,
            wwnn,
        }
    }

    /// A point-to-point N_Port: FIP and FCoE from the same MAC.
    pub fn p2p(mac: MacAddr, id: FcId, wwpn: Wwn, wwnn: Wwn) -> Port {
        Port {
            enode: mac,
            mac,
            id,
            wwpn,
            wwnn,
        }
    }
}

/// A WWN made of a 16-bit prefix and a MAC: `10:00:<mac>` (NAA 1, lower than any NAA 2 or 5
/// name) or `20:00:<mac>` (NAA 2, as Linux names its ports).
pub fn wwn_of(prefix: u16, mac: MacAddr) -> Wwn {
    let mut b = [0u8; 8];
    b[..2].copy_from_slice(&prefix.to_be_bytes());
    b[2..].copy_from_slice(&mac.0);
    Wwn::from_bytes(b)
}

#[cfg(test)]
mod tests;
