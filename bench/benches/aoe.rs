//! AoE per message: header and ATA argument parse, and whole-request dispatch
//! (`AoeTarget::handle_frame`) on an in-memory image per I/O size, reads and writes. Dispatch
//! costs what it does in a worker: the receive time is read once per batch (here once), the
//! transmit path's clock once per ATA reply (a `TxBatch` reads the real clock).

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use l2san_aoe::wire::ata::AtaPacket;
use l2san_aoe::wire::header::HeaderPacket;
use l2san_aoe::{AoeExport, AoeTarget};
use l2san_common::io::TxBatch;
use l2san_common::test_utils::frame;
use l2san_common::{EtherType, Image, ImageOptions, MacAddr};

const TARGET_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 1]);
const CLIENT_MAC: MacAddr = MacAddr([0x52, 0x54, 0, 0x12, 0x34, 0x56]);
const IMAGE_LEN: u64 = 64 << 20;

/// A READ or WRITE SECTORS EXT request for `sectors` at `lba`, tag `tag`.
fn request(write: bool, lba: u64, sectors: u8, tag: u32) -> Vec<u8> {
    let mut p = vec![0x10, 0, 0, 0, 0, 0];
    p.extend_from_slice(&tag.to_be_bytes());
    let aflags = if write { 0x41 } else { 0x40 };
    let cmd = if write { 0x34 } else { 0x24 };
    p.extend_from_slice(&[aflags, 0, sectors, cmd]);
    p.extend_from_slice(&lba.to_le_bytes()[..6]);
    p.extend_from_slice(&[0, 0]);
    if write {
        p.extend(std::iter::repeat_n(0x5a, sectors as usize * 512));
    }
    frame(TARGET_MAC, CLIENT_MAC, EtherType::Aoe, &p)
}

fn wire(c: &mut Criterion) {
    let f = request(false, 123456, 2, 7);
    c.bench_function("aoe/wire/parse_header_and_ata", |b| {
        b.iter(|| {
            let h = HeaderPacket::new_checked(black_box(&f[14..])).unwrap();
            let a = AtaPacket::new_checked(h.payload()).unwrap();
            black_box((h.tag(), h.major(), a.lba(), a.sector_count()))
        })
    });
}

fn dispatch(c: &mut Criterion) {
    let image = Arc::new(Image::memory(IMAGE_LEN, ImageOptions::default()).unwrap());
    image.write_at(0, &vec![0xa5; IMAGE_LEN as usize]).unwrap();
    let target = AoeTarget::new(TARGET_MAC, 9000, "bench", vec![AoeExport::new(0, 0, image)]);
    let mut tx = TxBatch::new(1);
    let now = Instant::now();
    let mut g = c.benchmark_group("aoe/dispatch");
    for sectors in [1u8, 2, 17] {
        let max_lba = IMAGE_LEN / 512 - sectors as u64;
        let reads: Vec<_> = (0..256u64)
            .map(|i| request(false, i * 997 % max_lba, sectors, i as u32))
            .collect();
        let writes: Vec<_> = (0..256u64)
            .map(|i| request(true, i * 991 % max_lba, sectors, i as u32))
            .collect();
        g.throughput(Throughput::Bytes(sectors as u64 * 512));
        for (name, frames) in [("read", &reads), ("write", &writes)] {
            let mut i = 0;
            g.bench_with_input(BenchmarkId::new(name, sectors), &sectors, |b, _| {
                b.iter(|| {
                    i = (i + 1) % frames.len();
                    target.handle_frame(black_box(&frames[i]), now, &mut tx);
                    tx.clear();
                })
            });
        }
    }
    g.finish();
    assert_eq!(
        target.stats().snapshot().ata_errors,
        0,
        "bench requests must all succeed"
    );
}

criterion_group!(benches, wire, dispatch);
criterion_main!(benches);
