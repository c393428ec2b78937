//! Conformance tests of the FC port and the FCoE target, driven by the real frames in
//! `testdata/captures` and a fake clock.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use l2san_common::ether::{EtherType, EthernetFrame, MacAddr};
use l2san_common::io::TxBatch;
use l2san_common::store::{Image, ImageOptions};
pub(crate) use l2san_common::test_utils::capture;
use l2san_common::test_utils::drain;

use crate::fip::vn2vn::VnState;
use crate::target::{FcoeAllow, FcoeConfig, FcoeTarget};
use crate::wire::els::{
    fcp_sppf, ElsCommand, ElsPacket, LoginRepr, LsRjtExplanation, LsRjtRepr, PrliRepr,
};
use crate::wire::fc::{FCtl, FcHeaderRepr, FcPacket, RCtl};
use crate::wire::fcoe::{Eof, FcoePacket, FcoeRepr, Sof};
use crate::wire::fcp::{FcpCmndPacket, FcpCmndRepr, FcpRspPacket, FcpRspRepr};
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

/// iPXE's side of one exchange, as `fc_xchg_rx` and `fcp.c` keep it.
#[derive(Debug, Default)]
struct IpxeXchg {
    seq_cnt: u16,
    seq_id: Option<u8>,
    holds_initiative: bool,
    fcp_dl: u32,
    read: bool,
    /// Bytes moved: read data received or write data sent.
    moved: u32,
    done: bool,
}

