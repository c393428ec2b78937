//! Every FCoE and FIP parse path over arbitrary bytes: no panic, and what parses re-emits to the
//! same meaning (emit(parse(x)) parses back equal).
//!
//! The input is read three ways: as an FCoE Ethernet payload (encapsulation, CRC, then the FC
//! frame inside), as a bare FC frame (header, then every ELS/BLS/FCP view of its payload), and
//! as a FIP Ethernet payload (header, descriptors, the FIP messages l2san knows).
#![no_main]

use l2san_fcoe::wire::bls::{BaAccRepr, BaRjtRepr, BlsPacket};
use l2san_fcoe::wire::els::{
    AdiscRepr, BareElsRepr, ElsPacket, LoginRepr, LogoRepr, LsRjtRepr, PrliRepr, RrqRepr,
    RtvAccRepr,
};
use l2san_fcoe::wire::fc::{FCtl, FcHeaderRepr, FcPacket, HEADER_LEN as FC_HEADER_LEN};
use l2san_fcoe::wire::fcoe::{emit_frame, FcoePacket, FcoeRepr};
use l2san_fcoe::wire::fcp::{
    FcpCmndPacket, FcpCmndRepr, FcpRspPacket, FcpRspRepr, XferRdyPacket, XferRdyRepr,
};
use l2san_fcoe::wire::fip::{Descriptor, DescriptorSet, FipPacket, FipRepr, RawDescriptor};
use libfuzzer_sys::fuzz_target;

/// Parse `bytes` as an ELS payload with `parse`; if it parses, emit into a 0xa5 buffer of
/// `buffer_len` bytes and parse that back: it must be the same meaning.
macro_rules! els_round_trip {
    ($bytes:expr, $repr:ty) => {
        if let Ok(p) = ElsPacket::new_checked($bytes) {
            if let Ok(r) = <$repr>::parse(&p) {
                let mut buf = vec![0xa5u8; r.buffer_len()];
                r.emit(&mut ElsPacket::new_unchecked(&mut buf[..]));
                let back = <$repr>::parse(&ElsPacket::new_unchecked(&buf[..]))
                    .expect(concat!(stringify!($repr), " emitted does not parse"));
                assert_eq!(back, r, concat!(stringify!($repr), " round trip"));
            }
        }
    };
}

fn els_views(payload: &[u8]) {
    let Ok(p) = ElsPacket::new_checked(payload) else {
        assert!(payload.len() < 4);
        return;
    };
    let _ = (p.command(), p.payload().len());
    els_round_trip!(payload, BareElsRepr);
    els_round_trip!(payload, LoginRepr);
    els_round_trip!(payload, PrliRepr);
    els_round_trip!(payload, LogoRepr);
    els_round_trip!(payload, AdiscRepr);
    els_round_trip!(payload, RtvAccRepr);
    els_round_trip!(payload, RrqRepr);
    els_round_trip!(payload, LsRjtRepr);
    if let Ok(login) = LoginRepr::parse(&p) {
        let m = login.max_payload(2112);
        assert!(m <= 2112 && (m >= LoginRepr::MIN_MAX_PAYLOAD || m == 2112));
        let _ = (login.is_f_port(), login.r_a_tov());
    }
}

fn bls_views(payload: &[u8]) {
    if let Ok(p) = BlsPacket::new_checked(payload) {
        let r = BaAccRepr::parse(&p).expect("BA_ACC view checked but does not parse");
        let mut buf = vec![0xa5u8; r.buffer_len()];
        r.emit(&mut BlsPacket::new_unchecked(&mut buf[..]));
        assert_eq!(BaAccRepr::parse(&BlsPacket::new_unchecked(&buf[..])), Ok(r));
    }
    let p = BlsPacket::new_unchecked(payload);
    if let Ok(r) = BaRjtRepr::parse(&p) {
        let mut buf = vec![0xa5u8; r.buffer_len()];
        r.emit(&mut BlsPacket::new_unchecked(&mut buf[..]));
        assert_eq!(BaRjtRepr::parse(&BlsPacket::new_unchecked(&buf[..])), Ok(r));
    }
}

fn fcp_views(payload: &[u8]) {
    if let Ok(p) = FcpCmndPacket::new_checked(payload) {
        let _ = (p.lun(), p.cdb().len(), p.fcp_dl(), p.rddata(), p.wrdata());
        if let Ok(r) = FcpCmndRepr::parse(&p) {
            let mut buf = vec![0xa5u8; r.buffer_len()];
            r.emit(&mut FcpCmndPacket::new_unchecked(&mut buf[..]));
            let back = FcpCmndRepr::parse(&FcpCmndPacket::new_unchecked(&buf[..])).unwrap();
            assert_eq!(back, r);
        }
    }
    if let Ok(p) = XferRdyPacket::new_checked(payload) {
        let r = XferRdyRepr::parse(&p).unwrap();
        let mut buf = vec![0xa5u8; r.buffer_len()];
        r.emit(&mut XferRdyPacket::new_unchecked(&mut buf[..]));
        assert_eq!(
            XferRdyRepr::parse(&XferRdyPacket::new_unchecked(&buf[..])),
            Ok(r)
        );
    }
    if let Ok(p) = FcpRspPacket::new_checked(payload) {
        let _ = (
            p.rsp_info().len(),
            p.sense().len(),
            p.resid(),
            p.scsi_status(),
        );
        if let Ok(r) = FcpRspRepr::parse(&p) {
            let mut buf = vec![0xa5u8; r.buffer_len()];
            r.emit(&mut FcpRspPacket::new_unchecked(&mut buf[..]));
            let back = FcpRspRepr::parse(&FcpRspPacket::new_unchecked(&buf[..]))
                .expect("FCP_RSP emitted does not parse");
            assert_eq!(back, r);
        }
    }
}

