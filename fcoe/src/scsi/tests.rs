use std::path::{Path, PathBuf};
use std::sync::Arc;

use l2san_common::{Durability, Image, ImageOptions, StoreError};
use proptest::prelude::*;

use super::*;

const WWPN: u64 = 0x2000_0011_2233_4455;
const N1: NexusId = NexusId(1);
const N2: NexusId = NexusId(2);
const MIB: u64 = 1 << 20;
const TIB: u64 = 1 << 40;

fn writeback() -> ImageOptions {
    ImageOptions::default()
}
fn sync() -> ImageOptions {
    ImageOptions {
        read_only: false,
        durability: Durability::Sync,
    }
}
fn read_only() -> ImageOptions {
    ImageOptions {
        read_only: true,
        durability: Durability::Writeback,
    }
}

fn mem(len: u64, opts: ImageOptions) -> Arc<Image> {
    Arc::new(Image::memory(len, opts).unwrap())
}

fn target(luns: Vec<(u16, Arc<Image>)>) -> ScsiTarget {
    let mut table = LunTable::new(WWPN);
    for (n, image) in luns {
        table.insert(n, image).unwrap();
    }
    ScsiTarget::new(table)
}

/// One writeback LUN 0 of `len` bytes.
fn disk(len: u64) -> ScsiTarget {
    target(vec![(0, mem(len, writeback()))])
}

fn sam(n: u16) -> [u8; 8] {
    encode_sam_lun(n)
}

fn cdb(bytes: &[u8]) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[..bytes.len()].copy_from_slice(bytes);
    c
}

fn run(t: &ScsiTarget, lun: u16, bytes: &[u8]) -> Command {
    t.execute(&sam(lun), &cdb(bytes), N1, u64::MAX, None)
}

/// Consume the power-on unit attention of `nexus` on `lun`.
fn clear_ua(t: &ScsiTarget, lun: u16, nexus: NexusId) {
    let c = t.execute(&sam(lun), &cdb(&[0x00]), nexus, u64::MAX, None);
    assert_eq!(c, Command::Error(UnitAttention::PowerOnReset.sense()));
    assert_eq!(
        t.execute(&sam(lun), &cdb(&[0x00]), nexus, u64::MAX, None),
        Command::NoData
    );
}

/// `run` on a LUN whose unit attention for N1 was consumed.
fn ready_target(t: &ScsiTarget, lun: u16) {
    clear_ua(t, lun, N1);
}

fn data(c: Command) -> Vec<u8> {
    match c {
        Command::DataIn(d) => d.as_slice().to_vec(),
        other => panic!("expected data-in, got {other:?}"),
    }
}

fn sense_of(c: &Command) -> (u8, u8, u8) {
    match c {
        Command::Error(s) => (s.key as u8, s.asc, s.ascq),
        other => panic!("expected CHECK CONDITION, got {other:?}"),
    }
}

/// A scratch directory removed on drop (std only).
struct TempDir(PathBuf);
impl TempDir {
    fn new() -> TempDir {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "l2san-scsi-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    fn path(&self) -> &Path {
        &self.0
    }
}
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A sparse image file of `len` bytes (nothing allocated until written).
fn sparse(dir: &TempDir, name: &str, len: u64, opts: ImageOptions) -> Arc<Image> {
    let path = dir.path().join(name);
    std::fs::File::create(&path).unwrap().set_len(len).unwrap();
    Arc::new(Image::open(&path, opts).unwrap())
}

// ---------------------------------------------------------------------------------------------
// Sense data

#[test]
fn sense_table() {
    use UnitAttention::*;
    let rows: &[(ScsiError, (u8, u8, u8))] = &[
        (ScsiError::InvalidOpcode(0x42), (0x05, 0x20, 0x00)),
        (ScsiError::LbaOutOfRange, (0x05, 0x21, 0x00)),
        (ScsiError::InvalidFieldInCdb(2), (0x05, 0x24, 0x00)),
        (ScsiError::LunNotSupported, (0x05, 0x25, 0x00)),
        (ScsiError::WriteProtected, (0x07, 0x27, 0x00)),
        (ScsiError::ReadError, (0x03, 0x11, 0x00)),
        (ScsiError::WriteError, (0x03, 0x0c, 0x00)),
        (ScsiError::UnitAttention(PowerOnReset), (0x06, 0x29, 0x00)),
        (ScsiError::UnitAttention(BusDeviceReset), (0x06, 0x29, 0x03)),
        (
            ScsiError::UnitAttention(CapacityChanged),
            (0x06, 0x2a, 0x09),
        ),
        (
            ScsiError::UnitAttention(ReportedLunsChanged),
            (0x06, 0x3f, 0x0e),
        ),
    ];
    for (e, (key, asc, ascq)) in rows {
        let s = e.sense();
        assert_eq!((s.key as u8, s.asc, s.ascq), (*key, *asc, *ascq), "{e}");
        let mut b = [0xa5u8; 32];
        assert_eq!(s.to_fixed(&mut b), 18);
        assert_eq!(b[0], 0x70, "{e}");
        assert_eq!(b[2], *key);
        assert_eq!(b[7], 10, "additional sense length");
        assert_eq!((b[12], b[13]), (*asc, *ascq));
        assert_eq!(b[18], 0xa5, "nothing written past 18 bytes");
        assert_eq!(Sense::from(*e), s);
    }
}

#[test]
fn fixed_sense_bytes_with_field_pointer() {
    let s = ScsiError::InvalidFieldInCdb(2).sense();
    assert_eq!(
        s.fixed(),
        [0x70, 0, 0x05, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x24, 0x00, 0, 0xc0, 0x00, 0x02]
    );
    let plain = ScsiError::LbaOutOfRange.sense().fixed();
    assert_eq!(&plain[15..18], &[0, 0, 0], "no SKSV without a field");
    assert_eq!(s.to_string(), "05/24/00");
}

#[test]
fn fixed_sense_truncates_to_buffer() {
    let s = ScsiError::WriteProtected.sense();
    let mut b = [0u8; 8];
    assert_eq!(s.to_fixed(&mut b), 8);
    assert_eq!(b, [0x70, 0, 0x07, 0, 0, 0, 0, 10]);
    assert_eq!(s.to_fixed(&mut []), 0);
}

#[test]
fn descriptor_sense_bytes() {
    let mut b = [0u8; 32];
    let n = ScsiError::InvalidFieldInCdb(10)
        .sense()
        .to_descriptor(&mut b);
    assert_eq!(
        &b[..n],
        &[0x72, 0x05, 0x24, 0x00, 0, 0, 0, 8, 0x02, 0x06, 0, 0, 0xc0, 0, 10, 0]
    );
    let n = UnitAttention::PowerOnReset.sense().to_descriptor(&mut b);
    assert_eq!(&b[..n], &[0x72, 0x06, 0x29, 0x00, 0, 0, 0, 0]);
}

#[test]
fn store_errors_map_to_medium_errors() {
    let io = || StoreError::Io(std::io::Error::other("boom"));
    assert_eq!(ScsiError::from_read(&io()), ScsiError::ReadError);
    assert_eq!(
        ScsiError::from_read(&StoreError::Shrunk),
        ScsiError::ReadError
    );
    assert_eq!(ScsiError::from_write(&io()), ScsiError::WriteError);
    assert_eq!(
        ScsiError::from_write(&StoreError::Shrunk),
        ScsiError::WriteError
    );
    assert_eq!(
        ScsiError::from_write(&StoreError::ReadOnly),
        ScsiError::WriteProtected
    );
    let oor = StoreError::OutOfRange {
        offset: 0,
        len: 1,
        size: 0,
    };
    assert_eq!(ScsiError::from_read(&oor), ScsiError::LbaOutOfRange);
    assert_eq!(ScsiError::WriteError.sense().fixed()[12], 0x0c);
}

#[test]
fn read_of_shrunk_image_is_unrecovered_read_error() {
    let dir = TempDir::new();
    let path = dir.path().join("shrinks.img");
    std::fs::File::create(&path).unwrap().set_len(MIB).unwrap();
    let image = Arc::new(Image::open(&path, writeback()).unwrap());
    let t = target(vec![(0, image)]);
    ready_target(&t, 0);
    assert_eq!(
        run(&t, 0, &[0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0]),
        Command::Read {
            offset_bytes: 0,
            len_bytes: 512
        }
    );
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(0)
        .unwrap();
    let mut buf = [0u8; 512];
    let e = t.read_data(&sam(0), None, 0, &mut buf).unwrap_err();
    assert_eq!((e.key as u8, e.asc, e.ascq), (0x03, 0x11, 0x00));
}

#[test]
fn data_phase_on_absent_or_read_only_lun() {
    let t = target(vec![(1, mem(MIB, read_only()))]);
    let mut buf = [0u8; 512];
    assert_eq!(
        t.read_data(&sam(0), None, 0, &mut buf),
        Err(ScsiError::LunNotSupported.sense())
    );
    assert_eq!(
        t.write_data(&sam(1), None, 0, &buf),
        Err(ScsiError::WriteProtected.sense())
    );
    assert_eq!(
        t.read_data(&sam(1), None, MIB - 256, &mut buf),
        Err(ScsiError::LbaOutOfRange.sense())
    );
    assert_eq!(t.read_data(&sam(1), None, MIB - 512, &mut buf), Ok(()));
}

