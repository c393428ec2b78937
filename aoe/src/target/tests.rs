//! Protocol tests: hand-built requests through `handle_frame`, replies checked byte by byte.
//! Capture replays live in `replay.rs`.

use super::*;
use std::time::Duration;

use l2san_common::test_utils::{drain, frame, StaleTx};
use l2san_common::{Image, ImageOptions, TxBatch};

mod replay;

const US: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x99]);
const HOST_A: MacAddr = MacAddr([0x52, 0x54, 0, 0x12, 0x34, 0x56]);
const HOST_B: MacAddr = MacAddr([0x52, 0x54, 0, 0x12, 0x34, 0x57]);
const SECTORS: u64 = 4096;

pub(super) fn memory_image(sectors: u64, read_only: bool) -> Arc<Image> {
    let opts = ImageOptions {
        read_only,
        ..Default::default()
    };
    Arc::new(Image::memory(sectors * 512, opts).unwrap())
}

fn target_with(exports: Vec<AoeExport>) -> AoeTarget {
    AoeTarget::new(US, 1500, "testhost", exports)
}

/// e1.2 over a fresh writable image.
fn target() -> (AoeTarget, Arc<Image>) {
    let img = memory_image(SECTORS, false);
    (target_with(vec![AoeExport::new(1, 2, img.clone())]), img)
}

fn send(t: &AoeTarget, f: &[u8]) -> Vec<Vec<u8>> {
    let mut tx = StaleTx::new();
    t.handle_frame(f, tx.now, &mut tx);
    tx.frames
}

fn send_one(t: &AoeTarget, f: &[u8]) -> Vec<u8> {
    let mut r = send(t, f);
    assert_eq!(r.len(), 1, "expected exactly one reply");
    r.remove(0)
}

fn aoe(
    src: MacAddr,
    ver_flags: u8,
    major: u16,
    minor: u8,
    cmd: u8,
    tag: u32,
    arg: &[u8],
) -> Vec<u8> {
    let mut p = vec![ver_flags, 0];
    p.extend(major.to_be_bytes());
    p.push(minor);
    p.push(cmd);
    p.extend(tag.to_be_bytes());
    p.extend(arg);
    frame(US, src, EtherType::Aoe, &p)
}

#[allow(clippy::too_many_arguments)]
fn ata_to(
    src: MacAddr,
    major: u16,
    minor: u8,
    aflags: u8,
    count: u8,
    op: u8,
    lba: u64,
    data: &[u8],
) -> Vec<u8> {
    let mut a = vec![aflags, 0, count, op];
    a.extend(&lba.to_le_bytes()[..6]);
    a.extend([0, 0]);
    a.extend(data);
    aoe(src, 0x10, major, minor, 0, 0x1234_5678, &a)
}

fn ata(count: u8, op: u8, lba: u64, data: &[u8]) -> Vec<u8> {
    let aflags = match op {
        0x34 => 0x41,
        0x30 => 0x01,
        0x24 | 0xea => 0x40,
        _ => 0,
    };
    ata_to(HOST_A, 1, 2, aflags, count, op, lba, data)
}

fn config(src: MacAddr, major: u16, minor: u8, ccmd: u8, s: &[u8]) -> Vec<u8> {
    let mut a = vec![0, 0, 0, 0, 0, ccmd];
    a.extend((s.len() as u16).to_be_bytes());
    a.extend(s);
    aoe(src, 0x10, major, minor, 1, 7, &a)
}

fn mask_edit(src: MacAddr, major: u16, minor: u8, dirs: &[(u8, MacAddr)]) -> Vec<u8> {
    let mut a = vec![0, 1, 0, dirs.len() as u8];
    for (dcmd, mac) in dirs {
        a.extend([0, *dcmd]);
        a.extend(mac.0);
    }
    aoe(src, 0x10, major, minor, 2, 9, &a)
}

fn mask_read(src: MacAddr, major: u16, minor: u8) -> Vec<u8> {
    aoe(src, 0x10, major, minor, 2, 9, &[0, 0, 0, 0])
}

fn reserve(src: MacAddr, major: u16, minor: u8, rcmd: u8, macs: &[MacAddr]) -> Vec<u8> {
    let mut a = vec![rcmd, macs.len() as u8];
    for m in macs {
        a.extend(m.0);
    }
    aoe(src, 0x10, major, minor, 3, 11, &a)
}

/// (status, error, sector count) of an ATA reply.
fn regs(r: &[u8]) -> (u8, u8, u8) {
    (r[27], r[25], r[26])
}

/// (ver|flags, error) of a reply.
fn aoe_flags(r: &[u8]) -> (u8, u8) {
    (r[14], r[15])
}

fn fill_pattern(img: &Image) {
    let data: Vec<u8> = (0..img.len_bytes())
        .map(|i| (i * 7 + i / 512) as u8)
        .collect();
    img.write_at(0, &data).unwrap();
}

fn image_bytes(img: &Image) -> Vec<u8> {
    let mut v = vec![0u8; img.len_bytes() as usize];
    img.read_at(0, &mut v).unwrap();
    v
}

#[test]
fn target_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<AoeTarget>();
    check::<AoeStats>();
}

#[test]
fn sector_count_follows_mtu() {
    let (t, _) = target();
    assert_eq!(t.sector_count(), 2);
    for (mtu, want) in [
        (1500, 2),
        (4200, 8),
        (9000, 17),
        (548, 1),
        (547, 0),
        (0, 0),
        (65535, 17),
    ] {
        t.set_mtu(mtu);
        assert_eq!(t.sector_count(), want, "mtu {mtu}");
        assert_eq!(t.mtu(), mtu);
    }
}

#[test]
fn reply_header_and_addressing() {
    let (t, img) = target();
    fill_pattern(&img);
    let r = send_one(&t, &ata(2, 0x24, 10, &[]));
    assert_eq!(&r[0..6], &HOST_A.0, "unicast to the requester");
    assert_eq!(&r[6..12], &US.0, "from our MAC");
    assert_eq!(&r[12..14], &[0x88, 0xa2]);
    assert_eq!(aoe_flags(&r), (0x18, 0));
    assert_eq!(&r[16..20], &[0, 1, 2, 0]);
    assert_eq!(&r[20..24], &0x1234_5678u32.to_be_bytes());
    assert_eq!(r.len(), 36 + 1024);
    assert_eq!(regs(&r), (0x40, 0, 0));
    assert_eq!(&r[36..], &image_bytes(&img)[10 * 512..12 * 512]);

    // Wrong shelf or slot: silence.
    assert!(send(&t, &ata_to(HOST_A, 1, 3, 0x40, 1, 0x24, 0, &[])).is_empty());
    assert!(send(&t, &ata_to(HOST_A, 2, 2, 0x40, 1, 0x24, 0, &[])).is_empty());
    // A multicast source is never answered.
    let mut f = ata(1, 0x24, 0, &[]);
    f[6] |= 1;
    assert!(send(&t, &f).is_empty());
    let s = t.stats().snapshot();
    assert_eq!((s.not_addressed, s.reads, s.bytes_read), (3, 1, 1024));
}

