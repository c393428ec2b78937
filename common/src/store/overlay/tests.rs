use super::*;
use crate::store::tests::{open_read_only, tempdir::Dir};
use crate::store::ImageOptions;

/// A base image file of `len` bytes with a position-dependent pattern (no zero runs, so a
/// block wrongly read from a hole or from another block shows), opened read-only.
fn base_image(dir: &Path, len: u64) -> (Arc<Image>, Vec<u8>) {
    let bytes: Vec<u8> = (0..len)
        .map(|i| (i.wrapping_mul(131) ^ (i >> 9)) as u8 | 1)
        .collect();
    let path = dir.join("base.img");
    std::fs::write(&path, &bytes).unwrap();
    (Arc::new(open_read_only(&path)), bytes)
}

fn open_set(base: &Arc<Image>, dir: &Path, opts: OverlayOptions) -> OverlaySet {
    OverlaySet::open(base.clone(), dir, opts).unwrap()
}

/// A 1 MiB base in `d` and its overlay directory `ov`, where client 1 has written a block.
fn one_overlay_written(d: &Dir) -> (Arc<Image>, PathBuf) {
    let (base, _) = base_image(d.path(), 1 << 20);
    let ovdir = d.path().join("ov");
    open_set(&base, &ovdir, OverlayOptions::default())
        .volume(&mac(1))
        .write_at(0, &[1; 512])
        .unwrap();
    (base, ovdir)
}

fn mac(n: u8) -> ClientKey {
    ClientKey::mac(MacAddr([0x52, 0x54, 0, 0x12, 0x34, n]))
}

fn read_all(v: &dyn Volume) -> Vec<u8> {
    let mut buf = vec![0u8; v.len_bytes() as usize];
    v.read_at(0, &mut buf).unwrap();
    buf
}

fn apply(model: &mut [u8], offset: u64, data: &[u8]) {
    model[offset as usize..offset as usize + data.len()].copy_from_slice(data);
}

#[test]
fn client_keys_print_parse_and_name_files() {
    let m: ClientKey = "52:54:00:AB:cd:01".parse().unwrap();
    assert_eq!(m.to_string(), "52:54:00:ab:cd:01");
    assert_eq!(m, ClientKey::mac(MacAddr([0x52, 0x54, 0, 0xab, 0xcd, 1])));
    assert_eq!(m.file_stem(), "52-54-00-ab-cd-01");
    assert_eq!(m.file_stem().parse::<ClientKey>().unwrap(), m);
    let w = ClientKey::wwpn(0x2000_5254_0012_3456);
    assert_eq!(w.to_string(), "20:00:52:54:00:12:34:56");
    assert_eq!("20:00:52:54:00:12:34:56".parse::<ClientKey>().unwrap(), w);
    assert_ne!(w, m);
    for bad in [
        "",
        "52:54:00:12:34",
        "52:54:00:12:34:56:78",
        "1:2:3:4:5:6:7:8:9",
        "zz:54:00:12:34:56",
        "520:54:00:12:34:5",
    ] {
        let e = bad.parse::<ClientKey>().unwrap_err();
        assert!(e.to_string().contains("52:54:00:12:34:56"), "{e}");
    }
}

#[test]
fn reads_before_the_first_write_go_to_the_base_and_create_nothing() {
    let d = Dir::new();
    let (base, bytes) = base_image(d.path(), 64 << 10);
    let ovdir = d.path().join("ov");
    let set = open_set(&base, &ovdir, OverlayOptions::default());
    let v = set.volume(&mac(1));
    assert!(!v.read_only());
    assert_eq!(v.sectors(), 128);
    assert_eq!(read_all(&v), bytes);
    assert_eq!(std::fs::read_dir(&ovdir).unwrap().count(), 0);
    assert!(set.list().is_empty());
    // The shared view is the base, read-only.
    let shared = set.shared_volume();
    assert!(shared.read_only());
    assert!(matches!(
        shared.write_at(0, &[1; 512]),
        Err(StoreError::ReadOnly)
    ));
}

