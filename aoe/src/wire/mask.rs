//! Command 2, Mac Mask List (AoEr11 §3.3).
//!
//! Offsets are from the start of the argument (AoE header offset 10, frame offset 24):
//!
//! ```text
//!  offset  size  field
//!  0       1     reserved (0)
//!  1       1     MCmd: 0 read, 1 edit
//!  2       1     MError: 0 none, 1 unspecified, 2 bad DCmd, 3 list full
//!  3       1     Dir Count: directives that follow (in an error response: the index of the
//!                failing directive)
//!  4       8*n   Directives
//!
//!  directive:  0 reserved (0) | 1 DCmd (0 none, 1 add, 2 delete) | 2..8 MAC address
//! ```
//!
//! Dir Count is checked against the bytes the frame carries: a count longer than the frame
//! is [`WireError::BadLength`](super::WireError::BadLength), never a read of stale buffer bytes.

use l2san_common::MacAddr;

use super::{EntryList, Result};

mod field {
    pub const RESERVED: usize = 0;
    pub const MCMD: usize = 1;
    pub const MERROR: usize = 2;
    pub const DIR_COUNT: usize = 3;
    pub const DIRECTIVES: usize = 4;

    pub mod directive {
        use core::ops::Range;
        pub const RESERVED: usize = 0;
        pub const DCMD: usize = 1;
        pub const MAC: Range<usize> = 2..8;
    }
}

/// Length of the mask argument before the directives.
pub const ARG_LEN: usize = field::DIRECTIVES;
/// Length of one directive.
pub const DIRECTIVE_LEN: usize = 8;
/// Dir Count directives after the fixed part.
const DIRECTIVES: EntryList = EntryList {
    start: ARG_LEN,
    entry_len: DIRECTIVE_LEN,
};

/// The MCmd field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MaskCommand {
    Read,
    Edit,
    Unknown(u8),
}

impl From<u8> for MaskCommand {
    fn from(v: u8) -> MaskCommand {
        match v {
            0 => MaskCommand::Read,
            1 => MaskCommand::Edit,
            _ => MaskCommand::Unknown(v),
        }
    }
}

impl From<MaskCommand> for u8 {
    fn from(c: MaskCommand) -> u8 {
        match c {
            MaskCommand::Read => 0,
            MaskCommand::Edit => 1,
            MaskCommand::Unknown(v) => v,
        }
    }
}

/// The MError field when non-zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MaskError {
    Unspecified,
    BadDirective,
    ListFull,
    Unknown(u8),
}

impl MaskError {
    /// `None` for 0 (no error).
    pub fn from_byte(v: u8) -> Option<MaskError> {
        match v {
            0 => None,
            1 => Some(MaskError::Unspecified),
            2 => Some(MaskError::BadDirective),
            3 => Some(MaskError::ListFull),
            _ => Some(MaskError::Unknown(v)),
        }
    }
    pub fn to_byte(e: Option<MaskError>) -> u8 {
        match e {
            None => 0,
            Some(MaskError::Unspecified) => 1,
            Some(MaskError::BadDirective) => 2,
            Some(MaskError::ListFull) => 3,
            Some(MaskError::Unknown(v)) => v,
        }
    }
}

/// The DCmd field of a directive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DirectiveCommand {
    None,
    Add,
    Delete,
    Unknown(u8),
}

impl From<u8> for DirectiveCommand {
    fn from(v: u8) -> DirectiveCommand {
        match v {
            0 => DirectiveCommand::None,
            1 => DirectiveCommand::Add,
            2 => DirectiveCommand::Delete,
            _ => DirectiveCommand::Unknown(v),
        }
    }
}

impl From<DirectiveCommand> for u8 {
    fn from(c: DirectiveCommand) -> u8 {
        match c {
            DirectiveCommand::None => 0,
            DirectiveCommand::Add => 1,
            DirectiveCommand::Delete => 2,
            DirectiveCommand::Unknown(v) => v,
        }
    }
}

/// One directive: a command and a MAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Directive {
    pub command: DirectiveCommand,
    pub mac: MacAddr,
}

impl Directive {
    /// Parse from exactly [`DIRECTIVE_LEN`] or more bytes.
    fn parse(b: &[u8]) -> Directive {
        Directive {
            command: DirectiveCommand::from(b[field::directive::DCMD]),
            mac: MacAddr::from_bytes(&b[field::directive::MAC]),
        }
    }
    fn emit(&self, b: &mut [u8]) {
        b[field::directive::RESERVED] = 0;
        b[field::directive::DCMD] = self.command.into();
        b[field::directive::MAC].copy_from_slice(self.mac.as_bytes());
    }
}

/// A view of the mask argument over the AoE header's payload.
#[derive(Debug, Clone)]
pub struct MaskPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> MaskPacket<T> {
    pub fn new_unchecked(buffer: T) -> Self {
        MaskPacket { buffer }
    }

    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// Checks the fixed part only; [`Self::check_directives`] checks Dir Count.
    pub fn check_len(&self) -> Result<()> {
        super::check_fixed(self.buffer.as_ref(), ARG_LEN)
    }