// ---------------------------------------------------------------------------------------------
// CDB helpers

#[test]
fn data_direction_and_expected_len_table() {
    use DataDirection::*;
    let rows: &[(&[u8], DataDirection, u64)] = &[
        (&[0x00], None, 0),
        (&[0x03, 0, 0, 0, 18], In, 18),
        (&[0x08, 0, 0, 0, 0], In, 256 * 512),
        (&[0x08, 0, 0, 0, 3], In, 3 * 512),
        (&[0x0a, 0, 0, 0, 0], Out, 256 * 512),
        (&[0x12, 0, 0, 0x01, 0x00], In, 256),
        (&[0x1a, 0, 0x3f, 0, 192], In, 192),
        (&[0x1b], None, 0),
        (&[0x1e], None, 0),
        (&[0x25], In, 8),
        (&[0x28, 0, 0, 0, 0, 0, 0, 0x01, 0x00, 0], In, 256 * 512),
        (&[0x28, 0, 0, 0, 0, 0, 0, 0, 0, 0], In, 0),
        (&[0x2a, 0, 0, 0, 0, 0, 0, 0, 8, 0], Out, 8 * 512),
        (&[0x2f, 0, 0, 0, 0, 0, 0, 0, 8, 0], None, 0),
        (&[0x35], None, 0),
        (&[0x5a, 0, 0x08, 0, 0, 0, 0, 0x02, 0x00, 0], In, 512),
        (
            &[0x88, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff],
            In,
            0xffff_ffff * 512,
        ),
        (&[0x8a, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1], Out, 512),
        (&[0x91], None, 0),
        (&[0x9e, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32], In, 32),
        (&[0x9e, 0x11, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32], None, 0),
        (&[0xa0, 0, 0, 0, 0, 0, 0, 0, 0x10, 0], In, 0x1000),
        (&[0x42], None, 0),
        (&[0xff], None, 0),
    ];
    for (bytes, dir, len) in rows {
        let c = cdb(bytes);
        assert_eq!(data_direction(&c), *dir, "{bytes:02x?}");
        assert_eq!(expected_len(&c), *len, "{bytes:02x?}");
    }
}

#[test]
fn block_range_is_checked() {
    assert_eq!(
        block_range(0, 1, 1),
        Ok(ByteRange {
            offset_bytes: 0,
            len_bytes: 512
        })
    );
    assert_eq!(
        block_range(10, 0, 10),
        Ok(ByteRange {
            offset_bytes: 5120,
            len_bytes: 0
        })
    );
    assert_eq!(block_range(11, 0, 10), Err(ScsiError::LbaOutOfRange));
    assert_eq!(block_range(9, 2, 10), Err(ScsiError::LbaOutOfRange));
    assert_eq!(
        block_range(u64::MAX, 1, u64::MAX),
        Err(ScsiError::LbaOutOfRange)
    );
    assert_eq!(
        block_range(u64::MAX - 1, 1, u64::MAX),
        Err(ScsiError::LbaOutOfRange)
    );
    assert_eq!(
        block_range(1 << 60, 0, u64::MAX),
        Err(ScsiError::LbaOutOfRange)
    );
}

#[test]
fn sam_lun_decoding() {
    let rows: &[([u8; 8], Option<u16>)] = &[
        ([0, 0, 0, 0, 0, 0, 0, 0], Some(0)),
        ([0, 5, 0, 0, 0, 0, 0, 0], Some(5)),
        ([0, 0xff, 0, 0, 0, 0, 0, 0], Some(255)),
        ([0x40, 0x05, 0, 0, 0, 0, 0, 0], Some(5)),
        ([0x41, 0x00, 0, 0, 0, 0, 0, 0], Some(256)),
        ([0x7f, 0xff, 0, 0, 0, 0, 0, 0], Some(0x3fff)),
        ([0x01, 0x00, 0, 0, 0, 0, 0, 0], None), // bus 1
        ([0x80, 0x01, 0, 0, 0, 0, 0, 0], None), // logical unit addressing
        ([0xc0, 0x01, 0, 0, 0, 0, 0, 0], None), // extended
        ([0, 1, 0, 2, 0, 0, 0, 0], None),       // second level
        ([0, 1, 0, 0, 0, 0, 0, 1], None),
    ];
    for (bytes, lun) in rows {
        assert_eq!(decode_sam_lun(bytes), *lun, "{bytes:02x?}");
    }
    for n in [0u16, 1, 63, 255, 256, 0x3fff] {
        assert_eq!(decode_sam_lun(&encode_sam_lun(n)), Some(n));
    }
    assert_eq!(encode_sam_lun(7), [0, 7, 0, 0, 0, 0, 0, 0]);
    assert_eq!(encode_sam_lun(300), [0x41, 0x2c, 0, 0, 0, 0, 0, 0]);
}

#[test]
fn lun_table_rejects_bad_configurations() {
    let mut t = LunTable::new(WWPN);
    assert!(t.is_empty());
    t.insert(0, mem(MIB, writeback())).unwrap();
    assert_eq!(
        t.insert(0, mem(MIB, writeback())).unwrap_err(),
        LunError::Duplicate(0)
    );
    assert_eq!(
        t.insert(64, mem(MIB, writeback())).unwrap_err(),
        LunError::NumberTooLarge(64)
    );
    assert_eq!(
        t.insert(3, mem(511, writeback())).unwrap_err(),
        LunError::EmptyImage(3)
    );
    t.insert(63, mem(MIB, writeback())).unwrap();
    assert_eq!(t.len(), 2);
    assert_eq!(t.present_mask(), 1 | 1 << 63);
    assert_eq!(t.iter().map(Lun::number).collect::<Vec<_>>(), vec![0, 63]);
    assert!(t.lookup(&sam(63)).is_some());
    assert!(t.lookup(&sam(64)).is_none());
    assert!(t.lookup(&[0x80, 0, 0, 0, 0, 0, 0, 0]).is_none());
}

// ---------------------------------------------------------------------------------------------
// NAA designator and INQUIRY

#[test]
fn naa_designator_is_stable_and_distinct() {
    let d = lun::naa_designator(WWPN, 0);
    // Pinned: Linux names /dev/disk/by-id after this; it must never change.
    assert_eq!(
        d,
        lun::naa_designator(0x2000_0011_2233_4455, 0),
        "deterministic"
    );
    assert_eq!(d, PINNED_NAA);
    assert_eq!(d[0] >> 4, 6, "NAA 6");
    let cid = (u32::from(d[0] & 0x0f) << 20)
        | (u32::from(d[1]) << 12)
        | (u32::from(d[2]) << 4)
        | u32::from(d[3] >> 4);
    assert_eq!(cid, lun::NAA_COMPANY_ID);
    assert_eq!((cid >> 16) & 0x0f, 0b1010, "CID format: local bit set");
    let mut seen = std::collections::HashSet::new();
    for target in [WWPN, WWPN + 1, 0, u64::MAX] {
        for n in 0..64 {
            assert!(seen.insert(lun::naa_designator(target, n)));
        }
    }
}

const PINNED_NAA: [u8; 16] = [
    0x64, 0xa3, 0x25, 0x37, 0x08, 0x6c, 0x25, 0xdd, 0xef, 0xb7, 0x05, 0x05, 0xd3, 0x75, 0xd3, 0x62,
];

#[test]
fn standard_inquiry_bytes() {
    let t = disk(MIB);
    let d = data(run(&t, 0, &[0x12, 0, 0, 0x01, 0x00, 0]));
    assert_eq!(d.len(), 96);
    assert_eq!(d[0], 0x00, "PQ 0, direct access block device");
    assert_eq!(d[1], 0x00, "not removable");
    assert_eq!(d[2], 0x06, "SPC-4");
    assert_eq!(d[3], 0x12, "HISUP, response data format 2");
    assert_eq!(d[4], 91, "additional length");
    assert_eq!(&d[5..8], &[0, 0, 0x02], "CMDQUE");
    assert_eq!(&d[8..16], b"L2SAN   ");
    assert_eq!(&d[16..32], b"DISK IMAGE      ");
    assert_eq!(&d[32..36], &inquiry::revision());
    assert!(d[32..36].iter().all(|c| c.is_ascii_graphic() || *c == b' '));
    assert_eq!(&d[58..64], &[0x00, 0xa0, 0x04, 0x60, 0x04, 0xc0]);
    assert!(d[36..58].iter().all(|&b| b == 0));
    assert!(d[64..].iter().all(|&b| b == 0));
}

#[test]
fn inquiry_truncates_to_allocation_length() {
    let t = disk(MIB);
    let d = data(run(&t, 0, &[0x12, 0, 0, 0, 36, 0]));
    assert_eq!(d.len(), 36);
    assert_eq!(d[4], 91, "additional length still says the full size");
    assert!(data(run(&t, 0, &[0x12, 0, 0, 0, 0, 0])).is_empty());
    assert_eq!(data(run(&t, 0, &[0x12, 1, 0x80, 0, 10, 0])).len(), 10);
}

