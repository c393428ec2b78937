use super::*;
use l2san_common::store::{Backing, ClientKey, OverlayOptions, OverlaySet};
use l2san_common::{Image, ImageOptions, MacAddr};
use std::sync::Arc;

const CAP: u64 = 1024; // sectors

fn image(read_only: bool) -> Image {
    let opts = ImageOptions {
        read_only,
        ..Default::default()
    };
    Image::memory(CAP * 512, opts).unwrap()
}

fn cmd(op: u8, count: u8, lba: u64) -> AtaCommand {
    AtaCommand {
        opcode: Opcode::from(op),
        features: 0,
        sector_count: count,
        lba,
    }
}

const ABRT: (u8, u8) = (0x41, 0x04);
const IDNF: (u8, u8) = (0x41, 0x10);

/// Decode and execute against a fresh writable image, returning the registers.
fn run(c: AtaCommand, payload: usize, max: u8) -> Result<Completion, (u8, u8)> {
    let img = image(false);
    let id = Identity::new("t");
    let dev = AtaDevice {
        image: &img,
        identity: &id,
    };
    let out = vec![0x5au8; payload];
    let mut inb = vec![0u8; 255 * 512];
    c.decode(CAP, max, payload)
        .and_then(|op| dev.execute(&op, &out, &mut inb))
        .map_err(|e| e.registers())
}

#[test]
fn error_policy_table() {
    // (opcode, count, lba, payload bytes, max sectors, Count register or (status, error))
    type Case = (u8, u8, u64, usize, u8, Result<u8, (u8, u8)>);
    let cases: &[Case] = &[
        (0x24, 2, 0, 0, 2, Ok(0)),
        (0x24, 0, 0, 0, 2, Err(ABRT)),                   // count 0
        (0x24, 3, 0, 0, 2, Err(ABRT)),                   // above the advertised max
        (0x34, 2, 0, 1023, 2, Err(ABRT)),                // short payload
        (0x34, 2, 0, 1024, 2, Ok(0)),                    // exact payload
        (0x34, 2, 0, 1100, 2, Ok(0)),                    // padding after the payload
        (0x24, 2, CAP - 2, 0, 2, Ok(0)),                 // last two sectors
        (0x24, 2, CAP - 1, 0, 2, Err(IDNF)),             // one past the end
        (0x34, 1, CAP, 512, 2, Err(IDNF)),               // write past the end
        (0x24, 1, 1 << 32, 0, 2, Err(IDNF)),             // above 2 TiB
        (0x24, 1, 0xffff_ffff_ffff, 0, 2, Err(IDNF)),    // top of 48-bit space
        (0x20, 1, 0xe000_0000 | (CAP - 1), 0, 2, Ok(0)), // 28-bit, device bits masked
        (0x20, 1, 0x0fff_ffff, 0, 2, Err(IDNF)),
        (0xec, 1, 0xa000_0000, 0, 2, Ok(0)),
        (0xec, 0, 0, 0, 2, Ok(0)), // IDENTIFY ignores Count
        (0xec, 7, 0, 0, 0, Ok(0)),
        (0xe5, 0, 0, 0, 2, Ok(0xff)), // CHECK POWER MODE: active
        (0xe7, 0, 0, 0, 2, Ok(0)),
        (0xea, 0, 0, 0, 2, Ok(0)),
        (0xb0, 0, 0, 0, 2, Err(ABRT)), // SMART: not supported
        (0x98, 0, 0, 0, 2, Err(ABRT)), // legacy CHECK POWER alias: not handled
        (0xc8, 1, 0, 0, 2, Err(ABRT)), // READ DMA
        (0x00, 0, 0, 0, 2, Err(ABRT)),
    ];
    for &(op, count, lba, payload, max, want) in cases {
        let got = run(cmd(op, count, lba), payload, max).map(|c| c.sector_count);
        assert_eq!(
            got, want,
            "opcode {op:#x} count {count} lba {lba:#x} payload {payload}"
        );
    }
}

#[test]
fn data_lengths() {
    assert_eq!(run(cmd(0x24, 2, 0), 0, 2).unwrap().data_len, 1024);
    assert_eq!(run(cmd(0xec, 1, 0), 0, 2).unwrap().data_len, 512);
    assert_eq!(run(cmd(0x34, 2, 0), 1024, 2).unwrap().data_len, 0);
}

#[test]
fn lba_range_helper() {
    assert_eq!(lba_range(0, 1, 1), Ok(0));
    assert_eq!(lba_range(3, 2, 5), Ok(1536));
    assert_eq!(lba_range(3, 3, 5), Err(AtaError::IdNotFound));
    assert_eq!(lba_range(u64::MAX, 1, u64::MAX), Err(AtaError::IdNotFound));
    assert_eq!(
        lba_range(u64::MAX - 1, 1, u64::MAX),
        Err(AtaError::IdNotFound)
    );
}

