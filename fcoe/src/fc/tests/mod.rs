//! Conformance tests of the FC port and the FCoE target, driven by the real frames in
//! `testdata/captures`, synthetic initiators and a fake clock:
//! - `ipxe`: iPXE's boot capture replayed, every reply held to iPXE's receive rules;
//! - `linux`: a whole Linux VN2VN session from its capture, with us in LIO's place;
//! - `ptp`: a synthetic point-to-point initiator: ABTS and RRQ, strangers, allow-lists,
//!   malformed frames, residuals and TMF, live reloads, the I/O counters;
//! - `vn2vn`: synthetic VN2VN neighbours: allow-lists by ENode MAC, PLOGI retries, a claim
//!   flood;
//! - `props`: random frame sequences never panic and keep every bound.

mod ipxe;
mod linux;
mod props;
mod ptp;
mod vn2vn;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use l2san_common::ether::{EtherType, EthernetFrame, MacAddr};
use l2san_common::io::TxBatch;
use l2san_common::store::{Image, ImageOptions};
pub(crate) use l2san_common::test_utils::capture;
use l2san_common::test_utils::drain;

use crate::fc::ptp::FLOGI_MAC;
use crate::fc::session::MAX_SESSIONS;
use crate::fip::vn2vn::VnState;
use crate::target::{FcoeAllow, FcoeConfig, FcoeTarget};
use crate::tx::{send_fc, FrameSpec};
use crate::wire::bls::{BaAccRepr, BlsPacket};
use crate::wire::els::{
    fcp_sppf, BareElsRepr, ElsCommand, ElsPacket, LoginRepr, LsRjtExplanation, LsRjtRepr, PrliRepr,
    RrqRepr,
};
use crate::wire::fc::{FCtl, FcHeaderRepr, FcPacket, FcType, RCtl};
use crate::wire::fcoe::{Eof, FcoePacket, FcoeRepr, Sof};
use crate::wire::fcp::{tmf, FcpCmndPacket, FcpCmndRepr, FcpRspPacket, FcpRspRepr, TaskAttribute};
use crate::wire::fip::{FipPacket, FipRepr, Vn2VnSubcode, ALL_VN2VN_MACS};
use crate::wire::{FcId, Wwn};

/// A reply frame, checked for everything any initiator requires of the encapsulation:
/// version 0, CRC, 4-aligned FC frame, no padding, class-3 delimiters.
#[derive(Debug, Clone)]
pub(crate) struct Fc {
    pub dst: MacAddr,
    pub src: MacAddr,
    pub sof: Sof,
    pub eof: Eof,
    pub hdr: FcHeaderRepr,
    pub data: Vec<u8>,
    pub frame_len: usize,
}

pub(crate) fn parse_fc(frame: &[u8]) -> Fc {
    let eth = EthernetFrame::new_checked(frame).unwrap();
    assert_eq!(eth.ethertype(), EtherType::Fcoe);
    assert!(frame.len() >= 60, "runt FCoE frame");
    let p = FcoePacket::new_checked(eth.payload()).unwrap();
    // No padding: the trailer is at the very end (iPXE), so parse succeeds on the whole.
    let r =
        FcoeRepr::parse(&p).expect("FCoE frame must verify (version, CRC, alignment, no padding)");
    assert!(
        r.sof.is_class3() && r.eof.is_class3(),
        "SOF/EOF {:?}/{:?}",
        r.sof,
        r.eof
    );
    let fc = FcPacket::new_checked(p.fc_frame()).unwrap();
    let hdr = FcHeaderRepr::parse(&fc).unwrap();
    Fc {
        dst: eth.dst(),
        src: eth.src(),
        sof: r.sof,
        eof: r.eof,
        hdr,
        data: fc.data().to_vec(),
        frame_len: frame.len(),
    }
}

/// Patch the FC header of an FCoE frame and recompute its CRC.
pub(crate) fn patch_fc(frame: &[u8], f: impl FnOnce(&mut FcPacket<&mut [u8]>)) -> Vec<u8> {
    let mut v = frame.to_vec();
    {
        let mut p = FcoePacket::new_unchecked(&mut v[14..]);
        f(&mut FcPacket::new_unchecked(p.fc_frame_mut()));
        p.fill_crc();
    }
    v
}