#[test]
fn broadcast_data_commands_refused() {
    let (t, img) = target();
    let before = image_bytes(&img);
    let data = vec![0x5au8; 1024];
    for (major, minor) in [(0xffff, 0xff), (0xffff, 2), (1, 0xff)] {
        for (op, count, data) in [
            (0x34, 2, &data[..]),
            (0x30, 2, &data[..]),
            (0x24, 2, &[][..]),
            (0x20, 1, &[][..]),
            (0xe7, 0, &[][..]),
            (0xea, 0, &[][..]),
            (0xb0, 0, &[][..]),
        ] {
            let f = ata_to(HOST_A, major, minor, 0x41, count, op, 0, data);
            assert!(send(&t, &f).is_empty(), "{major:#x}.{minor:#x} op {op:#x}");
        }
        // IDENTIFY and CHECK POWER MODE answer a broadcast (WinAoE discovery), with our address.
        let r = send_one(&t, &ata_to(HOST_A, major, minor, 0, 1, 0xec, 0, &[]));
        assert_eq!(&r[16..19], &[0, 1, 2]);
        assert_eq!(r.len(), 548);
        let r = send_one(&t, &ata_to(HOST_A, major, minor, 0, 0, 0xe5, 0, &[]));
        assert_eq!(regs(&r), (0x40, 0, 0xff));
    }
    assert_eq!(image_bytes(&img), before);
    let s = t.stats().snapshot();
    assert_eq!(s.broadcast_refused, 21);
    assert_eq!((s.writes, s.reads), (0, 0));
}

#[test]
fn read_only_export_aborts_writes() {
    let img = memory_image(SECTORS, true);
    let t = target_with(vec![AoeExport::new(1, 2, img.clone())]);
    for op in [0x30, 0x34] {
        let r = send_one(&t, &ata(2, op, 0, &[0x5a; 1024]));
        assert_eq!(regs(&r), (0x41, 0x04, 2));
        assert_eq!(aoe_flags(&r), (0x18, 0), "never the AoE error flag");
        assert_eq!(r.len(), 60);
        assert!(r[36..].iter().all(|&b| b == 0));
    }
    assert!(image_bytes(&img).iter().all(|&b| b == 0));
    // IDENTIFY says no write cache.
    let r = send_one(&t, &ata(1, 0xec, 0, &[]));
    assert_eq!(r[36 + 85 * 2], 0);
    let s = t.stats().snapshot();
    assert_eq!((s.ata_errors, s.writes), (2, 0));
}

#[test]
fn lba28_masks_device_bits() {
    let (t, img) = target();
    let data: Vec<u8> = (0..512).map(|i| i as u8).collect();
    let r = send_one(&t, &ata(1, 0x30, 0xe000_0005, &data));
    assert_eq!(regs(&r), (0x40, 0, 0));
    assert_eq!(&image_bytes(&img)[5 * 512..6 * 512], &data[..]);
    let r = send_one(&t, &ata(1, 0x20, 0xa000_0005, &[]));
    assert_eq!(&r[36..], &data[..]);
    // The same LBA through the 48-bit opcode is not masked: far past the end.
    let r = send_one(&t, &ata(1, 0x24, 0xe000_0005, &[]));
    assert_eq!(regs(&r), (0x41, 0x10, 1));
}

#[test]
fn ata_error_policy() {
    let (t, img) = target();
    let before = image_bytes(&img);
    let cases: &[(Vec<u8>, (u8, u8))] = &[
        (ata(1, 0x24, 1 << 32, &[]), (0x41, 0x10)), // above 2 TiB
        (ata(1, 0x24, 0xffff_ffff_ffff, &[]), (0x41, 0x10)), // top of LBA48
        (ata(2, 0x24, SECTORS - 1, &[]), (0x41, 0x10)), // straddles the end
        (ata(1, 0x34, SECTORS, &[0; 512]), (0x41, 0x10)), // write past the end
        (ata(0, 0x24, 0, &[]), (0x41, 0x04)),       // count 0
        (ata(0, 0x34, 0, &[]), (0x41, 0x04)),
        (ata(3, 0x24, 0, &[]), (0x41, 0x04)), // above 2 sectors at MTU 1500
        (ata(2, 0x34, 0, &[0; 1000]), (0x41, 0x04)), // short payload
        (ata(1, 0xb0, 0, &[]), (0x41, 0x04)), // SMART
        (ata(1, 0xc8, 0, &[]), (0x41, 0x04)), // READ DMA
        (ata(1, 0x25, 0, &[]), (0x41, 0x04)), // READ DMA EXT
    ];
    for (f, want) in cases {
        let r = send_one(&t, f);
        assert_eq!((r[27], r[25]), *want, "request {:02x?}", &f[24..36]);
        assert_eq!(aoe_flags(&r), (0x18, 0));
        assert_eq!(r.len(), 60, "errors carry no data");
        assert!(r[36..].iter().all(|&b| b == 0));
        assert_eq!(&r[28..34], &f[28..34], "lba echoed");
        assert_eq!(&r[34..36], &[0, 0], "reserved zero");
    }
    assert_eq!(image_bytes(&img), before);
    assert_eq!(t.stats().snapshot().ata_errors, cases.len() as u64);

    // At MTU 9000 three sectors are fine, and 17; 18 is not.
    t.set_mtu(9000);
    assert_eq!(regs(&send_one(&t, &ata(3, 0x24, 0, &[]))), (0x40, 0, 0));
    let r = send_one(&t, &ata(17, 0x24, 0, &[]));
    assert_eq!((r.len(), regs(&r)), (36 + 17 * 512, (0x40, 0, 0)));
    assert_eq!(
        regs(&send_one(&t, &ata(18, 0x24, 0, &[]))),
        (0x41, 0x04, 18)
    );
}

#[test]
fn write_with_padding_and_flush() {
    let (t, img) = target();
    let mut data = vec![0x11u8; 1024];
    data.extend([0xee; 100]); // trailing bytes after the payload are ignored
    let r = send_one(&t, &ata(2, 0x34, 7, &data));
    assert_eq!(regs(&r), (0x40, 0, 0));
    assert_eq!(r[24], 0x41, "aflags echoed");
    let bytes = image_bytes(&img);
    assert!(bytes[7 * 512..9 * 512].iter().all(|&b| b == 0x11));
    assert!(bytes[9 * 512..10 * 512].iter().all(|&b| b == 0));
    for op in [0xe7, 0xea] {
        assert_eq!(regs(&send_one(&t, &ata(0, op, 0, &[]))), (0x40, 0, 0));
    }
    let s = t.stats().snapshot();
    assert_eq!((s.writes, s.bytes_written, s.flushes), (1, 1024, 2));
}

