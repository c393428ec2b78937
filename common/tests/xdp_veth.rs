//! The AF_XDP backend on a real veth pair that this test makes and removes: served ethertypes
//! reach the AF_XDP socket, others pass to the kernel, transmits arrive at the peer, jumbo
//! frames at MTU 9000 cross whole, and the XDP program is gone once the socket is dropped.
//! Needs root (CAP_NET_ADMIN, CAP_NET_RAW, CAP_BPF); elsewhere it says so and passes nothing
//! off as run.
//!
//! The pair has one queue each way: a veth frame lands on the RX queue numbered like the
//! sender's TX queue, and an AF_XDP socket hears only its own queue.

use std::time::{Duration, Instant};

use l2san_common::ether::emit_header;
use l2san_common::io::sys::xdp::{self, XdpConfig};
use l2san_common::io::sys::{packet, PacketRx};
use l2san_common::io::{FrameRx, FrameTx};
use l2san_common::{EtherType, Interface, MacAddr};

mod veth;
use veth::{is_root, VethPair};

const SERVED: [u16; 3] = [EtherType::AOE, EtherType::FCOE, EtherType::FIP];
/// IEEE local experimental: served by nobody, so XDP must pass it to the kernel.
const OTHER: u16 = 0x88b5;

/// A frame of `len` bytes whose payload tells frames apart.
fn frame(src: MacAddr, ethertype: u16, len: usize, seed: u8) -> Vec<u8> {
    let mut f: Vec<u8> = (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect();
    emit_header(&mut f, MacAddr::BROADCAST, src, EtherType::from(ethertype));
    f
}

fn collect(rx: &mut dyn FrameRx, want: usize, deadline: Duration) -> Vec<Vec<u8>> {
    let mut got = Vec::new();
    let end = Instant::now() + deadline;
    while got.len() < want && Instant::now() < end {
        rx.recv_batch(Duration::from_millis(100), 64, &mut |f| {
            got.push(f.to_vec())
        })
        .unwrap();
    }
    got
}

fn lens(frames: &[Vec<u8>]) -> Vec<usize> {
    frames.iter().map(Vec::len).collect()
}

/// Send `frames` from the peer's AF_PACKET socket; they must arrive at the AF_XDP socket if
/// served, at the AF_PACKET observer on the same end otherwise.
fn peer_to_xdp(
    frames: &[Vec<u8>],
    peer_tx: &mut dyn FrameTx,
    xdp_rx: &mut dyn FrameRx,
    observer: &mut PacketRx,
) {
    let refs: Vec<&[u8]> = frames.iter().map(|f| f.as_slice()).collect();
    for chunk in refs.chunks(32) {
        assert_eq!(peer_tx.send_frames(chunk).unwrap(), chunk.len());
    }
    let served: Vec<Vec<u8>> = frames
        .iter()
        .filter(|f| SERVED.contains(&u16::from_be_bytes([f[12], f[13]])))
        .cloned()
        .collect();
    let others = frames.len() - served.len();
    let got = collect(xdp_rx, served.len(), Duration::from_secs(5));
    assert_eq!(
        lens(&got),
        lens(&served),
        "frame lengths at the AF_XDP socket"
    );
    assert!(got == served, "frame contents differ at the AF_XDP socket");
    let passed = collect(observer, others, Duration::from_secs(5));
    assert_eq!(
        passed.len(),
        others,
        "unserved frames must pass to the kernel"
    );
    assert!(passed
        .iter()
        .all(|f| u16::from_be_bytes([f[12], f[13]]) == OTHER));
    // Nothing else turns up.
    let extra = collect(xdp_rx, 1, Duration::from_millis(300));
    assert!(extra.is_empty(), "unexpected frames: {:?}", lens(&extra));
}

fn xdp_to_peer(frames: &[Vec<u8>], xdp_tx: &mut dyn FrameTx, peer_rx: &mut dyn FrameRx) {
    let refs: Vec<&[u8]> = frames.iter().map(|f| f.as_slice()).collect();
    for chunk in refs.chunks(64) {
        assert_eq!(xdp_tx.send_frames(chunk).unwrap(), chunk.len());
    }
    let got = collect(peer_rx, frames.len(), Duration::from_secs(5));
    assert_eq!(lens(&got), lens(frames), "frame lengths at the peer");
    assert!(got == frames, "frame contents differ at the peer");
}

fn run(tag: &str, mtu: u32, rx_lens: &[usize], tx_lens: &[usize]) {
    if !is_root() {
        eprintln!("SKIPPED: needs root to make a veth pair and load XDP");
        return;
    }
    let pair = VethPair::new(&format!("x{tag}"), Some(mtu));
    let a = Interface::by_name(&pair.a).unwrap();
    let b = Interface::by_name(&pair.b).unwrap();
    let config = XdpConfig {
        queue: 0,
        allow_copy: true,
        max_frame_len: mtu as usize + 14,
    };
    let (mut xrx, mut xtx) = xdp::open(a.index, &SERVED, config).expect("AF_XDP on veth");
    eprintln!("AF_XDP on veth at MTU {mtu}: {:?}", xrx.mode());
    assert!(
        pair.xdp_attached(),
        "ip link show does not show our program"
    );
    if mtu > 3000 {
        assert!(xrx.mode().multi_buffer, "MTU {mtu} needs multi-buffer");
    }
    let (mut observer, _) = packet::open(a.index, &[OTHER]).unwrap();
    let (mut peer_rx, mut peer_tx) = packet::open(b.index, &SERVED).unwrap();

    // Served frames of every length, interleaved with unserved ones, several rounds so that
    // the UMEM frames are recycled through the fill ring.
    let mut frames = Vec::new();
    for round in 0..3u8 {
        for (i, &len) in rx_lens.iter().enumerate() {
            let t = SERVED[i % SERVED.len()];
            frames.push(frame(
                b.mac,
                t,
                len,
                round.wrapping_mul(7).wrapping_add(i as u8),
            ));
            if i % 3 == 0 {
                frames.push(frame(b.mac, OTHER, 60 + i, i as u8));
            }
        }
    }
    peer_to_xdp(&frames, &mut peer_tx, &mut xrx, &mut observer);

    // Transmit more frames than one sendto takes (32) and than one batch (64).
    let out: Vec<Vec<u8>> = (0..150)
        .map(|i| {
            let len = tx_lens[i % tx_lens.len()];
            frame(a.mac, SERVED[i % 3], len, i as u8)
        })
        .collect();
    xdp_to_peer(&out, &mut xtx, &mut peer_rx);

    let st = xrx.stats().unwrap();
    assert_eq!(st.drops, 0, "{st:?}");
    drop(xrx);
    drop(xtx);
    assert!(
        !pair.xdp_attached(),
        "the XDP program must be detached once the socket is dropped"
    );
}

#[test]
fn served_types_arrive_others_pass_and_transmits_arrive_at_mtu_1500() {
    run(
        "s",
        1500,
        &[32, 60, 61, 100, 255, 512, 1000, 1499, 1514],
        &[60, 1514, 100, 999],
    );
}

#[test]
fn jumbo_frames_cross_whole_at_mtu_9000() {
    run(
        "j",
        9000,
        &[60, 1514, 3826, 3840, 3841, 4096, 5000, 8000, 9014],
        &[9014, 60, 4096, 4097, 1514, 8193],
    );
}

/// With copy mode not allowed, `open` never hands out a copy-mode socket: on veth, which has no
/// zero-copy, it is refused with EOPNOTSUPP and an error that says zero-copy; and whatever the
/// outcome, the XDP program is gone once nothing holds the socket.
#[test]
fn zero_copy_only_is_refused_on_veth_and_leaves_nothing_attached() {
    if !is_root() {
        eprintln!("SKIPPED: needs root to make a veth pair and load XDP");
        return;
    }
    let pair = VethPair::new("xz", Some(1500));
    let a = Interface::by_name(&pair.a).unwrap();
    let config = XdpConfig {
        queue: 0,
        allow_copy: false,
        max_frame_len: 1514,
    };
    match xdp::open(a.index, &SERVED, config) {
        Ok((rx, tx)) => {
            // A kernel whose veth does zero-copy: then it must really be zero-copy.
            assert!(
                rx.mode().zero_copy,
                "zero-copy only was asked for, and {:?} was granted",
                rx.mode()
            );
            assert!(pair.xdp_attached(), "a socket without its program");
            drop((rx, tx));
        }
        Err(e) => {
            assert_eq!(e.source.raw_os_error(), Some(libc::EOPNOTSUPP), "{e}");
            assert!(e.to_string().contains("zero-copy"), "{e}");
        }
    }
    assert!(!pair.xdp_attached());
}
