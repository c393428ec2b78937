//! The SCSI side of an initiator (SBC-4, SPC-5): the CDBs it sends and the parsing of what
//! comes back. Independent of FC: CDBs in, bytes out.

use std::fmt;

/// SAM status GOOD.
pub const GOOD: u8 = 0x00;
/// SAM status CHECK CONDITION (sense data follows).
pub const CHECK_CONDITION: u8 = 0x02;

/// Operation codes.
pub mod op {
    pub const TEST_UNIT_READY: u8 = 0x00;
    pub const INQUIRY: u8 = 0x12;
    pub const READ_CAPACITY_10: u8 = 0x25;
    pub const READ_10: u8 = 0x28;
    pub const WRITE_10: u8 = 0x2a;
    pub const READ_16: u8 = 0x88;
    pub const WRITE_16: u8 = 0x8a;
    /// SERVICE ACTION IN(16); service action 0x10 is READ CAPACITY(16).
    pub const SERVICE_ACTION_IN_16: u8 = 0x9e;
    pub const READ_CAPACITY_16_SA: u8 = 0x10;
    pub const REPORT_LUNS: u8 = 0xa0;
}

/// Sense keys.
pub mod key {
    pub const NO_SENSE: u8 = 0x0;
    pub const NOT_READY: u8 = 0x2;
    pub const MEDIUM_ERROR: u8 = 0x3;
    pub const ILLEGAL_REQUEST: u8 = 0x5;
    pub const UNIT_ATTENTION: u8 = 0x6;
    pub const DATA_PROTECT: u8 = 0x7;
    pub const ABORTED_COMMAND: u8 = 0xb;
}

/// The SAM 8-byte form of LUN `lun` (the one encoding the target decodes).
pub use crate::scsi::lun::encode_sam_lun as lun;

/// READ or WRITE of `blocks` from `lba`: the 10-byte form when LBA and count fit (and
/// `cdb16` is false), the 16-byte form otherwise.
pub fn read_write(write: bool, lba: u64, blocks: u32, cdb16: bool) -> [u8; 16] {
    let mut cdb = [0u8; 16];
    if !cdb16 && lba <= u32::MAX as u64 && blocks <= u16::MAX as u32 {
        cdb[0] = if write { op::WRITE_10 } else { op::READ_10 };
        cdb[2..6].copy_from_slice(&(lba as u32).to_be_bytes());
        cdb[7..9].copy_from_slice(&(blocks as u16).to_be_bytes());
    } else {
        cdb[0] = if write { op::WRITE_16 } else { op::READ_16 };
        cdb[2..10].copy_from_slice(&lba.to_be_bytes());
        cdb[10..14].copy_from_slice(&blocks.to_be_bytes());
    }
    cdb
}

pub fn test_unit_ready() -> [u8; 16] {
    [0; 16]
}

/// INQUIRY: standard data (`page` None) or a vital product data page, `alloc` bytes at most.
pub fn inquiry(page: Option<u8>, alloc: u16) -> [u8; 16] {
    let mut cdb = [0u8; 16];
    cdb[0] = op::INQUIRY;
    if let Some(p) = page {
        cdb[1] = 1;
        cdb[2] = p;
    }
    cdb[3..5].copy_from_slice(&alloc.to_be_bytes());
    cdb
}

/// READ CAPACITY(10): 8 bytes.
pub fn read_capacity_10() -> [u8; 16] {
    let mut cdb = [0u8; 16];
    cdb[0] = op::READ_CAPACITY_10;
    cdb
}

/// READ CAPACITY(16), 32 bytes of answer.
pub fn read_capacity_16() -> [u8; 16] {
    let mut cdb = [0u8; 16];
    cdb[0] = op::SERVICE_ACTION_IN_16;
    cdb[1] = op::READ_CAPACITY_16_SA;
    cdb[13] = 32;
    cdb
}

/// REPORT LUNS (select report 0: every LUN), `alloc` bytes at most.
pub fn report_luns(alloc: u32) -> [u8; 16] {
    let mut cdb = [0u8; 16];
    cdb[0] = op::REPORT_LUNS;
    cdb[6..10].copy_from_slice(&alloc.to_be_bytes());
    cdb
}

/// What READ CAPACITY said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capacity {
    /// Number of blocks (last LBA + 1).
    pub blocks: u64,
    pub block_len: u32,
}

impl Capacity {
    /// READ CAPACITY(10) data: last LBA (32 bits), block length.
    pub fn parse_10(d: &[u8]) -> Option<Capacity> {
        let last = u32::from_be_bytes(d.get(..4)?.try_into().ok()?);
        let block_len = u32::from_be_bytes(d.get(4..8)?.try_into().ok()?);
        Some(Capacity {
            blocks: u64::from(last) + 1,
            block_len,
        })
    }

    /// READ CAPACITY(16) data: last LBA (64 bits), block length (the first 12 bytes).
    pub fn parse_16(d: &[u8]) -> Option<Capacity> {
        let last = u64::from_be_bytes(d.get(..8)?.try_into().ok()?);
        let block_len = u32::from_be_bytes(d.get(8..12)?.try_into().ok()?);
        Some(Capacity {
            blocks: last.saturating_add(1),
            block_len,
        })
    }
}

/// Standard INQUIRY data, the parts an initiator shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inquiry {
    /// Peripheral qualifier (top 3 bits) and device type (0 = direct access block device).
    pub qualifier: u8,
    pub device_type: u8,
    pub removable: bool,
    pub version: u8,
    pub vendor: String,
    pub product: String,
    pub revision: String,
}

impl Inquiry {
    /// At least the 36 bytes of standard data.
    pub fn parse(d: &[u8]) -> Option<Inquiry> {
        if d.len() < 36 {
            return None;
        }
        let text = |b: &[u8]| String::from_utf8_lossy(b).trim_end().to_string();
        Some(Inquiry {
            qualifier: d[0] >> 5,
            device_type: d[0] & 0x1f,
            removable: d[1] & 0x80 != 0,
            version: d[2],
            vendor: text(&d[8..16]),
            product: text(&d[16..32]),
            revision: text(&d[32..36]),
        })
    }
}

/// REPORT LUNS data: the 8-byte LUNs listed (as many as the data holds).
pub fn parse_report_luns(d: &[u8]) -> Option<Vec<[u8; 8]>> {
    let len = u32::from_be_bytes(d.get(..4)?.try_into().ok()?) as usize;
    let list = d.get(8..)?;
    Some(
        list[..len.min(list.len())]
            .chunks_exact(8)
            .map(|c| c.try_into().unwrap_or([0; 8]))
            .collect(),
    )
}

/// Sense key, ASC and ASCQ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sense {
    pub key: u8,
    pub asc: u8,
    pub ascq: u8,
}

impl Sense {
    /// Fixed (0x70/0x71) or descriptor (0x72/0x73) format sense data.
    pub fn parse(s: &[u8]) -> Option<Sense> {
        match s.first()? & 0x7f {
            0x70 | 0x71 if s.len() >= 14 => Some(Sense {
                key: s[2] & 0x0f,
                asc: s[12],
                ascq: s[13],
            }),
            0x72 | 0x73 if s.len() >= 4 => Some(Sense {
                key: s[1] & 0x0f,
                asc: s[2],
                ascq: s[3],
            }),
            _ => None,
        }
    }

    pub fn is_unit_attention(&self) -> bool {
        self.key == key::UNIT_ATTENTION
    }
}

impl fmt::Display for Sense {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02x}/{:02x}/{:02x}", self.key, self.asc, self.ascq)
    }
}