#[test]
fn identify_block() {
    let img = memory_image(SECTORS, false);
    let t = AoeTarget::new(US, 1500, "vm", vec![AoeExport::new(3, 4, img)]);
    for count in [1, 0, 2] {
        let r = send_one(&t, &ata_to(HOST_A, 3, 4, 0, count, 0xec, 0xa000_0000, &[]));
        assert_eq!(r.len(), 548);
        assert_eq!(regs(&r), (0x40, 0, 0));
        let w = |n: usize| u16::from_le_bytes([r[36 + 2 * n], r[37 + 2 * n]]);
        assert_eq!(w(83) & 0x7400, 0x7400);
        assert_eq!(w(86) & 0x3400, 0x3400);
        assert_eq!(w(85), 0x20, "writeback memory image: write cache enabled");
        assert_eq!((w(60), w(61)), (SECTORS as u16, 0));
        assert_eq!((w(100), w(101), w(102), w(103)), (SECTORS as u16, 0, 0, 0));
        assert_eq!(
            &r[36 + 20..36 + 28],
            b"3e4.v: m",
            "serial e3.4:vm, ATA byte order"
        );
    }
}

#[test]
fn version_and_response_flag() {
    let (t, _) = target();
    let mut f = ata(1, 0xec, 0, &[]);
    f[14] = 0x20; // Ver 2, unicast-addressed: Error 5
    let r = send_one(&t, &f);
    assert_eq!(aoe_flags(&r), (0x1c, 5));
    assert_eq!(&r[16..24], &f[16..24]);
    assert!(r[24..].iter().all(|&b| b == 0));
    // Ver 2 broadcast-addressed: dropped.
    let mut f = ata_to(HOST_A, 0xffff, 0xff, 0, 1, 0xec, 0, &[]);
    f[14] = 0x20;
    assert!(send(&t, &f).is_empty());
    // R flag set: dropped.
    let mut f = ata(1, 0xec, 0, &[]);
    f[14] = 0x18;
    assert!(send(&t, &f).is_empty());
    let s = t.stats().snapshot();
    assert_eq!((s.bad_version, s.response_flag, s.aoe_errors), (2, 1, 1));
}

#[test]
fn unknown_and_vendor_commands() {
    let (t, _) = target();
    let r = send_one(&t, &aoe(HOST_A, 0x10, 1, 2, 4, 42, &[]));
    assert_eq!(aoe_flags(&r), (0x1c, 1));
    assert_eq!(r[19], 4);
    let r = send_one(&t, &aoe(HOST_A, 0x10, 1, 2, 0xef, 42, &[1, 2, 3]));
    assert_eq!(aoe_flags(&r), (0x1c, 1));
    assert!(send(&t, &aoe(HOST_A, 0x10, 1, 2, 0xf0, 42, &[])).is_empty());
    assert!(send(&t, &aoe(HOST_A, 0x10, 1, 2, 0xff, 42, &[])).is_empty());
    assert!(send(&t, &aoe(HOST_A, 0x10, 0xffff, 0xff, 9, 42, &[])).is_empty());
    let s = t.stats().snapshot();
    assert_eq!((s.vendor, s.broadcast_refused, s.aoe_errors), (2, 1, 2));
}

#[test]
fn truncated_frames_dropped_without_panic() {
    let (t, _) = target();
    let frames = [
        ata(1, 0xec, 0, &[]),
        ata(2, 0x34, 0, &[0x11; 1024]),
        config(HOST_A, 1, 2, 0, b"hello"),
        mask_edit(HOST_A, 1, 2, &[(1, HOST_A)]),
        reserve(HOST_A, 1, 2, 1, &[HOST_A]),
        aoe(HOST_A, 0x10, 1, 2, 4, 1, &[]),
    ];
    for f in &frames {
        let fixed = 24
            + match f[19] {
                0 => 12,
                1 => 8,
                2 => 4,
                3 => 2,
                _ => 0,
            };
        for len in 0..f.len() {
            let r = send(&t, &f[..len]);
            if len < fixed {
                assert!(r.is_empty(), "cmd {} len {len}", f[19]);
            } else {
                // Addressable: at most one reply, never the request's tail as stale bytes.
                assert!(r.len() <= 1);
            }
        }
    }
    // A prefix of a write that cuts the payload is an ATA abort, not an AoE error.
    let w = ata(2, 0x34, 0, &[0x11; 1024]);
    let r = send_one(&t, &w[..36 + 1023]);
    assert_eq!((aoe_flags(&r), regs(&r)), ((0x18, 0), (0x41, 0x04, 2)));
    // Cut config strings and directive lists: Error 2.
    let c = config(HOST_A, 1, 2, 0, b"hello");
    assert_eq!(aoe_flags(&send_one(&t, &c[..c.len() - 1])), (0x1c, 2));
    assert!(t.stats().snapshot().truncated > 0);
}

#[test]
fn query_config_commands() {
    let img = memory_image(SECTORS, false);
    let mut ex = AoeExport::new(1, 2, img);
    ex.buffer_count = 1; // clamped to 2
    ex.config_string = b"rack-7".to_vec();
    let t = target_with(vec![ex]);

    let r = send_one(&t, &config(HOST_A, 1, 2, 0, b""));
    assert_eq!(aoe_flags(&r), (0x18, 0));
    assert_eq!(&r[24..32], &[0, 2, 0x4c, 0x32, 2, 0x10, 0, 6]);
    assert_eq!(&r[32..38], b"rack-7");
    assert!(r[38..].iter().all(|&b| b == 0));

    // Test: exact match answers, anything else is silent.
    assert_eq!(send(&t, &config(HOST_A, 1, 2, 1, b"rack-7")).len(), 1);
    assert!(send(&t, &config(HOST_A, 1, 2, 1, b"rack")).is_empty());
    // Test prefix.
    assert_eq!(send(&t, &config(HOST_A, 1, 2, 2, b"rack")).len(), 1);
    assert_eq!(send(&t, &config(HOST_A, 1, 2, 2, b"")).len(), 1);
    assert!(send(&t, &config(HOST_A, 1, 2, 2, b"rack-77")).is_empty());
    // Set: refused while another string is present, fine when equal.
    let r = send_one(&t, &config(HOST_A, 1, 2, 3, b"other"));
    assert_eq!(aoe_flags(&r), (0x1c, 4));
    assert_eq!(&r[30..38], &[0, 6, b'r', b'a', b'c', b'k', b'-', b'7']);
    assert_eq!(
        aoe_flags(&send_one(&t, &config(HOST_A, 1, 2, 3, b"rack-7"))),
        (0x18, 0)
    );
    // Force set, then set works from empty.
    let r = send_one(&t, &config(HOST_A, 1, 2, 4, b""));
    assert_eq!(
        (aoe_flags(&r), r[29], &r[30..32]),
        ((0x18, 0), 0x14, &[0u8, 0][..])
    );
    let r = send_one(&t, &config(HOST_A, 1, 2, 3, b"mine"));
    assert_eq!((aoe_flags(&r), &r[32..36]), ((0x18, 0), &b"mine"[..]));
    // Unknown CCmd.
    assert_eq!(
        aoe_flags(&send_one(&t, &config(HOST_A, 1, 2, 5, b""))),
        (0x1c, 2)
    );
    // Length field beyond the frame (even though padding makes the frame long enough in
    // total) and beyond 1024: Error 2, string untouched.
    let mut f = config(HOST_A, 1, 2, 4, b"abc");
    f[30..32].copy_from_slice(&29u16.to_be_bytes());
    f.resize(60, 0); // padded: 60 bytes in total, but only 28 after the config argument
    assert_eq!(aoe_flags(&send_one(&t, &f)), (0x1c, 2));
    let mut f = config(HOST_A, 1, 2, 4, &[b'x'; 1100]);
    f[30..32].copy_from_slice(&1025u16.to_be_bytes());
    assert_eq!(aoe_flags(&send_one(&t, &f)), (0x1c, 2));
    let r = send_one(&t, &config(HOST_A, 0xffff, 0xff, 0, b""));
    assert_eq!(&r[32..36], b"mine");
    // 1024 bytes is fine.
    let r = send_one(&t, &config(HOST_A, 1, 2, 4, &[b'y'; 1024]));
    assert_eq!((aoe_flags(&r), r.len()), ((0x18, 0), 24 + 8 + 1024));
}

