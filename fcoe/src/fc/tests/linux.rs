//! (2) A Linux VN2VN session, replayed from its capture.

use super::*;

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
