//! A synthetic point-to-point initiator: ABTS, RRQ, strangers, allow-lists, malformed
//! frames, residuals and TMF, live reloads, the I/O counters.

use super::*;

const INIT_WWPN: Wwn = Wwn(0x2000_0000_0000_0099);
const TGT_WWPN: Wwn = Wwn(0x2000_0000_0000_0001);
const TGT_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 1]);
const TGT_ID: FcId = FcId::new(0x01_0101);
const INIT_ID: FcId = FcId::new(0x01_0102);

pub(super) fn mac(n: u8) -> MacAddr {
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
    /// A rig where initiator `mac(1)` has logged in (FLOGI, PLOGI, PRLI) as [`INIT_WWPN`].
    fn logged_in() -> (Rig, MacAddr) {
        let mut g = Rig::new();
        let m = mac(1);
        g.login(m, INIT_WWPN);
        (g, m)
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

/// An ABTS (BLS, no payload) from initiator `m` for the exchange `ox_id`/`rx_id`.
fn abts(m: MacAddr, ox_id: u16, rx_id: u16) -> Vec<u8> {
    frame_from(
        m,
        TGT_MAC,
        RCtl::Abts,
        FcType::Bls,
        REQ,
        TGT_ID,
        INIT_ID,
        ox_id,
        rx_id,
        0,
        &[],
    )
}

fn rsp(f: &Fc) -> FcpRspRepr<'_> {
    assert_eq!(f.hdr.r_ctl, RCtl::FcpRsp);
    FcpRspRepr::parse(&FcpRspPacket::new_checked(&f.data[..]).unwrap()).unwrap()
}

/// (3) ABTS of a write waiting for data: BA_ACC, no FCP_RSP, its data dropped and counted,
/// RRQ accepted; ABTS of an unknown exchange: BA_RJT.
#[test]
fn abts_rrq_and_unknown_exchange() {
    let (mut g, m) = Rig::logged_in();
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
    let r = g.send(&abts(m, 0x10, rx_id));
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
    let r = g.send(&abts(m, 0x77, 0xffff));
    assert_eq!(r[0].hdr.r_ctl, RCtl::BaRjt);
    // A late ABTS for a completed command (its FCP_RSP lost) still gets BA_ACC.
    let r = g.fcp(m, 0x20, &cmnd(0, &[0], 0, false, false, 0));
    let rx = r[0].hdr.rx_id;
    let r = g.send(&abts(m, 0x20, rx));
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
    let (mut g, m) = Rig::logged_in();
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

/// READ CAPACITY (10): the last LBA.
const READ_CAPACITY: [u8; 10] = [0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0];

/// A live reload keeps the session; the initiator hears of it by unit attention: LUNs added
/// (06/3F/0E, REPORT LUNS shows the new set), a LUN resized (06/2A/09, READ CAPACITY shows
/// the new size), a LUN removed (absent: 05/25/00), an allow-list that no longer lets it in
/// (absent too).
#[test]
fn reconfigure_keeps_sessions_and_raises_unit_attentions() {
    let (mut g, m) = Rig::logged_in();
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
