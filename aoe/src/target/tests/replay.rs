//! Conformance replays: every request a real initiator sent in `testdata/captures` goes through
//! `handle_frame`, and each reply is compared with the reply vblade gave in the capture.
//!
//! The image is rebuilt from the capture itself: every sector the initiator read before
//! writing it is seeded with the bytes vblade returned, so all read replies must match vblade
//! byte for byte. Where l2san deliberately differs, only the fields it shares are compared:
//! config Buffer Count and Firmware Version (ours: 64 and 0x4c32), the IDENTIFY strings (only
//! the capacity words are compared), and write replies, which vblade pads with stale bytes of
//! the request where l2san pads with zeros.

use super::*;
use crate::wire::test_frames::{load, IPXE, LINUX};
use std::collections::{HashMap, HashSet};
use std::os::unix::fs::FileExt;

fn is_response(f: &[u8]) -> bool {
    f[14] & 0x08 != 0
}

fn tag(f: &[u8]) -> u32 {
    u32::from_be_bytes([f[20], f[21], f[22], f[23]])
}

/// (opcode, lba as the ATA layer will use it, count) of an ATA request.
fn ata_request(f: &[u8]) -> Option<(u8, u64, u8)> {
    if f[19] != 0 || f.len() < 36 {
        return None;
    }
    let mut lba = [0u8; 8];
    lba[..6].copy_from_slice(&f[28..34]);
    let lba = u64::from_le_bytes(lba);
    let op = f[27];
    let lba = if matches!(op, 0x20 | 0x30) {
        lba & 0x0fff_ffff
    } else {
        lba
    };
    Some((op, lba, f[26]))
}

fn word(f: &[u8], w: usize) -> u16 {
    u16::from_le_bytes([f[36 + 2 * w], f[37 + 2 * w]])
}

fn capacity_of_identify(f: &[u8]) -> u64 {
    (0..4)
        .map(|i| u64::from(word(f, 100 + i)) << (16 * i))
        .sum()
}

/// An image file holding the seeded sectors, opened with `read_only`, already unlinked.
fn seeded_image(
    name: &str,
    capacity: u64,
    seed: &HashMap<u64, Vec<u8>>,
    read_only: bool,
) -> Arc<Image> {
    let path = std::env::temp_dir().join(format!(
        "l2san-aoe-replay-{}-{name}.img",
        std::process::id()
    ));
    let file = std::fs::File::create(&path).unwrap();
    file.set_len(capacity * 512).unwrap();
    for (lba, data) in seed {
        file.write_all_at(data, lba * 512).unwrap();
    }
    drop(file);
    let opts = ImageOptions {
        read_only,
        ..Default::default()
    };
    let img = Image::open(&path, opts).unwrap();
    std::fs::remove_file(&path).unwrap();
    Arc::new(img)
}

