//! Framing for an initiator: whole Ethernet frames of FCoE (FC-BB-5 clause 7: Ethernet header,
//! FCoE header, FC frame, CRC and EOF) and FIP, and the reading of received ones.
//!
//! ```text
//! 0        14            28           52                       52+len      +4     +8
//! | Ethernet | FCoE hdr    | FC hdr     | payload + fill (4-aligned) | CRC LE | EOF rsvd |
//! ```

use l2san_common::ether::{emit_header, EtherType, MacAddr, HEADER_LEN as ETH_LEN, MIN_FRAME_LEN};

use crate::wire::fc::{FCtl, FcHeaderRepr, FcPacket, HEADER_LEN as FC_HDR};
use crate::wire::fcoe::{
    Eof, FcoePacket, FcoeRepr, Sof, HEADER_LEN as FCOE_HDR, MAX_LEN, TRAILER_LEN,
};
use crate::wire::fip::{FipPacket, FipRepr, Vn2VnRepr};

/// Where the FC header starts in a whole frame.
pub const FC_AT: usize = ETH_LEN + FCOE_HDR;
/// Where the FC payload starts in a whole frame.
pub const PAYLOAD_AT: usize = FC_AT + FC_HDR;

/// A whole FCoE frame with `len` bytes of FC payload (fill bytes included).
pub const fn frame_len(len: usize) -> usize {
    PAYLOAD_AT + len + TRAILER_LEN
}

/// Where a point-to-point (non-FIP) FLOGI goes: the default FC-MAP `0E:FC:00` and `FF.FF.FE`
/// (FC-BB-5 7.8.2; iPXE `fcoe_flogi_mac`).
pub const FLOGI_MAC: MacAddr = MacAddr([0x0e, 0xfc, 0x00, 0xff, 0xff, 0xfe]);

pub use crate::wire::fcoe::mfs_for_mtu;

/// The max FCoE size a VN2VN claim advertises at `mtu`: the MTU, at most 2158.
pub fn max_fcoe_size(mtu: u32) -> u16 {
    mtu.min(MAX_LEN as u32) as u16
}

/// Write a whole FCoE frame into `buf` (cleared and resized): Ethernet header, FCoE header
/// with `sof`, `hdr` (its fill-byte count set), `len` payload bytes written by `fill`, zero
/// fill bytes, the CRC and `eof`. (The smallest FCoE frame, 60 bytes, needs no Ethernet pad.)
#[allow(clippy::too_many_arguments)]
pub fn fc_frame(
    buf: &mut Vec<u8>,
    dst: MacAddr,
    src: MacAddr,
    hdr: FcHeaderRepr,
    sof: Sof,
    eof: Eof,
    len: usize,
    fill: impl FnOnce(&mut [u8]),
) {
    let fill_bytes = FCtl::fill_for(len);
    let fc_len = FC_HDR + len + fill_bytes;
    buf.clear();
    buf.resize(ETH_LEN + FCOE_HDR + fc_len + TRAILER_LEN, 0);
    emit_header(buf, dst, src, EtherType::Fcoe);
    let mut hdr = hdr;
    hdr.f_ctl = hdr.f_ctl.with_fill_bytes(fill_bytes);
    hdr.emit(&mut FcPacket::new_unchecked(&mut buf[FC_AT..PAYLOAD_AT]));
    fill(&mut buf[PAYLOAD_AT..PAYLOAD_AT + len]);
    let repr = FcoeRepr {
        sof,
        eof,
        fc_frame_len: fc_len,
    };
    repr.emit(&mut FcoePacket::new_unchecked(&mut buf[ETH_LEN..]));
}

/// A one-frame sequence (SOFi3, EOFt) of `payload`, as a new buffer.
pub fn fc_frame_of(dst: MacAddr, src: MacAddr, hdr: FcHeaderRepr, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    fc_frame(&mut f, dst, src, hdr, Sof::I3, Eof::T, payload.len(), |b| {
        b.copy_from_slice(payload)
    });
    f
}

