//! Store copies: what one read or write of N sectors costs in the image store, memory-backed
//! file-backed (page cache) with writes through the map, and sparse with writes by pwrite.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use l2san_common::{Image, ImageOptions};

fn store(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("l2san-bench-store-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // A written-out image takes writes through the map; a sparse one through pwrite.
    let path = dir.join("disk.img");
    std::fs::write(&path, vec![0u8; 64 << 20]).unwrap();
    let file = Image::open(&path, ImageOptions::default()).unwrap();
    let sparse_path = dir.join("sparse.img");
    std::fs::File::create(&sparse_path)
        .unwrap()
        .set_len(64 << 20)
        .unwrap();
    let sparse = Image::open(&sparse_path, ImageOptions::default()).unwrap();
    let memory = Image::memory(64 << 20, ImageOptions::default()).unwrap();
    // Touch every page once so that the benches measure copies, not first faults.
    let mut warm = vec![0u8; 1 << 20];
    for off in (0..64u64 << 20).step_by(1 << 20) {
        file.write_at(off, &warm).unwrap();
        sparse.write_at(off, &warm).unwrap();
        memory.write_at(off, &warm).unwrap();
        file.read_at(off, &mut warm).unwrap();
    }

    let mut g = c.benchmark_group("store");
    for sectors in [1usize, 2, 17] {
        let len = sectors * 512;
        let mut buf = vec![0u8; len];
        g.throughput(Throughput::Bytes(len as u64));
        for (name, img) in [("file", &file), ("sparse", &sparse), ("memory", &memory)] {
            let mut lba = 0u64;
            g.bench_with_input(
                BenchmarkId::new(format!("read/{name}"), sectors),
                &len,
                |b, _| {
                    b.iter(|| {
                        lba = (lba + 97) % ((64 << 20) / 512 - 17);
                        img.read_at(lba * 512, black_box(&mut buf)).unwrap();
                    })
                },
            );
            g.bench_with_input(
                BenchmarkId::new(format!("write/{name}"), sectors),
                &len,
                |b, _| {
                    b.iter(|| {
                        lba = (lba + 97) % ((64 << 20) / 512 - 17);
                        img.write_at(lba * 512, black_box(&buf)).unwrap();
                    })
                },
            );
        }
    }
    g.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, store);
criterion_main!(benches);