const IPXE_MAC: MacAddr = MacAddr([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
const IPXE_TARGET_MAC: MacAddr = MacAddr([0x0a, 0x91, 0x10, 0xa3, 0x88, 0xf9]);
const IPXE_TARGET_WWPN: Wwn = Wwn(0x2000_0025_b500_0001);
const IPXE_ID: FcId = FcId::new(0x01_0102);

/// (1) Replay every request iPXE sent in its boot capture and hold each reply to every
/// receive rule of iPXE.
#[test]
fn ipxe_boot_conformance() {
    let img = image(8 << 20);
    let target = FcoeTarget::new(FcoeConfig {
        mac: IPXE_TARGET_MAC,
        mtu: 1500,
        wwpn: IPXE_TARGET_WWPN,
        wwnn: Wwn(0x1000_0025_b500_0001),
        luns: vec![(0, img.clone().into())],
        allow: Vec::new(),
    });
    let mut tx = TxBatch::new(64);
    let mut now = Instant::now();
    let mut xchgs: HashMap<u16, IpxeXchg> = HashMap::new();
    // Our RX_ID per iPXE OX_ID, from the XFER_RDY: iPXE's write data carries it.
    let mut rx_ids: HashMap<u16, u16> = HashMap::new();
    let mut my_id: Option<FcId> = None;
    let mut goods = 0;
    let mut write_data: HashMap<u16, Vec<u8>> = HashMap::new();
    for frame in capture("ipxe-fcoe-p2p-boot.pcap") {
        let eth = EthernetFrame::new_checked(&frame[..]).unwrap();
        if eth.src() != IPXE_MAC || !matches!(eth.ethertype(), EtherType::Fcoe | EtherType::Fip) {
            continue;
        }
        let mut frame = frame.clone();
        if is_fcoe(&frame) {
            let req = parse_fc(&frame);
            let x = xchgs.entry(req.hdr.ox_id).or_default();
            if req.hdr.r_ctl == RCtl::FcpCmnd {
                let c = FcpCmndRepr::parse(&FcpCmndPacket::new_checked(&req.data[..]).unwrap())
                    .unwrap();
                *x = IpxeXchg {
                    fcp_dl: c.fcp_dl,
                    read: c.rddata,
                    ..Default::default()
                };
            }
            if req.hdr.r_ctl == RCtl::FcpData {
                // iPXE sends write data only after our XFER_RDY, to our RX_ID.
                let rx_id = *rx_ids
                    .get(&req.hdr.ox_id)
                    .expect("write data before XFER_RDY");
                frame = patch_fc(&frame, |p| p.set_rx_id(rx_id));
                x.moved += req.data.len() as u32;
                write_data
                    .entry(req.hdr.ox_id)
                    .or_default()
                    .extend_from_slice(&req.data);
            }
            if req.hdr.f_ctl.contains(FCtl::SEQ_INIT) {
                x.holds_initiative = false;
            }
        }
        now += Duration::from_millis(1);
        target.tick(now, &mut tx);
        target.handle_frame(&frame, now, &mut tx);
        for out in drain(&mut tx) {
            let eth = EthernetFrame::new_checked(&out[..]).unwrap();
            if eth.ethertype() == EtherType::Fip {
                // VN2VN probes/claims/beacons to the VN2VN group: iPXE ignores them.
                assert_eq!(eth.dst(), ALL_VN2VN_MACS);
                continue;
            }
            let r = parse_fc(&out);
            // fcoe_rx: to iPXE's own MAC; it learns our MAC from the source.
            assert_eq!(r.dst, IPXE_MAC);
            assert_eq!(r.src, IPXE_TARGET_MAC);
            // fc_port_deliver: D_ID is its port ID (0 before the FLOGI completes).
            let expect_d_id = my_id.unwrap_or(FcId::new(0));
            assert_eq!(r.hdr.d_id, expect_d_id, "{:?}", r.hdr);
            // Responder frames: EX_CTX, never FIRST_SEQ.
            assert!(r.hdr.f_ctl.contains(FCtl::EX_CTX), "{:?}", r.hdr.f_ctl);
            assert!(!r.hdr.f_ctl.contains(FCtl::FIRST_SEQ), "{:?}", r.hdr.f_ctl);
            let end = r.hdr.f_ctl.contains(FCtl::END_SEQ);
            assert_eq!(r.eof == Eof::T, end, "EOFt exactly on END_SEQ");
            assert_eq!(
                r.sof == Sof::I3,
                r.hdr.seq_cnt == 0,
                "SOFi3 exactly on SEQ_CNT 0"
            );
            assert!(r.frame_len <= 14 + 14 + 24 + 1452 + 8);
            let x = xchgs
                .get_mut(&r.hdr.ox_id)
                .expect("reply to an exchange iPXE opened");
            assert!(!x.done, "frame after the end of the exchange");
            assert!(
                !x.holds_initiative,
                "frame while iPXE holds the sequence initiative"
            );
            assert_eq!(r.hdr.seq_cnt, x.seq_cnt, "SEQ_CNT strictly in order");
            if x.seq_cnt == 0 {
                x.seq_id = Some(r.hdr.seq_id);
            }
            assert_eq!(Some(r.hdr.seq_id), x.seq_id);
            x.seq_cnt += 1;
            if end {
                x.seq_cnt = 0;
                if r.hdr.f_ctl.contains(FCtl::SEQ_INIT) {
                    x.holds_initiative = true;
                }
                if r.hdr.f_ctl.contains(FCtl::LAST_SEQ) {
                    x.done = true;
                }
            }
            match r.hdr.r_ctl {
                RCtl::ElsReply => {
                    let els = ElsPacket::new_checked(&r.data[..]).unwrap();
                    assert_eq!(els.command(), ElsCommand::LsAcc, "iPXE login must succeed");
                    if let Ok(login) = LoginRepr::parse(&els) {
                        assert!(!login.is_f_port(), "F_PORT must be clear: point-to-point");
                        assert_eq!(login.wwpn, IPXE_TARGET_WWPN);
                        assert!(login.max_payload(2112) <= 1452);
                        my_id.get_or_insert(IPXE_ID);
                    }
                    if let Ok(p) = PrliRepr::parse(&els) {
                        assert_eq!(p.response_code(), 1);
                        assert!(
                            p.service_params & fcp_sppf::TARG_FCN != 0,
                            "iPXE needs TARG_FCN"
                        );
                    }
                }
                RCtl::FcpData => {
                    assert!(x.read);
                    assert!(
                        r.hdr.f_ctl.contains(FCtl::REL_OFF),
                        "read data needs REL_OFF"
                    );
                    assert_eq!(r.hdr.parameter, x.moved, "read data strictly in order");
                    assert!(r.data.len() <= 1452);
                    assert!(
                        x.moved + r.data.len() as u32 <= x.fcp_dl,
                        "read data overrun"
                    );
                    x.moved += r.data.len() as u32;
                }
                RCtl::XferRdy => {
                    assert_eq!(r.data.len(), 12, "XFER_RDY is exactly 12 bytes");
                    assert_eq!(
                        u32::from_be_bytes(r.data[0..4].try_into().unwrap()),
                        x.moved
                    );
                    assert_eq!(
                        u32::from_be_bytes(r.data[4..8].try_into().unwrap()),
                        x.fcp_dl
                    );
                    assert!(r.hdr.f_ctl.contains(FCtl::SEQ_INIT));
                    rx_ids.insert(r.hdr.ox_id, r.hdr.rx_id);
                }
                RCtl::FcpRsp => {
                    assert!(r.data.len() >= 24);
                    let rsp = FcpRspRepr::parse(&FcpRspPacket::new_checked(&r.data[..]).unwrap())
                        .unwrap();
                    if rsp.scsi_status == 0 {
                        // fcpcmd_recv_rsp: GOOD means exactly FCP_DL bytes moved.
                        assert_eq!(x.moved, x.fcp_dl, "data underrun with GOOD status");
                        goods += 1;
                    } else {
                        // Only the first command may see the power-on unit attention.
                        assert_eq!(rsp.sense[2] & 0xf, 6, "unexpected CHECK CONDITION {rsp:?}");
                    }
                    assert!(r.hdr.f_ctl.contains(FCtl::LAST_SEQ));
                }
                other => panic!("unexpected reply {other:?}"),
            }
        }
    }
    // TUR (unit attention), READ CAPACITY, six READs, one WRITE: eight GOOD.
    assert_eq!(goods, 8, "commands completed");
    // The write landed in the image: WRITE(10) LBA 0x3ffc, 3 blocks.
    let data = write_data.values().next().expect("the capture has a write");
    let mut back = vec![0u8; data.len()];
    img.read_at(0x3ffc * 512, &mut back).unwrap();
    assert_eq!(&back, data);
    let st = target.stats();
    assert_eq!(
        st.drop_bad_crc + st.drop_truncated + st.drop_unknown_exchange + st.drop_no_login,
        0,
        "{st:?}"
    );
    assert!(
        st.fip_ignored >= 4,
        "iPXE's VLAN requests and solicitations are ignored"
    );
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

fn vn2vn_target(wwpn: Wwn) -> FcoeTarget {
    FcoeTarget::new(FcoeConfig {
        mac: LIO_ENODE,
        mtu: 2500,
        wwpn,
        wwnn: Wwn(wwpn.0 & !0xf000_0000_0000_0000 | 0x1000_0000_0000_0000),
        luns: vec![(0, image(160 << 20).into())],
        allow: Vec::new(),
    })
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

/// (2) A whole Linux VN2VN session, with us in LIO's place (same WWPN, hence the higher
/// one: we originate the PLOGI), driven by Linux's frames of the "late" capture.
#[test]
fn linux_vn2vn_session() {
    let target = vn2vn_target(Wwn(0x2000_5254_004c_100a));
    let mut tx = TxBatch::new(64);
    let mut now = Instant::now();
    let start = bring_up(&target, &mut now, &mut tx);
    assert_eq!(target.vn2vn().1, LIO_ID);
    let subs: Vec<(Vn2VnSubcode, MacAddr, MacAddr)> = start
        .iter()
        .map(|f| {
            let Some(FipRepr::Vn2Vn(v)) = fip_of(f) else {
                panic!("not VN2VN")
            };
            let e = EthernetFrame::new_checked(&f[..]).unwrap();
            (v.subcode, e.src(), e.dst())
        })
        .collect();
    use Vn2VnSubcode::*;
    assert_eq!(subs[0], (ProbeRequest, LIO_ENODE, ALL_VN2VN_MACS));
    assert_eq!(subs[1], (ProbeRequest, LIO_ENODE, ALL_VN2VN_MACS));
    assert_eq!(subs[2], (ClaimNotification, LIO_ENODE, ALL_VN2VN_MACS));
    assert_eq!(subs[3], (Beacon, LIO_VN, ALL_VN2VN_MACS));
    assert_eq!(subs[4], (Beacon, LIO_VN, ALL_VN2VN_MACS));
    // Our claim carries FC-4 features (FCP target) and the max FCoE size.
    let Some(FipRepr::Vn2Vn(claim)) = fip_of(&start[2]) else {
        panic!()
    };
    assert_eq!(claim.max_fcoe_size, Some(2158));
    assert_eq!(claim.fc4_features.unwrap().features_of(8), 1);

    let mut our_plogi: Option<u16> = None;
    let mut rx_ids: HashMap<u16, u16> = HashMap::new();
    let mut seen = HashMap::<&str, usize>::new();
    let mut cmnds: HashMap<u16, (u32, u32)> = HashMap::new(); // ox -> (fcp_dl, moved)
    let mut goods = 0;
    for frame in capture("linux-fcoe-vn2vn-vs-lio-late.pcap") {
        let eth = EthernetFrame::new_checked(&frame[..]).unwrap();
        if !(eth.src() == LINUX_ENODE || eth.src() == LINUX_VN) {
            continue;
        }
        if !matches!(eth.ethertype(), EtherType::Fcoe | EtherType::Fip) {
            continue;
        }
        let mut frame = frame.clone();
        if is_fcoe(&frame) {
            let req = parse_fc(&frame);
            match req.hdr.r_ctl {
                RCtl::ElsReply => {
                    let els = ElsPacket::new_checked(&req.data[..]).unwrap();
                    if els.command() == ElsCommand::LsAcc && req.data.len() == 116 {
                        // Linux's LS_ACC to the PLOGI: to our exchange.
                        let ox = our_plogi.expect("PLOGI ACC before our PLOGI");
                        frame = patch_fc(&frame, |p| p.set_ox_id(ox));
                    }
                }
                RCtl::FcpData => {
                    let Some(&rx_id) = rx_ids.get(&req.hdr.ox_id) else {
                        continue;
                    };
                    frame = patch_fc(&frame, |p| p.set_rx_id(rx_id));
                    if let Some(c) = cmnds.get_mut(&req.hdr.ox_id) {
                        c.1 += req.data.len() as u32;
                    }
                }
                RCtl::FcpCmnd => {
                    let c = FcpCmndRepr::parse(&FcpCmndPacket::new_checked(&req.data[..]).unwrap())
                        .unwrap();
                    cmnds.insert(req.hdr.ox_id, (c.fcp_dl, 0));
                }
                _ => {}
            }
        }
        now += Duration::from_millis(1);
        target.tick(now, &mut tx);
        target.handle_frame(&frame, now, &mut tx);
        if matches!(fip_of(&frame), Some(FipRepr::ElsRequest(_))) {
            // Our PLOGI follows a FLOGI LS_ACC from the next tick at least PLOGI_DELAY later.
            now += Duration::from_millis(30);
            target.tick(now, &mut tx);
        }
        if matches!(fip_of(&frame), Some(FipRepr::Vn2Vn(v)) if v.subcode == ClaimNotification) {
            // Our beacon follows a claim response once the neighbour's claim is done.
            now += Duration::from_millis(600);
            target.tick(now, &mut tx);
        }
        for out in drain(&mut tx) {
            let e = EthernetFrame::new_checked(&out[..]).unwrap();
            if let Some(fip) = fip_of(&out) {
                match fip {
                    FipRepr::Vn2Vn(v) => {
                        match v.subcode {
                            ClaimResponse => {
                                assert_eq!((e.src(), e.dst()), (LIO_ENODE, LINUX_ENODE));
                                assert!(v.fc4_features.is_some() && v.max_fcoe_size.is_some());
                            }
                            Beacon => {
                                assert_eq!((e.src(), e.dst()), (LIO_VN, ALL_VN2VN_MACS));
                                // The beacon must follow our claim response (Linux logs in
                                // only after it).
                                assert!(seen.contains_key("claim response"));
                            }
                            other => panic!("unexpected {other:?}"),
                        }
                        *seen
                            .entry(if v.subcode == ClaimResponse {
                                "claim response"
                            } else {
                                "beacon"
                            })
                            .or_default() += 1;
                    }
                    FipRepr::ElsReply(els) => {
                        // FIP-encapsulated LS_ACC to FLOGI/LOGO, to Linux's ENode MAC, with our
                        // VN MAC in the MAC descriptor.
                        assert_eq!((e.src(), e.dst()), (LIO_ENODE, LINUX_ENODE));
                        assert_eq!(els.mac, Some(LIO_VN));
                        let p = FcPacket::new_checked(els.fc_frame).unwrap();
                        let h = FcHeaderRepr::parse(&p).unwrap();
                        assert_eq!(
                            (h.d_id, h.s_id, h.r_ctl),
                            (LINUX_ID, LIO_ID, RCtl::ElsReply)
                        );
                        assert!(
                            h.f_ctl.contains(FCtl::EX_CTX) && !h.f_ctl.contains(FCtl::FIRST_SEQ)
                        );
                        let el = ElsPacket::new_checked(p.data()).unwrap();
                        assert_eq!(el.command(), ElsCommand::LsAcc);
                        if let Ok(l) = LoginRepr::parse(&el) {
                            assert!(!l.is_f_port(), "Linux rejects F_PORT in a VN2VN FLOGI ACC");
                            *seen.entry("flogi acc").or_default() += 1;
                        } else {
                            *seen.entry("logo acc").or_default() += 1;
                        }
                    }
                    other => panic!("unexpected FIP {other:?}"),
                }
                continue;
            }
            let r = parse_fc(&out);
            // fcoe_rcv: the destination MAC's low 24 bits must be the D_ID.
            assert_eq!(r.dst, LINUX_VN);
            assert_eq!(r.src, LIO_VN);
            assert_eq!((r.hdr.d_id, r.hdr.s_id), (LINUX_ID, LIO_ID));
            assert!(r.data.len() <= 2112);
            match r.hdr.r_ctl {
                RCtl::ElsRequest => {
                    // Our PLOGI: we originate, Linux (lower WWPN) waits for it.
                    let els = ElsPacket::new_checked(&r.data[..]).unwrap();
                    assert_eq!(els.command(), ElsCommand::Plogi);
                    assert!(
                        r.hdr.f_ctl.contains(FCtl::FIRST_SEQ)
                            && !r.hdr.f_ctl.contains(FCtl::EX_CTX)
                    );
                    our_plogi = Some(r.hdr.ox_id);
                    *seen.entry("plogi").or_default() += 1;
                }
                RCtl::ElsReply => {
                    let els = ElsPacket::new_checked(&r.data[..]).unwrap();
                    assert_eq!(els.command(), ElsCommand::LsAcc, "{:?}", r.data);
                    if let Ok(p) = PrliRepr::parse(&els) {
                        assert_eq!(p.response_code(), 1);
                        *seen.entry("prli acc").or_default() += 1;
                    } else {
                        *seen.entry("els acc").or_default() += 1;
                    }
                }
                RCtl::XferRdy => {
                    rx_ids.insert(r.hdr.ox_id, r.hdr.rx_id);
                    *seen.entry("xfer_rdy").or_default() += 1;
                }
                RCtl::FcpData => {
                    assert!(!r.hdr.f_ctl.contains(FCtl::FIRST_SEQ));
                    let c = cmnds.get_mut(&r.hdr.ox_id).unwrap();
                    assert_eq!(r.hdr.parameter, c.1);
                    c.1 += r.data.len() as u32;
                }
                RCtl::FcpRsp => {
                    let rsp = FcpRspRepr::parse(&FcpRspPacket::new_checked(&r.data[..]).unwrap())
                        .unwrap();
                    let c = cmnds[&r.hdr.ox_id];
                    if rsp.scsi_status == 0 {
                        let under = if rsp.flags & 0x08 != 0 { rsp.resid } else { 0 };
                        assert_eq!(c.1 + under, c.0, "GOOD with FCP_DL not met: {rsp:?}");
                        goods += 1;
                    }
                    *seen.entry("rsp").or_default() += 1;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    for what in [
        "claim response",
        "beacon",
        "flogi acc",
        "plogi",
        "prli acc",
        "els acc",
        "xfer_rdy",
        "logo acc",
    ] {
        assert!(seen.contains_key(what), "never saw {what}: {seen:?}");
    }
    assert!(goods > 30, "{goods} GOOD responses; {seen:?}");
    assert_eq!(seen["plogi"], 1);
    // LOGO ended the session.
    assert_eq!(target.session_count(), 0);
}

// ---------------------------------------------------------------------------------------
// Synthetic point-to-point initiator: ABTS, RRQ, strangers, malformed frames, residuals.

use crate::fc::ptp::FLOGI_MAC;
use crate::fc::session::MAX_SESSIONS;
use crate::tx::{send_fc, FrameSpec};
use crate::wire::bls::{BaAccRepr, BlsPacket};
use crate::wire::els::{BareElsRepr, RrqRepr};
use crate::wire::fc::FcType;
use crate::wire::fcp::{tmf, TaskAttribute};

const INIT_WWPN: Wwn = Wwn(0x2000_0000_0000_0099);
const TGT_WWPN: Wwn = Wwn(0x2000_0000_0000_0001);
const TGT_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 1]);
const TGT_ID: FcId = FcId::new(0x01_0101);
const INIT_ID: FcId = FcId::new(0x01_0102);

fn mac(n: u8) -> MacAddr {
    MacAddr([0x02, 0, 0, 0, 1, n])
}

/// One FCoE frame from an initiator.
#[allow(clippy::too_many_arguments)]
fn frame_from(
    src: MacAddr,
    dst: MacAddr,
    r_ctl: RCtl,
    fc_type: FcType,
    f_ctl: FCtl,
    d_id: FcId,
    s_id: FcId,
    ox_id: u16,
    rx_id: u16,
    parameter: u32,
    payload: &[u8],
) -> Vec<u8> {
    let mut b = TxBatch::new(1);
    let spec = FrameSpec {
        dst,
        src,
        hdr: FcHeaderRepr {
            r_ctl,
            d_id,
            cs_ctl: 0,
            s_id,
            fc_type,
            f_ctl,
            seq_id: 1,
            df_ctl: 0,
            seq_cnt: 0,
            ox_id,
            rx_id,
            parameter,
        },
        sof: Sof::I3,
        eof: Eof::T,
    };
    send_fc::<()>(&mut b, &spec, payload.len(), |p| {
        p.copy_from_slice(payload);
        Ok(())
    })
    .unwrap();
    drain(&mut b).remove(0)
}

const REQ: FCtl = FCtl::from_bits(0x29_0000); // FIRST_SEQ | END_SEQ | SEQ_INIT

fn els_payload(emit: impl FnOnce(&mut ElsPacket<&mut [u8]>), len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    emit(&mut ElsPacket::new_unchecked(&mut v[..]));
    v
}

fn cmnd(lun: u16, cdb: &[u8], fcp_dl: u32, rd: bool, wr: bool, tmf_flags: u8) -> Vec<u8> {
    let mut c = [0u8; 16];
    c[..cdb.len()].copy_from_slice(cdb);
    let r = FcpCmndRepr {
        lun: crate::scsi::encode_sam_lun(lun),
        crn: 0,
        task_attribute: TaskAttribute::Simple,
        priority: 0,
        tmf_flags,
        rddata: rd,
        wrdata: wr,
        cdb: c,
        fcp_dl,
    };
    let mut v = vec![0u8; 32];
    r.emit(&mut FcpCmndPacket::new_unchecked(&mut v[..]));
    v
}

struct Rig {
    t: FcoeTarget,
    tx: TxBatch,
    now: Instant,
    img: Arc<Image>,
}

impl Rig {
    fn new() -> Rig {
        Rig::with(1, Vec::new())
    }
    /// LUNs 0 to `luns` - 1 (LUN 0 on the image `img`), with these allow-lists.
    fn with(luns: u64, allow: Vec<(u64, Vec<FcoeAllow>)>) -> Rig {
        let img = image(1 << 20);
        let mut all = vec![(0, img.clone().into())];
        all.extend((1..luns).map(|n| (n, image(1 << 20).into())));
        Rig {
            t: FcoeTarget::new(FcoeConfig {
                mac: TGT_MAC,
                mtu: 1500,
                wwpn: TGT_WWPN,
                wwnn: Wwn(0x1000_0000_0000_0001),
                luns: all,
                allow,
            }),
            tx: TxBatch::new(64),
            now: Instant::now(),
            img,
        }
    }
    fn send(&mut self, f: &[u8]) -> Vec<Fc> {
        self.now += Duration::from_millis(1);
        self.t.handle_frame(f, self.now, &mut self.tx);
        drain(&mut self.tx).iter().map(|f| parse_fc(f)).collect()
    }
    fn els(&mut self, m: MacAddr, d_id: FcId, s_id: FcId, ox: u16, payload: &[u8]) -> Vec<Fc> {
        let dst = if d_id == FcId::FLOGI {
            FLOGI_MAC
        } else {
            TGT_MAC
        };
        self.send(&frame_from(
            m,
            dst,
            RCtl::ElsRequest,
            FcType::Els,
            REQ,
            d_id,
            s_id,
            ox,
            0xffff,
            0,
            payload,
        ))
    }
    fn login(&mut self, m: MacAddr, wwpn: Wwn) {
        let flogi = LoginRepr::n_port(ElsCommand::Flogi, wwpn, Wwn(wwpn.0 ^ 1), 1452);
        let r = self.els(
            m,
            FcId::FLOGI,
            FcId::new(0),
            1,
            &els_payload(|p| flogi.emit(p), 116),
        );
        assert_eq!(r.len(), 1);
        assert_eq!(
            (r[0].hdr.s_id, r[0].hdr.d_id, r[0].dst),
            (FcId::FLOGI, FcId::new(0), m)
        );
        let plogi = LoginRepr::n_port(ElsCommand::Plogi, wwpn, Wwn(wwpn.0 ^ 1), 1452);
        let r = self.els(m, TGT_ID, INIT_ID, 2, &els_payload(|p| plogi.emit(p), 116));
        assert_eq!(r[0].data[0], 0x02, "PLOGI LS_ACC");
        let prli = PrliRepr {
            command: ElsCommand::Prli,
            fc4_type: 8,
            type_ext: 0,
            flags: 0x20,
            originator_pa: 0,
            responder_pa: 0,
            service_params: fcp_sppf::INIT_FCN | fcp_sppf::RD_XRDY_DIS,
        };
        let r = self.els(m, TGT_ID, INIT_ID, 3, &els_payload(|p| prli.emit(p), 20));
        assert_eq!(r[0].data[0], 0x02, "PRLI LS_ACC");
        // Absorb the power-on unit attention.
        let r = self.fcp(m, 4, &cmnd(0, &[0], 0, false, false, 0));
        assert_eq!(r.len(), 1);
    }
    fn fcp(&mut self, m: MacAddr, ox: u16, c: &[u8]) -> Vec<Fc> {
        self.send(&frame_from(
            m,
            TGT_MAC,
            RCtl::FcpCmnd,
            FcType::Fcp,
            REQ,
            TGT_ID,
            INIT_ID,
            ox,
            0xffff,
            0,
            c,
        ))
    }
}

fn rsp(f: &Fc) -> FcpRspRepr<'_> {
    assert_eq!(f.hdr.r_ctl, RCtl::FcpRsp);
    FcpRspRepr::parse(&FcpRspPacket::new_checked(&f.data[..]).unwrap()).unwrap()
}

/// (3) ABTS of a write waiting for data: BA_ACC, no FCP_RSP, its data dropped and counted,
/// RRQ accepted; ABTS of an unknown exchange: BA_RJT.
#[test]
fn abts_rrq_and_unknown_exchange() {
    let mut g = Rig::new();
    let m = mac(1);
    g.login(m, INIT_WWPN);
    let r = g.fcp(
        m,
        0x10,
        &cmnd(0, &[0x2a, 0, 0, 0, 0, 8, 0, 0, 1, 0], 512, false, true, 0),
    );
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].hdr.r_ctl, RCtl::XferRdy);
    let rx_id = r[0].hdr.rx_id;
    assert_ne!(rx_id, 0xffff);
    // ABTS (BLS, no payload) from the originator.
    let r = g.send(&frame_from(
        m,
        TGT_MAC,
        RCtl::Abts,
        FcType::Bls,
        REQ,
        TGT_ID,
        INIT_ID,
        0x10,
        rx_id,
        0,
        &[],
    ));
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].hdr.r_ctl, RCtl::BaAcc);
    assert!(r[0]
        .hdr
        .f_ctl
        .contains(FCtl::EX_CTX | FCtl::LAST_SEQ | FCtl::END_SEQ));
    let acc = BaAccRepr::parse(&BlsPacket::new_checked(&r[0].data[..]).unwrap()).unwrap();
    assert_eq!(acc, BaAccRepr::abort_exchange(0x10, rx_id));
    // Its data now belongs to no exchange: dropped, counted, no FCP_RSP.
    let before = g.t.stats().drop_unknown_exchange;
    let data = frame_from(
        m,
        TGT_MAC,
        RCtl::FcpData,
        FcType::Fcp,
        FCtl::END_SEQ | FCtl::SEQ_INIT | FCtl::REL_OFF,
        TGT_ID,
        INIT_ID,
        0x10,
        rx_id,
        0,
        &[0xee; 512],
    );
    assert!(g.send(&data).is_empty());
    assert_eq!(g.t.stats().drop_unknown_exchange, before + 1);
    let mut back = [0u8; 512];
    g.img.read_at(8 * 512, &mut back).unwrap();
    assert_ne!(back, [0xee; 512], "aborted write must not land");
    // RRQ frees the pair.
    let rrq = RrqRepr {
        command: ElsCommand::Rrq,
        originator: INIT_ID,
        ox_id: 0x10,
        rx_id,
    };
    let r = g.els(m, TGT_ID, INIT_ID, 0x11, &els_payload(|p| rrq.emit(p), 12));
    assert_eq!(r[0].data[..4], [0x02, 0, 0, 0]);
    // ABTS for an exchange that never was: BA_RJT.
    let r = g.send(&frame_from(
        m,
        TGT_MAC,
        RCtl::Abts,
        FcType::Bls,
        REQ,
        TGT_ID,
        INIT_ID,
        0x77,
        0xffff,
        0,
        &[],
    ));
    assert_eq!(r[0].hdr.r_ctl, RCtl::BaRjt);
    // A late ABTS for a completed command (its FCP_RSP lost) still gets BA_ACC.
    let r = g.fcp(m, 0x20, &cmnd(0, &[0], 0, false, false, 0));
    let rx = r[0].hdr.rx_id;
    let r = g.send(&frame_from(
        m,
        TGT_MAC,
        RCtl::Abts,
        FcType::Bls,
        REQ,
        TGT_ID,
        INIT_ID,
        0x20,
        rx,
        0,
        &[],
    ));
    assert_eq!(r[0].hdr.r_ctl, RCtl::BaAcc);
}

/// (3) Ports without a login get LS_RJT "PLOGI required" for ELS and FCP alike.
#[test]
fn strangers_get_plogi_required() {
    let mut g = Rig::new();
    let prli = PrliRepr {
        command: ElsCommand::Prli,
        fc4_type: 8,
        type_ext: 0,
        flags: 0x20,
        originator_pa: 0,
        responder_pa: 0,
        service_params: 0x22,
    };
    for r in [
        g.els(
            mac(9),
            TGT_ID,
            INIT_ID,
            5,
            &els_payload(|p| prli.emit(p), 20),
        ),
        g.fcp(mac(9), 6, &cmnd(0, &[0], 0, false, false, 0)),
    ] {
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].hdr.r_ctl, RCtl::ElsReply);
        assert_eq!(r[0].dst, mac(9));
        let rjt = LsRjtRepr::parse(&ElsPacket::new_checked(&r[0].data[..]).unwrap()).unwrap();
        assert_eq!(rjt.explanation, LsRjtExplanation::PlogiRequired);
    }
    assert_eq!(g.t.stats().drop_no_login, 2);
    // LOGO is always accepted.
    let logo = els_payload(
        |p| {
            BareElsRepr {
                command: ElsCommand::Logo,
            }
            .emit(p)
        },
        16,
    );
    let r = g.els(mac(9), TGT_ID, INIT_ID, 7, &logo);
    assert_eq!(r[0].data[0], 0x02);
}

