//! A quick, by-hand measurement (not a test, not criterion): frames per second and CPU per
//! frame of AF_XDP (copy mode on veth) against AF_PACKET, receiving and transmitting, on a
//! veth pair with one queue that this program makes and removes. Needs root.
//!
//! ```text
//! cargo run --release -p l2san-common --example xdp_vs_packet -- [secs] [frame_len] [rate]
//! ```
//! `rate` is frames per second offered (0: as fast as the sender goes). CPU is counted two
//! ways: the two threads' own run time (/proc/thread-self/schedstat; veth delivers in the
//! sender's softirq, so the receive path's kernel work lands on the sender thread), and the
//! whole machine's busy time (/proc/stat), which includes other load on a shared host.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use l2san_common::ether::emit_header;
use l2san_common::io::sys::{packet, xdp};
use l2san_common::io::{FrameRx, FrameTx};
use l2san_common::{EtherType, Interface};

#[path = "../tests/veth/mod.rs"]
mod veth;
use veth::VethPair;

/// Nanoseconds this thread has run.
fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Busy and total jiffies of the whole machine.
fn machine_jiffies() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let cpu: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    if cpu.len() < 8 {
        return (0, 0);
    }
    // user nice system idle iowait irq softirq steal
    let busy = cpu[0] + cpu[1] + cpu[2] + cpu[5] + cpu[6];
    (busy, busy + cpu[3] + cpu[4])
}

fn open_rx(backend: &str, ifindex: u32, mtu: u32) -> (Box<dyn FrameRx>, Box<dyn FrameTx>) {
    match backend {
        "packet" => {
            let (rx, tx) = packet::open(ifindex, &[EtherType::AOE]).expect("AF_PACKET");
            (Box::new(rx), Box::new(tx))
        }
        _ => {
            let config = xdp::XdpConfig {
                queue: 0,
                allow_copy: true,
                max_frame_len: mtu as usize + 14,
            };
            let (rx, tx) = xdp::open(ifindex, &[EtherType::AOE], config).expect("AF_XDP");
            (Box::new(rx), Box::new(tx))
        }
    }
}

struct Result {
    frames: u64,
    secs: f64,
    sender_ns: u64,
    receiver_ns: u64,
    machine_busy: f64,
}

/// `backend` on the receiving end when `receive`, else on the sending end; AF_PACKET on the
/// other. The sender offers `rate` frames/s of `len` bytes for `secs`.
fn case(backend: &str, receive: bool, len: usize, secs: f64, rate: u64) -> Result {
    let mtu = (len as u32).saturating_sub(14).max(1500);
    let veth = VethPair::new("xm", Some(mtu));
    let a = Interface::by_name(&veth.a).expect("veth a");
    let b = Interface::by_name(&veth.b).expect("veth b");
    // The measured backend always sits on `a`.
    let (rx_a, mut tx_a) = open_rx(backend, a.index, mtu);
    let (rx_b, mut tx_b) = open_rx("packet", b.index, mtu);
    let (mut rx, idle_rx) = if receive { (rx_a, rx_b) } else { (rx_b, rx_a) };
    let (src, dst) = if receive { (&b, &a) } else { (&a, &b) };
    let mut f = vec![0u8; len];
    emit_header(&mut f, dst.mac, src.mac, EtherType::AOE.into());
    let batch: Vec<&[u8]> = (0..32).map(|_| f.as_slice()).collect();

    let stop = Arc::new(AtomicBool::new(false));
    let received = Arc::new(AtomicU64::new(0));
    let receiver_ns = Arc::new(AtomicU64::new(0));
    let receiver = {
        let (stop, received, receiver_ns) = (stop.clone(), received.clone(), receiver_ns.clone());
        std::thread::spawn(move || {
            let start = thread_cpu_ns();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += rx
                    .recv_batch(Duration::from_millis(10), 256, &mut |_| {})
                    .unwrap_or(0) as u64;
                received.store(n, Ordering::Relaxed);
            }
            receiver_ns.store(thread_cpu_ns() - start, Ordering::Relaxed);
        })
    };
    std::thread::sleep(Duration::from_millis(100));
    let tx: &mut dyn FrameTx = if receive { &mut *tx_b } else { &mut *tx_a };
    let (busy0, total0) = machine_jiffies();
    let cpu0 = thread_cpu_ns();
    let start = Instant::now();
    let first = received.load(Ordering::Relaxed);
    let mut offered = 0u64;
    while start.elapsed().as_secs_f64() < secs {
        if rate > 0 {
            let due = Duration::from_secs_f64(offered as f64 / rate as f64);
            if let Some(wait) = due.checked_sub(start.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        offered += tx.send_frames(&batch).unwrap_or(0) as u64;
    }
    let sender_ns = thread_cpu_ns() - cpu0;
    // Let the receiver drain what is in flight, then stop it.
    std::thread::sleep(Duration::from_millis(50));
    let elapsed = start.elapsed().as_secs_f64();
    let (busy1, total1) = machine_jiffies();
    stop.store(true, Ordering::Relaxed);
    receiver.join().expect("receiver");
    drop(idle_rx);
    Result {
        frames: received.load(Ordering::Relaxed) - first,
        secs: elapsed,
        sender_ns,
        receiver_ns: receiver_ns.load(Ordering::Relaxed),
        machine_busy: (busy1 - busy0) as f64 / (total1 - total0).max(1) as f64,
    }
}

fn main() {
    let root = std::fs::read_to_string("/proc/self/status")
        .map(|s| s.lines().any(|l| l.starts_with("Uid:\t0")))
        .unwrap_or(false);
    if !root {
        eprintln!("needs root: it makes a veth pair and loads XDP");
        return;
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let secs: f64 = args.first().and_then(|s| s.parse().ok()).unwrap_or(3.0);
    let len: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(60);
    let rate: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(0);
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    println!(
        "{len}-byte frames, {secs} s per case, offered rate {rate} (0 = flat out), {cpus} CPUs"
    );
    println!(
        "{:<22} {:>10} {:>12} {:>12} {:>12} {:>14}",
        "case", "kframes/s", "sender µs/f", "recv µs/f", "both µs/f", "machine µs/f"
    );
    for receive in [true, false] {
        for backend in ["packet", "xdp"] {
            let r = case(backend, receive, len, secs, rate);
            let per = |ns: u64| ns as f64 / 1000.0 / r.frames.max(1) as f64;
            let machine = r.machine_busy * cpus * r.secs * 1e6 / r.frames.max(1) as f64;
            let name = format!(
                "{} {}",
                if receive { "RX via" } else { "TX via" },
                if backend == "xdp" {
                    "AF_XDP copy"
                } else {
                    "AF_PACKET"
                }
            );
            println!(
                "{:<22} {:>10.0} {:>12.2} {:>12.2} {:>12.2} {:>14.2}",
                name,
                r.frames as f64 / r.secs / 1000.0,
                per(r.sender_ns),
                per(r.receiver_ns),
                per(r.sender_ns + r.receiver_ns),
                machine
            );
        }
    }
}
