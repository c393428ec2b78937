//! CDB decoding: operation codes, the data phase a CDB announces, and the one checked helper
//! every LBA computation goes through, so that no range can overflow or pass the capacity
//! unnoticed (LOGICAL BLOCK ADDRESS OUT OF RANGE, SBC-3).
//!
//! CDB layouts used here (SBC-3 §5, SPC-4 §6; multi-byte fields big-endian):
//!
//! | CDB | LBA | transfer / allocation length | flags |
//! |---|---|---|---|
//! | READ/WRITE(6) 08h/0Ah | byte 1 bits 4-0, bytes 2-3 (21 bits) | byte 4, **0 means 256** | none |
//! | READ/WRITE(10) 28h/2Ah | bytes 2-5 | bytes 7-8 (0 = no transfer) | byte 1: RD/WRPROTECT 7-5, DPO 4, FUA 3 |
//! | READ/WRITE(16) 88h/8Ah | bytes 2-9 | bytes 10-13 | as (10) |
//! | VERIFY(10/16) 2Fh/8Fh | as READ | verification length | byte 1: VRPROTECT 7-5, BYTCHK 2-1 |
//! | SYNCHRONIZE CACHE(10/16) 35h/91h | as READ | number of blocks (0 = to the end) | byte 1: IMMED 1 |
//! | INQUIRY 12h | - | bytes 3-4 | byte 1: EVPD 0; byte 2 page code |
//! | MODE SENSE(6) 1Ah | - | byte 4 | byte 1 DBD 3; byte 2 PC 7-6, page 5-0; byte 3 subpage |
//! | MODE SENSE(10) 5Ah | - | bytes 7-8 | as (6), plus byte 1 LLBAA 4 |
//! | REQUEST SENSE 03h | - | byte 4 | byte 1 DESC 0 |
//! | READ CAPACITY(10) 25h | bytes 2-5 (with PMI) | 8 bytes returned | byte 8 PMI 0 |
//! | SERVICE ACTION IN(16) 9Eh / 10h = READ CAPACITY(16) | bytes 2-9 | bytes 10-13 | byte 1 SA 4-0; byte 14 PMI 0 |
//! | REPORT LUNS A0h | - | bytes 6-9 | byte 2 SELECT REPORT |
//!
//! The control byte is the last byte of the CDB; its NACA bit (bit 2) asks for ACA, which this
//! target does not implement (SAM-5: such a command ends in ILLEGAL REQUEST, INVALID FIELD IN CDB).

use super::sense::ScsiError;

/// The operation codes this layer knows (SPC-4, SBC-3).
pub mod opcode {
    pub const TEST_UNIT_READY: u8 = 0x00;
    pub const REQUEST_SENSE: u8 = 0x03;
    pub const READ_6: u8 = 0x08;
    pub const WRITE_6: u8 = 0x0a;
    pub const INQUIRY: u8 = 0x12;
    pub const MODE_SENSE_6: u8 = 0x1a;
    pub const START_STOP_UNIT: u8 = 0x1b;
    pub const PREVENT_ALLOW_MEDIUM_REMOVAL: u8 = 0x1e;
    pub const READ_CAPACITY_10: u8 = 0x25;
    pub const READ_10: u8 = 0x28;
    pub const WRITE_10: u8 = 0x2a;
    pub const VERIFY_10: u8 = 0x2f;
    pub const SYNCHRONIZE_CACHE_10: u8 = 0x35;
    pub const MODE_SENSE_10: u8 = 0x5a;
    pub const READ_16: u8 = 0x88;
    pub const WRITE_16: u8 = 0x8a;
    pub const VERIFY_16: u8 = 0x8f;
    pub const SYNCHRONIZE_CACHE_16: u8 = 0x91;
    /// SERVICE ACTION IN(16); service action [`super::SA_READ_CAPACITY_16`] is READ CAPACITY(16).
    pub const SERVICE_ACTION_IN_16: u8 = 0x9e;
    pub const REPORT_LUNS: u8 = 0xa0;
}

