//! The TPACKET_V2 backend on a real veth pair that this test makes and removes.
//! Needs root (CAP_NET_ADMIN, CAP_NET_RAW); elsewhere it says so and passes nothing off as run.

use std::time::Duration;

use l2san_common::ether::emit_header;
use l2san_common::io::sys::packet;
use l2san_common::io::{FieldWidth, FrameRx, FrameTx, Steering};
use l2san_common::{EtherType, Interface, MacAddr};

mod veth;
use veth::{is_root, VethPair};

fn frame(src: MacAddr, ethertype: u16, len: usize, fill: u8) -> Vec<u8> {
    let mut f = vec![fill; len];
    emit_header(&mut f, MacAddr::BROADCAST, src, EtherType::from(ethertype));
    f
}

fn exchange(mtu: u32, tag: &str) {
    if !is_root() {
        eprintln!("SKIPPED: needs root to make a veth pair");
        return;
    }
    let pair = VethPair::new(tag, Some(mtu));
    let a = Interface::by_name(&pair.a).unwrap();
    let b = Interface::by_name(&pair.b).unwrap();
    assert_eq!(a.mtu(), Some(mtu));
    let (_rx_a, mut tx_a) = packet::open(a.index, &[EtherType::AOE]).unwrap();
    let (mut rx_b, _tx_b) = packet::open(b.index, &[EtherType::AOE, EtherType::FIP]).unwrap();

    let big = mtu as usize + 14;
    let frames = [
        frame(a.mac, EtherType::AOE, 32, 1), // shorter than 60: veth does not pad
        frame(a.mac, 0x0800, 100, 2),        // IPv4: the filter must drop it
        frame(a.mac, EtherType::FIP, 200, 3),
        frame(a.mac, EtherType::AOE, big, 4), // a full-MTU frame
    ];
    let refs: Vec<&[u8]> = frames.iter().map(|f| f.as_slice()).collect();
    assert_eq!(tx_a.send_frames(&refs).unwrap(), 4);

    let mut got: Vec<Vec<u8>> = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while got.len() < 3 && std::time::Instant::now() < deadline {
        rx_b.recv_batch(Duration::from_millis(200), 64, &mut |f| {
            got.push(f.to_vec())
        })
        .unwrap();
    }
    // Anything else on the link (none expected with IPv6 off) would be of another ethertype.
    assert_eq!(
        got.len(),
        3,
        "lengths: {:?}",
        got.iter().map(Vec::len).collect::<Vec<_>>()
    );
    assert_eq!(got[0], frames[0]);
    assert_eq!(got[1], frames[2]);
    assert_eq!(got[2].len(), big);
    assert_eq!(got[2], frames[3]);
    // Nothing more arrives: the IPv4 frame was filtered out.
    let n = rx_b
        .recv_batch(Duration::from_millis(300), 64, &mut |_| {})
        .unwrap();
    assert_eq!(n, 0);
}

#[test]
fn ring_receives_served_ethertypes_only_at_mtu_1500() {
    exchange(1500, "p");
}

#[test]
fn ring_carries_jumbo_frames_at_mtu_9000() {
    exchange(9000, "j");
}

/// Two sockets in one fanout group share the frames: AoE requests to one 128 KiB region from
/// one initiator always meet the same socket; different regions spread over both.
#[test]
fn fanout_keeps_a_region_on_one_worker_and_spreads_regions() {
    if !is_root() {
        eprintln!("SKIPPED: needs root to make a veth pair");
        return;
    }
    let pair = VethPair::new("f", Some(1500));
    let a = Interface::by_name(&pair.a).unwrap();
    let b = Interface::by_name(&pair.b).unwrap();
    let (_rx_a, mut tx_a) = packet::open(a.index, &[EtherType::AOE]).unwrap();
    let group = l2san_common::worker::fanout_group(b.index);
    // What the AoE target declares: LBA bits 8-23, the ATA argument's LBA bytes 1-2.
    let steering = [Steering {
        ethertype: EtherType::AOE,
        offset: 29,
        width: FieldWidth::U16,
    }];
    let fanout = packet::Fanout {
        group,
        steering: &steering,
    };
    let mut rxs: Vec<_> = (0..2)
        .map(|_| {
            packet::open_sized(b.index, &[EtherType::AOE], 1500, Some(fanout))
                .unwrap()
                .0
        })
        .collect();

    // An AoE READ EXT for `lba`, with the LBA where the ATA argument keeps it.
    let read = |lba: u64, tag: u32| {
        let mut f = frame(a.mac, EtherType::AOE, 36, 0);
        f[14] = 0x10;
        f[20..24].copy_from_slice(&tag.to_be_bytes());
        f[24..28].copy_from_slice(&[0x40, 0, 2, 0x24]);
        f[28..34].copy_from_slice(&lba.to_le_bytes()[..6]);
        f
    };
    // 64 regions, each asked twice (two sectors 8 apart in the same region).
    let frames: Vec<Vec<u8>> = (0..64u64)
        .flat_map(|r| {
            [
                read(r << 8, r as u32 * 2),
                read((r << 8) + 8, r as u32 * 2 + 1),
            ]
        })
        .collect();
    let refs: Vec<&[u8]> = frames.iter().map(|f| f.as_slice()).collect();
    assert_eq!(tx_a.send_frames(&refs).unwrap(), frames.len());

    let mut owner: Vec<Option<usize>> = vec![None; frames.len()];
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while owner.iter().any(Option::is_none) && std::time::Instant::now() < deadline {
        for (i, rx) in rxs.iter_mut().enumerate() {
            rx.recv_batch(Duration::from_millis(50), 256, &mut |f| {
                let tag = u32::from_be_bytes(f[20..24].try_into().unwrap()) as usize;
                owner[tag] = Some(i);
            })
            .unwrap();
        }
    }
    let owner: Vec<usize> = owner
        .into_iter()
        .map(|o| o.expect("a frame was lost"))
        .collect();
    for region in owner.chunks(2) {
        assert_eq!(
            region[0], region[1],
            "one region's requests met two workers"
        );
    }
    let on_first = owner.iter().filter(|&&o| o == 0).count();
    assert!(
        (16..=112).contains(&on_first),
        "regions not spread over the workers: {on_first} of {} on worker 0",
        owner.len()
    );
}