#[test]
fn twenty_clients_read_back_only_their_own_writes_and_the_base_is_unchanged() {
    let d = Dir::new();
    let len = 1 << 20;
    let (base, bytes) = base_image(d.path(), len);
    let base_file = d.path().join("base.img");
    let set = open_set(&base, &d.path().join("ov"), OverlayOptions::default());
    let clients: Vec<ClientKey> = (0..20).map(mac).collect();
    let mut models = vec![bytes.clone(); clients.len()];
    // Every client writes its own pattern, partly at the same offsets as the others.
    for (n, c) in clients.iter().enumerate() {
        let v = set.volume(c);
        for k in 0..12u64 {
            let offset = (k * 81_920 + n as u64 * 1536) % (len - 9000);
            let data: Vec<u8> = (0..512 * (1 + k as usize % 9))
                .map(|i| (n * 31 + i + k as usize) as u8)
                .collect();
            v.write_at(offset, &data).unwrap();
            apply(&mut models[n], offset, &data);
        }
    }
    for (n, c) in clients.iter().enumerate() {
        assert!(
            read_all(&set.volume(c)) == models[n],
            "client {n} reads other bytes"
        );
    }
    // A client that never wrote sees the base.
    assert_eq!(read_all(&set.volume(&mac(99))), bytes);
    assert_eq!(std::fs::read(&base_file).unwrap(), bytes);
    let list = set.list();
    assert_eq!(list.len(), 20);
    assert_eq!(list.iter().map(|i| i.client).collect::<Vec<_>>(), clients);
    assert!(list
        .iter()
        .all(|i| i.blocks_written >= 12 && i.bytes_allocated > 0));
}

#[test]
fn partial_block_writes_merge_with_the_base() {
    let d = Dir::new();
    // 10.5 blocks: the last block is partial.
    let len = 10 * 4096 + 512 * 4;
    let (base, bytes) = base_image(d.path(), len);
    let set = open_set(&base, &d.path().join("ov"), OverlayOptions::default());
    let v = set.volume(&mac(1));
    let mut model = bytes.clone();
    // Inside one block, across a block boundary, the partial last block, a whole block.
    for (offset, data) in [
        (4096 + 100, vec![0u8; 3]),
        (3 * 4096 - 512, vec![0xaa; 1024]),
        (len - 700, vec![0xbb; 700]),
        (5 * 4096, vec![0xcc; 4096]),
    ] {
        v.write_at(offset, &data).unwrap();
        apply(&mut model, offset, &data);
        assert!(read_all(&v) == model, "after a write at {offset}");
    }
    // Blocks 1, 2, 3, 5, 10 are in the overlay; the copy-ups put the base's bytes around the
    // written ones in the data file itself.
    assert_eq!(set.list()[0].blocks_written, 5);
    let data_file = std::fs::read(
        d.path()
            .join("ov")
            .join(format!("{}.data", mac(1).file_stem())),
    )
    .unwrap();
    assert_eq!(data_file.len() as u64, len);
    for b in [1usize, 2, 3, 5] {
        assert!(
            data_file[b * 4096..(b + 1) * 4096] == model[b * 4096..(b + 1) * 4096],
            "block {b}"
        );
    }
    assert!(data_file[10 * 4096..] == model[10 * 4096..]);
    assert!(
        data_file[0..4096].iter().all(|&b| b == 0),
        "block 0 was never written"
    );
}

#[test]
fn out_of_range_is_refused() {
    let d = Dir::new();
    let (base, _) = base_image(d.path(), 8192);
    let set = open_set(&base, &d.path().join("ov"), OverlayOptions::default());
    let v = set.volume(&mac(1));
    let mut buf = [0u8; 512];
    assert!(matches!(
        v.read_at(8192 - 511, &mut buf),
        Err(StoreError::OutOfRange { .. })
    ));
    assert!(matches!(
        v.write_at(u64::MAX - 10, &buf),
        Err(StoreError::OutOfRange { .. })
    ));
    assert!(set.list().is_empty(), "a refused write creates no overlay");
}