    /// Dir Count directives fit in the bytes the frame carries.
    pub fn check_directives(&self) -> Result<()> {
        DIRECTIVES.check(self.buffer.as_ref(), self.dir_count())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn command(&self) -> MaskCommand {
        MaskCommand::from(self.buffer.as_ref()[field::MCMD])
    }
    pub fn error(&self) -> Option<MaskError> {
        MaskError::from_byte(self.buffer.as_ref()[field::MERROR])
    }
    pub fn dir_count(&self) -> u8 {
        self.buffer.as_ref()[field::DIR_COUNT]
    }
    /// Directive `index`, or `None` past Dir Count or past the end of the buffer.
    pub fn directive(&self, index: usize) -> Option<Directive> {
        let b = DIRECTIVES.get(self.buffer.as_ref(), self.dir_count(), index)?;
        Some(Directive::parse(b))
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> MaskPacket<T> {
    pub fn set_reserved(&mut self) {
        self.buffer.as_mut()[field::RESERVED] = 0;
    }
    pub fn set_command(&mut self, c: MaskCommand) {
        self.buffer.as_mut()[field::MCMD] = c.into();
    }
    pub fn set_error(&mut self, e: Option<MaskError>) {
        self.buffer.as_mut()[field::MERROR] = MaskError::to_byte(e);
    }
    pub fn set_dir_count(&mut self, n: u8) {
        self.buffer.as_mut()[field::DIR_COUNT] = n;
    }
    /// Write directive `index`; the buffer must hold it.
    pub fn set_directive(&mut self, index: usize, d: &Directive) {
        d.emit(&mut self.buffer.as_mut()[DIRECTIVES.range(index)]);
    }
}

/// The meaning of the fixed mask argument; directives are read and written through the view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaskRepr {
    pub command: MaskCommand,
    pub error: Option<MaskError>,
    pub dir_count: u8,
}

impl MaskRepr {
    /// `Truncated` without the fixed part, `BadLength` when Dir Count exceeds the frame.
    pub fn parse<T: AsRef<[u8]>>(packet: &MaskPacket<T>) -> Result<MaskRepr> {
        packet.check_len()?;
        packet.check_directives()?;
        Ok(MaskRepr {
            command: packet.command(),
            error: packet.error(),
            dir_count: packet.dir_count(),
        })
    }

    /// The fixed part plus Dir Count directives.
    pub fn buffer_len(&self) -> usize {
        DIRECTIVES.len_bytes(self.dir_count)
    }

    /// Write the fixed part; the caller then writes `dir_count` directives with
    /// [`MaskPacket::set_directive`].
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut MaskPacket<T>) {
        packet.set_reserved();
        packet.set_command(self.command);
        packet.set_error(self.error);
        packet.set_dir_count(self.dir_count);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::WireError;

    // No initiator in the captures edits masks; this is the argument `aoemask` style tools
    // send: edit, two directives (add 52:54:00:12:34:56, delete 02:00:00:00:00:01), then
    // Ethernet padding.
    const EDIT: [u8; 24] = [
        0x00, 0x01, 0x00, 0x02, //
        0x00, 0x01, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, //
        0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, //
        0x00, 0x00, 0x00, 0x00,
    ];

    #[test]
    fn parses_edit() {
        let p = MaskPacket::new_checked(&EDIT[..]).unwrap();
        let r = MaskRepr::parse(&p).unwrap();
        assert_eq!(
            r,
            MaskRepr {
                command: MaskCommand::Edit,
                error: None,
                dir_count: 2
            }
        );
        assert_eq!(
            p.directive(0),
            Some(Directive {
                command: DirectiveCommand::Add,
                mac: MacAddr([0x52, 0x54, 0, 0x12, 0x34, 0x56])
            })
        );
        assert_eq!(p.directive(1).unwrap().command, DirectiveCommand::Delete);
        assert_eq!(p.directive(2), None);
    }

    #[test]
    fn emit_matches() {
        let p = MaskPacket::new_checked(&EDIT[..]).unwrap();
        let r = MaskRepr::parse(&p).unwrap();
        let mut buf = [0xa5u8; 20];
        let mut out = MaskPacket::new_unchecked(&mut buf[..]);
        r.emit(&mut out);
        for i in 0..usize::from(r.dir_count) {
            out.set_directive(i, &p.directive(i).unwrap());
        }
        assert_eq!(r.buffer_len(), 20);
        assert_eq!(&buf[..], &EDIT[..20]);
    }

    #[test]
    fn dir_count_checked_against_frame() {
        let mut bytes = EDIT;
        bytes[3] = 3; // 3 directives need 28 bytes; 24 present
        let p = MaskPacket::new_checked(&bytes[..]).unwrap();
        assert_eq!(MaskRepr::parse(&p), Err(WireError::BadLength));
        assert_eq!(p.directive(2), None);
        bytes[3] = 255;
        assert_eq!(
            MaskRepr::parse(&MaskPacket::new_unchecked(&bytes[..])),
            Err(WireError::BadLength)
        );
    }

    #[test]
    fn error_codes() {
        for v in 0..=255u8 {
            assert_eq!(MaskError::to_byte(MaskError::from_byte(v)), v);
            assert_eq!(u8::from(MaskCommand::from(v)), v);
            assert_eq!(u8::from(DirectiveCommand::from(v)), v);
        }
    }

    #[test]
    fn truncated_prefixes_rejected() {
        for len in 0..20 {
            let p = MaskPacket::new_unchecked(&EDIT[..len]);
            assert!(MaskRepr::parse(&p).is_err(), "{len}");
            if len < ARG_LEN {
                assert_eq!(
                    MaskPacket::new_checked(&EDIT[..len]).unwrap_err(),
                    WireError::Truncated
                );
            }
        }
    }
}
