//! INQUIRY (SPC-4 §6.6): standard data and the vital product data pages.
//!
//! Standard data (96 bytes):
//!
//! | Byte | Value | Why |
//! |---|---|---|
//! | 0 | PQ 000b, type 00h (disk); `7Fh` for an absent LUN | SPC-4 table 140: PQ 011b / type 1Fh = "not capable of supporting a LU here" |
//! | 1 | RMB 0 | fixed media |
//! | 2 | VERSION 06h (SPC-4) | Linux's `sd_try_rc16_first` then uses READ CAPACITY(16) first, and it reads VPD pages only above SPC-2 |
//! | 3 | HISUP 1, RESPONSE DATA FORMAT 2 | |
//! | 4 | ADDITIONAL LENGTH 91 | |
//! | 5, 6 | 0 | no TPGS, 3PC, PROTECT, ENCSERV, MULTIP |
//! | 7 | CMDQUE 1 | Linux enables tagged queuing (queue depth > 1) only with it |
//! | 8-15 | T10 vendor `L2SAN   ` | |
//! | 16-31 | product `DISK IMAGE      ` | |
//! | 32-35 | revision: the crate version, e.g. `0.1 ` | |
//! | 58-63 | version descriptors SAM-5, SPC-4, SBC-3 | |
//!
//! VPD pages: 00h (supported pages), 80h (unit serial number), 83h (device identification:
//! NAA 6 + T10 vendor ID for the LU, relative target port 1), B0h (block limits), B1h (block
//! device characteristics: non-rotating). Linux reads B0h/B1h only when 00h lists them.
//! No B2h (logical block provisioning, SBC-3): the target implements neither UNMAP nor WRITE
//! SAME, so it advertises no provisioning.

use super::cdb::{be16, MAX_TRANSFER_BLOCKS};
use super::lun::Lun;
use super::sense::ScsiError;
use super::DataIn;

/// T10 vendor identification (8 bytes, space padded).
pub const VENDOR_ID: &[u8; 8] = b"L2SAN   ";
/// Product identification (16 bytes, space padded).
pub const PRODUCT_ID: &[u8; 16] = b"DISK IMAGE      ";
/// Length of the standard INQUIRY data returned.
pub const STANDARD_LEN: usize = 96;

/// Supported VPD page codes, ascending (what page 00h lists).
pub const VPD_PAGES: [u8; 5] = [0x00, 0x80, 0x83, 0xb0, 0xb1];

/// Peripheral qualifier 011b, device type 1Fh: no logical unit at this LUN.
const ABSENT: u8 = 0x7f;

/// OPTIMAL TRANSFER LENGTH GRANULARITY in blocks (B0h): 4 KiB, the page size under the image,
/// so Linux's `io_min` steers file systems away from partial-page writes.
pub const OPTIMAL_GRANULARITY_BLOCKS: u16 = 8;

/// The product revision level: the first two components of the crate version, space padded.
pub fn revision() -> [u8; 4] {
    let mut rev = *b"    ";
    let version = env!("CARGO_PKG_VERSION").as_bytes();
    // "0.1.0" -> "0.1 ": stop at the second dot.
    let mut dots = 0;
    for (slot, &c) in rev.iter_mut().zip(version) {
        if c == b'.' {
            dots += 1;
            if dots == 2 {
                break;
            }
        }
        *slot = c;
    }
    rev
}

/// Execute INQUIRY for `lun` (`None`: no LU at the addressed LUN).
pub(crate) fn inquiry(lun: Option<&Lun>, cdb: &[u8; 16]) -> Result<DataIn, ScsiError> {
    let evpd = cdb[1] & 0x01 != 0;
    // CMDDT (bit 1) is obsolete; SPC-4 says a device server that does not support it shall
    // reject it.
    if cdb[1] & 0x02 != 0 {
        return Err(ScsiError::InvalidFieldInCdb(1));
    }
    let page = cdb[2];
    let alloc_len = u64::from(be16(cdb, 3));
    if !evpd {
        if page != 0 {
            return Err(ScsiError::InvalidFieldInCdb(2));
        }
        return Ok(DataIn::build(alloc_len, |b| standard(lun, b)));
    }
    let lun = lun.ok_or(ScsiError::LunNotSupported)?;
    let build: fn(&Lun, &mut [u8]) -> usize = match page {
        0x00 => supported_pages,
        0x80 => unit_serial,
        0x83 => device_identification,
        0xb0 => block_limits,
        0xb1 => block_characteristics,
        _ => return Err(ScsiError::InvalidFieldInCdb(2)),
    };
    Ok(DataIn::build(alloc_len, |b| build(lun, b)))
}