#[test]
fn reset_discards_the_files_and_the_client_sees_the_base_again() {
    let d = Dir::new();
    let (base, bytes) = base_image(d.path(), 64 << 10);
    let ovdir = d.path().join("ov");
    let set = open_set(&base, &ovdir, OverlayOptions::default());
    set.volume(&mac(1)).write_at(512, &[7; 1024]).unwrap();
    set.volume(&mac(2)).write_at(512, &[8; 1024]).unwrap();
    assert_eq!(std::fs::read_dir(&ovdir).unwrap().count(), 4);
    assert!(set.reset(&mac(1)).unwrap());
    assert!(!set.reset(&mac(1)).unwrap(), "nothing left to reset");
    assert_eq!(read_all(&set.volume(&mac(1))), bytes);
    assert_eq!(std::fs::read_dir(&ovdir).unwrap().count(), 2);
    let mut buf = [0u8; 1024];
    set.volume(&mac(2)).read_at(512, &mut buf).unwrap();
    assert_eq!(buf, [8; 1024], "the other client keeps its overlay");
    // A write after the reset starts a new overlay.
    set.volume(&mac(1)).write_at(4096, &[9; 512]).unwrap();
    let list = set.list();
    assert_eq!(list[0].client, mac(1));
    assert_eq!(list[0].blocks_written, 1);
}

