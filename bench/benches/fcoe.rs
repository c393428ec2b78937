//! FCoE per frame: the FCoE CRC-32 alone and the FCoE encapsulation parse with its CRC check,
//! per frame size; and whole FCP command dispatch (`FcoeTarget::handle_frame`) on an in-memory
//! image per I/O size: a READ is its FCP_CMND (the target answers with the data frames and the
//! FCP_RSP); a WRITE is its FCP_CMND (answered by XFER_RDY) plus its data frames (answered by
//! the FCP_RSP). The initiator side is `l2san-load`'s, logged in over an in-process wire;
//! building the write data frames (their CRCs) is left out of the timing.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use l2san_bench::load::fcoe::{login, FcoeOptions};
use l2san_bench::load::loopback::wire;
use l2san_bench::load::{Event, Io, Protocol};
use l2san_common::io::{Transmit, TxBatch};
use l2san_common::{Image, ImageOptions, MacAddr};
use l2san_fcoe::wire::fc::FcPacket;
use l2san_fcoe::wire::fcoe::{FcoePacket, FcoeRepr};
use l2san_fcoe::wire::Wwn;
use l2san_fcoe::{FcoeConfig, FcoeTarget};

const TARGET_MAC: MacAddr = MacAddr([0x02, 0x4c, 0, 0, 0, 1]);
const IMAGE_LEN: u64 = 64 << 20;
const MTU: u32 = 9000;

fn wire_parse(c: &mut Criterion) {
    let mut g = c.benchmark_group("fcoe/wire/parse_and_crc");
    for payload in [32usize, 512, 2112] {
        // An FCoE payload: header, FC header, data, trailer with a good CRC.
        let mut f = vec![0u8; 14 + 24 + payload + 8];
        for (i, b) in f[14..14 + 24 + payload].iter_mut().enumerate() {
            *b = i as u8;
        }
        let len = f.len();
        FcoeRepr {
            sof: l2san_fcoe::wire::fcoe::Sof::I3,
            eof: l2san_fcoe::wire::fcoe::Eof::T,
            fc_frame_len: 24 + payload,
        }
        .emit(&mut FcoePacket::new_unchecked(&mut f[..len]));
        g.throughput(Throughput::Bytes(payload as u64));
        g.bench_with_input(BenchmarkId::from_parameter(payload), &f, |b, f| {
            b.iter(|| {
                let p = FcoePacket::new_checked(black_box(&f[..])).unwrap();
                let r = FcoeRepr::parse(&p).unwrap();
                let fc = FcPacket::new_checked(p.fc_frame()).unwrap();
                black_box((r.sof, fc.ox_id(), fc.parameter()))
            })
        });
    }
    g.finish();
}

/// The FCoE CRC-32 alone, over a whole FC frame (header, payload) of each size: every frame is
/// checksummed once on receipt and once on transmit.
fn wire_crc(c: &mut Criterion) {
    let mut g = c.benchmark_group("fcoe/wire/crc32");
    for payload in [512usize, 2112] {
        let frame: Vec<u8> = (0..24 + payload).map(|i| (i * 7) as u8).collect();
        g.throughput(Throughput::Bytes(frame.len() as u64));
        g.bench_with_input(BenchmarkId::from_parameter(payload), &frame, |b, f| {
            b.iter(|| l2san_fcoe::wire::fcoe::crc32(black_box(&f[..])))
        });
    }
    g.finish();
}