#[test]
fn broadcast_query_config_answers_from_every_export() {
    let t = target_with(vec![
        AoeExport::new(0, 0, memory_image(8, false)),
        AoeExport::new(1, 2, memory_image(8, false)),
        AoeExport::new(1, 3, memory_image(8, false)),
    ]);
    let replies = send(&t, &config(HOST_A, 0xffff, 0xff, 0, b""));
    let addrs: Vec<_> = replies.iter().map(|r| (r[16], r[17], r[18])).collect();
    assert_eq!(addrs, [(0, 0, 0), (0, 1, 2), (0, 1, 3)]);
    let replies = send(&t, &config(HOST_A, 1, 0xff, 0, b""));
    assert_eq!(replies.len(), 2);
    let replies = send(&t, &config(HOST_A, 0xffff, 0, 0, b""));
    assert_eq!(replies.len(), 1);
}

#[test]
fn advertise_broadcast_then_masked() {
    let (t, _) = target();
    let mut tx = StaleTx::new();
    t.advertise(&mut tx);
    assert_eq!(tx.frames.len(), 1);
    let r = &tx.frames[0];
    assert_eq!(&r[0..6], &[0xff; 6]);
    assert_eq!(&r[6..12], &US.0);
    assert_eq!(aoe_flags(r), (0x18, 0));
    assert_eq!(&r[16..24], &[0, 1, 2, 1, 0, 0, 0, 0]);
    assert_eq!(&r[24..32], &[0, 64, 0x4c, 0x32, 2, 0x10, 0, 0]);

    send_one(&t, &mask_edit(HOST_A, 1, 2, &[(1, HOST_A), (1, HOST_B)]));
    let mut tx = StaleTx::new();
    t.advertise(&mut tx);
    let dsts: Vec<_> = tx
        .frames
        .iter()
        .map(|f| MacAddr::from_bytes(&f[0..6]))
        .collect();
    assert_eq!(dsts, [HOST_A, HOST_B]);
}

#[test]
fn mac_mask_list() {
    let (t, _) = target();
    // Empty list: everyone is served; a read lists nothing.
    let r = send_one(&t, &mask_read(HOST_B, 1, 2));
    assert_eq!(&r[24..28], &[0, 0, 0, 0]);
    // Broadcast-addressed edits are dropped; reads answered.
    assert!(send(&t, &mask_edit(HOST_A, 0xffff, 0xff, &[(1, HOST_A)])).is_empty());
    assert_eq!(send(&t, &mask_read(HOST_A, 0xffff, 0xff)).len(), 1);

    let r = send_one(
        &t,
        &mask_edit(HOST_A, 1, 2, &[(1, HOST_A), (0, HOST_B), (1, HOST_A)]),
    );
    assert_eq!(&r[24..28], &[0, 1, 0, 1]);
    assert_eq!(&r[28..36], &[0, 0, 0x52, 0x54, 0, 0x12, 0x34, 0x56]);
    // HOST_B is now invisible for every command.
    assert!(send(&t, &config(HOST_B, 0xffff, 0xff, 0, b"")).is_empty());
    assert!(send(&t, &ata_to(HOST_B, 1, 2, 0, 1, 0xec, 0, &[])).is_empty());
    assert!(send(&t, &mask_read(HOST_B, 1, 2)).is_empty());
    assert!(send(&t, &mask_edit(HOST_B, 1, 2, &[(2, HOST_A)])).is_empty());
    assert_eq!(send(&t, &ata(1, 0xec, 0, &[])).len(), 1);
    assert_eq!(t.stats().snapshot().masked, 4);

    // A bad DCmd stops the edit at its index; earlier directives stay applied.
    let r = send_one(
        &t,
        &mask_edit(HOST_A, 1, 2, &[(1, HOST_B), (7, HOST_B), (2, HOST_A)]),
    );
    assert_eq!(aoe_flags(&r), (0x18, 0));
    assert_eq!(&r[24..28], &[0, 1, 2, 1]);
    assert_eq!(&r[28..36], &[0, 1, 0x52, 0x54, 0, 0x12, 0x34, 0x57]);
    assert_eq!(send(&t, &mask_read(HOST_B, 1, 2)).len(), 1);

    // Dir Count longer than the frame: Error 2, nothing read past the frame.
    let mut f = mask_edit(HOST_A, 1, 2, &[(1, HOST_B)]);
    f[27] = 5;
    f.resize(60, 0);
    let r = send_one(&t, &f);
    assert_eq!(aoe_flags(&r), (0x1c, 2));
    assert_eq!(&r[24..28], &[0, 1, 0, 0]);
    // Unknown MCmd: Error 2.
    let mut f = mask_read(HOST_A, 1, 2);
    f[25] = 9;
    assert_eq!(aoe_flags(&send_one(&t, &f)), (0x1c, 2));

    // The list holds 32: the 33rd add fails with MError 3 at its index.
    let macs: Vec<_> = (0..40u8)
        .map(|i| (1u8, MacAddr([2, 0, 0, 0, 1, i])))
        .collect();
    let r = send_one(&t, &mask_edit(HOST_A, 1, 2, &macs));
    assert_eq!(
        &r[24..28],
        &[0, 1, 3, 30],
        "two slots were taken by A and B"
    );
    assert_eq!(r.len(), 28 + 30 * 8);
    let r = send_one(&t, &mask_read(HOST_A, 1, 2));
    assert_eq!(r[27], 32);
    assert_eq!(r.len(), 28 + 32 * 8);

    // Deleting everything makes the target visible to all again.
    let mut dels: Vec<_> = (0..30u8)
        .map(|i| (2u8, MacAddr([2, 0, 0, 0, 1, i])))
        .collect();
    dels.extend([(2, HOST_B), (2, HOST_A)]);
    let r = send_one(&t, &mask_edit(HOST_A, 1, 2, &dels));
    assert_eq!(&r[24..28], &[0, 1, 0, 0]);
    assert_eq!(send(&t, &config(HOST_B, 1, 2, 0, b"")).len(), 1);
}