#[test]
fn reset_under_concurrent_readers_and_writers() {
    let d = Dir::new();
    let (base, bytes) = base_image(d.path(), 256 << 10);
    let set = Arc::new(open_set(
        &base,
        &d.path().join("ov"),
        OverlayOptions::default(),
    ));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let ops = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let c = mac(1);
    let len: u64 = 256 << 10;
    let mut threads = Vec::new();
    for t in 0..2u8 {
        let (set, stop, ops, bytes) = (set.clone(), stop.clone(), ops.clone(), bytes.clone());
        threads.push(std::thread::spawn(move || {
            let v = set.volume(&c);
            let mut buf = vec![0u8; 8192];
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let at = ((i * 4096 * 3) % len).min(len - 8192);
                if t == 0 {
                    v.write_at(at, &[0xee; 8192]).unwrap();
                } else {
                    v.read_at(at, &mut buf).unwrap();
                    // Every 512-byte sector is either the base's or the writer's.
                    for (s, chunk) in buf.chunks(512).enumerate() {
                        let b = &bytes[at as usize + s * 512..at as usize + s * 512 + 512];
                        assert!(chunk == b || chunk.iter().all(|&x| x == 0xee));
                    }
                }
                i += 1;
                ops.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let mut resets = 0;
    // (A thread that panicked ends the loop; its join below fails the test.)
    while (resets < 50 || ops.load(Ordering::Relaxed) < 2000)
        && !threads.iter().any(|t| t.is_finished())
    {
        resets += u32::from(set.reset(&c).unwrap());
        std::thread::sleep(Duration::from_micros(200));
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn commit_writes_base_plus_overlay_into_a_new_file() {
    let d = Dir::new();
    let len = 3 << 20;
    let (base, bytes) = base_image(d.path(), len);
    let set = open_set(&base, &d.path().join("ov"), OverlayOptions::default());
    let v = set.volume(&mac(1));
    let mut model = bytes.clone();
    for (offset, n) in [(100u64, 7usize), (4096 * 300 + 17, 9000), (len - 512, 512)] {
        let data = vec![0x5a; n];
        v.write_at(offset, &data).unwrap();
        apply(&mut model, offset, &data);
    }
    let out = d.path().join("new-base.img");
    let mut calls = Vec::new();
    set.commit(&mac(1), &out, &mut |done, total| calls.push((done, total)))
        .unwrap();
    assert!(std::fs::read(&out).unwrap() == model);
    assert_eq!(
        std::fs::read(d.path().join("base.img")).unwrap(),
        bytes,
        "base untouched"
    );
    assert_eq!(calls.first(), Some(&(0, len)));
    assert_eq!(calls.last(), Some(&(len, len)));
    assert!(calls.windows(2).all(|w| w[0].0 < w[1].0));
    // No partial file left; an existing name is refused and left alone.
    assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 3);
    let e = set.commit(&mac(1), &out, &mut |_, _| {}).unwrap_err();
    assert!(matches!(e, OverlayError::CommitTargetExists { .. }), "{e}");
    let e = set
        .commit(&mac(1), &d.path().join("base.img"), &mut |_, _| {})
        .unwrap_err();
    assert!(e.to_string().contains("does not exist"), "{e}");
    // The overlay stays; a client without one commits a copy of the base.
    assert_eq!(read_all(&v), model);
    let copy = d.path().join("copy.img");
    set.commit(&mac(2), &copy, &mut |_, _| {}).unwrap();
    assert_eq!(std::fs::read(&copy).unwrap(), bytes);
}

#[test]
fn persistent_overlays_survive_a_reopen() {
    let d = Dir::new();
    let (base, bytes) = base_image(d.path(), 1 << 20);
    let ovdir = d.path().join("ov");
    let mut models = Vec::new();
    {
        let set = open_set(&base, &ovdir, OverlayOptions::default());
        for n in 0..3u8 {
            let mut m = bytes.clone();
            let data = vec![n + 1; 9000];
            set.volume(&mac(n))
                .write_at(u64::from(n) * 70_000 + 3, &data)
                .unwrap();
            apply(&mut m, u64::from(n) * 70_000 + 3, &data);
            models.push(m);
        }
        set.flush().unwrap();
    }
    let set = open_set(&base, &ovdir, OverlayOptions::default());
    let list = set.list();
    assert_eq!(list.len(), 3);
    for n in 0..3u8 {
        assert!(read_all(&set.volume(&mac(n))) == models[usize::from(n)]);
        assert_eq!(list[usize::from(n)].blocks_written, 3);
    }
}

#[test]
fn an_overlay_of_another_base_is_refused_with_its_name() {
    let d = Dir::new();
    let (_base, ovdir) = one_overlay_written(&d);
    // Same path, other size.
    let other = d.path().join("sub");
    std::fs::create_dir(&other).unwrap();
    let (small, _) = base_image(&other, 1 << 19);
    let e = OverlaySet::open(small, &ovdir, OverlayOptions::default()).unwrap_err();
    assert!(
        matches!(e, OverlayError::BaseSize { expected, actual, .. } if expected == 1 << 20 && actual == 1 << 19),
        "{e}"
    );
    assert!(e.to_string().contains("52-54-00-12-34-01.map"), "{e}");
    // Same size, other path.
    let (same_size, _) = base_image(&other, 1 << 20);
    let e = OverlaySet::open(same_size, &ovdir, OverlayOptions::default()).unwrap_err();
    assert!(matches!(e, OverlayError::BasePath { .. }), "{e}");
    assert!(e.to_string().contains("base.img"), "{e}");
    // A writable base is refused outright.
    let rw = Arc::new(Image::open(&d.path().join("base.img"), ImageOptions::default()).unwrap());
    assert!(matches!(
        OverlaySet::open(rw, &d.path().join("ov2"), OverlayOptions::default()),
        Err(OverlayError::BaseWritable { .. })
    ));
}

#[test]
fn a_damaged_map_is_refused_and_leftovers_of_a_creation_are_removed() {
    let d = Dir::new();
    let (base, ovdir) = one_overlay_written(&d);
    // Leftovers: a map being created, a data file without its map; an unrelated file.
    std::fs::write(ovdir.join("52-54-00-12-34-02.map.tmp"), b"x").unwrap();
    std::fs::write(ovdir.join("52-54-00-12-34-03.data"), b"x").unwrap();
    std::fs::write(ovdir.join("README"), b"mine").unwrap();
    let set = open_set(&base, &ovdir, OverlayOptions::default());
    assert_eq!(set.list().len(), 1);
    let mut names: Vec<String> = std::fs::read_dir(&ovdir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["52-54-00-12-34-01.data", "52-54-00-12-34-01.map", "README"]
    );
    drop(set);
    // One flipped header byte.
    let map = ovdir.join("52-54-00-12-34-01.map");
    let mut m = std::fs::read(&map).unwrap();
    m[20] ^= 1;
    std::fs::write(&map, &m).unwrap();
    let e = OverlaySet::open(base.clone(), &ovdir, OverlayOptions::default()).unwrap_err();
    assert!(matches!(e, OverlayError::Corrupt { .. }), "{e}");
    assert!(e.to_string().contains("checksum"), "{e}");
    // A map renamed to another client's name.
    m[20] ^= 1;
    std::fs::write(&map, &m).unwrap();
    std::fs::rename(&map, ovdir.join("52-54-00-12-34-09.map")).unwrap();
    std::fs::rename(
        ovdir.join("52-54-00-12-34-01.data"),
        ovdir.join("52-54-00-12-34-09.data"),
    )
    .unwrap();
    let e = OverlaySet::open(base, &ovdir, OverlayOptions::default()).unwrap_err();
    assert!(
        e.to_string().contains("names client 52:54:00:12:34:01"),
        "{e}"
    );
}

#[test]
fn header_round_trips_and_every_truncation_fails() {
    let h = Header {
        client: ClientKey::wwpn(0x2000_0025_b500_0001),
        base_path: PathBuf::from("/srv/l2san/golden.img"),
        base_len: 123 << 20,
        created: 1_700_000_000,
    };
    let bytes = h.encode().unwrap();
    assert_eq!(bytes.len(), 4096);
    assert_eq!(&bytes[..8], b"L2SANCOW");
    assert_eq!(Header::decode(&bytes).unwrap(), h);
    for n in [0, 8, 100, 4095] {
        assert!(Header::decode(&bytes[..n]).is_err());
    }
    let long = Header {
        base_path: PathBuf::from("/".repeat(5000)),
        ..h
    };
    assert!(long.encode().is_none());
}

/// 4 threads write sectors of the same 4 KiB blocks of one client (thread t: every sector
/// s with s % 4 == t), so first writes to a block race: a copy-up that ignored another
/// thread's data would put base bytes back over it. Two more threads read meanwhile.
#[test]
fn concurrent_first_writes_to_shared_blocks_lose_nothing() {
    let d = Dir::new();
    let len: u64 = 512 << 10;
    let (base, bytes) = base_image(d.path(), len);
    let set = Arc::new(open_set(
        &base,
        &d.path().join("ov"),
        OverlayOptions::default(),
    ));
    let sectors = len / 512;
    // A new client each round: every round races on fresh blocks.
    for round in 0..8u8 {
        let c = mac(round);
        let mut threads = Vec::new();
        for t in 0..4u64 {
            let set = set.clone();
            threads.push(std::thread::spawn(move || {
                let v = set.volume(&c);
                for s in (t..sectors).step_by(4) {
                    v.write_at(s * 512, &[t as u8 + 0xf0; 512]).unwrap();
                }
            }));
        }
        for _ in 0..2 {
            let (set, bytes) = (set.clone(), bytes.clone());
            threads.push(std::thread::spawn(move || {
                let v = set.volume(&c);
                let mut buf = vec![0u8; 8192];
                for round in 0..200u64 {
                    let at = (round * 8192 * 7) % len;
                    v.read_at(at, &mut buf).unwrap();
                    for (i, sector) in buf.chunks(512).enumerate() {
                        let s = at / 512 + i as u64;
                        let mine = [(s % 4) as u8 + 0xf0; 512];
                        let b = &bytes[(s * 512) as usize..(s * 512 + 512) as usize];
                        assert!(sector == mine || sector == b, "sector {s} is neither");
                    }
                }
            }));
        }
        for t in threads {
            t.join().unwrap();
        }
        let all = read_all(&set.volume(&c));
        for s in 0..sectors {
            let sector = &all[(s * 512) as usize..(s * 512 + 512) as usize];
            assert!(
                sector.iter().all(|&b| b == (s % 4) as u8 + 0xf0),
                "sector {s} lost its write"
            );
        }
        assert_eq!(set.list()[usize::from(round)].blocks_written, len / 4096);
    }
}

#[test]
fn reset_policy_discards_on_a_boot_after_silence_only() {
    let d = Dir::new();
    let (base, bytes) = base_image(d.path(), 64 << 10);
    let opts = OverlayOptions {
        policy: OverlayPolicy::Reset,
        reset_after: Duration::from_secs(30),
        ..Default::default()
    };
    let set = open_set(&base, &d.path().join("ov"), opts);
    let c = mac(1);
    let t0 = Instant::now();
    set.volume(&c).write_at(0, &[1; 512]).unwrap();
    // Requests keep the client alive; a boot start soon after (iPXE, then the OS) keeps it.
    assert!(!set.client_seen(&c, t0 + Duration::from_secs(20), false));
    assert!(!set.client_seen(&c, t0 + Duration::from_secs(45), true));
    assert!(!set.client_seen(&c, t0 + Duration::from_secs(70), false));
    // 30 s of silence, then not a boot start: kept.
    assert!(!set.client_seen(&c, t0 + Duration::from_secs(100), false));
    assert_eq!(set.list().len(), 1);
    // 30 s of silence, then a boot start: discarded, exactly once.
    assert!(set.client_seen(&c, t0 + Duration::from_secs(130), true));
    assert!(!set.client_seen(&c, t0 + Duration::from_secs(130), true));
    assert!(set.list().is_empty());
    assert_eq!(read_all(&set.volume(&c)), bytes);
    // Unknown clients and the persistent policy: nothing happens.
    assert!(!set.client_seen(&mac(2), t0 + Duration::from_secs(900), true));
    let keep = open_set(&base, &d.path().join("ov2"), OverlayOptions::default());
    keep.volume(&c).write_at(0, &[1; 512]).unwrap();
    assert!(!keep.client_seen(&c, t0 + Duration::from_secs(900), true));
    assert_eq!(keep.list().len(), 1);
}

#[test]
fn after_a_restart_every_overlay_counts_as_just_heard() {
    let d = Dir::new();
    let (base, _) = base_image(d.path(), 64 << 10);
    let ovdir = d.path().join("ov");
    let opts = OverlayOptions {
        policy: OverlayPolicy::Reset,
        reset_after: Duration::from_secs(30),
        ..Default::default()
    };
    let first = open_set(&base, &ovdir, opts);
    for n in 1..=2 {
        first.volume(&mac(n)).write_at(0, &[n; 512]).unwrap();
    }
    drop(first);
    let set = open_set(&base, &ovdir, opts);
    let start = Instant::now();
    // A running client logging in again right after the restart keeps its disk...
    assert!(!set.client_seen(&mac(1), start + Duration::from_secs(2), true));
    assert_eq!(set.list().len(), 2);
    // ...and a boot after reset_after of silence since the start discards it.
    assert!(set.client_seen(&mac(2), start + Duration::from_secs(31), true));
    assert_eq!(
        set.list().iter().map(|i| i.client).collect::<Vec<_>>(),
        [mac(1)]
    );
}

#[test]
fn durability_modes_flush_as_they_say() {
    let d = Dir::new();
    let (base, _) = base_image(d.path(), 64 << 10);
    let wb = open_set(&base, &d.path().join("wb"), OverlayOptions::default());
    let v = wb.volume(&mac(1));
    assert!(v.write_cache_enabled());
    assert!(!wb.flush_if_dirty().unwrap(), "nothing written yet");
    v.write_at(0, &[1; 512]).unwrap();
    assert!(wb.flush_if_dirty().unwrap());
    assert!(!wb.flush_if_dirty().unwrap());
    let sync = open_set(
        &base,
        &d.path().join("sync"),
        OverlayOptions {
            durability: Durability::Sync,
            ..Default::default()
        },
    );
    let v = sync.volume(&mac(1));
    assert!(!v.write_cache_enabled());
    v.write_at(0, &[1; 512]).unwrap();
    assert!(
        !sync.flush_if_dirty().unwrap(),
        "sync writes leave nothing to flush"
    );
    v.flush().unwrap();
}

/// kill -9 of a process writing to an overlay: every write it acknowledged (printed) is
/// there after a reopen, and the base bytes around each (copied up) too.
fn kill9_keeps_every_acknowledged_write(durability: Durability) {
    use std::io::BufRead;
    let d = Dir::new();
    let (_, bytes) = base_image(d.path(), CRASH_LEN);
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "store::overlay::tests::crash_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("L2SAN_OVERLAY_CRASH_DIR", d.path())
        .env(
            "L2SAN_OVERLAY_CRASH_SYNC",
            if durability == Durability::Sync {
                "1"
            } else {
                "0"
            },
        )
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut acked = 0u64;
    while acked < 300 {
        let line = lines.next().expect("the writer ended early").unwrap();
        if let Some(n) = line.strip_prefix("ACK ") {
            acked = n.parse::<u64>().unwrap() + 1;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    // What it printed before it died was acknowledged too.
    for line in lines {
        if let Some(n) = line.unwrap().strip_prefix("ACK ") {
            acked = n.parse::<u64>().unwrap() + 1;
        }
    }
    let (_base, set) = crash_set(d.path(), durability);
    let all = read_all(&set.volume(&mac(1)));
    for i in 0..CRASH_WRITES {
        let (at, len) = crash_write(i);
        let got = &all[at as usize..(at + len) as usize];
        if i < acked {
            assert!(
                got.iter().all(|&b| b == crash_byte(i)),
                "acknowledged write {i} lost"
            );
        } else if i > acked {
            assert!(
                got == &bytes[at as usize..(at + len) as usize],
                "write {i} was never made"
            );
        }
        // Between writes: the base, copied up or not.
        let gap = &all[(at + len) as usize..(at + CRASH_STRIDE) as usize];
        assert!(
            gap == &bytes[(at + len) as usize..(at + CRASH_STRIDE) as usize],
            "base lost after write {i}"
        );
    }
}

const CRASH_LEN: u64 = 8 << 20;
const CRASH_STRIDE: u64 = 3 * 1024;
const CRASH_WRITES: u64 = CRASH_LEN / CRASH_STRIDE;
/// The crash test's base (`dir/base.img`, read-only) and overlay set (`dir/ov`), both at
/// `durability`.
fn crash_set(dir: &Path, durability: Durability) -> (Arc<Image>, OverlaySet) {
    let options = ImageOptions {
        read_only: true,
        durability,
    };
    let base = Arc::new(Image::open(&dir.join("base.img"), options).unwrap());
    let options = OverlayOptions {
        durability,
        ..Default::default()
    };
    let set = open_set(&base, &dir.join("ov"), options);
    (base, set)
}

fn crash_write(i: u64) -> (u64, u64) {
    (i * CRASH_STRIDE, 1024 + (i % 3) * 512)
}
fn crash_byte(i: u64) -> u8 {
    (i % 250) as u8 + 2
}

#[test]
fn kill9_keeps_every_acknowledged_write_writeback() {
    kill9_keeps_every_acknowledged_write(Durability::Writeback);
}

#[test]
fn kill9_keeps_every_acknowledged_write_sync() {
    kill9_keeps_every_acknowledged_write(Durability::Sync);
}

/// The writer process of the kill -9 tests; does nothing when run on its own.
#[test]
#[ignore = "the child process of kill9_keeps_every_acknowledged_write_*"]
fn crash_child() {
    let Some(dir) = std::env::var_os("L2SAN_OVERLAY_CRASH_DIR") else {
        return;
    };
    let dir = PathBuf::from(dir);
    let durability = if std::env::var("L2SAN_OVERLAY_CRASH_SYNC").as_deref() == Ok("1") {
        Durability::Sync
    } else {
        Durability::Writeback
    };
    let (_base, set) = crash_set(&dir, durability);
    let v = set.volume(&mac(1));
    for i in 0..CRASH_WRITES {
        let (at, len) = crash_write(i);
        v.write_at(at, &vec![crash_byte(i); len as usize]).unwrap();
        println!("ACK {i}");
    }
    // Wait to be killed; never flush.
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

#[derive(Debug, Clone)]
enum Op {
    Write { offset: u64, len: usize, byte: u8 },
    Read { offset: u64, len: usize },
    Reset,
    Reopen,
}

fn op() -> impl proptest::strategy::Strategy<Value = Op> {
    use proptest::prelude::*;
    let len: u64 = 26 * 1024 + 512;
    prop_oneof![
        8 => (0..len, 1usize..9000, any::<u8>()).prop_map(|(offset, len, byte)| Op::Write { offset, len, byte }),
        8 => (0..len, 1usize..9000).prop_map(|(offset, len)| Op::Read { offset, len }),
        1 => Just(Op::Reset),
        1 => Just(Op::Reopen),
    ]
}

proptest::proptest! {
    #![proptest_config(proptest::test_runner::Config::with_cases(64))]
    /// An overlay against a `Vec<u8>` model: random reads, writes (any alignment, across
    /// blocks, into the partial last block), resets and reopens.
    #[test]
    fn overlay_matches_a_vec_model(ops in proptest::collection::vec(op(), 1..40)) {
        let d = Dir::new();
        let len = 26 * 1024 + 512;
        let (base, bytes) = base_image(d.path(), len);
        let ovdir = d.path().join("ov");
        let mut set = open_set(&base, &ovdir, OverlayOptions::default());
        let mut model = bytes.clone();
        let c = mac(1);
        for op in ops {
            match op {
                Op::Write { offset, len: n, byte } => {
                    let ok = offset + n as u64 <= len;
                    let data = vec![byte; n];
                    proptest::prop_assert_eq!(set.volume(&c).write_at(offset, &data).is_ok(), ok);
                    if ok {
                        apply(&mut model, offset, &data);
                    }
                    // Another client never sees it.
                    let mut one = [0u8; 1];
                    set.volume(&mac(2)).read_at(offset.min(len - 1), &mut one).unwrap();
                    proptest::prop_assert_eq!(one[0], bytes[offset.min(len - 1) as usize]);
                }
                Op::Read { offset, len: n } => {
                    let ok = offset + n as u64 <= len;
                    let mut buf = vec![0u8; n];
                    proptest::prop_assert_eq!(set.volume(&c).read_at(offset, &mut buf).is_ok(), ok);
                    if ok {
                        proptest::prop_assert_eq!(&buf[..], &model[offset as usize..offset as usize + n]);
                    }
                }
                Op::Reset => {
                    set.reset(&c).unwrap();
                    model.clone_from(&bytes);
                }
                Op::Reopen => {
                    drop(set);
                    set = open_set(&base, &ovdir, OverlayOptions::default());
                }
            }
        }
        proptest::prop_assert!(read_all(&set.volume(&c)) == model);
        proptest::prop_assert!(std::fs::read(d.path().join("base.img")).unwrap() == bytes);
    }
}
