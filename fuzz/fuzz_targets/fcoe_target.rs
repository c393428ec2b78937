//! The FCoE target fed arbitrary frame sequences (FCoE 0x8906 and FIP 0x8914) over in-memory
//! images, with a fake clock that the input advances and tick() calls. Invariants:
//! - every reply is a frame our own parsers accept: FCoE with version 0, a good CRC, class-3
//!   SOF/EOF and no padding; or FIP that parses, with zero bytes after its descriptor list;
//!   it comes from our MAC or our VN MAC and fits the MTU (+14);
//! - replies in an exchange the initiator opened (ELS replies, BLS, FCP) set EX_CTX, never
//!   FIRST_SEQ, and echo the request's OX_ID (also inside FIP-encapsulated ELS replies); the
//!   only frames we originate are a PLOGI or a LOGO, without EX_CTX; timers never answer an exchange;
//! - fill bytes are zero; XFER_RDY is exactly 12 bytes at offset 0; FCP_RSP parses;
//! - the images change only through FCP_DATA of a write the target asked for with an
//!   XFER_RDY, only inside that write's byte range of that LUN, never on the read-only LUN;
//! - sessions, exchanges and VN2VN neighbours stay below their caps;
//! - no stale bytes: a twin target fed identically through a zeroed transmit gives the same
//!   replies as the one whose transmit buffers are pre-filled with 0xa5.
//!
//! Input: a config byte (bit 0 MTU 2500 instead of 1500, bit 1 LUN 0 read-only, bit 2 the
//! identity of the LIO target of the Linux captures instead of the iPXE capture's target),
//! then records `[ctl][dt][src][len lo][len hi][len bytes]`:
//! - ctl bits 7-6: 00 frame, 01 frame then tick, 1x tick only;
//! - ctl bit 0: FIP (else FCoE); bit 1: the FCoE payload is raw (else the bytes are
//!   `[SOF][EOF][FC frame]`, wrapped with a good CRC); bits 4-2 pick the destination MAC;
//! - dt advances the clock: dt < 128 is dt x 10 ms, else (dt - 128) s;
//! - src picks the source MAC: 0x7f our own, bit 7 a `0E:FD:00:00:34:xx` VN MAC, else an
//!   ENode `52:54:00:12:34:xx` (xx = 0x56 ^ low 7 bits).
#![no_main]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use l2san_common::io::Transmit;
use l2san_common::test_utils::StaleTx;
use l2san_common::{EtherType, Image, ImageOptions, MacAddr};
use l2san_fcoe::fc::session::{MAX_EXCHANGES, MAX_SESSIONS};
use l2san_fcoe::fip::vn2vn::MAX_PEERS;
use l2san_fcoe::scsi::decode_sam_lun;
use l2san_fcoe::wire::bls::{BaAccRepr, BlsPacket, BA_ACC_LEN, BA_RJT_LEN};
use l2san_fcoe::wire::fc::{FCtl, FcHeaderRepr, FcPacket, FcType, RCtl};
use l2san_fcoe::wire::fcoe::{crc32, FcoePacket, FcoeRepr};
use l2san_fcoe::wire::fcp::{FcpCmndPacket, FcpRspPacket, FcpRspRepr, XferRdyPacket};
use l2san_fcoe::wire::fip::{fpma, FipPacket, FipRepr, VN2VN_FC_MAP};
use l2san_fcoe::wire::Wwn;
use l2san_fcoe::{FcoeConfig, FcoeTarget};
use libfuzzer_sys::fuzz_target;

const LUN0_LEN: usize = 64 * 1024;
const LUN1_LEN: usize = 8 * 1024;
const FLOGI_MAC: MacAddr = MacAddr([0x0e, 0xfc, 0x00, 0xff, 0xff, 0xfe]);
const ALL_VN2VN: MacAddr = MacAddr([0x01, 0x10, 0x18, 0x01, 0x00, 0x04]);
const ALL_FCF: MacAddr = MacAddr([0x01, 0x10, 0x18, 0x01, 0x00, 0x02]);
const FOREIGN: MacAddr = MacAddr([0x02, 0x00, 0x00, 0x00, 0x00, 0x99]);