/// Service action of SERVICE ACTION IN(16) that means READ CAPACITY(16).
pub const SA_READ_CAPACITY_16: u8 = 0x10;

/// Logical block size in bytes. Every LUN uses 512-byte blocks (the image store's sector).
pub const BLOCK_SIZE: u32 = 512;

/// The largest transfer one READ or WRITE may ask for, in blocks: what VPD page B0h reports as
/// MAXIMUM TRANSFER LENGTH. It keeps every data phase within a 32-bit FCP_DL (4 GiB − 512).
/// Data is streamed between frames and the image, so a big transfer costs no buffer.
pub const MAX_TRANSFER_BLOCKS: u32 = u32::MAX / BLOCK_SIZE;

/// The direction of a command's data phase, as seen by the initiator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataDirection {
    /// No data phase.
    None,
    /// Target to initiator (FCP RDDATA).
    In,
    /// Initiator to target (FCP WRDATA).
    Out,
}

/// The length of the CDB that starts with `opcode`, from its group code (SPC-4 §4.2.5.1).
/// `None` for the reserved and vendor-specific groups.
pub fn cdb_len(opcode: u8) -> Option<usize> {
    match opcode >> 5 {
        0 => Some(6),
        1 | 2 => Some(10),
        4 => Some(16),
        5 => Some(12),
        _ => None,
    }
}

/// The direction of the data phase `cdb` announces. Commands this layer does not implement
/// (and VERIFY, whose BYTCHK data-out form it rejects) report [`DataDirection::None`].
pub fn data_direction(cdb: &[u8; 16]) -> DataDirection {
    use opcode::*;
    match cdb[0] {
        READ_6 | READ_10 | READ_16 | INQUIRY | MODE_SENSE_6 | MODE_SENSE_10 | REQUEST_SENSE
        | READ_CAPACITY_10 | REPORT_LUNS => DataDirection::In,
        SERVICE_ACTION_IN_16 if cdb[1] & 0x1f == SA_READ_CAPACITY_16 => DataDirection::In,
        WRITE_6 | WRITE_10 | WRITE_16 => DataDirection::Out,
        _ => DataDirection::None,
    }
}

/// The number of bytes the CDB says its data phase moves: transfer length × block size for
/// READ and WRITE, the allocation length for commands that return parameter data (the
/// device server may return less; never more), 0 when there is no data phase. FCP compares
/// this with FCP_DL to compute residuals.
pub fn expected_len(cdb: &[u8; 16]) -> u64 {
    use opcode::*;
    let blocks = match cdb[0] {
        READ_6 | WRITE_6 => Some(u64::from(transfer_len_6(cdb))),
        READ_10 | WRITE_10 => Some(u64::from(be16(cdb, 7))),
        READ_16 | WRITE_16 => Some(u64::from(be32(cdb, 10))),
        _ => None,
    };
    if let Some(blocks) = blocks {
        // At most 2^32 - 1 blocks of 512 bytes: no overflow in u64.
        return blocks * u64::from(BLOCK_SIZE);
    }
    match cdb[0] {
        INQUIRY => u64::from(be16(cdb, 3)),
        MODE_SENSE_6 | REQUEST_SENSE => u64::from(cdb[4]),
        MODE_SENSE_10 => u64::from(be16(cdb, 7)),
        READ_CAPACITY_10 => 8,
        SERVICE_ACTION_IN_16 if cdb[1] & 0x1f == SA_READ_CAPACITY_16 => u64::from(be32(cdb, 10)),
        REPORT_LUNS => u64::from(be32(cdb, 6)),
        _ => 0,
    }
}

/// The LBA and the block count of a READ, WRITE, VERIFY or SYNCHRONIZE CACHE CDB, and
/// whether it asks for forced unit access. `None` for other opcodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockCdb {
    pub lba: u64,
    pub blocks: u32,
    pub fua: bool,
    /// RDPROTECT/WRPROTECT/VRPROTECT (byte 1 bits 7-5): protection information, unsupported.
    pub protect: u8,
}

