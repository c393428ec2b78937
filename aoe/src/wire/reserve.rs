//! Command 3, Reserve/Release (AoEr11 §3.4).
//!
//! Offsets are from the start of the argument (AoE header offset 10, frame offset 24):
//!
//! ```text
//!  offset  size  field
//!  0       1     RCmd: 0 read, 1 set, 2 force set
//!  1       1     NMacs: MAC addresses that follow
//!  2       6*n   MAC addresses
//! ```
//!
//! NMacs is checked against the bytes the frame carries; trailing padding is accepted (unlike
//! parsers that demand `len == 2 + 6 * NMacs`, which breaks on padded 60-byte frames).

use l2san_common::MacAddr;

use super::{EntryList, Result};

mod field {
    pub const RCMD: usize = 0;
    pub const NMACS: usize = 1;
    pub const MACS: usize = 2;
}

/// Length of the reserve argument before the MACs.
pub const ARG_LEN: usize = field::MACS;
/// Length of one MAC entry.
pub const MAC_LEN: usize = 6;
/// NMacs MACs after the fixed part.
const MACS: EntryList = EntryList {
    start: ARG_LEN,
    entry_len: MAC_LEN,
};

/// The RCmd field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReserveCommand {
    Read,
    /// Set the list if it is empty or holds the requester.
    Set,
    /// Set the list unconditionally; an empty list releases.
    ForceSet,
    Unknown(u8),
}

impl From<u8> for ReserveCommand {
    fn from(v: u8) -> ReserveCommand {
        match v {
            0 => ReserveCommand::Read,
            1 => ReserveCommand::Set,
            2 => ReserveCommand::ForceSet,
            _ => ReserveCommand::Unknown(v),
        }
    }
}

impl From<ReserveCommand> for u8 {
    fn from(c: ReserveCommand) -> u8 {
        match c {
            ReserveCommand::Read => 0,
            ReserveCommand::Set => 1,
            ReserveCommand::ForceSet => 2,
            ReserveCommand::Unknown(v) => v,
        }
    }
}

/// A view of the reserve argument over the AoE header's payload.
#[derive(Debug, Clone)]
pub struct ReservePacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ReservePacket<T> {
    pub fn new_unchecked(buffer: T) -> Self {
        ReservePacket { buffer }
    }

    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// Checks the fixed part only; [`Self::check_macs`] checks NMacs.
    pub fn check_len(&self) -> Result<()> {
        super::check_fixed(self.buffer.as_ref(), ARG_LEN)
    }

    /// NMacs addresses fit in the bytes the frame carries.
    pub fn check_macs(&self) -> Result<()> {
        MACS.check(self.buffer.as_ref(), self.nmacs())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn command(&self) -> ReserveCommand {
        ReserveCommand::from(self.buffer.as_ref()[field::RCMD])
    }
    pub fn nmacs(&self) -> u8 {
        self.buffer.as_ref()[field::NMACS]
    }
    /// MAC `index`, or `None` past NMacs or past the end of the buffer.
    pub fn mac(&self, index: usize) -> Option<MacAddr> {
        let b = MACS.get(self.buffer.as_ref(), self.nmacs(), index)?;
        Some(MacAddr::from_bytes(b))
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> ReservePacket<T> {
    pub fn set_command(&mut self, c: ReserveCommand) {
        self.buffer.as_mut()[field::RCMD] = c.into();
    }
    pub fn set_nmacs(&mut self, n: u8) {
        self.buffer.as_mut()[field::NMACS] = n;
    }
    /// Write MAC `index`; the buffer must hold it.
    pub fn set_mac(&mut self, index: usize, mac: MacAddr) {
        self.buffer.as_mut()[MACS.range(index)].copy_from_slice(mac.as_bytes());
    }
}

/// The meaning of the fixed reserve argument; the MACs are read and written through the view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReserveRepr {
    pub command: ReserveCommand,
    pub nmacs: u8,
}

impl ReserveRepr {
    /// `Truncated` without the fixed part, `BadLength` when NMacs exceeds the frame.
    pub fn parse<T: AsRef<[u8]>>(packet: &ReservePacket<T>) -> Result<ReserveRepr> {
        packet.check_len()?;
        packet.check_macs()?;
        Ok(ReserveRepr {
            command: packet.command(),
            nmacs: packet.nmacs(),
        })
    }

    pub fn buffer_len(&self) -> usize {
        MACS.len_bytes(self.nmacs)
    }

    /// Write the fixed part; the caller then writes `nmacs` MACs with
    /// [`ReservePacket::set_mac`].
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut ReservePacket<T>) {
        packet.set_command(self.command);
        packet.set_nmacs(self.nmacs);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::WireError;

    // A set of two MACs, as a 60-byte frame would carry it: padding after the list.
    const SET: [u8; 20] = [
        0x01, 0x02, //
        0x52, 0x54, 0x00, 0x12, 0x34, 0x56, //
        0x02, 0x00, 0x00, 0x00, 0x00, 0x01, //
        0, 0, 0, 0, 0, 0,
    ];

    #[test]
    fn parses_set_with_padding() {
        let p = ReservePacket::new_checked(&SET[..]).unwrap();
        let r = ReserveRepr::parse(&p).unwrap();
        assert_eq!(
            r,
            ReserveRepr {
                command: ReserveCommand::Set,
                nmacs: 2
            }
        );
        assert_eq!(p.mac(0), Some(MacAddr([0x52, 0x54, 0, 0x12, 0x34, 0x56])));
        assert_eq!(p.mac(1), Some(MacAddr([2, 0, 0, 0, 0, 1])));
        assert_eq!(p.mac(2), None);
    }

    #[test]
    fn emit_matches() {
        let p = ReservePacket::new_checked(&SET[..]).unwrap();
        let r = ReserveRepr::parse(&p).unwrap();
        let mut buf = [0xa5u8; 14];
        let mut out = ReservePacket::new_unchecked(&mut buf[..]);
        r.emit(&mut out);
        for i in 0..usize::from(r.nmacs) {
            out.set_mac(i, p.mac(i).unwrap());
        }
        assert_eq!(r.buffer_len(), 14);
        assert_eq!(&buf[..], &SET[..14]);
    }

    #[test]
    fn nmacs_checked_against_frame() {
        let mut bytes = SET;
        bytes[1] = 4; // needs 26 bytes; 20 present
        let p = ReservePacket::new_checked(&bytes[..]).unwrap();
        assert_eq!(ReserveRepr::parse(&p), Err(WireError::BadLength));
        assert_eq!(p.mac(3), None);
    }

    #[test]
    fn codes_round_trip() {
        for v in 0..=255u8 {
            assert_eq!(u8::from(ReserveCommand::from(v)), v);
        }
    }

    #[test]
    fn truncated_prefixes_rejected() {
        for len in 0..14 {
            let p = ReservePacket::new_unchecked(&SET[..len]);
            assert!(ReserveRepr::parse(&p).is_err(), "{len}");
            if len < ARG_LEN {
                assert_eq!(
                    ReservePacket::new_checked(&SET[..len]).unwrap_err(),
                    WireError::Truncated
                );
            }
        }
    }
}