/// A Transmit with fresh zeroed buffers, at the time replies are handed over.
struct Clean(Vec<Vec<u8>>, Vec<u8>, Instant);
impl Clean {
    fn at(now: Instant) -> Clean {
        Clean(Vec::new(), Vec::new(), now)
    }
}
impl Transmit for Clean {
    fn buffer(&mut self, len: usize) -> &mut [u8] {
        self.1 = vec![0; len.max(60)];
        &mut self.1
    }
    fn commit(&mut self, len: usize) {
        let mut f = std::mem::take(&mut self.1);
        f.truncate(len.max(60));
        self.0.push(f);
    }
    fn now(&self) -> Instant {
        self.2
    }
}

struct Rig {
    target: FcoeTarget,
    images: [Arc<Image>; 2],
}

fn rig(mac: MacAddr, mtu: u32, wwpn: Wwn, ro: bool) -> Rig {
    let img = |len: usize, read_only: bool| {
        Arc::new(
            Image::memory(
                len as u64,
                ImageOptions {
                    read_only,
                    ..Default::default()
                },
            )
            .unwrap(),
        )
    };
    let images = [img(LUN0_LEN, ro), img(LUN1_LEN, false)];
    let target = FcoeTarget::new(FcoeConfig {
        mac,
        mtu,
        wwpn,
        wwnn: Wwn(wwpn.0 & !(0xf << 60) | (1 << 60)),
        luns: vec![(0, images[0].clone().into()), (1, images[1].clone().into())],
        allow: Vec::new(),
    });
    Rig { target, images }
}

fn snapshot(images: &[Arc<Image>; 2]) -> [Vec<u8>; 2] {
    let mut a = vec![0u8; LUN0_LEN];
    let mut b = vec![0u8; LUN1_LEN];
    images[0].read_at(0, &mut a).unwrap();
    images[1].read_at(0, &mut b).unwrap();
    [a, b]
}

/// The frames one input (frame, or None for a tick) brought back.
type Replies = (Vec<Vec<u8>>, Option<Vec<u8>>);

/// A write the target asked the data of (XFER_RDY): LUN index, image byte range.
#[derive(Debug, Clone, Copy)]
struct Pending {
    lun: usize,
    start: u64,
    len: u64,
}

/// The FC frame of an FCoE input frame, if it is one that passes the target's checks.
fn fc_of(frame: &[u8]) -> Option<&[u8]> {
    if frame.len() < 14 || frame[12..14] != [0x89, 0x06] {
        return None;
    }
    let p = FcoePacket::new_checked(&frame[14..]).ok()?;
    let r = FcoeRepr::parse(&p).ok()?;
    if !(r.sof.is_class3() && r.eof.is_class3()) {
        return None;
    }
    Some(&frame[14 + 14..frame.len() - 8])
}

/// The OX_ID of the exchange an input frame belongs to: FCoE, or a FIP-encapsulated ELS.
fn request_ox_id(frame: &[u8]) -> Option<u16> {
    if let Some(fc) = fc_of(frame) {
        return Some(u16::from_be_bytes([fc[16], fc[17]]));
    }
    if frame.len() < 14 || frame[12..14] != [0x89, 0x14] {
        return None;
    }
    let p = FipPacket::new_checked(&frame[14..]).ok()?;
    match FipRepr::parse(&p).ok()? {
        FipRepr::ElsRequest(e) => Some(u16::from_be_bytes([e.fc_frame[16], e.fc_frame[17]])),
        _ => None,
    }
}

/// Image byte offset of the LBA of a WRITE(6/10/16) CDB.
fn write_start(cdb: &[u8]) -> Option<u64> {
    let lba = match cdb[0] {
        0x0a => u64::from(cdb[1] & 0x1f) << 16 | u64::from(cdb[2]) << 8 | u64::from(cdb[3]),
        0x2a => u64::from(u32::from_be_bytes(cdb[2..6].try_into().unwrap())),
        0x8a => u64::from_be_bytes(cdb[2..10].try_into().unwrap()),
        _ => return None,
    };
    lba.checked_mul(512)
}

