//! Synthetic VN2VN neighbours: allow-lists by ENode MAC, deterministic PLOGI retries, a
//! claim flood, the MAC the target keeps.

use super::ptp::mac;
use super::*;

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

/// Found by the fcoe_target fuzzer: the PLOGI retries of tick() went out in the iteration
/// order of the session HashMap (random per target), so two targets fed the same frames and
/// clock sent different frames (retry order and our OX_IDs). Timers must be deterministic:
/// the retries go out in the order of the sessions' MACs.
#[test]
fn plogi_retries_are_deterministic() {
    let run = || {
        let target = one_lun_target(LIO_ENODE, 2500, Wwn(0x2000_5254_004c_100a), 1 << 20);
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

/// A neighbour's VN2VN frame (claims from the ENode MAC, beacons from the VN MAC).
fn vn2vn_frame(subcode: Vn2VnSubcode, id: FcId, enode: MacAddr, wwpn: Wwn) -> Vec<u8> {
    use crate::fip::vn2vn::tests::initiator_vn2vn;
    use crate::tx::send_fip;
    use crate::wire::fip::{fpma, VN2VN_FC_MAP};
    let repr = FipRepr::Vn2Vn(initiator_vn2vn(subcode, id, enode, wwpn));
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