/// The LUNs in a REPORT LUNS answer, from FCP_DATA then FCP_RSP.
fn reported_luns(r: &[Fc]) -> Vec<u16> {
    assert_eq!(r.len(), 2, "FCP_DATA and FCP_RSP");
    assert_eq!(rsp(&r[1]).scsi_status, 0);
    let d = &r[0].data;
    let len = u32::from_be_bytes(d[0..4].try_into().unwrap()) as usize;
    d[8..8 + len].chunks(8).map(|l| u16::from(l[1])).collect()
}

/// The sense key, ASC and ASCQ of a CHECK CONDITION.
fn check_condition(r: &[Fc]) -> (u8, u8, u8) {
    let f = r.last().unwrap();
    let rsp = rsp(f);
    assert_eq!(rsp.scsi_status, 2, "CHECK CONDITION");
    let s = rsp.sense;
    (s[2] & 0xf, s[12], s[13])
}

const REPORT_LUNS: [u8; 12] = [0xa0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0];

fn ls_rjt(r: &[Fc]) -> bool {
    r.len() == 1 && r[0].hdr.r_ctl == RCtl::ElsReply && r[0].data[0] == 0x01
}

/// Allow-lists by WWPN: a session allowed only LUN 1 sees only LUN 1 (REPORT LUNS), and LUN 0
/// is absent to it (05/25/00, INQUIRY PQ 011b, LUN RESET "incorrect LUN"); a WWPN that no LUN
/// allows gets LS_RJT to its FLOGI and PLOGI and no session.
#[test]
fn allow_lists_by_wwpn() {
    let other = Wwn(0x2000_0000_0000_0bad);
    let mut g = Rig::with(
        2,
        vec![
            (0, vec![FcoeAllow::Wwpn(other)]),
            (1, vec![FcoeAllow::Wwpn(INIT_WWPN)]),
        ],
    );
    let m = mac(1);
    g.login(m, INIT_WWPN);
    let r = g.fcp(m, 0x10, &cmnd(0, &REPORT_LUNS, 256, true, false, 0));
    assert_eq!(reported_luns(&r), [1]);
    let r = g.fcp(m, 0x11, &cmnd(0, &[0], 0, false, false, 0));
    assert_eq!(check_condition(&r), (5, 0x25, 0));
    let r = g.fcp(
        m,
        0x12,
        &cmnd(0, &[0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0], 512, true, false, 0),
    );
    assert_eq!(check_condition(&r), (5, 0x25, 0));
    let r = g.fcp(
        m,
        0x13,
        &cmnd(0, &[0x12, 0, 0, 0, 36, 0], 36, true, false, 0),
    );
    assert_eq!(r[0].data[0], 0x7f, "peripheral qualifier 011b, type 1Fh");
    let r = g.fcp(m, 0x14, &cmnd(0, &[], 0, false, false, 0x10));
    assert_eq!(
        rsp(&r[0]).rsp_info.map(|i| i.code),
        Some(crate::wire::fcp::rsp_code::TMF_INCORRECT_LUN)
    );
    // LUN 1 is there: its power-on unit attention, then GOOD.
    let r = g.fcp(m, 0x15, &cmnd(1, &[0], 0, false, false, 0));
    assert_eq!(check_condition(&r), (6, 0x29, 0));
    let r = g.fcp(m, 0x16, &cmnd(1, &[0], 0, false, false, 0));
    assert_eq!(rsp(&r[0]).scsi_status, 0);

    // A stranger learns nothing but a rejection.
    let stranger = Wwn(0x2000_0000_0000_5555);
    let flogi = LoginRepr::n_port(ElsCommand::Flogi, stranger, Wwn(1), 1452);
    let r = g.els(
        mac(2),
        FcId::FLOGI,
        FcId::new(0),
        1,
        &els_payload(|p| flogi.emit(p), 116),
    );
    assert!(ls_rjt(&r), "FLOGI of a stranger: LS_RJT");
    let plogi = LoginRepr::n_port(ElsCommand::Plogi, stranger, Wwn(1), 1452);
    let r = g.els(
        mac(2),
        TGT_ID,
        INIT_ID,
        2,
        &els_payload(|p| plogi.emit(p), 116),
    );
    assert!(ls_rjt(&r), "PLOGI of a stranger: LS_RJT");
    assert_eq!(g.t.stats().drop_not_allowed, 2);
    assert_eq!(g.t.session_count(), 1);
    // A known MAC logging in again under a WWPN nobody allows loses its session.
    let r = g.els(m, TGT_ID, INIT_ID, 3, &els_payload(|p| plogi.emit(p), 116));
    assert!(ls_rjt(&r));
    assert_eq!(g.t.session_count(), 0);
}