/// Checks one reply; `req_ox` is the OX_ID of the input frame (None for tick()).
fn check_reply(r: &[u8], mtu: u32, ours: &[MacAddr], req_ox: Option<u16>) {
    assert!(r.len() >= 60, "reply shorter than 60 bytes");
    assert!(
        r.len() <= mtu as usize + 14,
        "reply of {} bytes at MTU {mtu}",
        r.len()
    );
    let src = MacAddr(r[6..12].try_into().unwrap());
    assert!(
        ours.contains(&src),
        "reply from {src:?}, not our MAC or VN MAC"
    );
    match [r[12], r[13]] {
        [0x89, 0x06] => {
            let p = FcoePacket::new_checked(&r[14..]).expect("FCoE reply truncated");
            let repr = FcoeRepr::parse(&p).expect("FCoE reply does not parse (version, CRC)");
            assert!(repr.sof.is_class3() && repr.eof.is_class3(), "{repr:?}");
            assert_eq!(repr.buffer_len(), r.len() - 14, "FCoE reply padded");
            assert!(r[14..27].iter().all(|&b| b == 0) && r[r.len() - 3..].iter().all(|&b| b == 0));
            let fc = FcPacket::new_checked(p.fc_frame()).unwrap();
            let h = FcHeaderRepr::parse(&fc).unwrap();
            let fill = h.f_ctl.fill_bytes();
            assert!(fc.payload().len() >= fill, "more fill bytes than payload");
            assert!(fc.payload()[fc.payload().len() - fill..]
                .iter()
                .all(|&b| b == 0));
            assert!(fc.payload().len() <= 2112);
            check_fc(&h, fc.data(), req_ox);
            // Start and end of sequence agree with the delimiters.
            assert_eq!(repr.sof.is_initiate(), h.seq_cnt == 0, "{h:?} {repr:?}");
            assert_eq!(
                h.f_ctl.contains(FCtl::END_SEQ),
                repr.eof == l2san_fcoe::wire::fcoe::Eof::T,
                "{h:?} {repr:?}"
            );
        }
        [0x89, 0x14] => {
            let p = FipPacket::new_checked(&r[14..]).expect("FIP reply truncated");
            let repr = FipRepr::parse(&p).expect("FIP reply does not parse");
            let end = 14 + 10 + p.desc_list_len();
            assert!(
                r[end..].iter().all(|&b| b == 0),
                "FIP reply: non-zero bytes past its list"
            );
            match repr {
                FipRepr::ElsReply(e) => {
                    let fc = FcPacket::new_checked(e.fc_frame).unwrap();
                    let h = FcHeaderRepr::parse(&fc).unwrap();
                    assert_eq!((h.r_ctl, h.fc_type), (RCtl::ElsReply, FcType::Els));
                    check_fc(&h, fc.data(), req_ox);
                }
                FipRepr::Vn2Vn(_) => {}
                other => panic!("we sent {other:?}"),
            }
        }
        t => panic!("reply of ethertype {t:02x?}"),
    }
}

