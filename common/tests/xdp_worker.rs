//! A worker on AF_XDP (`Backend::Xdp`) serving a veth pair that this test makes and removes:
//! requests from the peer reach the handler through the AF_XDP socket of queue 0 and the
//! replies go back out through it; a second worker, with no queue of its own, sits on
//! AF_PACKET and hears nothing. Its own test binary: stopping workers is process-wide.
//! Needs root; elsewhere it says so and passes nothing off as run.

use std::process::Command;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use l2san_common::ether::emit_header;
use l2san_common::io::sys::{packet, signal};
use l2san_common::io::{FrameRx, FrameTx, Transmit};
use l2san_common::worker::{self, Backend, FrameHandler, WorkerRole, WorkerStats};
use l2san_common::{EtherType, Interface};

mod veth;
use veth::{is_root, VethPair};

/// Answers every AoE frame with the same bytes, addresses swapped.
struct Echo;

impl FrameHandler for Echo {
    fn ethertypes(&self) -> &[u16] {
        &[EtherType::AOE]
    }
    fn handle(&self, frame: &[u8], _now: Instant, tx: &mut dyn Transmit) {
        let buf = tx.buffer(frame.len());
        buf[..frame.len()].copy_from_slice(frame);
        buf[..6].copy_from_slice(&frame[6..12]);
        buf[6..12].copy_from_slice(&frame[..6]);
        tx.commit(frame.len());
    }
    fn link_changed(&self, _mtu: u32, _tx: &mut dyn Transmit) {}
    fn needs_promiscuous(&self) -> bool {
        true
    }
}

#[test]
fn xdp_worker_answers_through_its_queue() {
    if !is_root() {
        eprintln!("SKIPPED: needs root to make a veth pair and load XDP");
        return;
    }
    let pair = VethPair::new("xw", None);
    let (a, b) = (&pair.a, &pair.b);
    let ia = Interface::by_name(a).unwrap();
    let ib = Interface::by_name(b).unwrap();
    let (mut peer_rx, mut peer_tx) = packet::open(ib.index, &[EtherType::AOE]).unwrap();

    let handlers: Vec<Arc<dyn FrameHandler>> = vec![Arc::new(Echo)];
    let stats: Vec<Arc<WorkerStats>> = (0..2).map(|_| Arc::default()).collect();
    let workers: Vec<_> = (0..2)
        .map(|index| {
            let (iface, handlers, stats) = (ia.clone(), handlers.clone(), stats[index].clone());
            let role = WorkerRole {
                index,
                count: 2,
                fanout_group: worker::fanout_group(iface.index),
                busy_poll: std::time::Duration::ZERO,
            };
            std::thread::spawn(move || worker::run(&iface, &handlers, &stats, role, Backend::Xdp))
        })
        .collect();

    // Wait for the program to be attached (worker 0) before sending.
    let deadline = Instant::now() + Duration::from_secs(5);
    let attached = || {
        let out = Command::new("ip")
            .args(["link", "show", "dev", a])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).contains("prog/xdp")
    };
    while !attached() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(attached(), "worker 0 did not attach AF_XDP");
    // Let worker 1 open its AF_PACKET socket too.
    std::thread::sleep(Duration::from_millis(200));

    let requests: Vec<Vec<u8>> = (0..200u32)
        .map(|i| {
            let mut f = vec![0u8; 60 + (i as usize * 7) % 1454];
            emit_header(&mut f, ia.mac, ib.mac, EtherType::AOE.into());
            f[20..24].copy_from_slice(&i.to_be_bytes());
            f
        })
        .collect();
    let refs: Vec<&[u8]> = requests.iter().map(|f| f.as_slice()).collect();
    for chunk in refs.chunks(32) {
        assert_eq!(peer_tx.send_frames(chunk).unwrap(), chunk.len());
    }
    let mut replies = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while replies.len() < requests.len() && Instant::now() < deadline {
        peer_rx
            .recv_batch(Duration::from_millis(100), 64, &mut |f| {
                replies.push(f.to_vec())
            })
            .unwrap();
    }
    signal::request_stop();
    for w in workers {
        w.join().unwrap();
    }
    assert_eq!(replies.len(), requests.len());
    for (req, rep) in requests.iter().zip(&replies) {
        assert_eq!(rep.len(), req.len());
        assert_eq!(&rep[..6], &req[6..12]);
        assert_eq!(&rep[12..], &req[12..]);
    }
    assert_eq!(
        stats[0].frames.load(Ordering::Relaxed),
        200,
        "all via AF_XDP"
    );
    assert_eq!(stats[1].frames.load(Ordering::Relaxed), 0);
    assert!(!attached(), "the program must go with the worker");
}