#[test]
fn reserve_release() {
    let (t, _) = target();
    let r = send_one(&t, &reserve(HOST_B, 1, 2, 0, &[]));
    assert_eq!(&r[24..26], &[0, 0]);
    // Broadcast sets are dropped.
    assert!(send(&t, &reserve(HOST_A, 0xffff, 0xff, 1, &[HOST_A])).is_empty());
    // A reserves.
    let r = send_one(&t, &reserve(HOST_A, 1, 2, 1, &[HOST_A]));
    assert_eq!(aoe_flags(&r), (0x18, 0));
    assert_eq!(&r[24..32], &[1, 1, 0x52, 0x54, 0, 0x12, 0x34, 0x56]);
    // B: data commands get Error 6, IDENTIFY and CHECK POWER MODE still work.
    let r = send_one(&t, &ata_to(HOST_B, 1, 2, 0x40, 1, 0x24, 0, &[]));
    assert_eq!(aoe_flags(&r), (0x1c, 6));
    assert_eq!(&r[24..36], &[0x40, 0, 1, 0x24, 0, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(r.len(), 60);
    assert_eq!(
        aoe_flags(&send_one(&t, &ata_to(HOST_B, 1, 2, 0, 1, 0xec, 0, &[]))),
        (0x18, 0)
    );
    assert_eq!(
        aoe_flags(&send_one(&t, &ata_to(HOST_B, 1, 2, 0, 0, 0xe5, 0, &[]))),
        (0x18, 0)
    );
    // A reads fine.
    assert_eq!(regs(&send_one(&t, &ata(1, 0x24, 0, &[]))), (0x40, 0, 0));
    // B cannot set; the reply lists the holder.
    let r = send_one(&t, &reserve(HOST_B, 1, 2, 1, &[HOST_B]));
    assert_eq!(aoe_flags(&r), (0x1c, 6));
    assert_eq!(&r[24..32], &[1, 1, 0x52, 0x54, 0, 0x12, 0x34, 0x56]);
    // A adds B.
    let r = send_one(&t, &reserve(HOST_A, 1, 2, 1, &[HOST_A, HOST_B]));
    assert_eq!(r[25], 2);
    assert_eq!(
        regs(&send_one(&t, &ata_to(HOST_B, 1, 2, 0x40, 1, 0x24, 0, &[]))).0,
        0x40
    );
    // NMacs longer than the frame: Error 2.
    let mut f = reserve(HOST_A, 1, 2, 1, &[HOST_A]);
    f[25] = 9;
    f.resize(60, 0);
    assert_eq!(aoe_flags(&send_one(&t, &f)), (0x1c, 2));
    // More than 32 MACs: Error 2. Unknown RCmd: Error 2.
    let many: Vec<_> = (0..33u8).map(|i| MacAddr([2, 0, 0, 0, 2, i])).collect();
    assert_eq!(
        aoe_flags(&send_one(&t, &reserve(HOST_A, 1, 2, 2, &many))),
        (0x1c, 2)
    );
    assert_eq!(
        aoe_flags(&send_one(&t, &reserve(HOST_A, 1, 2, 5, &[]))),
        (0x1c, 2)
    );
    // Force set to empty releases; anyone may.
    let other = MacAddr([2, 0, 0, 0, 0, 7]);
    let r = send_one(&t, &reserve(other, 1, 2, 2, &[]));
    assert_eq!(&r[24..26], &[2, 0]);
    let r = send_one(&t, &ata_to(other, 1, 2, 0x40, 1, 0x24, 0, &[]));
    assert_eq!((aoe_flags(&r), regs(&r).0), ((0x18, 0), 0x40));
}

#[test]
fn retransmits_are_processed_again() {
    let (t, img) = target();
    let data = vec![0x77u8; 1024];
    let mut f = ata(2, 0x34, 100, &data);
    for tag in [1u32, 2, 2, 3] {
        f[20..24].copy_from_slice(&tag.to_be_bytes());
        let r = send_one(&t, &f);
        assert_eq!(&r[20..24], &tag.to_be_bytes());
        assert_eq!(regs(&r), (0x40, 0, 0));
    }
    assert!(image_bytes(&img)[100 * 512..102 * 512]
        .iter()
        .all(|&b| b == 0x77));
    assert_eq!(t.stats().snapshot().writes, 4);
}

#[test]
fn stale_buffers_never_leak_and_txbatch_agrees() {
    // The same requests through a fresh TxBatch and through 0xa5-filled buffers give the
    // same bytes: every byte of every reply is written.
    let frames = [
        ata(2, 0x24, 3, &[]),
        ata(1, 0xec, 0, &[]),
        ata(2, 0x34, 3, &[9; 1024]),
        ata(0, 0x24, 3, &[]),
        ata(0, 0xe5, 0, &[]),
        config(HOST_A, 1, 2, 4, b"cfg"),
        config(HOST_A, 1, 2, 3, b"other"),
        mask_edit(HOST_A, 1, 2, &[(1, HOST_A), (9, HOST_B)]),
        mask_read(HOST_A, 1, 2),
        reserve(HOST_A, 1, 2, 1, &[HOST_A]),
        reserve(HOST_A, 1, 2, 0, &[]),
        aoe(HOST_A, 0x10, 1, 2, 4, 1, &[]),
        aoe(HOST_A, 0x20, 1, 2, 0, 1, &[0; 12]),
    ];
    let (t1, _) = target();
    let (t2, _) = target();
    let mut batch = TxBatch::new(1);
    for f in &frames {
        t1.handle_frame(f, Instant::now(), &mut batch);
        let stale = send(&t2, f);
        assert_eq!(drain(&mut batch), stale, "request {:02x?}", &f[14..24]);
    }
}

mod prop {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Read {
            lba: u64,
            count: u8,
            ext: bool,
        },
        Write {
            lba: u64,
            count: u8,
            ext: bool,
            byte: u8,
        },
    }

    fn op() -> impl Strategy<Value = Op> {
        // LBAs run a little past the 64-sector image to exercise IDNF.
        prop_oneof![
            (0u64..70, 1u8..=2, any::<bool>()).prop_map(|(lba, count, ext)| Op::Read {
                lba,
                count,
                ext
            }),
            (0u64..70, 1u8..=2, any::<bool>(), any::<u8>()).prop_map(|(lba, count, ext, byte)| {
                Op::Write {
                    lba,
                    count,
                    ext,
                    byte,
                }
            }),
        ]
    }

    proptest! {
        #[test]
        fn reads_and_writes_match_a_vec_model(ops in proptest::collection::vec(op(), 1..40)) {
            const N: u64 = 64;
            let img = memory_image(N, false);
            let t = target_with(vec![AoeExport::new(1, 2, img)]);
            let mut model = vec![0u8; (N * 512) as usize];
            for op in ops {
                match op {
                    Op::Read { lba, count, ext } => {
                        let opc = if ext { 0x24 } else { 0x20 };
                        let lba_sent = if ext { lba } else { lba | 0xe000_0000 };
                        let r = send_one(&t, &ata(count, opc, lba_sent, &[]));
                        if lba + u64::from(count) <= N {
                            prop_assert_eq!(regs(&r), (0x40, 0, 0));
                            let s = (lba * 512) as usize;
                            prop_assert_eq!(&r[36..], &model[s..s + usize::from(count) * 512]);
                        } else {
                            prop_assert_eq!(regs(&r), (0x41, 0x10, count));
                            prop_assert_eq!(r.len(), 60);
                        }
                    }
                    Op::Write { lba, count, ext, byte } => {
                        let opc = if ext { 0x34 } else { 0x30 };
                        let data: Vec<u8> = (0..usize::from(count) * 512)
                            .map(|i| byte.wrapping_add(i as u8))
                            .collect();
                        let r = send_one(&t, &ata(count, opc, lba, &data));
                        if lba + u64::from(count) <= N {
                            prop_assert_eq!(regs(&r), (0x40, 0, 0));
                            let s = (lba * 512) as usize;
                            model[s..s + data.len()].copy_from_slice(&data);
                        } else {
                            prop_assert_eq!(regs(&r), (0x41, 0x10, count));
                        }
                    }
                }
            }
            let r = send_one(&t, &ata(2, 0x24, 0, &[]));
            prop_assert_eq!(&r[36..], &model[..1024]);
        }

        #[test]
        fn arbitrary_frames_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200), cmd in 0u8..5, flags in prop_oneof![Just(0x10u8), any::<u8>()]) {
            let (t, _) = target();
            let mut f = frame(US, HOST_A, EtherType::Aoe, &bytes);
            if f.len() > 19 {
                f[14] = flags;
                f[16..19].copy_from_slice(&[0, 1, 2]);
                f[19] = cmd;
            }
            let replies = send(&t, &f);
            prop_assert!(replies.len() <= 1);
            for r in replies {
                prop_assert_eq!(&r[20..24], &f[20..24], "tag echoed");
                prop_assert!(r.len() <= 1514);
                prop_assert_eq!(r[14] & 0xf8, 0x18);
            }
        }
    }
}