#[test]
fn inquiry_of_absent_lun_has_qualifier_3() {
    let t = target(vec![(1, mem(MIB, writeback()))]);
    let d = data(run(&t, 0, &[0x12, 0, 0, 0, 96, 0]));
    assert_eq!(d[0], 0x7f);
    assert_eq!(&d[8..16], b"L2SAN   ");
    let d = data(run(&t, 1, &[0x12, 0, 0, 0, 96, 0]));
    assert_eq!(d[0], 0x00);
    // Not configured, address method the target does not understand: absent too.
    let c = t.execute(
        &[0x80, 1, 0, 0, 0, 0, 0, 0],
        &cdb(&[0x12, 0, 0, 0, 96, 0]),
        N1,
        u64::MAX,
        None,
    );
    assert_eq!(data(c)[0], 0x7f);
    assert_eq!(
        sense_of(&run(&t, 0, &[0x12, 1, 0x00, 0, 96, 0])),
        (0x05, 0x25, 0x00)
    );
}

#[test]
fn vpd_supported_pages() {
    let t = disk(MIB);
    let d = data(run(&t, 0, &[0x12, 1, 0x00, 0, 255, 0]));
    assert_eq!(d, [0, 0x00, 0, 5, 0x00, 0x80, 0x83, 0xb0, 0xb1]);
}

#[test]
fn vpd_unit_serial_number() {
    let t = disk(MIB);
    let d = data(run(&t, 0, &[0x12, 1, 0x80, 0, 255, 0]));
    assert_eq!(&d[..4], &[0, 0x80, 0, 32]);
    assert_eq!(d.len(), 36);
    let lun = t.luns().get(0).unwrap();
    let hex: String = lun.naa().iter().map(|b| format!("{b:02X}")).collect();
    assert_eq!(&d[4..], hex.as_bytes());
    assert_eq!(&d[4..], lun.serial());
}

#[test]
fn vpd_device_identification() {
    let t = disk(MIB);
    let d = data(run(&t, 0, &[0x12, 1, 0x83, 0, 255, 0]));
    let lun = t.luns().get(0).unwrap();
    assert_eq!(&d[..4], &[0, 0x83, 0, 72]);
    assert_eq!(d.len(), 76);
    // NAA, binary, associated with the LU.
    assert_eq!(&d[4..8], &[0x01, 0x03, 0x00, 16]);
    assert_eq!(&d[8..24], lun.naa());
    assert_eq!(&d[8..24], &PINNED_NAA);
    // T10 vendor ID, ASCII, LU.
    assert_eq!(&d[24..28], &[0x02, 0x01, 0x00, 40]);
    assert_eq!(&d[28..36], b"L2SAN   ");
    assert_eq!(&d[36..68], lun.serial());
    // Relative target port 1, binary, associated with the target port.
    assert_eq!(&d[68..76], &[0x01, 0x14, 0x00, 4, 0, 0, 0, 1]);
}

#[test]
fn vpd_designators_differ_per_lun_and_target() {
    let a = target(vec![(0, mem(MIB, writeback())), (1, mem(MIB, writeback()))]);
    let mut other = LunTable::new(WWPN + 1);
    other.insert(0, mem(MIB, writeback())).unwrap();
    let b = ScsiTarget::new(other);
    let page = |t: &ScsiTarget, lun| data(run(t, lun, &[0x12, 1, 0x83, 0, 255, 0]))[8..24].to_vec();
    assert_ne!(page(&a, 0), page(&a, 1));
    assert_ne!(page(&a, 0), page(&b, 0));
    assert_eq!(page(&a, 0), page(&disk(MIB), 0), "same target, same LUN");
}

#[test]
fn vpd_block_limits() {
    let t = disk(MIB);
    let d = data(run(&t, 0, &[0x12, 1, 0xb0, 0, 255, 0]));
    assert_eq!(d.len(), 64);
    assert_eq!(&d[..4], &[0, 0xb0, 0, 0x3c]);
    assert_eq!(&d[4..6], &[0, 0], "WSNZ, max compare and write");
    assert_eq!(&d[6..8], &8u16.to_be_bytes(), "optimal granularity 4 KiB");
    assert_eq!(&d[8..12], &MAX_TRANSFER_BLOCKS.to_be_bytes());
    assert_eq!(MAX_TRANSFER_BLOCKS, 0x007f_ffff);
    assert!(
        d[12..].iter().all(|&b| b == 0),
        "no UNMAP or WRITE SAME limits"
    );
}

#[test]
fn vpd_block_device_characteristics() {
    let t = disk(MIB);
    let d = data(run(&t, 0, &[0x12, 1, 0xb1, 0, 255, 0]));
    assert_eq!(d.len(), 64);
    assert_eq!(&d[..6], &[0, 0xb1, 0, 0x3c, 0x00, 0x01], "non-rotating");
    assert!(d[6..].iter().all(|&b| b == 0));
}

#[test]
fn inquiry_invalid_fields() {
    let t = disk(MIB);
    type Row<'a> = (&'a [u8], (u8, u8, u8), u8);
    let rows: &[Row] = &[
        (&[0x12, 0, 0x80, 0, 96, 0], (5, 0x24, 0), 2), // page code without EVPD
        (&[0x12, 1, 0x86, 0, 96, 0], (5, 0x24, 0), 2), // unsupported VPD page
        (&[0x12, 1, 0xb2, 0, 96, 0], (5, 0x24, 0), 2),
        (&[0x12, 2, 0, 0, 96, 0], (5, 0x24, 0), 1), // CMDDT
        (&[0x12, 0, 0, 0, 96, 0x04], (5, 0x24, 0), 5), // NACA
    ];
    for (bytes, expect, field) in rows {
        let c = run(&t, 0, bytes);
        assert_eq!(sense_of(&c), *expect, "{bytes:02x?}");
        let Command::Error(s) = c else { unreachable!() };
        assert_eq!(s.cdb_field, Some(*field), "{bytes:02x?}");
    }
}

// ---------------------------------------------------------------------------------------------
// REPORT LUNS

fn report_luns(select: u8, alloc: u32) -> Vec<u8> {
    let a = alloc.to_be_bytes();
    vec![0xa0, 0, select, 0, 0, 0, a[0], a[1], a[2], a[3], 0, 0]
}

#[test]
fn report_luns_with_lun_0_absent() {
    let t = target(vec![(5, mem(MIB, writeback())), (1, mem(MIB, read_only()))]);
    let d = data(run(&t, 0, &report_luns(0, 4096)));
    assert_eq!(
        d,
        [
            0, 0, 0, 16, 0, 0, 0, 0, //
            0, 1, 0, 0, 0, 0, 0, 0, //
            0, 5, 0, 0, 0, 0, 0, 0,
        ]
    );
    // Same answer through a configured LUN, and with SELECT REPORT 02h.
    assert_eq!(data(run(&t, 5, &report_luns(0, 4096))), d);
    assert_eq!(data(run(&t, 0, &report_luns(2, 4096))), d);
    // Well-known LUs only: none.
    assert_eq!(data(run(&t, 0, &report_luns(1, 4096))), [0; 8]);
    // Truncated, the list length still counts every LUN.
    assert_eq!(data(run(&t, 0, &report_luns(0, 12))), &d[..12]);
    assert_eq!(
        sense_of(&run(&t, 0, &report_luns(3, 4096))),
        (0x05, 0x24, 0x00)
    );
    assert_eq!(
        sense_of(&run(&t, 0, &report_luns(0x10, 4096))),
        (0x05, 0x24, 0x00)
    );
    // REPORT LUNS reports no unit attention; TUR on LUN 0 (absent) is LU not supported.
    assert_eq!(sense_of(&run(&t, 0, &[0x00])), (0x05, 0x25, 0x00));
    assert_eq!(sense_of(&run(&t, 5, &[0x00])), (0x06, 0x29, 0x00));
}

#[test]
fn report_luns_with_every_lun() {
    let t = target(
        (0..MAX_LUNS as u16)
            .map(|n| (n, mem(512, writeback())))
            .collect(),
    );
    let d = data(run(&t, 0, &report_luns(0, 65536)));
    assert_eq!(d.len(), DATA_IN_MAX);
    assert_eq!(&d[..4], &(8 * MAX_LUNS as u32).to_be_bytes());
    for n in 0..MAX_LUNS {
        assert_eq!(&d[8 + 8 * n..16 + 8 * n], &sam(n as u16));
    }
}

#[test]
fn report_luns_of_empty_target() {
    let t = target(vec![]);
    assert_eq!(data(run(&t, 0, &report_luns(0, 64))), [0; 8]);
    assert_eq!(sense_of(&run(&t, 0, &[0x25])), (0x05, 0x25, 0x00));
}

// ---------------------------------------------------------------------------------------------
// Simple commands

