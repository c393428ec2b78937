//! Block commands (SBC-3): READ/WRITE(6/10/16), VERIFY(10/16), SYNCHRONIZE CACHE(10/16),
//! READ CAPACITY(10/16). Every LBA goes through
//! [`block_range`](super::cdb::block_range), the one checked helper.

use l2san_common::store::{ClientKey, Volume};

use super::cdb::{be32, be64, opcode, BlockCdb, BLOCK_SIZE, MAX_TRANSFER_BLOCKS};
use super::lun::Lun;
use super::sense::ScsiError;
use super::{Command, DataIn};

/// The CDB byte of the transfer length field, for the sense field pointer.
fn length_field(op: u8) -> u8 {
    match op {
        opcode::READ_6 | opcode::WRITE_6 => 4,
        opcode::READ_10 | opcode::WRITE_10 | opcode::VERIFY_10 | opcode::SYNCHRONIZE_CACHE_10 => 7,
        _ => 10,
    }
}

/// READ(6/10/16) and WRITE(6/10/16): the data phase for the transport to run.
pub(crate) fn read_write(lun: &Lun, cdb: &[u8; 16], write: bool) -> Result<Command, ScsiError> {
    let Some(rw) = BlockCdb::parse(cdb) else {
        return Err(ScsiError::InvalidOpcode(cdb[0]));
    };
    // No protection information: RDPROTECT/WRPROTECT must be 0 (SBC-3 §5.8 table 38, LIO).
    if rw.protect != 0 {
        return Err(ScsiError::InvalidFieldInCdb(1));
    }
    // DATA PROTECT before the range check, as LIO does for a read-only LUN: the medium
    // refuses writes whatever they address.
    if write && lun.read_only() {
        return Err(ScsiError::WriteProtected);
    }
    // SBC-3: a transfer longer than the MAXIMUM TRANSFER LENGTH of VPD B0h is an invalid field.
    if rw.blocks > MAX_TRANSFER_BLOCKS {
        return Err(ScsiError::InvalidFieldInCdb(length_field(cdb[0])));
    }
    let range = lun.range(rw.lba, u64::from(rw.blocks))?;
    if range.len_bytes == 0 {
        // "A TRANSFER LENGTH field set to zero specifies that no logical blocks shall be
        // transferred. This condition shall not be considered an error."
        return Ok(Command::NoData);
    }
    // len_bytes <= MAX_TRANSFER_BLOCKS * 512 <= u32::MAX.
    let len_bytes = u32::try_from(range.len_bytes)
        .map_err(|_| ScsiError::InvalidFieldInCdb(length_field(cdb[0])))?;
    Ok(if write {
        Command::Write {
            offset_bytes: range.offset_bytes,
            len_bytes,
            fua: rw.fua,
        }
    } else {
        Command::Read {
            offset_bytes: range.offset_bytes,
            len_bytes,
        }
    })
}

/// VERIFY(10/16): with BYTCHK 0 the medium is "verified" by the range check alone (the image
/// has no media errors to find). BYTCHK != 0 would need a data-out compare: not supported.
pub(crate) fn verify(lun: &Lun, cdb: &[u8; 16]) -> Result<Command, ScsiError> {
    let Some(v) = BlockCdb::parse(cdb) else {
        return Err(ScsiError::InvalidOpcode(cdb[0]));
    };
    if v.protect != 0 || cdb[1] & 0x06 != 0 {
        return Err(ScsiError::InvalidFieldInCdb(1));
    }
    lun.range(v.lba, u64::from(v.blocks))?;
    Ok(Command::NoData)
}

/// SYNCHRONIZE CACHE(10/16): range check (0 blocks = to the end of the medium), then a real
/// `fdatasync` of the whole image, IMMED or not: status GOOD means stable. On an overlay LUN,
/// `client`'s overlay (no client: every overlay of the LUN).
pub(crate) fn synchronize_cache(
    lun: &Lun,
    cdb: &[u8; 16],
    client: Option<&ClientKey>,
) -> Result<Command, ScsiError> {
    let Some(s) = BlockCdb::parse(cdb) else {
        return Err(ScsiError::InvalidOpcode(cdb[0]));
    };
    lun.range(s.lba, u64::from(s.blocks))?;
    lun.volume(client)
        .flush()
        .map_err(|e| ScsiError::from_write(&e))?;
    Ok(Command::NoData)
}

/// SBC-3: with PMI 0 the LOGICAL BLOCK ADDRESS field must be 0.
fn check_pmi(pmi: bool, lba: u64, lba_byte: u8) -> Result<(), ScsiError> {
    if !pmi && lba != 0 {
        return Err(ScsiError::InvalidFieldInCdb(lba_byte));
    }
    Ok(())
}

/// READ CAPACITY(10): last LBA and block length; FFFFFFFFh when the last LBA does not fit,
/// which sends both Linux and iPXE to READ CAPACITY(16).
pub(crate) fn read_capacity_10(lun: &Lun, cdb: &[u8; 16]) -> Result<DataIn, ScsiError> {
    check_pmi(cdb[8] & 0x01 != 0, u64::from(be32(cdb, 2)), 2)?;
    // LunTable guarantees at least one block.
    let last_lba = lun.capacity_blocks().saturating_sub(1);
    let returned = u32::try_from(last_lba).unwrap_or(u32::MAX);
    Ok(DataIn::build(8, |b| {
        b[0..4].copy_from_slice(&returned.to_be_bytes());
        b[4..8].copy_from_slice(&BLOCK_SIZE.to_be_bytes());
        8
    }))
}

/// READ CAPACITY(16) (SERVICE ACTION IN(16), service action 10h): 32 bytes, no protection,
/// one logical block per physical block, no thin provisioning (LBPME 0).
pub(crate) fn read_capacity_16(lun: &Lun, cdb: &[u8; 16]) -> Result<DataIn, ScsiError> {
    check_pmi(cdb[14] & 0x01 != 0, be64(cdb, 2), 2)?;
    let last_lba = lun.capacity_blocks().saturating_sub(1);
    Ok(DataIn::build(u64::from(be32(cdb, 10)), |b| {
        b[..32].fill(0);
        b[0..8].copy_from_slice(&last_lba.to_be_bytes());
        b[8..12].copy_from_slice(&BLOCK_SIZE.to_be_bytes());
        32
    }))
}