/// Allow-lists by MAC, and a LUN open to everyone next to a private one.
#[test]
fn allow_lists_by_mac() {
    let mut g = Rig::with(
        3,
        vec![
            (0, vec![FcoeAllow::Mac(mac(3))]),
            (2, vec![FcoeAllow::Mac(mac(7))]),
        ],
    );
    // LUN 1 is open: anyone logs in and sees it; only mac(3) sees LUN 0.
    g.login(mac(3), INIT_WWPN);
    let r = g.fcp(mac(3), 0x10, &cmnd(0, &REPORT_LUNS, 256, true, false, 0));
    assert_eq!(reported_luns(&r), [0, 1]);
    g.login(mac(4), Wwn(0x2000_0000_0000_0044));
    let r = g.fcp(mac(4), 0x10, &cmnd(0, &REPORT_LUNS, 256, true, false, 0));
    assert_eq!(reported_luns(&r), [1]);
    let r = g.fcp(mac(4), 0x11, &cmnd(2, &[0], 0, false, false, 0));
    assert_eq!(check_condition(&r), (5, 0x25, 0));

    // Only MAC lists, no open LUN: a MAC not listed is refused.
    let mut g = Rig::with(1, vec![(0, vec![FcoeAllow::Mac(mac(3))])]);
    let flogi = LoginRepr::n_port(ElsCommand::Flogi, INIT_WWPN, Wwn(1), 1452);
    let r = g.els(
        mac(5),
        FcId::FLOGI,
        FcId::new(0),
        1,
        &els_payload(|p| flogi.emit(p), 116),
    );
    assert!(ls_rjt(&r));
    assert_eq!(g.t.session_count(), 0);
    g.login(mac(3), INIT_WWPN);
    let r = g.fcp(mac(3), 0x10, &cmnd(0, &REPORT_LUNS, 256, true, false, 0));
    assert_eq!(reported_luns(&r), [0]);
}