fn dispatch(c: &mut Criterion) {
    let image = Arc::new(Image::memory(IMAGE_LEN, ImageOptions::default()).unwrap());
    image.write_at(0, &vec![0xa5; IMAGE_LEN as usize]).unwrap();
    let target = Arc::new(FcoeTarget::new(FcoeConfig {
        mac: TARGET_MAC,
        mtu: MTU,
        wwpn: Wwn(0x2000_024c_0000_0001),
        wwnn: Wwn(0x1000_024c_0000_0001),
        luns: vec![(0, image.into())],
        allow: Vec::new(),
    }));
    let (th, tt) = (target.clone(), target.clone());
    let (mut rx, mut tx) = wire(
        Box::new(move |f, now, b| th.handle_frame(f, now, b as &mut dyn Transmit)),
        Box::new(move |now, b| tt.tick(now, b as &mut dyn Transmit)),
    );
    let opts = FcoeOptions {
        lun: 0,
        target_wwpn: None,
        id_base: 0x100,
        mtu: MTU,
        cdb16: false,
        check_crc: false,
        mac_base: MacAddr([2, 0, 0, 0, 0, 0]),
        clients: 1,
        step_timeout: Duration::from_millis(100),
        step_tries: 20,
    };
    let (proto, _session) = login(&mut rx, &mut tx, &opts).expect("login to the bench target");

    let before = target.stats();
    let now = Instant::now();
    let mut out = TxBatch::new(64);
    let mut g = c.benchmark_group("fcoe/dispatch");
    for sectors in [1u8, 2, 17] {
        let max_lba = IMAGE_LEN / 512 - sectors as u64;
        let io = |i: u64, write: bool| Io {
            tag: (i % 0x7000) as u32 + 1,
            lba: i * 997 % max_lba,
            sectors,
            write,
        };
        // One area per request: its command frame and its data frames.
        let build = |write: bool| -> Vec<(Io, Vec<u8>, usize)> {
            (0..256u64)
                .map(|i| {
                    let io = io(i, write);
                    let mut area = vec![0u8; proto.area_len(if write { sectors } else { 0 })];
                    proto.prepare(&mut area, 0);
                    if write {
                        proto.write_data(&mut area, sectors, &mut |_, d| d.fill(0x5a));
                    }
                    let mut len = 0;
                    proto.build(&mut area, &io, &mut |_, l| len = l);
                    (io, area, len)
                })
                .collect()
        };
        g.throughput(Throughput::Bytes(sectors as u64 * 512));
        let reads = build(false);
        let mut i = 0;
        g.bench_with_input(BenchmarkId::new("read", sectors), &sectors, |b, _| {
            b.iter(|| {
                i = (i + 1) % reads.len();
                let (_, area, len) = &reads[i];
                target.handle_frame(black_box(&area[..*len]), now, &mut out);
                out.clear();
            })
        });
        let mut writes = build(true);
        let mut i = 0;
        g.bench_with_input(BenchmarkId::new("write", sectors), &sectors, |b, _| {
            b.iter_custom(|iters| {
                let mut spent = Duration::ZERO;
                let mut data: Vec<(usize, usize)> = Vec::new();
                for _ in 0..iters {
                    i = (i + 1) % writes.len();
                    let (io, area, len) = &mut writes[i];
                    let t = Instant::now();
                    target.handle_frame(black_box(&area[..*len]), now, &mut out);
                    spent += t.elapsed();
                    // The XFER_RDY names the target's exchange: build the data frames for it.
                    let ready = out.frames().find_map(|f| match proto.parse(f)?.event {
                        Event::WriteReady {
                            offset,
                            len,
                            responder_id,
                        } => Some((offset, len, responder_id)),
                        _ => None,
                    });
                    out.clear();
                    let (offset, bytes, rx_id) = ready.expect("an XFER_RDY");
                    data.clear();
                    proto.write_ready(area, io, offset, bytes, rx_id, &mut |at, l| {
                        data.push((at, l))
                    });
                    let t = Instant::now();
                    for &(at, l) in &data {
                        target.handle_frame(black_box(&area[at..at + l]), now, &mut out);
                    }
                    spent += t.elapsed();
                    out.clear();
                }
                spent
            })
        });
    }
    g.finish();
    let st = target.stats();
    assert_eq!(
        st.fcp_errors, before.fcp_errors,
        "bench requests must all succeed: {st:?}"
    );
    assert_eq!(
        st.drop_bad_crc + st.drop_unknown_exchange + st.drop_bad_data,
        0,
        "{st:?}"
    );
}

criterion_group!(benches, wire_crc, wire_parse, dispatch);
criterion_main!(benches);
