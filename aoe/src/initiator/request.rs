//! Requests as an initiator sends them: whole Ethernet frames (AoEr11 §2 header, §3.1 ATA or
//! §3.2 Query Config argument), written into the caller's buffer.
//!
//! ```text
//!  frame offset  size  field
//!  0             14    Ethernet: destination, source, 0x88A2
//!  14            10    AoE header: Ver 1, no flags, Error 0, Major, Minor, Command, Tag
//!  24            12    ATA argument (AFlags, Feature, Count, Command, lba0..lba5, 0, 0)
//!                 8    or Query Config argument, all zero (CCmd 0: read, no string)
//!  36            ...   write data ([`ATA_DATA_OFFSET`])
//! ```
//!
//! The register values are the ones Linux's `aoe` driver and aoetools send: IDENTIFY with
//! Count 1 and lba3 (the Device register) 0xA0; 28-bit commands with the Device register's
//! LBA and obsolete bits (0xE0) in lba3; 48-bit commands with the E flag and all six LBA bytes.

use l2san_common::ether::{emit_header, HEADER_LEN as ETH_LEN, MIN_FRAME_LEN};
use l2san_common::{EtherType, MacAddr};

use crate::ata::{Opcode, SECTOR_SIZE};
use crate::wire::ata::{self as ata_wire, AtaFlags, AtaPacket, AtaRepr};
use crate::wire::config::{self as config_wire, ConfigPacket, ConfigRepr};
use crate::wire::header::{Command, HeaderPacket, HeaderRepr, HEADER_LEN};

/// Offset of the AoE argument in a whole frame.
pub const ARG_OFFSET: usize = ETH_LEN + HEADER_LEN;
/// Offset of the data after an ATA argument in a whole frame: a write's data in a request, a
/// read's or IDENTIFY's in a response.
pub const ATA_DATA_OFFSET: usize = ARG_OFFSET + ata_wire::ARG_LEN;

/// lba3 of a 28-bit command: the Device register with LBA mode (0x40) and the obsolete bits 7
/// and 5 set; its low nibble carries LBA bits 24-27.
const DEVICE_LBA: u64 = 0xe0;
/// lba3 of IDENTIFY: the Device register with only the obsolete bits.
const DEVICE_IDENTIFY: u64 = 0xa0;

/// An ATA command as an initiator issues it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AtaRequest {
    /// IDENTIFY DEVICE: 512 bytes come back.
    Identify,
    /// READ SECTORS (EXT when `lba48`).
    Read {
        lba: u64,
        sector_count: u8,
        lba48: bool,
    },
    /// WRITE SECTORS (EXT when `lba48`): `sector_count` × 512 bytes of data follow.
    Write {
        lba: u64,
        sector_count: u8,
        lba48: bool,
    },
    /// FLUSH CACHE (EXT when `lba48`).
    Flush { lba48: bool },
}

impl AtaRequest {
    /// The ATA argument of the request.
    pub fn repr(&self) -> AtaRepr {
        let (lba48, write, opcode, sector_count, lba) = match *self {
            AtaRequest::Identify => (
                false,
                false,
                Opcode::IdentifyDevice,
                1,
                DEVICE_IDENTIFY << 24,
            ),
            AtaRequest::Read {
                lba,
                sector_count,
                lba48,
            } => (
                lba48,
                false,
                if lba48 {
                    Opcode::ReadSectorsExt
                } else {
                    Opcode::ReadSectors
                },
                sector_count,
                lba_field(lba, lba48),
            ),
            AtaRequest::Write {
                lba,
                sector_count,
                lba48,
            } => (
                lba48,
                true,
                if lba48 {
                    Opcode::WriteSectorsExt
                } else {
                    Opcode::WriteSectors
                },
                sector_count,
                lba_field(lba, lba48),
            ),
            AtaRequest::Flush { lba48 } => (
                lba48,
                false,
                if lba48 {
                    Opcode::FlushCacheExt
                } else {
                    Opcode::FlushCache
                },
                0,
                0,
            ),
        };
        let mut aflags = 0;
        if lba48 {
            aflags |= AtaFlags::EXTENDED;
        }
        if write {
            aflags |= AtaFlags::WRITE;
        }
        AtaRepr {
            aflags: AtaFlags(aflags),
            err_feature: 0,
            sector_count,
            cmd_status: opcode.into(),
            lba,
        }
    }