#[test]
fn allow_list_hides_the_export_from_everyone_else() {
    let img = memory_image(SECTORS, false);
    let mut ex = AoeExport::new(1, 2, img.clone());
    ex.allow = vec![HOST_A];
    let t = target_with(vec![ex]);
    // HOST_B learns nothing: no config answer (broadcast or not), no IDENTIFY, no write.
    assert!(send(&t, &config(HOST_B, 0xffff, 0xff, 0, b"")).is_empty());
    assert!(send(&t, &config(HOST_B, 1, 2, 0, b"")).is_empty());
    assert!(send(&t, &ata_to(HOST_B, 1, 2, 0, 1, 0xec, 0, &[])).is_empty());
    assert!(send(&t, &ata_to(HOST_B, 1, 2, 0x41, 1, 0x34, 0, &[9; 512])).is_empty());
    assert!(send(&t, &mask_read(HOST_B, 1, 2)).is_empty());
    assert_eq!(image_bytes(&img), vec![0u8; SECTORS as usize * 512]);
    assert_eq!(t.stats().snapshot().not_allowed, 5);
    // HOST_A is served as before.
    send_one(&t, &config(HOST_A, 0xffff, 0xff, 0, b""));
    let r = send_one(&t, &ata_to(HOST_A, 1, 2, 0x41, 1, 0x34, 0, &[9; 512]));
    assert_eq!(regs(&r).0, 0x40, "write from the allowed host succeeds");
    // Adverts go to the allowed host alone, never to broadcast.
    let mut tx = StaleTx::new();
    t.advertise(&mut tx);
    assert_eq!(tx.frames.len(), 1);
    assert_eq!(&tx.frames[0][0..6], &HOST_A.0);
}

#[test]
fn another_target_answering_for_our_address_is_counted() {
    let (t, _img) = target();
    let other = MacAddr([0x02, 0, 0, 0, 0, 0x42]);
    // A config response (R flag) from another MAC for e1.2, and one for e9.9 (not ours).
    assert!(send(&t, &aoe(other, 0x18, 1, 2, 1, 0, &[0; 8])).is_empty());
    assert!(send(&t, &aoe(other, 0x18, 9, 9, 1, 0, &[0; 8])).is_empty());
    let s = t.stats().snapshot();
    assert_eq!((s.conflicts, s.response_flag), (1, 2));
}

#[test]
fn mask_reserve_and_config_state_survives_a_restart() {
    let (t, _img) = target();
    let g0 = t.state_generation();
    send_one(&t, &config(HOST_A, 1, 2, 3, b"cluster-a"));
    send_one(&t, &mask_edit(HOST_A, 1, 2, &[(1, HOST_A), (1, HOST_B)]));
    send_one(&t, &reserve(HOST_A, 1, 2, 1, &[HOST_A]));
    assert!(t.state_generation() >= g0 + 3);
    let saved = t.state();
    assert_eq!(saved.len(), 1);
    assert_eq!(saved[0].config, b"cluster-a");
    assert_eq!(saved[0].mask, vec![HOST_A, HOST_B]);
    assert_eq!(saved[0].reserve, vec![HOST_A]);

    // A new process: fresh target, state restored.
    let (t2, _img2) = target();
    t2.restore(&saved);
    assert_eq!(t2.state(), saved);
    // The reservation holds: HOST_B's read is refused with Error 6.
    let r = send_one(&t2, &ata_to(HOST_B, 1, 2, 0x40, 1, 0x24, 0, &[]));
    assert_eq!(aoe_flags(&r), (0x1c, 6));
}

