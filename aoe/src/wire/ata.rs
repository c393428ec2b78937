//! Command 0, Issue ATA Command (AoEr11 §3.1): the ATA argument and its data.
//!
//! Offsets are from the start of the argument (AoE header offset 10, frame offset 24):
//!
//! ```text
//!  offset  size  field          request                        response
//!  0       1     AFlags         E 0x40 LBA48, D 0x10 device,   echoed
//!                               A 0x02 async, W 0x01 write
//!  1       1     Err/Feature    ATA Features                   ATA Error (ABRT 0x04, IDNF 0x10, UNC 0x40)
//!  2       1     Sector Count   sectors to transfer            remaining count
//!  3       1     Cmd/Status     ATA opcode                     ATA Status (DRDY 0x40, ERR 0x01)
//!  4       6     lba0..lba5     LBA, least significant first   echoed
//!  10      2     reserved       0                              0
//!  12      ...   Data           write payload                  read payload / IDENTIFY block
//! ```
//!
//! 28-bit commands carry device-register bits in lba3 (Linux and iPXE put 0xE0 or 0xA0 there);
//! the view returns all 48 bits as sent and leaves masking to the ATA layer, which picks the
//! addressing mode from the opcode.

use super::Result;

mod field {
    use core::ops::Range;
    pub const AFLAGS: usize = 0;
    pub const ERR_FEATURE: usize = 1;
    pub const SECTOR_COUNT: usize = 2;
    pub const CMD_STATUS: usize = 3;
    pub const LBA: Range<usize> = 4..10;
    pub const RESERVED: Range<usize> = 10..12;
    pub const DATA: usize = 12;
}

/// Length of the ATA argument before the data.
pub const ARG_LEN: usize = field::DATA;

/// The AFlags byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct AtaFlags(pub u8);

impl AtaFlags {
    /// E: LBA48 extended command.
    pub const EXTENDED: u8 = 0x40;
    /// D: the device/head register's DEV bit; every peer ignores it.
    pub const DEVICE: u8 = 0x10;
    /// A: asynchronous write; a hint no initiator sets.
    pub const ASYNC: u8 = 0x02;
    /// W: data follows (a write).
    pub const WRITE: u8 = 0x01;

    pub fn extended(self) -> bool {
        self.0 & Self::EXTENDED != 0
    }
    pub fn write(self) -> bool {
        self.0 & Self::WRITE != 0
    }
    pub fn asynchronous(self) -> bool {
        self.0 & Self::ASYNC != 0
    }
}

/// A view of the ATA argument over the AoE header's payload.
#[derive(Debug, Clone)]
pub struct AtaPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> AtaPacket<T> {
    pub fn new_unchecked(buffer: T) -> Self {
        AtaPacket { buffer }
    }

    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    pub fn check_len(&self) -> Result<()> {
        super::check_fixed(self.buffer.as_ref(), ARG_LEN)
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn aflags(&self) -> AtaFlags {
        AtaFlags(self.buffer.as_ref()[field::AFLAGS])
    }
    pub fn err_feature(&self) -> u8 {
        self.buffer.as_ref()[field::ERR_FEATURE]
    }
    pub fn sector_count(&self) -> u8 {
        self.buffer.as_ref()[field::SECTOR_COUNT]
    }
    pub fn cmd_status(&self) -> u8 {
        self.buffer.as_ref()[field::CMD_STATUS]
    }
    /// lba0..lba5 as one 48-bit number, unmasked.
    pub fn lba(&self) -> u64 {
        let b = &self.buffer.as_ref()[field::LBA];
        let mut v = [0u8; 8];
        v[..6].copy_from_slice(b);
        u64::from_le_bytes(v)
    }
    /// The data after the argument: everything the frame carries, padding included.
    pub fn data(&self) -> &[u8] {
        &self.buffer.as_ref()[field::DATA..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> AtaPacket<T> {
    pub fn set_aflags(&mut self, v: AtaFlags) {
        self.buffer.as_mut()[field::AFLAGS] = v.0;
    }
    pub fn set_err_feature(&mut self, v: u8) {
        self.buffer.as_mut()[field::ERR_FEATURE] = v;
    }
    pub fn set_sector_count(&mut self, v: u8) {
        self.buffer.as_mut()[field::SECTOR_COUNT] = v;
    }
    pub fn set_cmd_status(&mut self, v: u8) {
        self.buffer.as_mut()[field::CMD_STATUS] = v;
    }
    /// Writes the low 48 bits.
    pub fn set_lba(&mut self, lba: u64) {
        self.buffer.as_mut()[field::LBA].copy_from_slice(&lba.to_le_bytes()[..6]);
    }
    pub fn clear_reserved(&mut self) {
        self.buffer.as_mut()[field::RESERVED].fill(0);
    }
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::DATA..]
    }
}

/// The meaning of the ATA argument (the data travels separately, through the view).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AtaRepr {
    pub aflags: AtaFlags,
    /// Features in a request, Error in a response.
    pub err_feature: u8,
    pub sector_count: u8,
    /// Command opcode in a request, Status in a response.
    pub cmd_status: u8,
    /// The 48 LBA bits as sent.
    pub lba: u64,
}

impl AtaRepr {
    pub fn parse<T: AsRef<[u8]>>(packet: &AtaPacket<T>) -> Result<AtaRepr> {
        packet.check_len()?;
        Ok(AtaRepr {
            aflags: packet.aflags(),
            err_feature: packet.err_feature(),
            sector_count: packet.sector_count(),
            cmd_status: packet.cmd_status(),
            lba: packet.lba(),
        })
    }