/// A whole FC frame: the header round trip, then every payload view.
fn fc_views(frame: &[u8]) {
    let Ok(p) = FcPacket::new_checked(frame) else {
        assert!(frame.len() < FC_HEADER_LEN);
        return;
    };
    let h = FcHeaderRepr::parse(&p).unwrap();
    let mut buf = vec![0xa5u8; h.buffer_len()];
    h.emit(&mut FcPacket::new_unchecked(&mut buf[..]));
    assert_eq!(
        buf[..],
        frame[..FC_HEADER_LEN],
        "FC header does not re-emit byte for byte"
    );
    assert!(h.f_ctl.fill_bytes() <= 3);
    assert!(p.data().len() <= p.payload().len());
    assert_eq!(FCtl::from_bits(h.f_ctl.bits()), h.f_ctl);
    for payload in [p.payload(), p.data()] {
        els_views(payload);
        bls_views(payload);
        fcp_views(payload);
    }
}

/// An FCoE Ethernet payload: encapsulation, then the FC frame.
fn fcoe_views(data: &[u8]) {
    let Ok(p) = FcoePacket::new_checked(data) else {
        return;
    };
    let _ = (
        p.version(),
        p.sof(),
        p.eof(),
        p.crc(),
        p.sof().is_initiate(),
    );
    let Ok(repr) = FcoeRepr::parse(&p) else {
        return;
    };
    // What parses is unpadded, 4-aligned and its CRC holds.
    assert_eq!(repr.buffer_len(), data.len());
    assert_eq!(repr.fc_frame_len % 4, 0);
    assert!(p.verify_crc().is_ok());
    let mut buf = vec![0xa5u8; repr.buffer_len()];
    let n = emit_frame(&mut buf, repr.sof, repr.eof, p.fc_frame()).unwrap();
    assert_eq!(n, data.len());
    let q = FcoePacket::new_checked(&buf[..]).unwrap();
    assert_eq!(FcoeRepr::parse(&q), Ok(repr));
    assert_eq!(q.fc_frame(), p.fc_frame());
    // The emitted header and trailer have their reserved bytes zero.
    assert!(buf[1..13].iter().all(|&b| b == 0) && buf[n - 3..].iter().all(|&b| b == 0));
    fc_views(p.fc_frame());
}

/// A FIP Ethernet payload: every descriptor, the descriptor set, the message.
fn fip_views(data: &[u8]) {
    let Ok(p) = FipPacket::new_checked(data) else {
        return;
    };
    let _ = (
        p.version(),
        p.operation(),
        p.flags(),
        p.descriptor_bytes().len(),
    );
    let mut total = 0;
    for raw in p.descriptors() {
        let Ok(raw) = raw else { break };
        total += raw.bytes.len();
        if let Ok(d) = Descriptor::parse(raw) {
            assert_eq!(d.buffer_len(), raw.bytes.len(), "{d:?}");
            let mut buf = vec![0xa5u8; d.buffer_len()];
            d.emit(&mut buf);
            let back = Descriptor::parse(RawDescriptor {
                dtype: buf[0],
                bytes: &buf,
            })
            .expect("descriptor emitted does not parse");
            assert_eq!(back, d);
        }
    }
    assert!(total <= p.desc_list_len());
    let _ = DescriptorSet::parse(p.descriptors());
    let Ok(repr) = FipRepr::parse(&p) else {
        return;
    };
    // Non-critical descriptors are not kept: the re-emitted list is never longer.
    assert!(repr.buffer_len() <= 10 + p.desc_list_len());
    let mut buf = vec![0xa5u8; repr.buffer_len()];
    repr.emit(&mut FipPacket::new_unchecked(&mut buf[..]));
    let q = FipPacket::new_checked(&buf[..]).expect("FIP emitted fails check_len");
    let back = FipRepr::parse(&q).expect("FIP emitted does not parse");
    assert_eq!(back, repr);
    if let FipRepr::ElsRequest(e) | FipRepr::ElsReply(e) = repr {
        fc_views(e.fc_frame);
    }
}

fuzz_target!(|data: &[u8]| {
    fcoe_views(data);
    fc_views(data);
    fip_views(data);
});