#[test]
fn export_stats_count_per_export() {
    let a = memory_image(SECTORS, false);
    let b = memory_image(SECTORS, true);
    let t = target_with(vec![AoeExport::new(1, 2, a), AoeExport::new(1, 3, b)]);
    for _ in 0..3 {
        send_one(&t, &ata(2, 0x24, 0, &[]));
    }
    send_one(&t, &ata(1, 0x34, 0, &[0x5a; 512]));
    send_one(&t, &ata(2, 0x24, SECTORS - 1, &[])); // past the end: an ATA error
    send_one(&t, &ata_to(HOST_A, 1, 3, 0x41, 1, 0x34, 0, &[0x5a; 512])); // read-only
    send_one(&t, &ata_to(HOST_A, 1, 3, 0, 1, 0xec, 0, &[]));
    let s = t.export_stats();
    assert_eq!(s.len(), 2);
    assert_eq!((s[0].0, s[0].1, s[1].1), (1, 2, 3));
    // Every ATA command is timed; `send` hands the reply over at the time it was received.
    let instant = |n| {
        let mut h = HistogramSnapshot::default();
        h.buckets[0] = n;
        h
    };
    assert_eq!(
        s[0].2,
        ExportStatsSnapshot {
            requests: 5,
            reads: 3,
            writes: 1,
            bytes_read: 3 * 1024,
            bytes_written: 512,
            ata_errors: 1,
            latency: instant(5),
        }
    );
    assert_eq!(
        s[1].2,
        ExportStatsSnapshot {
            requests: 2,
            ata_errors: 1,
            latency: instant(2),
            ..Default::default()
        }
    );
}

/// Sector count word 60-61 of an IDENTIFY reply.
fn identify_sectors(t: &AoeTarget, minor: u8) -> u64 {
    let r = send_one(t, &ata_to(HOST_A, 1, minor, 0, 1, 0xec, 0, &[]));
    let data = &r[36..36 + 512];
    u64::from(u16::from_le_bytes([data[120], data[121]]))
        | u64::from(u16::from_le_bytes([data[122], data[123]])) << 16
}

#[test]
fn reconfigure_adds_removes_and_resizes_exports() {
    let a = memory_image(SECTORS, false);
    let t = target_with(vec![AoeExport::new(1, 2, a.clone())]);
    assert_eq!(identify_sectors(&t, 2), SECTORS);
    // e1.3 does not exist yet: no reply.
    assert!(send(&t, &ata_to(HOST_A, 1, 3, 0, 1, 0xec, 0, &[])).is_empty());

    let bigger = memory_image(2 * SECTORS, false);
    let c = memory_image(64, false);
    let done = t.reconfigure(vec![
        AoeExport::new(1, 2, bigger.clone()),
        AoeExport::new(1, 3, c.clone()),
    ]);
    assert_eq!(done.added, [(1, 3)]);
    assert_eq!(done.changed, [(1, 2)]);
    assert!(done.removed.is_empty());
    assert_eq!(identify_sectors(&t, 2), 2 * SECTORS);
    assert_eq!(identify_sectors(&t, 3), 64);
    // A write now lands in the new image, not the old one.
    let data = vec![0x5a; 512];
    let r = send_one(&t, &ata(1, 0x34, 5000, &data));
    assert_eq!(
        regs(&r).0 & 0x01,
        0,
        "write past the old end must succeed now"
    );
    let mut back = vec![0; 512];
    bigger.read_at(5000 * 512, &mut back).unwrap();
    assert_eq!(back, data);

    let done = t.reconfigure(vec![AoeExport::new(1, 3, c)]);
    assert_eq!(done.removed, [(1, 2)]);
    assert!(send(&t, &ata_to(HOST_A, 1, 2, 0, 1, 0xec, 0, &[])).is_empty());
    assert_eq!(identify_sectors(&t, 3), 64);
}

#[test]
fn reconfigure_keeps_initiator_state_and_counters() {
    let (t, img) = target();
    send_one(&t, &mask_edit(HOST_A, 1, 2, &[(1, HOST_A)]));
    send_one(&t, &config(HOST_A, 1, 2, 4, b"set-by-host"));
    let before = t.export_stats()[0].2.requests;
    let gen = t.state_generation();

    // Unchanged: nothing to report, the same export goes on.
    let done = t.reconfigure(vec![AoeExport::new(1, 2, img.clone())]);
    assert!(done.is_empty(), "{done:?}");
    assert_eq!(t.state_generation(), gen);

    // A new allow-list that still lets HOST_A in: mask, config string and counters carry over.
    let mut e = AoeExport::new(1, 2, img);
    e.allow = vec![HOST_A];
    let done = t.reconfigure(vec![e]);
    assert_eq!(done.changed, [(1, 2)]);
    assert_ne!(t.state_generation(), gen);
    let st = &t.state()[0];
    assert_eq!(st.mask, [HOST_A]);
    assert_eq!(st.config, b"set-by-host");
    assert!(t.export_stats()[0].2.requests >= before);
    // HOST_B is now outside the allow-list: silence.
    assert!(send(&t, &config(HOST_B, 1, 2, 0, b"")).is_empty());
    assert_eq!(send(&t, &config(HOST_A, 1, 2, 0, b"")).len(), 1);
}

#[test]
fn reconfigure_advertises_at_the_next_tick_only() {
    use l2san_common::FrameHandler;
    let (t, img) = target();
    let mut tx = StaleTx::new();
    t.tick(std::time::Instant::now(), &mut tx);
    assert!(tx.frames.is_empty(), "no reload, no advert");
    t.reconfigure(vec![
        AoeExport::new(1, 2, img),
        AoeExport::new(1, 4, memory_image(8, true)),
    ]);
    t.tick(std::time::Instant::now(), &mut tx);
    assert_eq!(tx.frames.len(), 2, "one advert per export");
    assert!(tx.frames.iter().all(|f| f[..6] == [0xff; 6]));
    t.tick(std::time::Instant::now(), &mut tx);
    assert_eq!(tx.frames.len(), 2, "advertised once");
}

/// Per-client counters: I/O and refusals by source MAC, and every ATA command's service
/// time, from the `now` it was received at to the transmit path's time after its reply.
#[test]
fn clients_are_counted_by_source_mac() {
    use l2san_common::stats::LATENCY_BOUNDS;
    use l2san_common::FrameHandler;
    let img = memory_image(SECTORS, false);
    let mut e = AoeExport::new(1, 2, img);
    e.allow = vec![HOST_A];
    let t = target_with(vec![e]);
    let mut tx = StaleTx::new();
    let received = tx.now;
    // Each reply is handed over 30 µs after its request was received.
    tx.now = received + Duration::from_micros(30);
    t.handle(&ata(2, 0x24, 0, &[]), received, &mut tx);
    t.handle(&ata(1, 0x34, 8, &[7; 512]), received, &mut tx);
    // An ATA error is a reply too, and timed.
    t.handle_frame(&ata(1, 0x24, SECTORS + 5, &[]), received, &mut tx);
    // HOST_B is not allowed; a frame for nobody's shelf makes no client at all.
    t.handle(&ata_to(HOST_B, 1, 2, 0, 1, 0xec, 0, &[]), received, &mut tx);
    t.handle(
        &ata_to(MacAddr([2, 9, 9, 9, 9, 9]), 7, 7, 0, 1, 0xec, 0, &[]),
        received,
        &mut tx,
    );
    let c = t.client_stats();
    assert_eq!(c.len(), 2, "{c:?}");
    let a = c.iter().find(|(m, _)| *m == Some(HOST_A)).unwrap().1;
    assert_eq!((a.requests, a.reads, a.writes), (3, 1, 1));
    assert_eq!(
        (a.bytes_read, a.bytes_written, a.ata_errors),
        (1024, 512, 1)
    );
    // Three ATA commands of 30 µs each: all in the bucket up to 50 µs.
    assert_eq!(LATENCY_BOUNDS[1], Duration::from_micros(50));
    let mut want = [0; LATENCY_BOUNDS.len() + 1];
    want[1] = 3;
    assert_eq!(a.latency.buckets, want, "three timed ATA commands");
    assert_eq!(a.latency.sum_ns, 3 * 30_000);
    let b = c.iter().find(|(m, _)| *m == Some(HOST_B)).unwrap().1;
    assert_eq!((b.requests, b.not_allowed), (0, 1));
    assert_eq!(b.latency.count(), 0, "refused: nothing timed");
    assert_eq!(t.export_stats()[0].2.latency, a.latency);
}