    /// Length of the argument alone; data, if any, follows.
    pub fn buffer_len(&self) -> usize {
        ARG_LEN
    }

    /// Write all twelve argument bytes, the reserved ones as zero.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut AtaPacket<T>) {
        packet.set_aflags(self.aflags);
        packet.set_err_feature(self.err_feature);
        packet.set_sector_count(self.sector_count);
        packet.set_cmd_status(self.cmd_status);
        packet.set_lba(self.lba);
        packet.clear_reserved();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::test_frames::{arg, IPXE, LINUX};
    use crate::wire::WireError;

    #[test]
    fn parses_ipxe_identify() {
        // Frame 3: IDENTIFY without the E flag, device bits 0xE0 in lba3, 36-byte frame.
        let bytes = arg(IPXE, 3);
        let r = AtaRepr::parse(&AtaPacket::new_checked(&bytes[..]).unwrap()).unwrap();
        assert_eq!(
            r,
            AtaRepr {
                aflags: AtaFlags(0),
                err_feature: 0,
                sector_count: 1,
                cmd_status: 0xec,
                lba: 0xe0_00_00_00,
            }
        );
        assert!(AtaPacket::new_checked(&bytes[..])
            .unwrap()
            .data()
            .is_empty());
    }

    #[test]
    fn parses_linux_identify_and_write_ext() {
        let id = arg(LINUX, 3);
        let r = AtaRepr::parse(&AtaPacket::new_checked(&id[..]).unwrap()).unwrap();
        assert_eq!(
            (r.cmd_status, r.sector_count, r.lba),
            (0xec, 1, 0xa0_00_00_00)
        );

        let wr = arg(LINUX, 141);
        let p = AtaPacket::new_checked(&wr[..]).unwrap();
        let r = AtaRepr::parse(&p).unwrap();
        assert_eq!(r.aflags, AtaFlags(0x41));
        assert!(r.aflags.extended() && r.aflags.write());
        assert_eq!((r.cmd_status, r.sector_count, r.lba), (0x34, 2, 0x0807));
        assert_eq!(p.data().len(), 1024);
    }

    #[test]
    fn parses_ipxe_read_ext_response() {
        // Frame 6: vblade's answer to READ EXT: status DRDY, count 0, 1024 bytes of data.
        let bytes = arg(IPXE, 6);
        let p = AtaPacket::new_checked(&bytes[..]).unwrap();
        let r = AtaRepr::parse(&p).unwrap();
        assert_eq!((r.cmd_status, r.sector_count, r.err_feature), (0x40, 0, 0));
        assert_eq!(r.lba, 0x40);
        assert_eq!(&p.data()[..4], b"SECT");
    }

    #[test]
    fn emit_matches_capture() {
        for (name, n) in [
            (IPXE, 3),
            (IPXE, 5),
            (IPXE, 6),
            (IPXE, 79),
            (LINUX, 3),
            (LINUX, 141),
        ] {
            let bytes = arg(name, n);
            let r = AtaRepr::parse(&AtaPacket::new_checked(&bytes[..]).unwrap()).unwrap();
            let mut buf = [0xa5u8; ARG_LEN];
            r.emit(&mut AtaPacket::new_unchecked(&mut buf[..]));
            assert_eq!(&buf[..], &bytes[..ARG_LEN], "{name} frame {n}");
            assert_eq!(r.buffer_len(), ARG_LEN);
        }
    }

    #[test]
    fn lba_is_48_bits() {
        let mut buf = [0xa5u8; ARG_LEN];
        let r = AtaRepr {
            lba: 0xffff_1234_5678_9abc,
            ..AtaRepr::default()
        };
        r.emit(&mut AtaPacket::new_unchecked(&mut buf[..]));
        assert_eq!(&buf[4..12], &[0xbc, 0x9a, 0x78, 0x56, 0x34, 0x12, 0, 0]);
        assert_eq!(AtaPacket::new_unchecked(&buf[..]).lba(), 0x1234_5678_9abc);
    }

    #[test]
    fn truncated_prefixes_rejected() {
        let bytes = arg(LINUX, 141);
        for len in 0..ARG_LEN {
            assert_eq!(
                AtaPacket::new_checked(&bytes[..len]).unwrap_err(),
                WireError::Truncated
            );
            assert!(AtaRepr::parse(&AtaPacket::new_unchecked(&bytes[..len])).is_err());
        }
    }
}