#[test]
fn write_then_read_and_read_only() {
    let img = image(false);
    let id = Identity::new("t");
    let dev = AtaDevice {
        image: &img,
        identity: &id,
    };
    let data: Vec<u8> = (0..1024).map(|i| i as u8).collect();
    let op = cmd(0x30, 2, 0xe000_0010).decode(CAP, 2, 1024).unwrap();
    assert_eq!(
        op,
        AtaOp::Write {
            lba: 0x10,
            count: 2
        }
    );
    dev.execute(&op, &data, &mut []).unwrap();
    let mut back = vec![0u8; 1024];
    let op = cmd(0x24, 2, 0x10).decode(CAP, 2, 0).unwrap();
    dev.execute(&op, &[], &mut back).unwrap();
    assert_eq!(back, data);

    let ro = image(true);
    let dev = AtaDevice {
        image: &ro,
        identity: &id,
    };
    let op = cmd(0x34, 2, 0).decode(CAP, 2, 1024).unwrap();
    assert_eq!(
        dev.execute(&op, &data, &mut []).unwrap_err().registers(),
        ABRT
    );
    let mut back = vec![0xffu8; 1024];
    let op = cmd(0x24, 2, 0).decode(CAP, 2, 0).unwrap();
    dev.execute(&op, &[], &mut back).unwrap();
    assert!(back.iter().all(|&b| b == 0));
}

/// The device runs on the volume the target picks per request: over an overlay export, each
/// client writes into its own overlay and reads its own writes; others still read the base.
#[test]
fn each_client_runs_on_its_own_overlay() {
    let dir = std::env::temp_dir().join(format!("l2san-ata-overlay-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let base_path = dir.join("base.img");
    std::fs::write(&base_path, vec![0x11u8; (CAP * 512) as usize]).unwrap();
    let ro = ImageOptions {
        read_only: true,
        ..Default::default()
    };
    let base = Arc::new(Image::open(&base_path, ro).unwrap());
    let set = OverlaySet::open(base, &dir.join("ov"), OverlayOptions::default()).unwrap();
    let backing = Backing::from(Arc::new(set));
    let id = Identity::new("t");
    let a = ClientKey::mac(MacAddr([0x52, 0x54, 0, 0, 0, 1]));
    let b = ClientKey::mac(MacAddr([0x52, 0x54, 0, 0, 0, 2]));
    let (va, vb) = (backing.volume(&a), backing.volume(&b));
    let dev_a = AtaDevice {
        image: &va,
        identity: &id,
    };
    let dev_b = AtaDevice {
        image: &vb,
        identity: &id,
    };
    assert_eq!(dev_a.capacity(), CAP);
    // IDENTIFY: writable with a write cache (word 85 bit 5), although the base is read-only.
    let mut ident = [0u8; IDENTIFY_LEN];
    dev_a.execute(&AtaOp::Identify, &[], &mut ident).unwrap();
    assert_ne!(u16::from_le_bytes([ident[170], ident[171]]) & (1 << 5), 0);
    let data = vec![0xa5u8; 1024];
    let op = cmd(0x34, 2, 7).decode(CAP, 2, 1024).unwrap();
    dev_a.execute(&op, &data, &mut []).unwrap();
    let read = cmd(0x24, 2, 7).decode(CAP, 2, 0).unwrap();
    let mut back = vec![0u8; 1024];
    dev_a.execute(&read, &[], &mut back).unwrap();
    assert_eq!(back, data);
    dev_b.execute(&read, &[], &mut back).unwrap();
    assert!(back.iter().all(|&x| x == 0x11), "b reads the base");
    dev_a.execute(&AtaOp::Flush, &[], &mut []).unwrap();
    assert!(std::fs::read(&base_path)
        .unwrap()
        .iter()
        .all(|&x| x == 0x11));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn short_data_in_buffer_aborts_not_panics() {
    let img = image(false);
    let id = Identity::new("t");
    let dev = AtaDevice {
        image: &img,
        identity: &id,
    };
    let mut small = [0u8; 100];
    assert!(dev.execute(&AtaOp::Identify, &[], &mut small).is_err());
    assert!(dev
        .execute(&AtaOp::Read { lba: 0, count: 1 }, &[], &mut small)
        .is_err());
    assert!(dev
        .execute(&AtaOp::Write { lba: 0, count: 1 }, &small, &mut [])
        .is_err());
}

#[test]
fn store_errors_map() {
    let e = StoreError::Io(std::io::Error::other("EIO"));
    assert_eq!(AtaError::from(e).registers(), (0x41, 0x40));
    assert_eq!(AtaError::from(StoreError::ReadOnly).registers(), ABRT);
    assert_eq!(AtaError::from(StoreError::Shrunk).registers(), (0x41, 0x40));
    let e = StoreError::OutOfRange {
        offset: 0,
        len: 1,
        size: 0,
    };
    assert_eq!(AtaError::from(e).registers(), IDNF);
}

#[test]
fn opcodes_round_trip() {
    for v in 0..=255u8 {
        assert_eq!(u8::from(Opcode::from(v)), v);
    }
}