/// An overlay export: each client reads its own writes over the base, the base is never
/// written; with the `reset` policy an IDENTIFY after a silence (a new boot) discards the
/// client's overlay, and one sooner does not.
#[test]
fn overlay_export_keeps_clients_apart_and_resets_on_boot() {
    use l2san_common::store::{OverlayOptions, OverlayPolicy, OverlaySet};
    use l2san_common::FrameHandler;
    let dir = std::env::temp_dir().join(format!("l2san-aoe-overlay-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let base_path = dir.join("base.img");
    std::fs::write(&base_path, vec![0x11u8; 64 * 512]).unwrap();
    let opts = ImageOptions {
        read_only: true,
        ..Default::default()
    };
    let base = Arc::new(Image::open(&base_path, opts).unwrap());
    let set = OverlaySet::open(
        base,
        &dir.join("overlays"),
        OverlayOptions {
            policy: OverlayPolicy::Reset,
            reset_after: Duration::from_millis(300),
            ..Default::default()
        },
    )
    .unwrap();
    let t = target_with(vec![AoeExport::new(1, 2, Arc::new(set))]);
    let mut tx = StaleTx::new();
    let start = tx.now;
    let read = |t: &AoeTarget, host: MacAddr, now: Instant, tx: &mut StaleTx| {
        t.handle(&ata_to(host, 1, 2, 0x40, 1, 0x24, 3, &[]), now, tx);
        let r = tx.frames.pop().unwrap();
        assert_eq!(regs(&r).0 & 0x01, 0, "read failed");
        r[36..36 + 512].to_vec()
    };
    t.handle(
        &ata_to(HOST_A, 1, 2, 0x41, 1, 0x34, 3, &[0xaa; 512]),
        start,
        &mut tx,
    );
    assert_eq!(regs(&tx.frames.pop().unwrap()).0 & 0x01, 0, "write failed");
    t.handle(
        &ata_to(HOST_B, 1, 2, 0x41, 1, 0x34, 3, &[0xbb; 512]),
        start,
        &mut tx,
    );
    assert_eq!(read(&t, HOST_A, start, &mut tx), [0xaa; 512]);
    assert_eq!(read(&t, HOST_B, start, &mut tx), [0xbb; 512]);
    let third = MacAddr([2, 0, 0, 0, 0, 3]);
    assert_eq!(
        read(&t, third, start, &mut tx),
        [0x11; 512],
        "no overlay: the base"
    );
    // IDENTIFY soon after: not a new boot.
    t.handle(&ata_to(HOST_A, 1, 2, 0, 1, 0xec, 0, &[]), start, &mut tx);
    assert_eq!(read(&t, HOST_A, start, &mut tx), [0xaa; 512]);
    // IDENTIFY after a silence longer than reset_after: a new boot, the overlay is gone;
    // B keeps its own.
    let later = start + Duration::from_millis(400);
    t.handle(&ata_to(HOST_A, 1, 2, 0, 1, 0xec, 0, &[]), later, &mut tx);
    assert_eq!(read(&t, HOST_A, later, &mut tx), [0x11; 512]);
    assert_eq!(read(&t, HOST_B, later, &mut tx), [0xbb; 512]);
    assert_eq!(std::fs::read(&base_path).unwrap(), vec![0x11u8; 64 * 512]);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The interface came back with another MAC: the target answers from it, ignores frames to
/// the old one, and its advert (the worker's `link_changed` next) comes from it.
#[test]
fn a_new_interface_mac_is_followed() {
    use l2san_common::FrameHandler;
    const NEW: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x42]);
    let (t, img) = target();
    fill_pattern(&img);
    assert_eq!(t.mac_changed(NEW), Ok(()));
    assert_eq!(t.mac(), NEW);
    let mut to_new = ata(1, 0x24, 3, &[]);
    to_new[0..6].copy_from_slice(&NEW.0);
    let r = send_one(&t, &to_new);
    assert_eq!(&r[0..6], &HOST_A.0);
    assert_eq!(&r[6..12], &NEW.0, "reply from the new MAC");
    assert_eq!(&r[36..], &image_bytes(&img)[3 * 512..4 * 512]);
    assert!(
        send(&t, &ata(1, 0x24, 3, &[])).is_empty(),
        "a frame to the old MAC is for another station now"
    );
    let mut tx = StaleTx::new();
    t.link_changed(1500, &mut tx);
    assert_eq!(tx.frames.len(), 1);
    assert_eq!(&tx.frames[0][0..6], &[0xff; 6]);
    assert_eq!(&tx.frames[0][6..12], &NEW.0, "advert from the new MAC");
}

/// The field the fanout steers AoE frames by is the ATA argument's LBA bits 8-23 (the
/// program the workers always had: offset 29, two bytes), so one 128 KiB region of one
/// initiator meets one worker.
#[test]
fn steered_by_lba_bits_8_to_23() {
    use l2san_common::io::FieldWidth;
    use l2san_common::FrameHandler;
    let (t, _) = target();
    assert_eq!(t.steering(), &[STEERING]);
    assert_eq!(STEERING.ethertype, 0x88a2);
    assert_eq!((STEERING.offset, STEERING.width), (29, FieldWidth::U16));
    let field = |f: &[u8]| {
        let at = usize::from(STEERING.offset);
        [f[at], f[at + 1]]
    };
    let lba: u64 = 0x0012_3456_789a;
    let f = ata(1, 0x24, lba, &[]);
    assert_eq!(field(&f), [0x78, 0x56], "LBA bits 8-15, then 16-23");
    // Every sector of a 256-sector (128 KiB) region carries the same field; the next region not.
    let region = lba & !0xff;
    for l in [region, region + 1, region + 0xff] {
        assert_eq!(field(&ata(1, 0x24, l, &[])), field(&f));
    }
    assert_ne!(field(&ata(1, 0x24, region + 0x100, &[])), field(&f));
}