/// A whole FIP frame of `repr`, padded to the Ethernet minimum.
pub fn fip_frame(dst: MacAddr, src: MacAddr, repr: &FipRepr<'_>) -> Vec<u8> {
    let len = (ETH_LEN + repr.buffer_len()).max(MIN_FRAME_LEN);
    let mut f = vec![0u8; len];
    emit_header(&mut f, dst, src, EtherType::Fip);
    repr.emit(&mut FipPacket::new_unchecked(&mut f[ETH_LEN..]));
    f
}

/// A received FC frame (inside FCoE, or inside a FIP ELS descriptor).
pub struct Received<'a> {
    pub dst: MacAddr,
    pub src: MacAddr,
    pub fc: FcPacket<&'a [u8]>,
    /// The FC payload without its fill bytes.
    pub data: &'a [u8],
    /// Carried in a FIP ELS (FIP FLOGI and its LS_ACC), not in FCoE.
    pub fip: bool,
}

/// Read a received FCoE frame; its CRC (and delimiters) checked when `check_crc`. `None` for
/// anything else or anything too short. No allocation: this is a load generator's hot path.
pub fn receive(frame: &[u8], check_crc: bool) -> Option<Received<'_>> {
    if frame.len() < frame_len(0) || frame[12..14] != EtherType::FCOE.to_be_bytes() {
        return None;
    }
    if check_crc && FcoeRepr::parse(&FcoePacket::new_unchecked(&frame[ETH_LEN..])).is_err() {
        return None;
    }
    let fc_frame = &frame[FC_AT..frame.len() - TRAILER_LEN];
    let fc = FcPacket::new_checked(fc_frame).ok()?;
    let payload = &fc_frame[FC_HDR..];
    let data = &payload[..payload.len().saturating_sub(fc.f_ctl().fill_bytes())];
    Some(Received {
        dst: MacAddr::from_bytes(&frame[..6]),
        src: MacAddr::from_bytes(&frame[6..12]),
        fc,
        data,
        fip: false,
    })
}

/// Read a FIP ELS (request or reply) as the FC frame it carries.
pub fn receive_fip_els(frame: &[u8]) -> Option<Received<'_>> {
    let (dst, src, repr) = fip_of(frame)?;
    let els = match repr {
        FipRepr::ElsReply(e) | FipRepr::ElsRequest(e) => e,
        _ => return None,
    };
    let fc = FcPacket::new_checked(els.fc_frame).ok()?;
    let payload = &els.fc_frame[FC_HDR..];
    let data = &payload[..payload.len().saturating_sub(fc.f_ctl().fill_bytes())];
    Some(Received {
        dst,
        src,
        fc,
        data,
        fip: true,
    })
}

/// Read a received FCoE frame or FIP ELS: whichever this is.
pub fn receive_any(frame: &[u8], check_crc: bool) -> Option<Received<'_>> {
    receive(frame, check_crc).or_else(|| receive_fip_els(frame))
}

/// A FIP frame: destination, source and meaning.
pub fn fip_of(frame: &[u8]) -> Option<(MacAddr, MacAddr, FipRepr<'_>)> {
    if frame.len() < ETH_LEN || frame[12..14] != EtherType::FIP.to_be_bytes() {
        return None;
    }
    let p = FipPacket::new_checked(&frame[ETH_LEN..]).ok()?;
    let repr = FipRepr::parse(&p).ok()?;
    Some((
        MacAddr::from_bytes(&frame[..6]),
        MacAddr::from_bytes(&frame[6..12]),
        repr,
    ))
}

/// A VN2VN FIP frame: destination, source and meaning.
pub fn vn2vn_of(frame: &[u8]) -> Option<(MacAddr, MacAddr, Vn2VnRepr)> {
    match fip_of(frame)? {
        (dst, src, FipRepr::Vn2Vn(v)) => Some((dst, src, v)),
        _ => None,
    }
}