/// VN2VN: the MAC an allow-list names is the ENode MAC of the FIP FLOGI; a refused FLOGI gets
/// its LS_RJT inside FIP.
#[test]
fn vn2vn_allow_list_matches_the_enode_mac() {
    let make = |allowed: MacAddr| {
        FcoeTarget::new(FcoeConfig {
            mac: LIO_ENODE,
            mtu: 2500,
            wwpn: Wwn(0x2000_5254_004c_100a),
            wwnn: Wwn(0x1000_5254_004c_100a),
            luns: vec![(0, image(1 << 20).into())],
            allow: vec![(0, vec![FcoeAllow::Mac(allowed)])],
        })
    };
    let peer = FcId::new(0x22);
    // fip_flogi sends from the ENode MAC 52:54:00:00:00:<id>.
    let enode = MacAddr([0x52, 0x54, 0, 0, 0, 0x22]);
    for (allowed, accepted) in [(enode, true), (mac(9), false)] {
        let target = make(allowed);
        let mut tx = TxBatch::new(64);
        let mut now = Instant::now();
        bring_up(&target, &mut now, &mut tx);
        let flogi = fip_flogi(peer, target.vn2vn().1, Wwn(0x2000_0000_0000_0022), 1);
        target.handle_frame(&flogi, now, &mut tx);
        let out = drain(&mut tx);
        let Some(FipRepr::ElsReply(els)) = out.iter().find_map(|f| fip_of(f)) else {
            panic!("no FIP ELS reply");
        };
        let command = els.fc_frame[24];
        assert_eq!(command == 0x02, accepted, "LS_ACC iff allowed");
        assert_eq!(target.session_count(), usize::from(accepted));
    }
}