fn is_fcoe(frame: &[u8]) -> bool {
    EthernetFrame::new_checked(frame).is_ok_and(|e| e.ethertype() == EtherType::Fcoe)
}

fn image(len: u64) -> Arc<Image> {
    let img = Image::memory(len, ImageOptions::default()).unwrap();
    let mut block = vec![0u8; 512];
    for lba in 0..len / 512 {
        for (i, b) in block.iter_mut().enumerate() {
            *b = (lba as u8).wrapping_mul(31).wrapping_add(i as u8);
        }
        img.write_at(lba * 512, &block).unwrap();
    }
    Arc::new(img)
}

const LINUX_ENODE: MacAddr = MacAddr([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
const LINUX_VN: MacAddr = MacAddr([0x0e, 0xfd, 0x00, 0x00, 0x34, 0x56]);
const LINUX_ID: FcId = FcId::new(0x3456);
const LIO_ENODE: MacAddr = MacAddr([0x52, 0x54, 0x00, 0x4c, 0x10, 0x0a]);
const LIO_VN: MacAddr = MacAddr([0x0e, 0xfd, 0x00, 0x00, 0x10, 0x0a]);
const LIO_ID: FcId = FcId::new(0x100a);

fn fip_of(frame: &[u8]) -> Option<FipRepr<'_>> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    if eth.ethertype() != EtherType::Fip {
        return None;
    }
    FipRepr::parse(&FipPacket::new_checked(&frame[14..]).ok()?).ok()
}

/// A target at `mac` with port name `wwpn` (its node name: the same with NAA 1) serving one
/// LUN, an image of `len` bytes, to everyone.
fn one_lun_target(mac: MacAddr, mtu: u32, wwpn: Wwn, len: u64) -> FcoeTarget {
    FcoeTarget::new(FcoeConfig {
        mac,
        mtu,
        wwpn,
        wwnn: Wwn(wwpn.0 & !0xf000_0000_0000_0000 | 0x1000_0000_0000_0000),
        luns: vec![(0, image(len).into())],
        allow: Vec::new(),
    })
}

fn vn2vn_target(wwpn: Wwn) -> FcoeTarget {
    one_lun_target(LIO_ENODE, 2500, wwpn, 160 << 20)
}

/// Tick until the VN_Port is up; return the frames it sent on the way.
fn bring_up(target: &FcoeTarget, now: &mut Instant, tx: &mut TxBatch) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for _ in 0..40 {
        target.tick(*now, tx);
        out.extend(drain(tx));
        *now += Duration::from_millis(50);
    }
    assert_eq!(target.vn2vn().0, VnState::Up);
    out
}

/// F_CTL of a one-frame request: FIRST_SEQ | END_SEQ | SEQ_INIT.
const REQ: FCtl = FCtl::from_bits(0x29_0000);

/// A FIP-encapsulated VN2VN FLOGI from the VN_Port `id` (WWPN `wwpn`) to `d_id`.
fn fip_flogi(id: FcId, d_id: FcId, wwpn: Wwn, ox_id: u16) -> Vec<u8> {
    use crate::tx::{fc_frame_vec, send_fip};
    use crate::wire::fip::{fpma, ElsKind, FipEls, VN2VN_FC_MAP};
    let hdr = FcHeaderRepr {
        r_ctl: RCtl::ElsRequest,
        d_id,
        cs_ctl: 0,
        s_id: id,
        fc_type: FcType::Els,
        f_ctl: REQ,
        seq_id: 1,
        df_ctl: 0,
        seq_cnt: 0,
        ox_id,
        rx_id: 0xffff,
        parameter: 0,
    };
    let login = LoginRepr::n_port(ElsCommand::Flogi, wwpn, Wwn(wwpn.0 ^ 1), 2112);
    let fc = fc_frame_vec(&hdr, 116, |b| login.emit(&mut ElsPacket::new_unchecked(b)));
    let enode = MacAddr([0x52, 0x54, 0x00, 0x00, 0x00, id.get() as u8]);
    let repr = FipRepr::ElsRequest(FipEls {
        kind: ElsKind::Flogi,
        fc_frame: &fc,
        mac: Some(fpma(VN2VN_FC_MAP, id)),
    });
    let mut b = TxBatch::new(1);
    send_fip(&mut b, LIO_ENODE, enode, &repr);
    drain(&mut b).remove(0)
}