fn standard(lun: Option<&Lun>, b: &mut [u8]) -> usize {
    let b = &mut b[..STANDARD_LEN];
    b.fill(0);
    b[0] = if lun.is_some() { 0x00 } else { ABSENT };
    b[2] = 0x06;
    b[3] = 0x10 | 0x02;
    b[4] = (STANDARD_LEN - 5) as u8;
    b[7] = 0x02;
    b[8..16].copy_from_slice(VENDOR_ID);
    b[16..32].copy_from_slice(PRODUCT_ID);
    b[32..36].copy_from_slice(&revision());
    // Version descriptors (SPC-4 table 147): SAM-5, SPC-4, SBC-3 (no version claimed).
    for (i, v) in [0x00a0u16, 0x0460, 0x04c0].into_iter().enumerate() {
        b[58 + 2 * i..60 + 2 * i].copy_from_slice(&v.to_be_bytes());
    }
    STANDARD_LEN
}

/// The 4-byte VPD header: device type, page code, page length.
fn vpd_header(b: &mut [u8], page: u8, page_len: usize) -> usize {
    b[0] = 0x00;
    b[1] = page;
    b[2..4].copy_from_slice(&(page_len as u16).to_be_bytes());
    4 + page_len
}

fn supported_pages(_: &Lun, b: &mut [u8]) -> usize {
    b[4..4 + VPD_PAGES.len()].copy_from_slice(&VPD_PAGES);
    vpd_header(b, 0x00, VPD_PAGES.len())
}

fn unit_serial(lun: &Lun, b: &mut [u8]) -> usize {
    let serial = lun.serial();
    b[4..4 + serial.len()].copy_from_slice(serial);
    vpd_header(b, 0x80, serial.len())
}

/// Append one designation descriptor (SPC-4 §7.8.6.1) at `b[at..]`; returns its length.
fn designator(b: &mut [u8], at: usize, code_set: u8, assoc_type: u8, value: &[u8]) -> usize {
    b[at] = code_set;
    b[at + 1] = assoc_type;
    b[at + 2] = 0;
    b[at + 3] = value.len() as u8;
    b[at + 4..at + 4 + value.len()].copy_from_slice(value);
    4 + value.len()
}

fn device_identification(lun: &Lun, b: &mut [u8]) -> usize {
    const BINARY: u8 = 0x01;
    const ASCII: u8 = 0x02;
    // ASSOCIATION (bits 5-4): 00b logical unit, 01b target port. DESIGNATOR TYPE (bits 3-0).
    const LU_NAA: u8 = 0x03;
    const LU_T10: u8 = 0x01;
    const PORT_RELATIVE: u8 = 0x10 | 0x04;
    let mut at = 4;
    at += designator(b, at, BINARY, LU_NAA, lun.naa());
    // T10 vendor ID based: vendor identification followed by the unit serial number.
    let mut t10 = [0u8; 8 + 32];
    t10[..8].copy_from_slice(VENDOR_ID);
    t10[8..].copy_from_slice(lun.serial());
    at += designator(b, at, ASCII, LU_T10, &t10);
    // Relative target port identifier 1: this layer serves one port per target.
    at += designator(b, at, BINARY, PORT_RELATIVE, &[0, 0, 0, 1]);
    vpd_header(b, 0x83, at - 4)
}

fn block_limits(_: &Lun, b: &mut [u8]) -> usize {
    const LEN: usize = 0x3c;
    b[4..4 + LEN].fill(0);
    b[6..8].copy_from_slice(&OPTIMAL_GRANULARITY_BLOCKS.to_be_bytes());
    b[8..12].copy_from_slice(&MAX_TRANSFER_BLOCKS.to_be_bytes());
    // OPTIMAL TRANSFER LENGTH, prefetch, UNMAP and WRITE SAME limits: 0 = not reported /
    // not supported.
    vpd_header(b, 0xb0, LEN)
}

fn block_characteristics(_: &Lun, b: &mut [u8]) -> usize {
    const LEN: usize = 0x3c;
    b[4..4 + LEN].fill(0);
    // MEDIUM ROTATION RATE 0001h: non-rotating medium. The image lives in the page cache
    // of the host; Linux then marks the queue non-rotational (no entropy from it, and
    // no seek-optimising scheduler).
    b[4..6].copy_from_slice(&1u16.to_be_bytes());
    vpd_header(b, 0xb1, LEN)
}