/// (3) Frame checks: bad CRC, padding, class-2 delimiters, truncation: dropped and counted,
/// never answered.
#[test]
fn malformed_frames_are_counted_drops() {
    let mut g = Rig::new();
    let flogi = LoginRepr::n_port(ElsCommand::Flogi, INIT_WWPN, Wwn(1), 1452);
    let good = frame_from(
        mac(1),
        FLOGI_MAC,
        RCtl::ElsRequest,
        FcType::Els,
        REQ,
        FcId::FLOGI,
        FcId::new(0),
        1,
        0xffff,
        0,
        &els_payload(|p| flogi.emit(p), 116),
    );
    let mut bad_crc = good.clone();
    bad_crc[40] ^= 0x01;
    assert!(g.send(&bad_crc).is_empty());
    let mut padded = good.clone();
    padded.extend_from_slice(&[0; 4]);
    assert!(g.send(&padded).is_empty());
    let mut class2 = good.clone();
    class2[14 + 13] = 0x2d; // SOFi2
    assert!(g.send(&class2).is_empty());
    assert!(g.send(&good[..50]).is_empty());
    let st = g.t.stats();
    assert_eq!(
        (
            st.drop_bad_crc,
            st.drop_padded,
            st.drop_bad_sof_eof,
            st.drop_truncated
        ),
        (1, 1, 1, 1),
        "{st:?}"
    );
    assert_eq!(g.t.session_count(), 0);
    assert_eq!(g.send(&good).len(), 1);
}

/// (3) FCP_DL against the CDB: residual flags; TMF; unknown LUN; iPXE re-FLOGI replaces the
/// session; several iPXE clients with the same IDs are kept apart by MAC.
#[test]
fn residuals_tmf_and_sessions() {
    let mut g = Rig::new();
    let m = mac(1);
    g.login(m, INIT_WWPN);
    // READ(10) 2 blocks, FCP_DL 512: 512 bytes move, RESID_OVER 512.
    let r = g.fcp(
        m,
        0x30,
        &cmnd(0, &[0x28, 0, 0, 0, 0, 0, 0, 0, 2, 0], 512, true, false, 0),
    );
    let moved: usize = r
        .iter()
        .filter(|f| f.hdr.r_ctl == RCtl::FcpData)
        .map(|f| f.data.len())
        .sum();
    let s = rsp(r.last().unwrap());
    assert_eq!(
        (moved, s.scsi_status, s.flags, s.resid),
        (512, 0, 0x04, 512)
    );
    // READ(10) 1 block, FCP_DL 1024: 512 bytes move, RESID_UNDER 512.
    let r = g.fcp(
        m,
        0x31,
        &cmnd(0, &[0x28, 0, 0, 0, 0, 1, 0, 0, 1, 0], 1024, true, false, 0),
    );
    let data: Vec<u8> = r
        .iter()
        .filter(|f| f.hdr.r_ctl == RCtl::FcpData)
        .flat_map(|f| f.data.clone())
        .collect();
    let mut want = vec![0u8; 512];
    g.img.read_at(512, &mut want).unwrap();
    assert_eq!(data, want);
    let s = rsp(r.last().unwrap());
    assert_eq!((s.scsi_status, s.flags, s.resid), (0, 0x08, 512));
    // A 64 KiB read streams in frames of at most 1452 bytes, in order.
    let r = g.fcp(
        m,
        0x32,
        &cmnd(
            0,
            &[0x28, 0, 0, 0, 0, 0, 0, 0, 128, 0],
            65536,
            true,
            false,
            0,
        ),
    );
    let mut off = 0;
    for (i, f) in r
        .iter()
        .filter(|f| f.hdr.r_ctl == RCtl::FcpData)
        .enumerate()
    {
        assert_eq!((f.hdr.parameter, f.hdr.seq_cnt as usize), (off, i));
        assert!(f.data.len() <= 1452);
        off += f.data.len() as u32;
    }
    assert_eq!(off, 65536);
    // A write in two frames lands at its offsets.
    let r = g.fcp(
        m,
        0x33,
        &cmnd(0, &[0x2a, 0, 0, 0, 0, 4, 0, 0, 2, 0], 1024, false, true, 0),
    );
    let rx = r[0].hdr.rx_id;
    for (i, last) in [(0u32, false), (1, true)] {
        let f = if last {
            FCtl::END_SEQ | FCtl::SEQ_INIT | FCtl::REL_OFF
        } else {
            FCtl::REL_OFF
        };
        let r = g.send(&frame_from(
            m,
            TGT_MAC,
            RCtl::FcpData,
            FcType::Fcp,
            f,
            TGT_ID,
            INIT_ID,
            0x33,
            rx,
            i * 512,
            &[0x40 + i as u8; 512],
        ));
        if last {
            assert_eq!(rsp(&r[0]).scsi_status, 0);
        } else {
            assert!(r.is_empty());
        }
    }
    let mut back = vec![0u8; 1024];
    g.img.read_at(4 * 512, &mut back).unwrap();
    assert!(back[..512].iter().all(|&b| b == 0x40) && back[512..].iter().all(|&b| b == 0x41));
    // Unknown LUN: CHECK CONDITION 05/25/00.
    let r = g.fcp(m, 0x34, &cmnd(7, &[0], 0, false, false, 0));
    let s = rsp(&r[0]);
    assert_eq!(
        (s.scsi_status, s.sense[2] & 0xf, s.sense[12], s.sense[13]),
        (2, 5, 0x25, 0)
    );
    // LUN RESET: FCP_RSP with RSP_LEN_VALID and code 0.
    let r = g.fcp(m, 0x35, &cmnd(0, &[], 0, false, false, tmf::LUN_RESET));
    let s = rsp(&r[0]);
    assert_eq!(s.rsp_info.map(|i| i.code), Some(0));
    // A second iPXE (other MAC, same IDs) gets its own session; a re-FLOGI replaces one.
    g.login(mac(2), Wwn(INIT_WWPN.0 + 1));
    assert_eq!(g.t.session_count(), 2);
    g.login(m, INIT_WWPN);
    assert_eq!(g.t.session_count(), 2);
    // The same WWPN from another MAC (the booted kernel after iPXE): implicit logout.
    g.login(mac(3), INIT_WWPN);
    assert_eq!(g.t.session_count(), 2);
}

// ---------------------------------------------------------------------------------------
// (4) Random frame sequences never panic, every reply is well-formed, and state stays
// bounded.

use proptest::prelude::*;

fn corpus() -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = Vec::new();
    for name in [
        "ipxe-fcoe-p2p-boot.pcap",
        "linux-fcoe-vn2vn-vs-lio-late.pcap",
    ] {
        v.extend(
            capture(name)
                .into_iter()
                .filter(|f| {
                    f.len() >= 14 && matches!(u16::from_be_bytes([f[12], f[13]]), 0x8906 | 0x8914)
                })
                .take(200),
        );
    }
    v
}

