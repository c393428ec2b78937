//! The AoE target fed arbitrary frame sequences over an in-memory image. Invariants:
//! - at most one reply per export addressed; it echoes the tag, goes back to the requester from
//!   our MAC, has the response flag and fits the MTU;
//! - the image changes only through a write the target acknowledged with good status, and only
//!   inside that write's sectors;
//! - replies carry no stale bytes (the transmit buffers are pre-filled with 0xa5; a reply of a
//!   stale transmit buffer would differ from one built in a zeroed buffer).
#![no_main]

use std::sync::Arc;
use std::time::Instant;

use l2san_aoe::{AoeExport, AoeTarget};
use l2san_common::io::TxBatch;
use l2san_common::test_utils::StaleTx;
use l2san_common::{EtherType, Image, ImageOptions, MacAddr};
use libfuzzer_sys::fuzz_target;

const OUR_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 1]);
const IMAGE_LEN: usize = 64 * 1024;

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let mtu = if data[0] & 1 == 0 { 1500 } else { 9000 };
    let ro = data[0] & 2 != 0;
    // Two exports of one image; the twin is built the same way over its own image.
    let build = || {
        let options = ImageOptions { read_only: ro, ..Default::default() };
        let image = Arc::new(Image::memory(IMAGE_LEN as u64, options).unwrap());
        let exports =
            vec![AoeExport::new(0, 0, image.clone()), AoeExport::new(1, 2, image.clone())];
        (AoeTarget::new(OUR_MAC, mtu, "fuzz", exports), image)
    };
    let (target, image) = build();
    let (twin, _) = build();
    let mut before = vec![0u8; IMAGE_LEN];
    let mut after = vec![0u8; IMAGE_LEN];
    // Every frame is received, and its replies handed over, at this one time.
    let now = Instant::now();
    let mut rest = &data[1..];
    while rest.len() >= 3 {
        let len = (u16::from_le_bytes([rest[0], rest[1]]) as usize).min(rest.len() - 2);
        let flags = rest[2];
        let payload = &rest[3.min(rest.len())..(2 + len).max(3).min(rest.len())];
        rest = &rest[(2 + len).max(3).min(rest.len())..];
        let src = MacAddr([0x52, 0x54, 0, 0, 0, flags >> 4]);
        let dst = if flags & 1 == 0 { OUR_MAC } else { MacAddr::BROADCAST };
        let frame = l2san_common::test_utils::frame(dst, src, EtherType::Aoe, payload);

        image.read_at(0, &mut before).unwrap();
        let mut stale = StaleTx::at(now);
        target.handle_frame(&frame, now, &mut stale);
        let mut clean = TxBatch::new(1);
        clean.set_now(now);
        twin.handle_frame(&frame, now, &mut clean);
        image.read_at(0, &mut after).unwrap();

        let replies = stale.frames;
        let clean: Vec<Vec<u8>> = clean.frames().map(|f| f.to_vec()).collect();
        assert_eq!(replies, clean, "stale transmit bytes leaked into a reply");
        // One reply per export addressed: a broadcast may reach both.
        let broadcast = payload.len() >= 5 && (payload[2..4] == [0xff, 0xff] || payload[4] == 0xff);
        assert!(replies.len() <= if broadcast { 2 } else { 1 }, "{} replies", replies.len());
        if replies.len() == 2 {
            assert_ne!(replies[0][16..19], replies[1][16..19], "two replies from one export");
        }
        for r in &replies {
            assert!(r.len() <= mtu as usize + 14, "reply of {} bytes at MTU {mtu}", r.len());
            assert_eq!(&r[0..6], &src.0, "reply not sent back to the requester");
            assert_eq!(&r[6..12], &OUR_MAC.0);
            assert_eq!(&r[12..14], &[0x88, 0xa2]);
            assert_eq!(r[14] & 0xf8, 0x18, "reply without version 1 and the R flag");
            assert_eq!(&r[20..24], &frame[20..24], "reply tag differs from the request's");
        }
        if before != after {
            // Only a write with good status may change the image, inside its own sectors.
            let r = replies.first().expect("image changed without a reply");
            assert_eq!(frame[19], 0, "image changed by a non-ATA command");
            assert_eq!(r[14] & 0x04, 0, "image changed by a request answered with an AoE error");
            assert_eq!(r[27], 0x40, "image changed by a write answered with ATA error status");
            let cmd = frame[27];
            assert!(cmd == 0x30 || cmd == 0x34, "image changed by ATA command {cmd:#x}");
            let mut lba_bytes = [0u8; 8];
            lba_bytes[..6].copy_from_slice(&frame[28..34]);
            let mut lba = u64::from_le_bytes(lba_bytes);
            if cmd == 0x30 {
                lba &= 0x0fff_ffff;
            }
            let count = frame[26] as u64;
            let first = before.iter().zip(&after).position(|(a, b)| a != b).unwrap() as u64;
            let last = before.iter().zip(&after).rposition(|(a, b)| a != b).unwrap() as u64;
            assert!(first >= lba * 512 && last < (lba + count) * 512, "write outside its sectors");
            assert!(!ro, "read-only image changed");
        }
    }
});