    /// Bytes of data that go with the request (a write's sectors).
    pub fn data_out_len(&self) -> usize {
        match self {
            AtaRequest::Write { sector_count, .. } => usize::from(*sector_count) * SECTOR_SIZE,
            _ => 0,
        }
    }

    /// Bytes of data a successful response brings back.
    pub fn data_in_len(&self) -> usize {
        match self {
            AtaRequest::Identify => crate::ata::IDENTIFY_LEN,
            AtaRequest::Read { sector_count, .. } => usize::from(*sector_count) * SECTOR_SIZE,
            _ => 0,
        }
    }
}

/// Reuse an ATA request frame that [`Request::emit`] wrote for another command: only the tag
/// and the argument are rewritten (addresses stay), for a caller that keeps one frame per
/// request slot. The write data at [`ATA_DATA_OFFSET`] is the caller's. Returns the length to
/// send: headers, argument and write data, at least the Ethernet minimum.
pub fn reissue(frame: &mut [u8], tag: u32, ata: AtaRequest) -> usize {
    HeaderPacket::new_unchecked(&mut frame[ETH_LEN..]).set_tag(tag);
    ata.repr()
        .emit(&mut AtaPacket::new_unchecked(&mut frame[ARG_OFFSET..]));
    (ATA_DATA_OFFSET + ata.data_out_len()).max(MIN_FRAME_LEN)
}

/// The six LBA bytes: all 48 bits, or 28 bits under the Device register bits.
fn lba_field(lba: u64, lba48: bool) -> u64 {
    if lba48 {
        lba & ((1 << 48) - 1)
    } else {
        (lba & 0x0fff_ffff) | DEVICE_LBA << 24
    }
}

/// What a request asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    /// Query Config Information, CCmd 0 (read): every addressed target answers with its
    /// config.
    QueryConfig,
    /// Issue ATA Command.
    Ata(AtaRequest),
}

/// One request frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    pub dst: MacAddr,
    pub src: MacAddr,
    pub major: u16,
    pub minor: u8,
    pub tag: u32,
    pub body: Body,
}

impl Request {
    /// Bytes of the headers and the argument: where the data of a write starts.
    pub fn header_len(&self) -> usize {
        match self.body {
            Body::QueryConfig => ARG_OFFSET + config_wire::ARG_LEN,
            Body::Ata(_) => ATA_DATA_OFFSET,
        }
    }

    /// Write the Ethernet header, the AoE header and the argument into the first
    /// [`header_len`](Self::header_len) bytes of `frame`. A write's data (at
    /// [`ATA_DATA_OFFSET`]) and the padding are the caller's.
    pub fn emit(&self, frame: &mut [u8]) {
        emit_header(frame, self.dst, self.src, EtherType::Aoe);
        let command = match self.body {
            Body::QueryConfig => Command::QueryConfig,
            Body::Ata(_) => Command::IssueAta,
        };
        HeaderRepr::request(self.major, self.minor, command, self.tag)
            .emit(&mut HeaderPacket::new_unchecked(&mut frame[ETH_LEN..]));
        match self.body {
            Body::QueryConfig => ConfigRepr::READ_REQUEST
                .emit(&mut ConfigPacket::new_unchecked(&mut frame[ARG_OFFSET..])),
            Body::Ata(a) => a
                .repr()
                .emit(&mut AtaPacket::new_unchecked(&mut frame[ARG_OFFSET..])),
        }
    }

    /// The whole frame with `data` after the argument, zero-padded to the Ethernet minimum.
    pub fn to_frame(&self, data: &[u8]) -> Vec<u8> {
        let len = self.header_len() + data.len();
        let mut frame = vec![0u8; len.max(MIN_FRAME_LEN)];
        self.emit(&mut frame);
        frame[self.header_len()..len].copy_from_slice(data);
        frame
    }
}