#[derive(Debug, Clone)]
enum Op {
    Replay(usize),
    /// Replay with new source MAC / OX_ID (CRC fixed), to grow sessions and exchanges.
    Vary {
        idx: usize,
        mac: u8,
        ox: u16,
    },
    Flip {
        idx: usize,
        at: usize,
        bits: u8,
    },
    Cut {
        idx: usize,
        len: usize,
    },
    Tick(u16),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => any::<usize>().prop_map(Op::Replay),
        4 => (any::<usize>(), any::<u8>(), any::<u16>()).prop_map(|(idx, mac, ox)| Op::Vary { idx, mac, ox }),
        2 => (any::<usize>(), any::<usize>(), 1u8..).prop_map(|(idx, at, bits)| Op::Flip { idx, at, bits }),
        1 => (any::<usize>(), any::<usize>()).prop_map(|(idx, len)| Op::Cut { idx, len }),
        1 => any::<u16>().prop_map(Op::Tick),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
    #[test]
    fn random_frames_never_panic_and_stay_bounded(ops in proptest::collection::vec(op(), 1..200)) {
        static CORPUS: std::sync::OnceLock<Vec<Vec<u8>>> = std::sync::OnceLock::new();
        let corpus = CORPUS.get_or_init(corpus);
        let t = FcoeTarget::new(FcoeConfig {
            mac: IPXE_TARGET_MAC,
            mtu: 1500,
            wwpn: Wwn(0x2000_5254_004c_100a),
            wwnn: Wwn(0x1000_5254_004c_100a),
            luns: vec![(0, image(16 << 20).into())],
            allow: Vec::new(),
        });
        let mut tx = TxBatch::new(64);
        let mut now = Instant::now();
        for op in ops {
            let pick = |i: usize| &corpus[i % corpus.len()];
            let frame = match op {
                Op::Replay(i) => pick(i).clone(),
                Op::Vary { idx, mac, ox } => {
                    let mut f = pick(idx).clone();
                    f[11] = mac;
                    if is_fcoe(&f) && f.len() >= 14 + 14 + 24 + 8 {
                        f = patch_fc(&f, |p| p.set_ox_id(ox));
                    }
                    f
                }
                Op::Flip { idx, at, bits } => {
                    let mut f = pick(idx).clone();
                    let at = at % f.len();
                    f[at] ^= bits;
                    f
                }
                Op::Cut { idx, len } => {
                    let f = pick(idx);
                    f[..len % (f.len() + 1)].to_vec()
                }
                Op::Tick(ms) => {
                    now += Duration::from_millis(u64::from(ms));
                    t.tick(now, &mut tx);
                    continue;
                }
            };
            now += Duration::from_millis(1);
            t.handle_frame(&frame, now, &mut tx);
            for out in drain(&mut tx) {
                prop_assert!(out.len() <= 14 + 1500);
                let eth = EthernetFrame::new_checked(&out[..]).unwrap();
                match eth.ethertype() {
                    EtherType::Fcoe => { parse_fc(&out); }
                    EtherType::Fip => { prop_assert!(fip_of(&out).is_some()); }
                    other => prop_assert!(false, "sent {other:?}"),
                }
            }
            let st = t.stats();
            prop_assert!(t.session_count() <= MAX_SESSIONS);
            prop_assert!(st.exchanges as usize <= MAX_SESSIONS * crate::fc::session::MAX_EXCHANGES);
            prop_assert!(st.vn2vn_peers as usize <= crate::fip::vn2vn::MAX_PEERS);
        }
    }
}

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

/// Found by the fcoe_target fuzzer: the PLOGI retries of tick() went out in the iteration
/// order of the session HashMap (random per target), so two targets fed the same frames and
/// clock sent different frames (retry order and our OX_IDs). Timers must be deterministic:
/// the retries go out in the order of the sessions' MACs.
#[test]
fn plogi_retries_are_deterministic() {
    let run = || {
        let target = FcoeTarget::new(FcoeConfig {
            mac: LIO_ENODE,
            mtu: 2500,
            wwpn: Wwn(0x2000_5254_004c_100a),
            wwnn: Wwn(0x1000_5254_004c_100a),
            luns: vec![(0, image(1 << 20).into())],
            allow: Vec::new(),
        });
        let mut tx = TxBatch::new(64);
        let mut now = Instant::now();
        bring_up(&target, &mut now, &mut tx);
        // Eight lower-WWPN neighbours log in: we owe each a PLOGI.
        for n in 1..=8u32 {
            let id = FcId::new(0x2000 + 0x11 * (9 - n));
            let f = fip_flogi(
                id,
                LIO_ID,
                Wwn(0x2000_0000_0000_0000 | u64::from(n)),
                n as u16,
            );
            target.handle_frame(&f, now, &mut tx);
        }
        drain(&mut tx);
        now += Duration::from_secs(5);
        target.tick(now, &mut tx);
        drain(&mut tx)
            .into_iter()
            .filter(|f| is_fcoe(f))
            .collect::<Vec<_>>()
    };
    let a = run();
    assert_eq!(a.len(), 8, "one PLOGI retry per neighbour");
    let dsts: Vec<MacAddr> = a.iter().map(|f| parse_fc(f).dst).collect();
    let mut sorted = dsts.clone();
    sorted.sort();
    assert_eq!(dsts, sorted, "PLOGI retries not in session order");
    for _ in 0..4 {
        assert_eq!(run(), a, "same input, different timer frames");
    }
}

/// READ CAPACITY (10): the last LBA.
const READ_CAPACITY: [u8; 10] = [0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0];

/// A live reload keeps the session; the initiator hears of it by unit attention: LUNs added
/// (06/3F/0E, REPORT LUNS shows the new set), a LUN resized (06/2A/09, READ CAPACITY shows
/// the new size), a LUN removed (absent: 05/25/00), an allow-list that no longer lets it in
/// (absent too).
#[test]
fn reconfigure_keeps_sessions_and_raises_unit_attentions() {
    let mut g = Rig::new();
    let m = mac(1);
    g.login(m, INIT_WWPN);
    let lun1 = image(2 << 20);
    let done = g.t.reconfigure(
        vec![(0, g.img.clone().into()), (1, lun1.clone().into())],
        Vec::new(),
    );
    assert_eq!(done.added, [1]);
    assert!(done.removed.is_empty() && done.resized.is_empty());
    assert_eq!(g.t.session_count(), 1, "the session survives a reload");
    let r = g.fcp(m, 0x20, &cmnd(0, &[0], 0, false, false, 0));
    assert_eq!(check_condition(&r), (6, 0x3f, 0x0e));
    let r = g.fcp(m, 0x21, &cmnd(0, &REPORT_LUNS, 256, true, false, 0));
    assert_eq!(reported_luns(&r), [0, 1]);

    // Resize LUN 0: capacity changed, and READ CAPACITY tells the new size.
    let bigger = image(4 << 20);
    let done = g.t.reconfigure(
        vec![(0, bigger.into()), (1, lun1.clone().into())],
        Vec::new(),
    );
    assert_eq!(done.resized, [0]);
    let r = g.fcp(m, 0x22, &cmnd(0, &[0], 0, false, false, 0));
    assert_eq!(check_condition(&r), (6, 0x2a, 0x09));
    let r = g.fcp(m, 0x23, &cmnd(0, &READ_CAPACITY, 8, true, false, 0));
    assert_eq!(rsp(r.last().unwrap()).scsi_status, 0);
    let last = u32::from_be_bytes(r[0].data[0..4].try_into().unwrap());
    assert_eq!(u64::from(last) + 1, (4 << 20) / 512);

    // Remove LUN 0 and keep LUN 1 for another initiator only.
    let other = Wwn(0x2000_0000_0000_0bad);
    let done = g.t.reconfigure(
        vec![(1, lun1.into())],
        vec![(1, vec![FcoeAllow::Wwpn(other)])],
    );
    assert_eq!(done.removed, [0]);
    assert!(done.access_changed);
    let r = g.fcp(m, 0x24, &cmnd(0, &[0], 0, false, false, 0));
    assert_eq!(check_condition(&r), (5, 0x25, 0));
    let r = g.fcp(m, 0x25, &cmnd(1, &[0], 0, false, false, 0));
    assert_eq!(
        check_condition(&r),
        (5, 0x25, 0),
        "LUN 1 is not allowed to it now"
    );
    assert_eq!(g.t.images().len(), 1);
}

/// Per-LUN and per-initiator counters: reads, writes and their bytes, errors, latencies, and
/// the writes waiting for data.
#[test]
fn io_is_counted_by_lun_and_initiator() {
    let mut g = Rig::with(2, Vec::new());
    let m = mac(1);
    g.login(m, INIT_WWPN);
    // LUN 1's power-on unit attention: an error.
    let r = g.fcp(m, 0x30, &cmnd(1, &[0], 0, false, false, 0));
    assert_eq!(check_condition(&r).0, 6);
    // READ(10) of 2 blocks from LUN 0.
    let r = g.fcp(
        m,
        0x31,
        &cmnd(0, &[0x28, 0, 0, 0, 0, 0, 0, 0, 2, 0], 1024, true, false, 0),
    );
    assert_eq!(rsp(r.last().unwrap()).scsi_status, 0);
    // WRITE(10) of 1 block to LUN 1: waiting for data, then done.
    let r = g.fcp(
        m,
        0x32,
        &cmnd(1, &[0x2a, 0, 0, 0, 0, 0, 0, 0, 1, 0], 512, false, true, 0),
    );
    assert_eq!(r[0].hdr.r_ctl, RCtl::XferRdy);
    let rx_id = r[0].hdr.rx_id;
    assert_eq!(
        g.t.lun_stats()
            .iter()
            .find(|l| l.0 == 1)
            .unwrap()
            .1
            .outstanding,
        1
    );
    let data = frame_from(
        m,
        TGT_MAC,
        RCtl::FcpData,
        FcType::Fcp,
        FCtl::END_SEQ | FCtl::SEQ_INIT | FCtl::REL_OFF,
        TGT_ID,
        INIT_ID,
        0x32,
        rx_id,
        0,
        &[9; 512],
    );
    let r = g.send(&data);
    assert_eq!(rsp(r.last().unwrap()).scsi_status, 0);
    let luns = g.t.lun_stats();
    let l0 = luns.iter().find(|l| l.0 == 0).unwrap().1;
    let l1 = luns.iter().find(|l| l.0 == 1).unwrap().1;
    assert_eq!((l0.reads, l0.read_bytes, l0.writes), (1, 1024, 0));
    assert_eq!(
        (l1.writes, l1.write_bytes, l1.errors, l1.outstanding),
        (1, 512, 1, 0)
    );
    assert_eq!(l1.latency.count(), 1);
    let ini = g.t.initiator_stats();
    assert_eq!(ini.len(), 1);
    assert_eq!(ini[0].0, Some(INIT_WWPN));
    let i = ini[0].1;
    assert_eq!(
        (i.reads, i.writes, i.read_bytes, i.write_bytes),
        (1, 1, 1024, 512)
    );
    // The login's own TEST UNIT READY absorbed LUN 0's unit attention: one error there too.
    assert_eq!(i.errors, 2);
}