/// Replay `name`; returns how many replies were compared with vblade's.
fn replay(name: &str, read_only: bool) -> usize {
    let frames: Vec<Vec<u8>> = load(name)
        .into_iter()
        .filter(|f| f.len() >= 24 && f[12..14] == [0x88, 0xa2])
        .collect();
    let first_rsp = frames
        .iter()
        .find(|f| is_response(f))
        .expect("capture has responses");
    let target_mac = MacAddr::from_bytes(&first_rsp[6..12]);
    let (major, minor) = (
        u16::from_be_bytes([first_rsp[16], first_rsp[17]]),
        first_rsp[18],
    );

    // Pass 1: what the image held before the initiator wrote to it.
    let mut requests: HashMap<u32, (u8, u64, u8)> = HashMap::new();
    let mut written: HashSet<u64> = HashSet::new();
    let mut seed: HashMap<u64, Vec<u8>> = HashMap::new();
    let mut capacity = None;
    for f in &frames {
        if !is_response(f) {
            if let Some((op, lba, count)) = ata_request(f) {
                requests.insert(tag(f), (op, lba, count));
                if matches!(op, 0x30 | 0x34) {
                    written.extend((0..u64::from(count)).map(|i| lba + i));
                }
            }
            continue;
        }
        let Some(&(op, lba, count)) = requests.get(&tag(f)) else {
            continue;
        };
        if f[19] != 0 || f[27] != 0x40 {
            continue;
        }
        match op {
            0xec => capacity = Some(capacity_of_identify(f)),
            0x20 | 0x24 => {
                for i in 0..u64::from(count) {
                    if !written.contains(&(lba + i)) {
                        let at = 36 + i as usize * 512;
                        seed.entry(lba + i)
                            .or_insert_with(|| f[at..at + 512].to_vec());
                    }
                }
            }
            _ => {}
        }
    }
    let capacity = capacity.expect("capture has an IDENTIFY response");
    assert!(capacity > 0 && capacity <= 1 << 22, "capacity {capacity}");
    let img = seeded_image(name, capacity, &seed, read_only);
    let t = AoeTarget::new(
        target_mac,
        1500,
        "replay",
        vec![AoeExport::new(major, minor, img)],
    );

    // Pass 2: replay and compare.
    let mut batch = TxBatch::new(4);
    let mut compared = 0;
    for (i, f) in frames.iter().enumerate() {
        if is_response(f) {
            continue;
        }
        t.handle_frame(f, Instant::now(), &mut batch);
        let ours = drain(&mut batch);
        assert_eq!(
            ours.len(),
            1,
            "{name}: frame {} got {} replies",
            i + 1,
            ours.len()
        );
        let ours = &ours[0];
        let Some(theirs) = frames[i + 1..]
            .iter()
            .find(|g| is_response(g) && tag(g) == tag(f))
        else {
            continue;
        };
        let ctx = format!("{name}: request {:02x?}", &f[14..f.len().min(36)]);
        assert_eq!(&ours[..14], &theirs[..14], "{ctx}: Ethernet header");
        match (f[19], ata_request(f)) {
            (1, _) => {
                assert_eq!(&ours[14..24], &theirs[14..24], "{ctx}: AoE header");
                assert_eq!(&ours[24..28], &[0, 64, 0x4c, 0x32], "{ctx}");
                assert_eq!(
                    &ours[28..32],
                    &theirs[28..32],
                    "{ctx}: scnt, version, ccmd, length"
                );
                assert_eq!(ours.len(), 60);
                assert!(ours[32..].iter().all(|&b| b == 0), "{ctx}: padding");
            }
            (0, Some((0xec, _, _))) => {
                assert_eq!(&ours[..36], &theirs[..36], "{ctx}");
                assert_eq!(ours.len(), theirs.len(), "{ctx}");
                assert_eq!(capacity_of_identify(ours), capacity_of_identify(theirs));
                assert_eq!(
                    (word(ours, 60), word(ours, 61)),
                    (word(theirs, 60), word(theirs, 61))
                );
                assert_ne!(word(ours, 83) & (1 << 10), 0);
            }
            (0, Some((0x20 | 0x24, _, _))) => {
                assert_eq!(ours.len(), theirs.len(), "{ctx}");
                assert!(ours == theirs, "{ctx}: read reply differs from vblade's");
            }
            (0, Some((0x30 | 0x34, _, _))) => {
                assert_eq!(&ours[..36], &theirs[..36], "{ctx}");
                assert_eq!(ours.len(), 60);
                assert!(ours[36..].iter().all(|&b| b == 0), "{ctx}: zero padding");
            }
            _ => panic!("{ctx}: unexpected request in the capture"),
        }
        compared += 1;
    }
    let s = t.stats().snapshot();
    assert_eq!(
        s.replies as usize,
        frames.iter().filter(|f| !is_response(f)).count()
    );
    compared
}

#[test]
fn replay_ipxe_bios_boot() {
    assert!(replay(IPXE, false) > 30);
}

#[test]
fn replay_ipxe_uefi_boot() {
    assert!(replay("ipxe-aoe-uefi-boot.pcap", false) > 150);
}

#[test]
fn replay_ipxe_write_refused_by_read_only_export() {
    assert!(replay("ipxe-aoe-write-refused.pcap", true) > 40);
}

#[test]
fn replay_linux_initiator() {
    assert!(replay(LINUX, false) > 100);
}

#[test]
fn ipxe_query_config_reply_bytes() {
    // iPXE frame 1 (to the broadcast MAC, addressed to e0.0, 32 bytes) against vblade's
    // reply (frame 2), with our Buffer Count and Firmware Version.
    let req = crate::wire::test_frames::frame(IPXE, 1);
    let mut want = crate::wire::test_frames::frame(IPXE, 2);
    want[24..28].copy_from_slice(&[0, 64, 0x4c, 0x32]);
    want.resize(60, 0);
    let img = memory_image(8, false);
    let t = AoeTarget::new(
        MacAddr::from_bytes(&want[6..12]),
        1500,
        "h",
        vec![AoeExport::new(0, 0, img)],
    );
    let mut batch = TxBatch::new(1);
    t.handle_frame(&req, Instant::now(), &mut batch);
    assert_eq!(drain(&mut batch), vec![want]);
}

#[test]
fn linux_broadcast_query_config_from_two_exports() {
    let req = crate::wire::test_frames::frame(LINUX, 1);
    assert_eq!(req.len(), 32, "unpadded, shorter than the Ethernet minimum");
    let t = AoeTarget::new(
        US,
        9000,
        "h",
        vec![
            AoeExport::new(0, 0, memory_image(8, false)),
            AoeExport::new(7, 1, memory_image(8, false)),
        ],
    );
    let mut batch = TxBatch::new(1);
    t.handle_frame(&req, Instant::now(), &mut batch);
    let replies = drain(&mut batch);
    assert_eq!(replies.len(), 2);
    for (r, addr) in replies.iter().zip([[0u8, 0, 0], [0, 7, 1]]) {
        assert_eq!(&r[0..6], &req[6..12]);
        assert_eq!(&r[14..16], &[0x18, 0]);
        assert_eq!(&r[16..19], &addr, "our own address, not the broadcast one");
        assert_eq!(r[28], 17, "Sector Count at MTU 9000");
    }
}
