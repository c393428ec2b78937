//! Building FCoE and FIP frames straight into a transmit buffer.
//!
//! Below both protocol modules, above `wire`: `fc` sends its ELS, BLS and FCP frames through
//! it and `fip` its VN2VN frames, so neither imports the other.
//!
//! Every frame is written whole: Ethernet header, FCoE header, FC header, payload, fill bytes
//! and trailer, so no stale byte of a reused buffer can leak (the `Transmit` contract). FCoE
//! frames are never shorter than 60 bytes, so `commit` never pads them (iPXE finds the
//! trailer at the very end of the frame).

use l2san_common::ether::{emit_header, EtherType, MacAddr, HEADER_LEN as ETH_LEN};
use l2san_common::io::Transmit;

use crate::wire::fc::{FCtl, FcHeaderRepr, FcPacket, HEADER_LEN as FC_LEN};
use crate::wire::fcoe::{Eof, FcoePacket, FcoeRepr, Sof, HEADER_LEN as FCOE_LEN, TRAILER_LEN};
use crate::wire::fip::{FipPacket, FipRepr};

/// Where one FC frame goes and what its header says.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FrameSpec {
    pub dst: MacAddr,
    pub src: MacAddr,
    pub hdr: FcHeaderRepr,
    pub sof: Sof,
    pub eof: Eof,
}

/// Length of the whole Ethernet frame that carries an FC payload of `len` bytes.
pub(crate) const fn fcoe_frame_len(len: usize) -> usize {
    ETH_LEN + FCOE_LEN + FC_LEN + len + FCtl::fill_for(len) + TRAILER_LEN
}

/// Build one FCoE frame whose FC payload (`len` bytes) is written by `fill`, and commit it.
/// Fill bytes are added and counted in F_CTL. If `fill` fails, nothing is committed.
pub(crate) fn send_fc<E>(
    tx: &mut dyn Transmit,
    spec: &FrameSpec,
    len: usize,
    fill: impl FnOnce(&mut [u8]) -> Result<(), E>,
) -> Result<(), E> {
    let fill_bytes = FCtl::fill_for(len);
    let total = fcoe_frame_len(len);
    let buf = &mut tx.buffer(total)[..total];
    emit_header(buf, spec.dst, spec.src, EtherType::Fcoe);
    let fcoe = &mut buf[ETH_LEN..];
    {
        let fc = &mut fcoe[FCOE_LEN..FCOE_LEN + FC_LEN + len + fill_bytes];
        let mut hdr = spec.hdr;
        hdr.f_ctl = hdr.f_ctl.with_fill_bytes(fill_bytes);
        hdr.emit(&mut FcPacket::new_unchecked(&mut fc[..]));
        fill(&mut fc[FC_LEN..FC_LEN + len])?;
        fc[FC_LEN + len..].fill(0);
    }
    let repr = FcoeRepr {
        sof: spec.sof,
        eof: spec.eof,
        fc_frame_len: FC_LEN + len + fill_bytes,
    };
    repr.emit(&mut FcoePacket::new_unchecked(fcoe));
    tx.commit(total);
    Ok(())
}

/// Build an FC frame (header and payload) into a fresh vector: for FIP-encapsulated ELS,
/// which travel without SOF/EOF/CRC. Rare (logins), so the allocation does not matter.
pub(crate) fn fc_frame_vec(
    hdr: &FcHeaderRepr,
    len: usize,
    fill: impl FnOnce(&mut [u8]),
) -> Vec<u8> {
    let fill_bytes = FCtl::fill_for(len);
    let mut v = vec![0u8; FC_LEN + len + fill_bytes];
    let mut h = *hdr;
    h.f_ctl = h.f_ctl.with_fill_bytes(fill_bytes);
    h.emit(&mut FcPacket::new_unchecked(&mut v[..]));
    fill(&mut v[FC_LEN..FC_LEN + len]);
    v
}

/// Emit a FIP frame, unpadded (commit pads short frames to 60 bytes with zeros).
pub(crate) fn send_fip(tx: &mut dyn Transmit, dst: MacAddr, src: MacAddr, repr: &FipRepr<'_>) {
    let total = ETH_LEN + repr.buffer_len();
    let buf = &mut tx.buffer(total)[..total];
    emit_header(buf, dst, src, EtherType::Fip);
    repr.emit(&mut FipPacket::new_unchecked(&mut buf[ETH_LEN..]));
    tx.commit(total);
}