/// A neighbour's VN2VN frame (claims from the ENode MAC, beacons from the VN MAC).
fn vn2vn_frame(subcode: Vn2VnSubcode, id: FcId, enode: MacAddr, wwpn: Wwn) -> Vec<u8> {
    use crate::tx::send_fip;
    use crate::wire::fip::{fpma, Fc4Features, Vn2VnRepr, VnPortId, VN2VN_FC_MAP};
    let claim = subcode.is_claim();
    let repr = FipRepr::Vn2Vn(Vn2VnRepr {
        subcode,
        flags: 0,
        enode_mac: enode,
        wwnn: Wwn(wwpn.0 ^ 0x3000_0000_0000_0000),
        vn_port: VnPortId {
            mac: fpma(VN2VN_FC_MAP, id),
            fc_id: id,
            wwpn,
        },
        fc4_features: claim.then(|| Fc4Features::fcp(Fc4Features::FCP_INITIATOR)),
        max_fcoe_size: claim.then_some(2158),
    });
    let src = if subcode == Vn2VnSubcode::Beacon {
        fpma(VN2VN_FC_MAP, id)
    } else {
        enode
    };
    let mut b = TxBatch::new(1);
    send_fip(&mut b, ALL_VN2VN_MACS, src, &repr);
    drain(&mut b).remove(0)
}

/// A flood of forged one-shot VN2VN claims (random ports, random MACs) fills the neighbour
/// table; a real initiator that joins during the flood (claim, beacon, FIP FLOGI) gets its
/// claim response, our beacon and its FLOGI LS_ACC at once, and once logged in it keeps its
/// place in the table however long the flood goes on.
#[test]
fn a_vn2vn_claim_flood_does_not_lock_out_a_real_initiator() {
    use crate::fip::vn2vn::MAX_PEERS;
    let target = vn2vn_target(Wwn(0x2000_5254_004c_100a));
    let mut tx = TxBatch::new(64);
    let mut now = Instant::now();
    bring_up(&target, &mut now, &mut tx);
    let ours = target.vn2vn().1;
    let our_vn = MacAddr([0x0e, 0xfd, 0x00, 0x00, 0x10, 0x0a]);
    let real = FcId::new(0x56);
    // fip_flogi sends from the ENode MAC 52:54:00:00:00:<id>.
    let real_enode = MacAddr([0x52, 0x54, 0x00, 0x00, 0x00, 0x56]);
    let real_wwpn = Wwn(0x2000_0000_0000_0056);
    let mut x = 0x9e37_79b9_7f4a_7c15_u64;
    let mut forged = || loop {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let id = (x & 0xffff) as u32;
        if id == 0 || id == 0xffff || id == ours.get() || id == real.get() {
            continue;
        }
        let b = (x >> 16).to_be_bytes();
        let enode = MacAddr([0x02, b[3], b[4], b[5], b[6], b[7]]);
        let wwpn = Wwn(0x2000_0000_0000_0000 | (x >> 16) & 0xffff_ffff_ffff);
        return vn2vn_frame(Vn2VnSubcode::ClaimNotification, FcId::new(id), enode, wwpn);
    };
    let sent = |tx: &mut TxBatch| -> Vec<(Vn2VnSubcode, MacAddr, MacAddr)> {
        drain(tx)
            .iter()
            .filter_map(|f| match fip_of(f) {
                Some(FipRepr::Vn2Vn(v)) => {
                    let e = EthernetFrame::new_checked(&f[..]).unwrap();
                    Some((v.subcode, e.src(), e.dst()))
                }
                _ => None,
            })
            .collect()
    };
    while target.stats().vn2vn_peers < MAX_PEERS as u64 {
        target.handle_frame(&forged(), now, &mut tx);
        now += Duration::from_millis(1);
    }
    drain(&mut tx);

    let claim = vn2vn_frame(Vn2VnSubcode::ClaimNotification, real, real_enode, real_wwpn);
    target.handle_frame(&claim, now, &mut tx);
    assert_eq!(
        sent(&mut tx),
        [(Vn2VnSubcode::ClaimResponse, LIO_ENODE, real_enode)],
        "a real claim into a full neighbour table must be answered"
    );
    // The flood goes on, a claim every 5 ms; the initiator beacons once its claim is done,
    // and logs in on our next beacon after that.
    let claimed = now;
    let mut beaconed = false;
    for ms in (5..3200).step_by(5) {
        now = claimed + Duration::from_millis(ms);
        target.handle_frame(&forged(), now, &mut tx);
        if ms == 400 {
            let b = vn2vn_frame(Vn2VnSubcode::Beacon, real, real_enode, real_wwpn);
            target.handle_frame(&b, now, &mut tx);
        }
        target.tick(now, &mut tx);
        let ours_out = sent(&mut tx);
        assert!(
            !ours_out.contains(&(Vn2VnSubcode::ClaimNotification, LIO_ENODE, ALL_VN2VN_MACS)),
            "the initiator's beacon was not recognised: it was replaced in the table"
        );
        if ms >= 550 && ours_out.contains(&(Vn2VnSubcode::Beacon, our_vn, ALL_VN2VN_MACS)) {
            beaconed = true;
            break;
        }
    }
    assert!(
        beaconed,
        "no beacon of ours during the flood: Linux would never log in"
    );
    target.handle_frame(&fip_flogi(real, ours, real_wwpn, 1), now, &mut tx);
    let out = drain(&mut tx);
    let Some(FipRepr::ElsReply(els)) = out.iter().find_map(|f| fip_of(f)) else {
        panic!("no FLOGI LS_ACC");
    };
    assert_eq!(els.fc_frame[24], 0x02, "FLOGI not accepted");
    assert_eq!(target.session_count(), 1);

    // Logged in: however many forged claims follow, it stays a known neighbour (its beacon
    // makes us claim nothing) and keeps its session.
    for _ in 0..4 * MAX_PEERS {
        target.handle_frame(&forged(), now, &mut tx);
        now += Duration::from_millis(1);
    }
    drain(&mut tx);
    let b = vn2vn_frame(Vn2VnSubcode::Beacon, real, real_enode, real_wwpn);
    target.handle_frame(&b, now, &mut tx);
    assert_eq!(
        sent(&mut tx),
        [],
        "the logged-in initiator lost its place in the table"
    );
    assert_eq!(target.session_count(), 1);
    assert_eq!(target.stats().vn2vn_peers, MAX_PEERS as u64);
}

/// The interface came back with another MAC: FCoE does not follow (its ENode and
/// point-to-point address stay) and says what it keeps; its own MAC back is fine.
#[test]
fn fcoe_keeps_its_mac_and_says_so() {
    use l2san_common::FrameHandler;
    let t = vn2vn_target(Wwn(0x2000_5254_004c_100a));
    assert_eq!(t.mac_changed(LIO_ENODE), Ok(()));
    let why = t.mac_changed(mac(9)).unwrap_err();
    assert!(why.contains(&LIO_ENODE.to_string()), "{why}");
}