fn check_fc(h: &FcHeaderRepr, data: &[u8], req_ox: Option<u16>) {
    match h.r_ctl {
        RCtl::ElsRequest => {
            // The PLOGI we originate (VN2VN, our WWPN the higher), or the LOGO to a VN2VN
            // port that sends commands without a login.
            assert!(
                !h.f_ctl.contains(FCtl::EX_CTX),
                "originated ELS with EX_CTX: {h:?}"
            );
            assert!(
                matches!(data.first(), Some(&0x03) | Some(&0x05)),
                "originated an ELS other than PLOGI or LOGO"
            );
        }
        RCtl::ElsReply
        | RCtl::BaAcc
        | RCtl::BaRjt
        | RCtl::FcpRsp
        | RCtl::FcpData
        | RCtl::XferRdy => {
            assert!(
                h.f_ctl.contains(FCtl::EX_CTX),
                "responder frame without EX_CTX: {h:?}"
            );
            assert!(
                !h.f_ctl.contains(FCtl::FIRST_SEQ),
                "responder frame with FIRST_SEQ: {h:?}"
            );
            let ox = req_ox.expect("tick() sent a frame of an initiator's exchange");
            assert_eq!(h.ox_id, ox, "reply OX_ID differs from the request's: {h:?}");
            match h.r_ctl {
                RCtl::XferRdy => {
                    let x = XferRdyPacket::new_checked(data).unwrap();
                    assert_eq!(data.len(), 12);
                    assert_eq!(x.rel_offset(), 0);
                    assert!(h.f_ctl.contains(FCtl::SEQ_INIT));
                }
                RCtl::FcpRsp => {
                    let p = FcpRspPacket::new_checked(data).expect("FCP_RSP truncated");
                    FcpRspRepr::parse(&p).expect("FCP_RSP does not parse");
                    assert!(h
                        .f_ctl
                        .contains(FCtl::SEQ_INIT | FCtl::LAST_SEQ | FCtl::END_SEQ));
                }
                RCtl::BaAcc => {
                    assert_eq!(data.len(), BA_ACC_LEN);
                    let a = BaAccRepr::parse(&BlsPacket::new_unchecked(data)).unwrap();
                    assert_eq!(a.ox_id, ox);
                    assert_eq!(a.rx_id, h.rx_id);
                }
                RCtl::BaRjt => assert_eq!(data.len(), BA_RJT_LEN),
                RCtl::ElsReply => assert!(matches!(data.first(), Some(0x01 | 0x02))),
                _ => {}
            }
        }
        other => panic!("we sent R_CTL {other:?}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&cfg, mut rest)) = data.split_first() else {
        return;
    };
    let mtu = if cfg & 1 == 0 { 1500 } else { 2500 };
    let ro = cfg & 2 != 0;
    let (mac, wwpn) = if cfg & 4 == 0 {
        (
            MacAddr([0x0a, 0x91, 0x10, 0xa3, 0x88, 0xf9]),
            Wwn(0x2000_0025_b500_0001),
        )
    } else {
        (
            MacAddr([0x52, 0x54, 0x00, 0x4c, 0x10, 0x0a]),
            Wwn(0x2000_5254_004c_100a),
        )
    };
    let a = rig(mac, mtu, wwpn, ro);
    let b = rig(mac, mtu, wwpn, ro);
    let mut now = Instant::now();
    let mut pending: HashMap<(MacAddr, u16), Pending> = HashMap::new();
    let mut before = snapshot(&a.images);
    while rest.len() >= 5 {
        let (ctl, dt, srcb) = (rest[0], rest[1], rest[2]);
        let len = (u16::from_le_bytes([rest[3], rest[4]]) as usize).min(rest.len() - 5);
        let payload = &rest[5..5 + len];
        rest = &rest[5 + len..];
        now += if dt < 128 {
            Duration::from_millis(u64::from(dt) * 10)
        } else {
            Duration::from_secs(u64::from(dt - 128))
        };
        let (_, vn_id) = a.target.vn2vn();
        let vn_mac = fpma(VN2VN_FC_MAP, vn_id);
        let ours = [mac, vn_mac];
        let mut replies: Vec<Replies> = Vec::new();
        if ctl & 0x80 == 0 {
            let fip = ctl & 1 != 0;
            let dst = match (ctl >> 2) & 7 {
                0 => mac,
                1 => FLOGI_MAC,
                2 => vn_mac,
                3 => ALL_VN2VN,
                4 => MacAddr::BROADCAST,
                5 => ALL_FCF,
                6 => FOREIGN,
                _ => MacAddr([0x0e, 0xfd, 0x00, 0x00, 0x34, 0x56]),
            };
            let x = 0x56 ^ (srcb & 0x7f);
            let src = match srcb {
                0x7f => mac,
                s if s & 0x80 != 0 => MacAddr([0x0e, 0xfd, 0x00, 0x00, 0x34, x]),
                _ => MacAddr([0x52, 0x54, 0x00, 0x12, 0x34, x]),
            };
            let body: Vec<u8> = if fip || ctl & 2 != 0 {
                payload.to_vec()
            } else {
                let (sof, eof, fc) = match payload {
                    [s, e, fc @ ..] => (*s, *e, fc),
                    _ => (0x2e, 0x42, &[][..]),
                };
                let mut fc = fc.to_vec();
                fc.resize(fc.len().max(24).next_multiple_of(4), 0);
                let mut b = vec![0u8; 13];
                b.push(sof);
                b.extend_from_slice(&fc);
                b.extend_from_slice(&crc32(&fc).to_le_bytes());
                b.extend_from_slice(&[eof, 0, 0, 0]);
                b
            };
            let et = if fip { EtherType::Fip } else { EtherType::Fcoe };
            let frame = l2san_common::test_utils::frame(dst, src, et, &body);
            let mut stale = StaleTx::at(now);
            a.target.handle_frame(&frame, now, &mut stale);
            let mut clean = Clean::at(now);
            b.target.handle_frame(&frame, now, &mut clean);
            assert_eq!(stale.frames, clean.0, "stale transmit bytes leaked into a reply");
            replies.push((stale.frames, Some(frame)));
        }
        if ctl & 0xc0 != 0 {
            let mut stale = StaleTx::at(now);
            a.target.tick(now, &mut stale);
            let mut clean = Clean::at(now);
            b.target.tick(now, &mut clean);
            assert_eq!(
                stale.frames, clean.0,
                "stale transmit bytes leaked into a timer frame"
            );
            replies.push((stale.frames, None));
        }

        let after = snapshot(&a.images);
        let mut changed = [false; 2];
        for lun in 0..2 {
            if before[lun] == after[lun] {
                continue;
            }
            changed[lun] = true;
            assert!(!(lun == 0 && ro), "the read-only LUN changed");
            let frame = replies
                .first()
                .and_then(|(_, f)| f.as_ref())
                .expect("an image changed on a tick");
            let fc = fc_of(frame).expect("an image changed on a frame that is not good FCoE");
            let h = FcHeaderRepr::parse(&FcPacket::new_unchecked(fc)).unwrap();
            assert_eq!(
                (h.r_ctl, h.fc_type),
                (RCtl::FcpData, FcType::Fcp),
                "an image changed on a frame other than FCP_DATA"
            );
            let dst = MacAddr(frame[0..6].try_into().unwrap());
            let src = MacAddr(frame[6..12].try_into().unwrap());
            let key = if dst == vn_mac {
                fpma(VN2VN_FC_MAP, h.s_id)
            } else {
                src
            };
            let w = pending
                .get(&(key, h.ox_id))
                .expect("an image changed by data for a write the target never asked for");
            assert_eq!(
                w.lun, lun,
                "data of a write to LUN {} changed LUN {lun}",
                w.lun
            );
            let first = before[lun]
                .iter()
                .zip(&after[lun])
                .position(|(x, y)| x != y)
                .unwrap();
            let last = before[lun]
                .iter()
                .zip(&after[lun])
                .rposition(|(x, y)| x != y)
                .unwrap();
            assert!(
                first as u64 >= w.start && (last as u64) < w.start + w.len,
                "write data outside its range: bytes {first}..={last}, write {w:?}"
            );
        }
        if changed.iter().any(|&c| c) {
            before = after;
        }

        for (frames, input) in &replies {
            let req_ox = input.as_deref().and_then(request_ox_id);
            for r in frames {
                check_reply(r, mtu, &ours, req_ox);
                // Track the writes the target accepted, and forget them at their FCP_RSP.
                if r[12..14] != [0x89, 0x06] {
                    continue;
                }
                let fc = &r[28..r.len() - 8];
                let h = FcHeaderRepr::parse(&FcPacket::new_unchecked(fc)).unwrap();
                let dst = MacAddr(r[0..6].try_into().unwrap());
                match h.r_ctl {
                    RCtl::XferRdy => {
                        let input = input.as_deref().unwrap();
                        let cmd_fc = fc_of(input).expect("XFER_RDY answers a bad frame");
                        let cmnd = FcpCmndPacket::new_checked(&cmd_fc[24..])
                            .expect("XFER_RDY answers no FCP_CMND");
                        let burst = XferRdyPacket::new_unchecked(&fc[24..]).burst_len();
                        let start = write_start(cmnd.cdb()).expect("XFER_RDY for a non-write");
                        assert!(burst <= cmnd.fcp_dl(), "XFER_RDY asks past FCP_DL");
                        let lun = decode_sam_lun(&cmnd.lun()).expect("XFER_RDY for a bad LUN");
                        assert!(lun < 2, "XFER_RDY for LUN {lun}");
                        assert!(!(lun == 0 && ro), "XFER_RDY for the read-only LUN");
                        pending.insert(
                            (dst, h.ox_id),
                            Pending {
                                lun: lun as usize,
                                start,
                                len: u64::from(burst),
                            },
                        );
                    }
                    RCtl::FcpRsp => {
                        pending.remove(&(dst, h.ox_id));
                    }
                    _ => {}
                }
            }
        }

        // Bounded state.
        let st = a.target.stats();
        let sessions = a.target.session_count();
        assert!(sessions <= MAX_SESSIONS, "{sessions} sessions");
        assert_eq!(st.sessions, sessions as u64);
        assert!(
            st.exchanges <= (MAX_SESSIONS * MAX_EXCHANGES) as u64,
            "{} exchanges",
            st.exchanges
        );
        assert!(
            st.vn2vn_peers <= MAX_PEERS as u64,
            "{} peers",
            st.vn2vn_peers
        );
        assert_eq!(st, b.target.stats(), "twin targets diverged");
    }
});
