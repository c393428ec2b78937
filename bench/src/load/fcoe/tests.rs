//! The generator against l2san's own FCoE target, in process ([`super::super::loopback`]):
//! login, then reads, writes and verify runs, with the target's frames as they really are.

use std::sync::Arc;
use std::time::Duration;

use l2san_common::io::Transmit;
use l2san_common::store::{Image, ImageOptions};
use l2san_common::MacAddr;
use l2san_fcoe::wire::Wwn;
use l2san_fcoe::{FcoeConfig, FcoeTarget};

use super::super::loopback::wire;
use super::super::{run, LoadConfig, Op, Pattern};
use super::*;

const TARGET_MAC: MacAddr = MacAddr([0x02, 0x4c, 0, 0, 0x12, 0x34]);

fn target(mtu: u32) -> (Arc<FcoeTarget>, Arc<Image>) {
    let image = Arc::new(Image::memory(8 << 20, ImageOptions::default()).unwrap());
    let t = FcoeTarget::new(FcoeConfig {
        mac: TARGET_MAC,
        mtu,
        wwpn: Wwn(0x2000_024c_0000_1234),
        wwnn: Wwn(0x1000_024c_0000_1234),
        luns: vec![(0, image.clone().into())],
        allow: Vec::new(),
    });
    (Arc::new(t), image)
}

fn options(mtu: u32, clients: u32, verify: bool) -> FcoeOptions {
    FcoeOptions {
        lun: 0,
        target_wwpn: None,
        // 0x1233 + 1 = 0x1234 is the target's own ID: the clients must step over it.
        id_base: 0x1233,
        mtu,
        cdb16: false,
        check_crc: verify,
        mac_base: MacAddr([2, 0, 0, 0, 0, 0]),
        clients,
        step_timeout: Duration::from_millis(100),
        step_tries: 10,
    }
}

fn config(op: Op, sectors: u8, qd: u32, clients: u32, requests: u64) -> LoadConfig {
    LoadConfig {
        op,
        pattern: Pattern::Random,
        sectors,
        qd,
        clients,
        duration: None,
        requests: Some(requests),
        warmup: Duration::ZERO,
        timeout: Duration::from_millis(500),
        max_tries: 3,
        seed: 42,
        mac_base: MacAddr([2, 0, 0, 0, 0, 0]),
        region: None,
        target_pid: None,
    }
}

/// Log in and run `cfg`; returns the report and the target.
fn drive(mtu: u32, cfg: &LoadConfig) -> (super::super::Report, Arc<FcoeTarget>, Arc<Image>) {
    let (t, image) = target(mtu);
    let (th, tt) = (t.clone(), t.clone());
    let (mut rx, mut tx) = wire(
        Box::new(move |f, now, b| th.handle_frame(f, now, b as &mut dyn Transmit)),
        Box::new(move |now, b| tt.tick(now, b as &mut dyn Transmit)),
    );
    let opts = options(mtu, cfg.clients, cfg.op == Op::Verify);
    let (proto, session) = login(&mut rx, &mut tx, &opts).expect("login");
    assert_eq!(session.capacity, 8 << 11);
    assert_eq!(t.session_count(), cfg.clients as usize);
    // The target's ID was stepped over.
    assert!(proto.clients.iter().all(|c| c.local.id != proto.target.id));
    let r = run(&proto, &session, cfg, &mut rx, &mut tx).expect("run");
    proto.logout(&mut tx);
    (r, t, image)
}

#[test]
fn verify_at_mtu_1500_reassembles_unaligned_read_frames() {
    // 3 sectors: written as 1024 + 512, read back as 1452 + 84 (our receive size).
    let cfg = config(Op::Verify, 3, 4, 3, 600);
    let (r, t, _) = drive(1500, &cfg);
    assert_eq!(
        (r.completed, r.errors, r.mismatches, r.lost),
        (600, 0, 0, 0)
    );
    assert_eq!(r.retransmits, 0);
    let st = t.stats();
    // Only the power-on unit attention of each client's READ CAPACITY at login.
    assert_eq!(st.fcp_errors, 3, "{st:?}");
    assert_eq!(st.write_bytes, 300 * 3 * 512);
    assert_eq!(t.session_count(), 0, "every client logged out");
}

#[test]
fn writes_land_in_the_image_and_reads_return_it_at_mtu_9000() {
    let cfg = config(Op::Write, 17, 8, 2, 200);
    let (r, t, image) = drive(9000, &cfg);
    assert_eq!((r.completed, r.errors), (200, 0));
    assert_eq!(t.stats().write_bytes, 200 * 17 * 512);
    // Something other than zeros was written.
    let mut buf = vec![0u8; 8 << 20];
    image.read_at(0, &mut buf).unwrap();
    assert!(buf.iter().any(|&b| b != 0));
    let cfg = config(Op::Verify, 17, 8, 2, 200);
    let (r, _, _) = drive(9000, &cfg);
    assert_eq!((r.completed, r.errors, r.mismatches), (200, 0, 0));
}

#[test]
fn reads_complete_with_their_data() {
    let mut cfg = config(Op::Read, 1, 16, 1, 1000);
    cfg.pattern = Pattern::Sequential;
    let (r, t, _) = drive(1500, &cfg);
    assert_eq!((r.completed, r.errors, r.bytes), (1000, 0, 512_000));
    // And the 32 bytes of READ CAPACITY(16) at login.
    assert_eq!(t.stats().read_bytes, 512_000 + 32);
}
