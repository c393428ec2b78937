//! (1) iPXE's boot capture, replayed.

use super::*;

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
pub(super) const IPXE_TARGET_MAC: MacAddr = MacAddr([0x0a, 0x91, 0x10, 0xa3, 0x88, 0xf9]);
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
