//! MODE SENSE(6) and MODE SENSE(10) (SPC-4 §6.11-6.12, SBC-3 §6.4).
//!
//! ```text
//! MODE SENSE(6) header (4):  mode data length (n-1) | medium type 0 | device-specific | block descriptor length
//! MODE SENSE(10) header (8): mode data length (n-2, 2) | medium type 0 | device-specific | LONGLBA | rsvd | bd length (2)
//! device-specific parameter (SBC-3 table 166): WP bit 7 (read-only image), DPOFUA bit 4 (0: not advertised)
//! short block descriptor (8):  number of blocks (4, FFFFFFFFh when larger) | rsvd | block length (3)
//! long block descriptor (16):  number of blocks (8) | rsvd (4) | block length (4)   (MODE SENSE(10) with LLBAA)
//! ```
//!
//! Pages: 08h caching (WCE = [`Lun::write_cache_enabled`]: set for write-back images, so
//! Linux sends SYNCHRONIZE CACHE; clear for O_DSYNC and read-only images) and 0Ah control;
//! 3Fh returns both, in page-code order. Nothing is changeable (PC 01b returns zero masks;
//! MODE SELECT is not implemented); default and saved values equal the current ones.
//!
//! DPOFUA stays clear so Linux flushes with SYNCHRONIZE CACHE rather than FUA writes (both
//! cost one `fdatasync` here); a FUA write is honoured anyway ([`Lun::commit_write`]).

use super::cdb::{be16, BLOCK_SIZE};
use super::lun::Lun;
use super::sense::ScsiError;
use super::DataIn;

/// Caching mode page code.
pub const PAGE_CACHING: u8 = 0x08;
/// Control mode page code.
pub const PAGE_CONTROL: u8 = 0x0a;
/// "Return all pages".
pub const PAGE_ALL: u8 = 0x3f;

const CACHING_LEN: usize = 20;
const CONTROL_LEN: usize = 12;

/// Execute MODE SENSE(6) (`ten == false`) or MODE SENSE(10).
pub(crate) fn mode_sense(lun: &Lun, cdb: &[u8; 16], ten: bool) -> Result<DataIn, ScsiError> {
    let dbd = cdb[1] & 0x08 != 0;
    let llbaa = ten && cdb[1] & 0x10 != 0;
    let pc = cdb[2] >> 6;
    let page = cdb[2] & 0x3f;
    let subpage = cdb[3];
    let alloc_len = if ten {
        u64::from(be16(cdb, 7))
    } else {
        u64::from(cdb[4])
    };
    if !matches!(page, PAGE_CACHING | PAGE_CONTROL | PAGE_ALL) {
        return Err(ScsiError::InvalidFieldInCdb(2));
    }
    // Subpage 00h is the page itself; FFh asks for all its subpages, and these pages have
    // only subpage 0.
    if !matches!(subpage, 0x00 | 0xff) {
        return Err(ScsiError::InvalidFieldInCdb(3));
    }
    let changeable = pc == 1;
    Ok(DataIn::build(alloc_len, |b| {
        let header = if ten { 8 } else { 4 };
        let mut at = header;
        let bd_len = match (dbd, llbaa) {
            (true, _) => 0,
            (false, false) => short_block_descriptor(lun, &mut b[at..]),
            (false, true) => long_block_descriptor(lun, &mut b[at..]),
        };
        at += bd_len;
        if matches!(page, PAGE_CACHING | PAGE_ALL) {
            at += caching_page(lun, changeable, &mut b[at..]);
        }
        if matches!(page, PAGE_CONTROL | PAGE_ALL) {
            at += control_page(changeable, &mut b[at..]);
        }
        let device_specific = if lun.read_only() { 0x80 } else { 0x00 };
        if ten {
            b[0..2].copy_from_slice(&((at - 2) as u16).to_be_bytes());
            b[3] = device_specific;
            b[4] = u8::from(llbaa && !dbd);
            b[6..8].copy_from_slice(&(bd_len as u16).to_be_bytes());
        } else {
            b[0] = (at - 1) as u8;
            b[2] = device_specific;
            b[3] = bd_len as u8;
        }
        at
    }))
}

fn short_block_descriptor(lun: &Lun, b: &mut [u8]) -> usize {
    let blocks = u32::try_from(lun.capacity_blocks()).unwrap_or(u32::MAX);
    b[0..4].copy_from_slice(&blocks.to_be_bytes());
    b[4] = 0;
    b[5..8].copy_from_slice(&BLOCK_SIZE.to_be_bytes()[1..]);
    8
}

fn long_block_descriptor(lun: &Lun, b: &mut [u8]) -> usize {
    b[0..8].copy_from_slice(&lun.capacity_blocks().to_be_bytes());
    b[8..12].fill(0);
    b[12..16].copy_from_slice(&BLOCK_SIZE.to_be_bytes());
    16
}

fn caching_page(lun: &Lun, changeable: bool, b: &mut [u8]) -> usize {
    b[..CACHING_LEN].fill(0);
    b[0] = PAGE_CACHING;
    b[1] = (CACHING_LEN - 2) as u8;
    if !changeable && lun.write_cache_enabled() {
        b[2] |= 0x04; // WCE
    }
    CACHING_LEN
}

fn control_page(changeable: bool, b: &mut [u8]) -> usize {
    b[..CONTROL_LEN].fill(0);
    b[0] = PAGE_CONTROL;
    b[1] = (CONTROL_LEN - 2) as u8;
    if !changeable {
        // QUEUE ALGORITHM MODIFIER 1: unrestricted reordering of SIMPLE commands; TST 0,
        // D_SENSE 0 (fixed-format sense), QERR 0.
        b[3] = 0x10;
    }
    CONTROL_LEN
}