impl BlockCdb {
    pub fn parse(cdb: &[u8; 16]) -> Option<BlockCdb> {
        use opcode::*;
        let (lba, blocks) = match cdb[0] {
            READ_6 | WRITE_6 => {
                let lba = u32::from_be_bytes([0, cdb[1] & 0x1f, cdb[2], cdb[3]]);
                return Some(BlockCdb {
                    lba: u64::from(lba),
                    blocks: transfer_len_6(cdb),
                    fua: false,
                    protect: 0,
                });
            }
            READ_10 | WRITE_10 | VERIFY_10 | SYNCHRONIZE_CACHE_10 => {
                (u64::from(be32(cdb, 2)), u32::from(be16(cdb, 7)))
            }
            READ_16 | WRITE_16 | VERIFY_16 | SYNCHRONIZE_CACHE_16 => (be64(cdb, 2), be32(cdb, 10)),
            _ => return None,
        };
        let sync = matches!(cdb[0], SYNCHRONIZE_CACHE_10 | SYNCHRONIZE_CACHE_16);
        Some(BlockCdb {
            lba,
            blocks,
            fua: !sync && cdb[1] & 0x08 != 0,
            protect: if sync { 0 } else { cdb[1] >> 5 },
        })
    }
}

/// READ(6)/WRITE(6): "A TRANSFER LENGTH field set to zero specifies that 256 logical blocks
/// shall be transferred" (SBC-3 §5.8).
fn transfer_len_6(cdb: &[u8; 16]) -> u32 {
    match cdb[4] {
        0 => 256,
        n => u32::from(n),
    }
}

/// A byte range of an image, computed from an LBA and a block count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    pub offset_bytes: u64,
    pub len_bytes: u64,
}

/// The one LBA helper: the byte range of `blocks` blocks at `lba` on a medium of
/// `capacity_blocks`, or LOGICAL BLOCK ADDRESS OUT OF RANGE when `lba + blocks` overflows or
/// passes the end. A zero-block range at `lba == capacity_blocks` is in range (SBC-3: the
/// error is for "the LOGICAL BLOCK ADDRESS field plus the TRANSFER LENGTH field exceeds the
/// capacity"; LIO's `sbc_check_valid_sectors` agrees).
pub fn block_range(lba: u64, blocks: u64, capacity_blocks: u64) -> Result<ByteRange, ScsiError> {
    let block = u64::from(BLOCK_SIZE);
    let end = lba.checked_add(blocks).ok_or(ScsiError::LbaOutOfRange)?;
    if end > capacity_blocks {
        return Err(ScsiError::LbaOutOfRange);
    }
    let offset_bytes = lba.checked_mul(block).ok_or(ScsiError::LbaOutOfRange)?;
    let len_bytes = blocks.checked_mul(block).ok_or(ScsiError::LbaOutOfRange)?;
    // The end in bytes, too, must fit: images are at most u64::MAX bytes long.
    offset_bytes
        .checked_add(len_bytes)
        .ok_or(ScsiError::LbaOutOfRange)?;
    Ok(ByteRange {
        offset_bytes,
        len_bytes,
    })
}

/// Reject a CDB whose control byte asks for NACA (ACA is not implemented).
pub(crate) fn check_control(cdb: &[u8; 16]) -> Result<(), ScsiError> {
    if let Some(len) = cdb_len(cdb[0]) {
        let control = len - 1;
        if cdb[control] & 0x04 != 0 {
            return Err(ScsiError::InvalidFieldInCdb(control as u8));
        }
    }
    Ok(())
}

pub(crate) fn be16(cdb: &[u8; 16], at: usize) -> u16 {
    u16::from_be_bytes([cdb[at], cdb[at + 1]])
}

pub(crate) fn be32(cdb: &[u8; 16], at: usize) -> u32 {
    u32::from_be_bytes([cdb[at], cdb[at + 1], cdb[at + 2], cdb[at + 3]])
}

pub(crate) fn be64(cdb: &[u8; 16], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&cdb[at..at + 8]);
    u64::from_be_bytes(b)
}