#[test]
fn command_table() {
    let t = disk(MIB);
    ready_target(&t, 0);
    enum Want {
        NoData,
        Read(u64, u32),
        Write(u64, u32, bool),
        Data(usize),
        Sense(u8, u8, u8),
    }
    use Want::*;
    let rows: &[(&str, &[u8], Want)] = &[
        ("TEST UNIT READY", &[0x00], NoData),
        ("START STOP UNIT stop", &[0x1b, 0, 0, 0, 0x00, 0], NoData),
        ("START STOP UNIT start", &[0x1b, 1, 0, 0, 0x01, 0], NoData),
        ("PREVENT", &[0x1e, 0, 0, 0, 1, 0], NoData),
        ("ALLOW", &[0x1e, 0, 0, 0, 0, 0], NoData),
        ("VERIFY(10)", &[0x2f, 0, 0, 0, 0, 0, 0, 0, 8, 0], NoData),
        (
            "VERIFY(10) BYTCHK",
            &[0x2f, 0x02, 0, 0, 0, 0, 0, 0, 8, 0],
            Sense(5, 0x24, 0),
        ),
        (
            "VERIFY(10) past end",
            &[0x2f, 0, 0, 0, 0x07, 0xff, 0, 0, 2, 0],
            Sense(5, 0x21, 0),
        ),
        (
            "VERIFY(16)",
            &[0x8f, 0, 0, 0, 0, 0, 0, 0, 0x07, 0xff, 0, 0, 0, 1, 0, 0],
            NoData,
        ),
        (
            "VERIFY(16) past end",
            &[0x8f, 0, 0, 0, 0, 0, 0, 0, 0x08, 0x00, 0, 0, 0, 1, 0, 0],
            Sense(5, 0x21, 0),
        ),
        (
            "SYNCHRONIZE CACHE(10)",
            &[0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            NoData,
        ),
        (
            "SYNCHRONIZE CACHE(10) IMMED range",
            &[0x35, 0x02, 0, 0, 0, 0x10, 0, 0, 0x10, 0],
            NoData,
        ),
        (
            "SYNCHRONIZE CACHE(10) past end",
            &[0x35, 0, 0, 0, 0x08, 0x01, 0, 0, 0, 0],
            Sense(5, 0x21, 0),
        ),
        (
            "SYNCHRONIZE CACHE(16)",
            &[0x91, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            NoData,
        ),
        (
            "READ CAPACITY(10)",
            &[0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            Data(8),
        ),
        (
            "READ CAPACITY(16)",
            &[0x9e, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0],
            Data(32),
        ),
        (
            "SERVICE ACTION IN other",
            &[0x9e, 0x12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0],
            Sense(5, 0x24, 0),
        ),
        ("MODE SENSE(6)", &[0x1a, 0, 0x3f, 0, 255, 0], Data(44)),
        (
            "MODE SENSE(10)",
            &[0x5a, 0, 0x3f, 0, 0, 0, 0, 1, 0, 0],
            Data(48),
        ),
        ("REQUEST SENSE", &[0x03, 0, 0, 0, 18, 0], Data(18)),
        ("INQUIRY", &[0x12, 0, 0, 0, 96, 0], Data(96)),
        ("REPORT LUNS", &report_luns(0, 16), Data(16)),
        ("READ(6)", &[0x08, 0, 0, 1, 2, 0], Read(512, 1024)),
        (
            "READ(10)",
            &[0x28, 0, 0, 0, 0, 2, 0, 0, 3, 0],
            Read(1024, 1536),
        ),
        (
            "READ(16)",
            &[0x88, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 1, 0, 0],
            Read(2048, 512),
        ),
        ("WRITE(6)", &[0x0a, 0, 0, 1, 2, 0], Write(512, 1024, false)),
        (
            "WRITE(10) FUA",
            &[0x2a, 0x08, 0, 0, 0, 2, 0, 0, 3, 0],
            Write(1024, 1536, true),
        ),
        (
            "WRITE(16)",
            &[0x8a, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 1, 0, 0],
            Write(2048, 512, false),
        ),
        (
            "MODE SELECT(6)",
            &[0x15, 0x10, 0, 0, 24, 0],
            Sense(5, 0x20, 0),
        ),
        (
            "MODE SELECT(10)",
            &[0x55, 0x10, 0, 0, 0, 0, 0, 0, 24, 0],
            Sense(5, 0x20, 0),
        ),
        (
            "WRITE SAME(10)",
            &[0x41, 0, 0, 0, 0, 0, 0, 0, 1, 0],
            Sense(5, 0x20, 0),
        ),
        (
            "UNMAP",
            &[0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0],
            Sense(5, 0x20, 0),
        ),
        (
            "MAINTENANCE IN",
            &[0xa3, 0x0c, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0],
            Sense(5, 0x20, 0),
        ),
        (
            "READ(12)",
            &[0xa8, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0],
            Sense(5, 0x20, 0),
        ),
        ("vendor", &[0xc0], Sense(5, 0x20, 0)),
        ("0xff", &[0xff], Sense(5, 0x20, 0)),
        (
            "TUR with NACA",
            &[0x00, 0, 0, 0, 0, 0x04],
            Sense(5, 0x24, 0),
        ),
    ];
    for (name, bytes, want) in rows {
        let c = run(&t, 0, bytes);
        match want {
            NoData => assert_eq!(c, Command::NoData, "{name}"),
            Read(off, len) => assert_eq!(
                c,
                Command::Read {
                    offset_bytes: *off,
                    len_bytes: *len
                },
                "{name}"
            ),
            Write(off, len, fua) => assert_eq!(
                c,
                Command::Write {
                    offset_bytes: *off,
                    len_bytes: *len,
                    fua: *fua
                },
                "{name}"
            ),
            Data(len) => assert_eq!(data(c).len(), *len, "{name}"),
            Sense(k, a, q) => assert_eq!(sense_of(&c), (*k, *a, *q), "{name}"),
        }
        let expect_status = if matches!(want, Sense(..)) { 2 } else { 0 };
        assert_eq!(run(&t, 0, bytes).status(), expect_status, "{name}");
    }
}

#[test]
fn absent_lun_table() {
    let t = target(vec![(1, mem(MIB, writeback()))]);
    for bytes in [
        &[0x00][..],
        &[0x25],
        &[0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0],
        &[0x2a, 0, 0, 0, 0, 0, 0, 0, 1, 0],
        &[0x1a, 0, 0x3f, 0, 255, 0],
        &[0x35],
        &[0x42],
    ] {
        assert_eq!(
            sense_of(&run(&t, 2, bytes)),
            (0x05, 0x25, 0x00),
            "{bytes:02x?}"
        );
    }
    // REQUEST SENSE to an absent LUN: GOOD, with LU NOT SUPPORTED as the parameter data.
    let d = data(run(&t, 2, &[0x03, 0, 0, 0, 18, 0]));
    assert_eq!((d[0], d[2], d[12], d[13]), (0x70, 0x05, 0x25, 0x00));
    assert!(!t.lun_reset(&sam(2), N1));
    assert!(t.lun_reset(&sam(1), N1));
}

#[test]
fn request_sense_formats() {
    let t = disk(MIB);
    ready_target(&t, 0);
    let d = data(run(&t, 0, &[0x03, 0, 0, 0, 252, 0]));
    assert_eq!(d, Sense::NO_SENSE.fixed());
    assert_eq!(d[0], 0x70);
    assert_eq!(
        data(run(&t, 0, &[0x03, 1, 0, 0, 252, 0])),
        [0x72, 0, 0, 0, 0, 0, 0, 0]
    );
    assert_eq!(data(run(&t, 0, &[0x03, 0, 0, 0, 4, 0])), [0x70, 0, 0, 0]);
}

// ---------------------------------------------------------------------------------------------
// READ CAPACITY

fn rc10(t: &ScsiTarget) -> (u32, u32) {
    let d = data(run(t, 0, &[0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0]));
    (
        u32::from_be_bytes(d[0..4].try_into().unwrap()),
        u32::from_be_bytes(d[4..8].try_into().unwrap()),
    )
}

fn rc16(t: &ScsiTarget) -> Vec<u8> {
    data(run(
        t,
        0,
        &[0x9e, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0],
    ))
}

#[test]
fn read_capacity_small() {
    let t = disk(MIB);
    ready_target(&t, 0);
    assert_eq!(rc10(&t), (2047, 512));
    let d = rc16(&t);
    assert_eq!(d.len(), 32);
    assert_eq!(&d[0..8], &2047u64.to_be_bytes());
    assert_eq!(&d[8..12], &512u32.to_be_bytes());
    assert!(
        d[12..].iter().all(|&b| b == 0),
        "no PI, no LBPME, 1:1 physical"
    );
    let short = data(run(
        &t,
        0,
        &[0x9e, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 12, 0, 0],
    ));
    assert_eq!(short, &d[..12]);
    // PMI 0 with an LBA: invalid field; PMI 1: accepted.
    let c = run(&t, 0, &[0x25, 0, 0, 0, 0, 1, 0, 0, 0, 0]);
    assert_eq!(sense_of(&c), (0x05, 0x24, 0x00));
    assert_eq!(
        data(run(&t, 0, &[0x25, 0, 0, 0, 0, 1, 0, 0, 1, 0])).len(),
        8
    );
    let c = run(
        &t,
        0,
        &[0x9e, 0x10, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 32, 0, 0],
    );
    assert_eq!(sense_of(&c), (0x05, 0x24, 0x00));
}

#[test]
fn read_capacity_at_the_2_tib_boundary() {
    let dir = TempDir::new();
    // 2 TiB − 512: last LBA FFFFFFFEh still fits.
    let t = target(vec![(0, sparse(&dir, "a.img", 2 * TIB - 512, writeback()))]);
    ready_target(&t, 0);
    assert_eq!(rc10(&t), (0xffff_fffe, 512));
    // Exactly 2 TiB: last LBA FFFFFFFFh, which RC(10) reports as "use RC(16)".
    let t = target(vec![(0, sparse(&dir, "b.img", 2 * TIB, writeback()))]);
    ready_target(&t, 0);
    assert_eq!(rc10(&t), (0xffff_ffff, 512));
    assert_eq!(&rc16(&t)[..8], &0xffff_ffffu64.to_be_bytes());
}

#[test]
fn three_tib_image_through_16_byte_cdbs() {
    let dir = TempDir::new();
    let len = 3 * TIB;
    let blocks = len / 512;
    let t = target(vec![(0, sparse(&dir, "big.img", len, writeback()))]);
    ready_target(&t, 0);
    assert_eq!(rc10(&t), (0xffff_ffff, 512));
    let d = rc16(&t);
    assert_eq!(&d[0..8], &(blocks - 1).to_be_bytes());
    assert_eq!(blocks - 1, 6_442_450_943);

    // MODE SENSE short block descriptor saturates; the long one carries the count.
    let d = data(run(&t, 0, &[0x1a, 0, 0x08, 0, 255, 0]));
    assert_eq!(&d[4..8], &[0xff; 4]);
    let d = data(run(&t, 0, &[0x5a, 0x10, 0x08, 0, 0, 0, 0, 1, 0, 0]));
    assert_eq!(&d[8..16], &blocks.to_be_bytes());

    // WRITE(16) and READ(16) above 2^32 blocks, and the last block.
    let wr = |lba: u64, fill: u8| {
        let mut c = [0u8; 16];
        c[0] = 0x8a;
        c[2..10].copy_from_slice(&lba.to_be_bytes());
        c[13] = 1;
        let cmd = t.execute(&sam(0), &c, N1, u64::MAX, None);
        assert_eq!(
            cmd,
            Command::Write {
                offset_bytes: lba * 512,
                len_bytes: 512,
                fua: false
            }
        );
        t.write_data(&sam(0), None, lba * 512, &[fill; 512])
            .unwrap();
        t.commit_write(&sam(0), None, false).unwrap();
        c[0] = 0x88;
        let cmd = t.execute(&sam(0), &c, N1, u64::MAX, None);
        let Command::Read {
            offset_bytes,
            len_bytes,
        } = cmd
        else {
            panic!("{cmd:?}")
        };
        let mut buf = vec![0u8; len_bytes as usize];
        t.read_data(&sam(0), None, offset_bytes, &mut buf).unwrap();
        assert!(buf.iter().all(|&b| b == fill));
    };
    wr((1 << 32) + 5, 0x5a);
    wr(blocks - 1, 0xa5);
    // One past the end, and a range that wraps u64.
    let mut c = [0u8; 16];
    c[0] = 0x88;
    c[2..10].copy_from_slice(&blocks.to_be_bytes());
    c[13] = 1;
    assert_eq!(
        sense_of(&t.execute(&sam(0), &c, N1, u64::MAX, None)),
        (0x05, 0x21, 0x00)
    );
    c[2..10].copy_from_slice(&(u64::MAX - 1).to_be_bytes());
    c[13] = 4;
    assert_eq!(
        sense_of(&t.execute(&sam(0), &c, N1, u64::MAX, None)),
        (0x05, 0x21, 0x00)
    );
    // READ(10) addresses only the first 2^32 blocks: its largest LBA is fine.
    let c = run(&t, 0, &[0x28, 0, 0xff, 0xff, 0xff, 0xff, 0, 0, 1, 0]);
    assert_eq!(
        c,
        Command::Read {
            offset_bytes: 0xffff_ffff * 512,
            len_bytes: 512
        }
    );
}

// ---------------------------------------------------------------------------------------------
// READ/WRITE decoding

#[test]
fn read_write_decoding_table() {
    // 64 MiB, untouched: the anonymous map costs nothing.
    let t = target(vec![
        (0, mem(64 * MIB, writeback())),
        (1, mem(MIB, read_only())),
    ]);
    ready_target(&t, 0);
    ready_target(&t, 1);
    let blocks = 64 * MIB / 512;
    let rd = |off: u64, len: u32| Command::Read {
        offset_bytes: off,
        len_bytes: len,
    };
    let wr = |off: u64, len: u32, fua: bool| Command::Write {
        offset_bytes: off,
        len_bytes: len,
        fua,
    };
    let last = (blocks - 1).to_be_bytes();
    let rows: Vec<(&str, u16, Vec<u8>, Command)> = vec![
        // READ(6): 21-bit LBA (the top 3 bits of byte 1 are the SCSI-2 LUN, ignored), 0 = 256.
        (
            "READ(6) 0=256",
            0,
            vec![0x08, 0xe1, 0x02, 0x03, 0, 0],
            rd(0x01_0203 * 512, 256 * 512),
        ),
        (
            "READ(6) 1 block",
            0,
            vec![0x08, 0, 0, 7, 1, 0],
            rd(7 * 512, 512),
        ),
        (
            "READ(6) max LBA",
            0,
            vec![0x08, 0x1f, 0xff, 0xff, 1, 0],
            Command::Error(ScsiError::LbaOutOfRange.sense()),
        ),
        (
            "WRITE(6) 0=256",
            0,
            vec![0x0a, 0, 0, 0, 0, 0],
            wr(0, 256 * 512, false),
        ),
        (
            "WRITE(6) 255",
            0,
            vec![0x0a, 0, 0x01, 0, 255, 0],
            wr(256 * 512, 255 * 512, false),
        ),
        // READ(10)/(16): 0 blocks is no transfer, not an error; at the end it is in range.
        (
            "READ(10) 0 blocks",
            0,
            vec![0x28, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            Command::NoData,
        ),
        (
            "READ(10) 0 blocks at end",
            0,
            vec![0x28, 0, 0, 0x02, 0, 0, 0, 0, 0, 0],
            Command::NoData,
        ),
        (
            "READ(10) 0 blocks past end",
            0,
            vec![0x28, 0, 0, 0x02, 0, 1, 0, 0, 0, 0],
            Command::Error(ScsiError::LbaOutOfRange.sense()),
        ),
        (
            "READ(10) last block",
            0,
            vec![0x28, 0, last[4], last[5], last[6], last[7], 0, 0, 1, 0],
            rd((blocks - 1) * 512, 512),
        ),
        (
            "READ(10) across the end",
            0,
            vec![0x28, 0, last[4], last[5], last[6], last[7], 0, 0, 2, 0],
            Command::Error(ScsiError::LbaOutOfRange.sense()),
        ),
        (
            "READ(10) 65535 blocks",
            0,
            vec![0x28, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0],
            rd(0, 65535 * 512),
        ),
        (
            "READ(10) DPO FUA",
            0,
            vec![0x28, 0x18, 0, 0, 0, 1, 0, 0, 1, 0],
            rd(512, 512),
        ),
        (
            "WRITE(10) FUA",
            0,
            vec![0x2a, 0x08, 0, 0, 0, 1, 0, 0, 1, 0],
            wr(512, 512, true),
        ),
        (
            "WRITE(10) 0 blocks",
            0,
            vec![0x2a, 0, 0, 0, 0, 1, 0, 0, 0, 0],
            Command::NoData,
        ),
        (
            "READ(10) RDPROTECT",
            0,
            vec![0x28, 0x20, 0, 0, 0, 0, 0, 0, 1, 0],
            Command::Error(ScsiError::InvalidFieldInCdb(1).sense()),
        ),
        (
            "WRITE(16) WRPROTECT",
            0,
            vec![0x8a, 0xe0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0],
            Command::Error(ScsiError::InvalidFieldInCdb(1).sense()),
        ),
        (
            "READ(10) NACA",
            0,
            vec![0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0x04],
            Command::Error(ScsiError::InvalidFieldInCdb(9).sense()),
        ),
        (
            "READ(16) overflowing LBA",
            0,
            vec![
                0x88, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 2, 0, 0,
            ],
            Command::Error(ScsiError::LbaOutOfRange.sense()),
        ),
        (
            "READ(16) above max transfer",
            0,
            vec![0x88, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x80, 0, 0, 0, 0],
            Command::Error(ScsiError::InvalidFieldInCdb(10).sense()),
        ),
        (
            "READ(16) whole image",
            0,
            vec![0x88, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02, 0, 0, 0, 0],
            rd(0, (64 * MIB) as u32),
        ),
        (
            "READ(16) one block more",
            0,
            vec![0x88, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02, 0, 1, 0, 0],
            Command::Error(ScsiError::LbaOutOfRange.sense()),
        ),
        // Read-only LUN: reads fine, every write is DATA PROTECT (even of 0 blocks, even
        // out of range).
        (
            "RO READ(10)",
            1,
            vec![0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0],
            rd(0, 512),
        ),
        (
            "RO WRITE(6)",
            1,
            vec![0x0a, 0, 0, 0, 1, 0],
            Command::Error(ScsiError::WriteProtected.sense()),
        ),
        (
            "RO WRITE(10)",
            1,
            vec![0x2a, 0, 0, 0, 0, 0, 0, 0, 1, 0],
            Command::Error(ScsiError::WriteProtected.sense()),
        ),
        (
            "RO WRITE(10) 0 blocks",
            1,
            vec![0x2a, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            Command::Error(ScsiError::WriteProtected.sense()),
        ),
        (
            "RO WRITE(16) past end",
            1,
            vec![0x8a, 0, 0, 0, 0, 0, 0, 0xff, 0, 0, 0, 0, 0, 1, 0, 0],
            Command::Error(ScsiError::WriteProtected.sense()),
        ),
    ];
    for (name, lun, bytes, want) in rows {
        assert_eq!(run(&t, lun, &bytes), want, "{name}");
        if let Command::Read { len_bytes, .. } | Command::Write { len_bytes, .. } = want {
            assert_eq!(expected_len(&cdb(&bytes)), u64::from(len_bytes), "{name}");
        }
    }
}

#[test]
fn write_then_read_back_through_the_data_phase() {
    let t = disk(MIB);
    ready_target(&t, 0);
    let lun = sam(0);
    let Command::Write {
        offset_bytes,
        len_bytes,
        fua,
    } = run(&t, 0, &[0x2a, 0x08, 0, 0, 0, 3, 0, 0, 4, 0])
    else {
        panic!()
    };
    assert!(fua);
    let payload: Vec<u8> = (0..len_bytes).map(|i| (i * 7) as u8).collect();
    // As FCP would: frames of up to 1452 bytes at increasing relative offsets.
    for (i, chunk) in payload.chunks(1452).enumerate() {
        t.write_data(&lun, None, offset_bytes + (i * 1452) as u64, chunk)
            .unwrap();
    }
    t.commit_write(&lun, None, fua).unwrap();
    let Command::Read {
        offset_bytes,
        len_bytes,
    } = run(&t, 0, &[0x08, 0, 0, 3, 4, 0])
    else {
        panic!()
    };
    let mut back = vec![0u8; len_bytes as usize];
    for (i, chunk) in back.chunks_mut(1452).enumerate() {
        t.read_data(&lun, None, offset_bytes + (i * 1452) as u64, chunk)
            .unwrap();
    }
    assert_eq!(back, payload);
}

#[test]
fn synchronize_cache_and_fua_flush_a_file_image() {
    let dir = TempDir::new();
    let path = dir.path().join("flush.img");
    std::fs::File::create(&path).unwrap().set_len(MIB).unwrap();
    let image = Arc::new(Image::open(&path, writeback()).unwrap());
    let t = target(vec![(0, image.clone())]);
    ready_target(&t, 0);
    t.write_data(&sam(0), None, 4096, b"durable").unwrap();
    assert!(image.flush_if_dirty().unwrap(), "dirty after a write");
    t.write_data(&sam(0), None, 4096, b"DURABLE").unwrap();
    assert_eq!(
        run(&t, 0, &[0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
        Command::NoData
    );
    assert!(
        !image.flush_if_dirty().unwrap(),
        "SYNCHRONIZE CACHE flushed"
    );
    t.write_data(&sam(0), None, 4096, b"fua fua").unwrap();
    t.commit_write(&sam(0), None, false).unwrap();
    assert!(image.flush_if_dirty().unwrap(), "no FUA: no flush");
    t.write_data(&sam(0), None, 4096, b"FUA FUA").unwrap();
    t.commit_write(&sam(0), None, true).unwrap();
    assert!(!image.flush_if_dirty().unwrap(), "FUA flushed");
    assert_eq!(&std::fs::read(&path).unwrap()[4096..4103], b"FUA FUA");
}

// ---------------------------------------------------------------------------------------------
// MODE SENSE

fn mode_sense_6(t: &ScsiTarget, lun: u16, dbd: bool, page: u8) -> Vec<u8> {
    data(run(
        t,
        lun,
        &[0x1a, if dbd { 0x08 } else { 0 }, page, 0, 255, 0],
    ))
}

#[test]
fn mode_sense_caching_wce_and_wp() {
    let t = target(vec![
        (0, mem(MIB, writeback())),
        (1, mem(MIB, sync())),
        (2, mem(MIB, read_only())),
    ]);
    for (lun, wce, wp) in [(0u16, true, false), (1, false, false), (2, false, true)] {
        ready_target(&t, lun);
        let d = mode_sense_6(&t, lun, false, 0x08);
        assert_eq!(d.len(), 4 + 8 + 20, "LUN {lun}");
        assert_eq!(d[0], 31, "mode data length");
        assert_eq!(d[1], 0, "medium type");
        assert_eq!(
            d[2],
            if wp { 0x80 } else { 0x00 },
            "WP, no DPOFUA; LUN {lun}"
        );
        assert_eq!(d[3], 8, "block descriptor length");
        assert_eq!(&d[4..12], &[0, 0, 0x08, 0x00, 0, 0, 0x02, 0x00]);
        assert_eq!(&d[12..14], &[0x08, 0x12]);
        assert_eq!(d[14] & 0x04 != 0, wce, "WCE on LUN {lun}");
        assert_eq!(d[14] & 0x01, 0, "RCD 0");
        // MODE SENSE(10), same answer in the longer header.
        let d10 = data(run(&t, lun, &[0x5a, 0, 0x08, 0, 0, 0, 0, 0, 255, 0]));
        assert_eq!(d10.len(), 8 + 8 + 20);
        assert_eq!(&d10[0..2], &34u16.to_be_bytes());
        assert_eq!(d10[3], if wp { 0x80 } else { 0 });
        assert_eq!(d10[4], 0, "not LONGLBA");
        assert_eq!(&d10[6..8], &8u16.to_be_bytes());
        assert_eq!(&d10[8..], &d[4..]);
    }
    let image = t.luns().get(0).unwrap().image();
    assert!(image.write_cache_enabled());
}

#[test]
fn mode_sense_dbd_llbaa_all_pages_and_changeable() {
    let t = disk(MIB);
    ready_target(&t, 0);
    let d = mode_sense_6(&t, 0, true, 0x08);
    assert_eq!(d.len(), 24);
    assert_eq!(&d[..4], &[23, 0, 0, 0]);
    assert_eq!(&d[4..6], &[0x08, 0x12]);

    let d = mode_sense_6(&t, 0, true, 0x0a);
    assert_eq!(
        d,
        [15, 0, 0, 0, 0x0a, 0x0a, 0, 0x10, 0, 0, 0, 0, 0, 0, 0, 0]
    );

    let d = mode_sense_6(&t, 0, false, 0x3f);
    assert_eq!(d.len(), 4 + 8 + 20 + 12);
    assert_eq!(d[0] as usize, d.len() - 1);
    assert_eq!(&d[12..14], &[0x08, 0x12]);
    assert_eq!(&d[32..34], &[0x0a, 0x0a]);
    // All pages and subpages: same.
    assert_eq!(data(run(&t, 0, &[0x1a, 0, 0x3f, 0xff, 255, 0])), d);

    // Changeable values: nothing is.
    let d = mode_sense_6(&t, 0, true, 0x40 | 0x08);
    assert_eq!(&d[4..6], &[0x08, 0x12]);
    assert!(d[6..].iter().all(|&b| b == 0));
    // Default and saved values: the current ones.
    assert_eq!(
        mode_sense_6(&t, 0, true, 0x80 | 0x08),
        mode_sense_6(&t, 0, true, 0x08)
    );
    assert_eq!(
        mode_sense_6(&t, 0, true, 0xc0 | 0x08),
        mode_sense_6(&t, 0, true, 0x08)
    );

    // MODE SENSE(10) with LLBAA: a 16-byte block descriptor.
    let d = data(run(&t, 0, &[0x5a, 0x10, 0x08, 0, 0, 0, 0, 0, 255, 0]));
    assert_eq!(d.len(), 8 + 16 + 20);
    assert_eq!(&d[0..2], &42u16.to_be_bytes());
    assert_eq!(d[4], 1, "LONGLBA");
    assert_eq!(&d[6..8], &16u16.to_be_bytes());
    assert_eq!(&d[8..16], &2048u64.to_be_bytes());
    assert_eq!(&d[20..24], &512u32.to_be_bytes());
    // LLBAA with DBD: no descriptor, LONGLBA clear.
    let d = data(run(&t, 0, &[0x5a, 0x18, 0x08, 0, 0, 0, 0, 0, 255, 0]));
    assert_eq!(d.len(), 28);
    assert_eq!(d[4], 0);

    // Truncated to the allocation length; the length field still counts everything.
    let d = data(run(&t, 0, &[0x1a, 0, 0x3f, 0, 4, 0]));
    assert_eq!(d, [43, 0, 0, 8]);
}

#[test]
fn mode_sense_invalid_fields() {
    let t = disk(MIB);
    ready_target(&t, 0);
    for (bytes, field) in [
        (&[0x1a, 0, 0x1c, 0, 255, 0][..], 2u8),
        (&[0x1a, 0, 0x01, 0, 255, 0], 2),
        (&[0x1a, 0, 0x00, 0, 255, 0], 2),
        (&[0x1a, 0, 0x08, 0x01, 255, 0], 3),
        (&[0x5a, 0, 0x19, 0, 0, 0, 0, 0, 255, 0], 2),
    ] {
        let c = run(&t, 0, bytes);
        assert_eq!(
            c,
            Command::Error(ScsiError::InvalidFieldInCdb(field).sense())
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Unit attention

#[test]
fn unit_attention_once_per_nexus() {
    let t = target(vec![(0, mem(MIB, writeback())), (1, mem(MIB, writeback()))]);
    // INQUIRY and REPORT LUNS never report it, nor consume it.
    assert!(matches!(
        run(&t, 0, &[0x12, 0, 0, 0, 36, 0]),
        Command::DataIn(_)
    ));
    assert!(matches!(
        run(&t, 0, &report_luns(0, 64)),
        Command::DataIn(_)
    ));
    assert_eq!(
        t.pending_unit_attentions(N1, 0),
        vec![UnitAttention::PowerOnReset]
    );
    // It takes precedence over everything else, even an invalid opcode.
    assert_eq!(sense_of(&run(&t, 0, &[0x42])), (0x06, 0x29, 0x00));
    assert_eq!(sense_of(&run(&t, 0, &[0x42])), (0x05, 0x20, 0x00));
    assert_eq!(run(&t, 0, &[0x00]), Command::NoData);
    // Per LUN: LUN 1 still has its own.
    assert_eq!(sense_of(&run(&t, 1, &[0x25])), (0x06, 0x29, 0x00));
    assert_eq!(data(run(&t, 1, &[0x25])).len(), 8);
    // Another nexus has its own too.
    clear_ua(&t, 0, N2);
    assert_eq!(run(&t, 0, &[0x00]), Command::NoData, "N1 unaffected");
    // Logout: the next login sees it again.
    assert!(t.nexus_logout(N1));
    assert!(!t.nexus_logout(N1));
    clear_ua(&t, 0, N1);
    assert_eq!(
        t.execute(&sam(0), &cdb(&[0x00]), N2, u64::MAX, None),
        Command::NoData
    );
}

#[test]
fn request_sense_reports_and_clears_unit_attention() {
    let t = disk(MIB);
    let d = data(run(&t, 0, &[0x03, 0, 0, 0, 18, 0]));
    assert_eq!(d, UnitAttention::PowerOnReset.sense().fixed());
    assert_eq!((d[2], d[12], d[13]), (0x06, 0x29, 0x00));
    assert_eq!(
        data(run(&t, 0, &[0x03, 0, 0, 0, 18, 0])),
        Sense::NO_SENSE.fixed()
    );
    assert_eq!(run(&t, 0, &[0x00]), Command::NoData);
}

#[test]
fn resets_and_raised_conditions() {
    let t = target(vec![(0, mem(MIB, writeback())), (1, mem(MIB, writeback()))]);
    for n in [N1, N2] {
        clear_ua(&t, 0, n);
        clear_ua(&t, 1, n);
    }
    // LUN RESET by N1: N2 sees 29/03 on that LUN only; N1 sees nothing.
    assert!(t.lun_reset(&sam(0), N1));
    assert_eq!(run(&t, 0, &[0x00]), Command::NoData);
    let tur = |n, lun| t.execute(&sam(lun), &cdb(&[0x00]), n, u64::MAX, None);
    assert_eq!(tur(N2, 1), Command::NoData);
    assert_eq!(sense_of(&tur(N2, 0)), (0x06, 0x29, 0x03));
    assert_eq!(tur(N2, 0), Command::NoData);

    // TARGET RESET by N2: N1 sees 29/03 on every LUN.
    t.target_reset(N2, u64::MAX);
    assert_eq!(sense_of(&tur(N1, 0)), (0x06, 0x29, 0x03));
    assert_eq!(sense_of(&tur(N1, 1)), (0x06, 0x29, 0x03));
    assert_eq!(tur(N2, 0), Command::NoData);

    // Several pending: reported one per command, in order.
    t.lun_reset(&sam(1), N2);
    t.raise_capacity_changed(1);
    t.raise_reported_luns_changed();
    assert_eq!(
        t.pending_unit_attentions(N1, 1),
        vec![
            UnitAttention::BusDeviceReset,
            UnitAttention::CapacityChanged,
            UnitAttention::ReportedLunsChanged
        ]
    );
    assert_eq!(sense_of(&tur(N1, 1)), (0x06, 0x29, 0x03));
    assert_eq!(sense_of(&tur(N1, 1)), (0x06, 0x2a, 0x09));
    assert_eq!(sense_of(&tur(N1, 1)), (0x06, 0x3f, 0x0e));
    assert_eq!(tur(N1, 1), Command::NoData);
    // N1 still has 3F/0E on LUN 0; REPORT LUNS clears it on every LUN.
    assert_eq!(
        t.pending_unit_attentions(N1, 0),
        vec![UnitAttention::ReportedLunsChanged]
    );
    assert!(matches!(
        run(&t, 1, &report_luns(0, 64)),
        Command::DataIn(_)
    ));
    assert_eq!(tur(N1, 0), Command::NoData);
    // N2 got 2A/09 on LUN 1 and 3F/0E on both.
    assert_eq!(sense_of(&tur(N2, 1)), (0x06, 0x2a, 0x09));
    assert_eq!(sense_of(&tur(N2, 1)), (0x06, 0x3f, 0x0e));
    assert_eq!(sense_of(&tur(N2, 0)), (0x06, 0x3f, 0x0e));
}

#[test]
fn pending_power_on_covers_later_conditions() {
    let t = disk(MIB);
    // Known (INQUIRY) but its power-on unit attention not yet reported.
    run(&t, 0, &[0x12, 0, 0, 0, 36, 0]);
    t.raise_capacity_changed(0);
    t.raise_reported_luns_changed();
    t.lun_reset(&sam(0), N2);
    assert_eq!(sense_of(&run(&t, 0, &[0x00])), (0x06, 0x29, 0x00));
    assert_eq!(run(&t, 0, &[0x00]), Command::NoData);
    // A nexus never seen gets only the power-on one, whatever was raised before it came.
    clear_ua(&t, 0, NexusId(99));
}

#[test]
fn nexus_table_is_bounded() {
    let t = disk(MIB);
    for n in 0..(2 * MAX_NEXUSES as u64) {
        let id = NexusId(1000 + n);
        clear_ua(&t, 0, id);
        assert!(t.known_nexuses() <= MAX_NEXUSES);
    }
    assert_eq!(t.known_nexuses(), MAX_NEXUSES);
    // The most recent ones are remembered.
    let last = NexusId(1000 + 2 * MAX_NEXUSES as u64 - 1);
    assert_eq!(
        t.execute(&sam(0), &cdb(&[0x00]), last, u64::MAX, None),
        Command::NoData
    );
}

#[test]
fn scsi_target_is_shareable() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<ScsiTarget>();
    assert_send_sync::<Command>();
}

// ---------------------------------------------------------------------------------------------
// Properties

/// One READ or WRITE in 6/10/16-byte form.
#[derive(Debug, Clone)]
struct Rw {
    write: bool,
    size: u8,
    lba: u64,
    blocks: u32,
    fua: bool,
    chunk: usize,
    seed: u8,
}

fn rw_strategy() -> impl Strategy<Value = Rw> {
    (
        any::<bool>(),
        prop::sample::select(vec![6u8, 10, 16]),
        0u64..140,
        0u32..24,
        any::<bool>(),
        prop::sample::select(vec![512usize, 1000, 1452, 2112, 8192]),
        any::<u8>(),
    )
        .prop_map(|(write, size, lba, blocks, fua, chunk, seed)| Rw {
            write,
            size,
            lba,
            blocks,
            fua,
            chunk,
            seed,
        })
}

impl Rw {
    fn cdb(&self) -> [u8; 16] {
        let mut c = [0u8; 16];
        let fua = if self.fua { 0x08 } else { 0 };
        match self.size {
            6 => {
                c[0] = if self.write { 0x0a } else { 0x08 };
                c[1..4].copy_from_slice(&(self.lba as u32).to_be_bytes()[1..]);
                c[4] = self.blocks as u8;
            }
            10 => {
                c[0] = if self.write { 0x2a } else { 0x28 };
                c[1] = fua;
                c[2..6].copy_from_slice(&(self.lba as u32).to_be_bytes());
                c[7..9].copy_from_slice(&(self.blocks as u16).to_be_bytes());
            }
            _ => {
                c[0] = if self.write { 0x8a } else { 0x88 };
                c[1] = fua;
                c[2..10].copy_from_slice(&self.lba.to_be_bytes());
                c[10..14].copy_from_slice(&self.blocks.to_be_bytes());
            }
        }
        c
    }
    /// Blocks the command moves: READ(6)/WRITE(6) 0 means 256.
    fn effective_blocks(&self) -> u64 {
        if self.size == 6 && self.blocks == 0 {
            256
        } else {
            u64::from(self.blocks)
        }
    }
}

const MODEL_BLOCKS: u64 = 128;

proptest! {
    #[test]
    fn random_reads_and_writes_match_a_vec_model(ops in prop::collection::vec(rw_strategy(), 1..40)) {
        let t = disk(MODEL_BLOCKS * 512);
        ready_target(&t, 0);
        let lun = sam(0);
        let mut model = vec![0u8; (MODEL_BLOCKS * 512) as usize];
        for op in ops {
            let c = t.execute(&lun, &op.cdb(), N1, u64::MAX, None);
            let blocks = op.effective_blocks();
            if op.lba + blocks > MODEL_BLOCKS {
                prop_assert_eq!(c, Command::Error(ScsiError::LbaOutOfRange.sense()));
                continue;
            }
            if blocks == 0 {
                prop_assert_eq!(c, Command::NoData);
                continue;
            }
            let start = (op.lba * 512) as usize;
            let len = (blocks * 512) as usize;
            match c {
                Command::Write { offset_bytes, len_bytes, fua } => {
                    prop_assert!(op.write);
                    prop_assert_eq!(offset_bytes as usize, start);
                    prop_assert_eq!(len_bytes as usize, len);
                    prop_assert_eq!(fua, op.fua && op.size != 6);
                    let payload: Vec<u8> =
                        (0..len).map(|i| (i as u8).wrapping_mul(31) ^ op.seed).collect();
                    for (i, chunk) in payload.chunks(op.chunk).enumerate() {
                        t.write_data(&lun, None, offset_bytes + (i * op.chunk) as u64, chunk).unwrap();
                    }
                    t.commit_write(&lun, None, fua).unwrap();
                    model[start..start + len].copy_from_slice(&payload);
                }
                Command::Read { offset_bytes, len_bytes } => {
                    prop_assert!(!op.write);
                    prop_assert_eq!(offset_bytes as usize, start);
                    prop_assert_eq!(len_bytes as usize, len);
                    let mut buf = vec![0u8; len];
                    for (i, chunk) in buf.chunks_mut(op.chunk).enumerate() {
                        t.read_data(&lun, None, offset_bytes + (i * op.chunk) as u64, chunk).unwrap();
                    }
                    prop_assert_eq!(&buf[..], &model[start..start + len]);
                }
                other => prop_assert!(false, "unexpected {:?}", other),
            }
        }
        // The whole image equals the model at the end.
        let mut all = vec![0u8; model.len()];
        t.read_data(&lun, None, 0, &mut all).unwrap();
        prop_assert_eq!(all, model);
    }

    #[test]
    fn any_cdb_gets_a_sane_answer(
        raw in any::<[u8; 16]>(),
        op in prop::sample::select(vec![
            0x00u8, 0x03, 0x08, 0x0a, 0x12, 0x1a, 0x1b, 0x1e, 0x25, 0x28, 0x2a, 0x2f, 0x35,
            0x5a, 0x88, 0x8a, 0x8f, 0x91, 0x9e, 0xa0, 0x42, 0xff,
        ]),
        keep_op in any::<bool>(),
        lun_sel in 0usize..5,
        raw_lun in any::<[u8; 8]>(),
        nexus in 0u64..4,
    ) {
        // Bias half the cases to the opcodes this layer knows, with random fields.
        let mut c = raw;
        if !keep_op {
            c[0] = op;
        }
        let t = target(vec![(0, mem(64 * 1024, writeback())), (1, mem(32 * 1024, read_only()))]);
        let lun = match lun_sel {
            0 => sam(0),
            1 => sam(1),
            2 => sam(2),
            3 => sam(300),
            _ => raw_lun,
        };
        // Twice: the first may be the unit attention.
        for _ in 0..2 {
            let cmd = t.execute(&lun, &c, NexusId(nexus), u64::MAX, None);
            match &cmd {
                Command::Read { offset_bytes, len_bytes } => {
                    prop_assert_eq!(data_direction(&c), DataDirection::In);
                    prop_assert_eq!(expected_len(&c), u64::from(*len_bytes));
                    prop_assert!(*len_bytes > 0);
                    let image = t.lun(&lun).unwrap().image();
                    prop_assert!(offset_bytes + u64::from(*len_bytes) <= image.len_bytes());
                    let mut buf = vec![0u8; *len_bytes as usize];
                    prop_assert!(t.read_data(&lun, None, *offset_bytes, &mut buf).is_ok());
                }
                Command::Write { offset_bytes, len_bytes, .. } => {
                    prop_assert_eq!(data_direction(&c), DataDirection::Out);
                    prop_assert_eq!(expected_len(&c), u64::from(*len_bytes));
                    let lun = t.lun(&lun).unwrap();
                    prop_assert!(!lun.read_only());
                    prop_assert!(offset_bytes + u64::from(*len_bytes) <= lun.image().len_bytes());
                }
                Command::DataIn(d) => {
                    prop_assert_eq!(data_direction(&c), DataDirection::In);
                    prop_assert!(d.len() as u64 <= expected_len(&c));
                    prop_assert!(d.len() <= DATA_IN_MAX);
                }
                Command::NoData => {
                    prop_assert!(t.lun(&lun).is_some());
                }
                Command::Error(s) => {
                    let f = s.fixed();
                    prop_assert_eq!(f[0], 0x70);
                    prop_assert!(matches!(f[2], 0x03 | 0x05 | 0x06 | 0x07));
                    let mut d = [0u8; 32];
                    prop_assert!(s.to_descriptor(&mut d) <= Sense::DESCRIPTOR_MAX_LEN);
                }
            }
        }
    }

    #[test]
    fn sam_lun_roundtrip(n in 0u16..0x4000) {
        prop_assert_eq!(decode_sam_lun(&encode_sam_lun(n)), Some(n));
    }
}

// ---------------------------------------------------------------------------------------------
// Overlay LUNs: a read-only base with a copy-on-write overlay per initiator

#[test]
fn overlay_lun_gives_each_initiator_its_own_disk() {
    use l2san_common::store::{OverlayOptions, OverlaySet};
    let dir = TempDir::new();
    let base_path = dir.path().join("base.img");
    std::fs::write(&base_path, vec![0x33u8; MIB as usize]).unwrap();
    let base = Arc::new(Image::open(&base_path, read_only()).unwrap());
    let set = Arc::new(
        OverlaySet::open(base, &dir.path().join("ov"), OverlayOptions::default()).unwrap(),
    );
    let mut table = LunTable::new(WWPN);
    table.insert(0, set.clone()).unwrap();
    let t = ScsiTarget::new(table);
    ready_target(&t, 0);
    clear_ua(&t, 0, N2);
    let (a, b) = (
        ClientKey::wwpn(0x2000_5254_0000_0001),
        ClientKey::wwpn(0x2000_5254_0000_0002),
    );
    let lun = sam(0);
    // Writable with a write cache although the base is read-only: MODE SENSE(6) WP clear,
    // page 08h WCE set.
    let mode = data(run(&t, 0, &[0x1a, 0x08, 0x08, 0, 0xff, 0]));
    assert_eq!(mode[2] & 0x80, 0);
    assert_ne!(mode[4 + 2] & 0x04, 0);
    // WRITE(10) LBA 8, 2 blocks, FUA, from initiator a.
    let Command::Write {
        offset_bytes,
        len_bytes,
        fua,
    } = t.execute(
        &lun,
        &cdb(&[0x2a, 0x08, 0, 0, 0, 8, 0, 0, 2, 0]),
        N1,
        u64::MAX,
        Some(&a),
    )
    else {
        panic!()
    };
    let payload = vec![0xa1u8; len_bytes as usize];
    t.write_data(&lun, Some(&a), offset_bytes, &payload)
        .unwrap();
    t.commit_write(&lun, Some(&a), fua).unwrap();
    let read = |client: Option<&ClientKey>| {
        let mut back = vec![0u8; 1024];
        t.read_data(&lun, client, 8 * 512, &mut back).unwrap();
        back
    };
    assert_eq!(read(Some(&a)), payload);
    assert!(read(Some(&b)).iter().all(|&x| x == 0x33), "b sees the base");
    assert!(read(None).iter().all(|&x| x == 0x33), "no client: the base");
    // Without a client an overlay LUN takes no write: DATA PROTECT, base untouched.
    let e = t.write_data(&lun, None, 0, &[1; 512]).unwrap_err();
    assert_eq!((e.key, e.asc, e.ascq), (SenseKey::DataProtect, 0x27, 0x00));
    // SYNCHRONIZE CACHE from b (no overlay yet) and from a.
    let sync_cache = cdb(&[0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(
        t.execute(&lun, &sync_cache, N2, u64::MAX, Some(&b)),
        Command::NoData
    );
    t.write_data(&lun, Some(&a), 0, &[2; 512]).unwrap();
    assert!(
        set.flush_if_dirty().unwrap(),
        "a's write left its overlay dirty"
    );
    t.write_data(&lun, Some(&a), 0, &[3; 512]).unwrap();
    assert_eq!(
        t.execute(&lun, &sync_cache, N1, u64::MAX, Some(&a)),
        Command::NoData
    );
    assert!(
        !set.flush_if_dirty().unwrap(),
        "SYNCHRONIZE CACHE flushed a's overlay"
    );
    assert!(std::fs::read(&base_path)
        .unwrap()
        .iter()
        .all(|&x| x == 0x33));
    assert_eq!(set.list().len(), 1);
}
