//! The field the workers' fanout steers FCoE frames by: the FC header's OX_ID, so every frame
//! of one exchange (a command and its write data) meets one worker; FIP is not steered.

use l2san_common::io::FieldWidth;
use l2san_common::{FrameHandler, MacAddr};
use l2san_fcoe::wire::fc::FcPacket;
use l2san_fcoe::wire::Wwn;
use l2san_fcoe::{FcoeConfig, FcoeTarget};

#[test]
fn fcoe_is_steered_by_ox_id_and_fip_is_not() {
    let target = FcoeTarget::new(FcoeConfig {
        mac: MacAddr([0x02, 0, 0, 0, 0, 1]),
        mtu: 1500,
        wwpn: Wwn(0x2000_0200_0000_0001),
        wwnn: Wwn(0x1000_0200_0000_0001),
        luns: Vec::new(),
        allow: Vec::new(),
    });
    let steering = target.steering();
    assert_eq!(steering.len(), 1, "{steering:?}");
    let s = steering[0];
    assert_eq!(
        s.ethertype, 0x8906,
        "FCoE only: FIP (0x8914) is not steered"
    );
    // The offset and width the fanout program always used.
    assert_eq!((s.offset, s.width), (44, FieldWidth::U16));
    // And it is where the FC header keeps the OX_ID, after the Ethernet and FCoE headers.
    let mut frame = [0u8; 14 + 14 + 24 + 4 + 8];
    frame[44..46].copy_from_slice(&0xbeefu16.to_be_bytes());
    let fc = FcPacket::new_checked(&frame[14 + 14..]).unwrap();
    assert_eq!(fc.ox_id(), 0xbeef);
}
