//! The AoE common header (AoEr11 §2, "AoE Header Format").
//!
//! Offsets are from the start of the Ethernet payload (add 14 for the whole frame):
//!
//! ```text
//!  offset  size  field
//!  0       1     Ver (high nibble, = 1) | Flags (low nibble: R 0x08, E 0x04, 0x03 MBZ)
//!  1       1     Error (meaningful only when E is set)
//!  2       2     Major (shelf), big-endian; 0xffff = broadcast
//!  4       1     Minor (slot); 0xff = broadcast
//!  5       1     Command (0 ATA, 1 Config, 2 Mac Mask, 3 Reserve; >= 0xF0 vendor)
//!  6       4     Tag, opaque to the target, echoed unchanged
//!  10      ...   Arg (per command)
//! ```
//!
//! AoEr11 §1: "Reserved fields must be set to zero in all messages sent", so [`HeaderRepr::emit`]
//! writes the MBZ flag bits as zero.

use super::Result;

mod field {
    use core::ops::Range;
    pub const VER_FLAGS: usize = 0;
    pub const ERROR: usize = 1;
    pub const MAJOR: Range<usize> = 2..4;
    pub const MINOR: usize = 4;
    pub const COMMAND: usize = 5;
    pub const TAG: Range<usize> = 6..10;
    pub const ARG: usize = 10;
}

/// Length of the AoE header.
pub const HEADER_LEN: usize = field::ARG;
/// The protocol version this crate speaks and sends.
pub const VERSION: u8 = 1;
/// Flag: this message is a response.
pub const FLAG_RESPONSE: u8 = 0x08;
/// Flag: the Error field is meaningful.
pub const FLAG_ERROR: u8 = 0x04;
/// Major address that every target answers.
pub const MAJOR_BROADCAST: u16 = 0xffff;
/// Minor address that every target answers.
pub const MINOR_BROADCAST: u8 = 0xff;

/// The Command field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Command {
    IssueAta,
    QueryConfig,
    MacMask,
    ReserveRelease,
    /// 0xF0..=0xFF: vendor specific; initiators ignore such responses quietly.
    Vendor(u8),
    Unknown(u8),
}

impl From<u8> for Command {
    fn from(v: u8) -> Command {
        match v {
            0 => Command::IssueAta,
            1 => Command::QueryConfig,
            2 => Command::MacMask,
            3 => Command::ReserveRelease,
            0xf0..=0xff => Command::Vendor(v),
            _ => Command::Unknown(v),
        }
    }
}

impl From<Command> for u8 {
    fn from(c: Command) -> u8 {
        match c {
            Command::IssueAta => 0,
            Command::QueryConfig => 1,
            Command::MacMask => 2,
            Command::ReserveRelease => 3,
            Command::Vendor(v) | Command::Unknown(v) => v,
        }
    }
}

/// The Error field (AoEr11 §2.4), meaningful when the E flag is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    UnrecognizedCommand,
    BadArgument,
    DeviceUnavailable,
    ConfigStringPresent,
    UnsupportedVersion,
    /// AoEr11: the target is reserved by other hosts.
    TargetReserved,
    Unknown(u8),
}

impl From<u8> for ErrorCode {
    fn from(v: u8) -> ErrorCode {
        match v {
            1 => ErrorCode::UnrecognizedCommand,
            2 => ErrorCode::BadArgument,
            3 => ErrorCode::DeviceUnavailable,
            4 => ErrorCode::ConfigStringPresent,
            5 => ErrorCode::UnsupportedVersion,
            6 => ErrorCode::TargetReserved,
            _ => ErrorCode::Unknown(v),
        }
    }
}

impl From<ErrorCode> for u8 {
    fn from(e: ErrorCode) -> u8 {
        match e {
            ErrorCode::UnrecognizedCommand => 1,
            ErrorCode::BadArgument => 2,
            ErrorCode::DeviceUnavailable => 3,
            ErrorCode::ConfigStringPresent => 4,
            ErrorCode::UnsupportedVersion => 5,
            ErrorCode::TargetReserved => 6,
            ErrorCode::Unknown(v) => v,
        }
    }
}

/// A view of the AoE header over the Ethernet payload.
#[derive(Debug, Clone)]
pub struct HeaderPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> HeaderPacket<T> {
    pub fn new_unchecked(buffer: T) -> Self {
        HeaderPacket { buffer }
    }

    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// After this succeeds no accessor panics.
    pub fn check_len(&self) -> Result<()> {
        super::check_fixed(self.buffer.as_ref(), HEADER_LEN)
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_FLAGS] >> 4
    }
    /// The low nibble: R, E and the two MBZ bits.
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::VER_FLAGS] & 0x0f
    }
    pub fn response(&self) -> bool {
        self.flags() & FLAG_RESPONSE != 0
    }
    pub fn error_flag(&self) -> bool {
        self.flags() & FLAG_ERROR != 0
    }
    pub fn error(&self) -> ErrorCode {
        ErrorCode::from(self.buffer.as_ref()[field::ERROR])
    }
    pub fn major(&self) -> u16 {
        let b = &self.buffer.as_ref()[field::MAJOR];
        u16::from_be_bytes([b[0], b[1]])
    }
    pub fn minor(&self) -> u8 {
        self.buffer.as_ref()[field::MINOR]
    }
    pub fn command(&self) -> Command {
        Command::from(self.buffer.as_ref()[field::COMMAND])
    }
    pub fn tag(&self) -> u32 {
        let b = &self.buffer.as_ref()[field::TAG];
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }
    /// Addressed to every shelf or every slot (major 0xffff or minor 0xff).
    pub fn broadcast_addressed(&self) -> bool {
        self.major() == MAJOR_BROADCAST || self.minor() == MINOR_BROADCAST
    }
    /// The argument and everything after it.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::ARG..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> HeaderPacket<T> {
    pub fn set_version_flags(&mut self, version: u8, flags: u8) {
        self.buffer.as_mut()[field::VER_FLAGS] = (version << 4) | (flags & 0x0f);
    }
    pub fn set_error(&mut self, code: u8) {
        self.buffer.as_mut()[field::ERROR] = code;
    }
    pub fn set_major(&mut self, major: u16) {
        self.buffer.as_mut()[field::MAJOR].copy_from_slice(&major.to_be_bytes());
    }
    pub fn set_minor(&mut self, minor: u8) {
        self.buffer.as_mut()[field::MINOR] = minor;
    }
    pub fn set_command(&mut self, command: Command) {
        self.buffer.as_mut()[field::COMMAND] = command.into();
    }
    pub fn set_tag(&mut self, tag: u32) {
        self.buffer.as_mut()[field::TAG].copy_from_slice(&tag.to_be_bytes());
    }
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::ARG..]
    }
}

/// The meaning of an AoE header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderRepr {
    pub version: u8,
    pub response: bool,
    /// `Some` when the E flag is set.
    pub error: Option<ErrorCode>,
    pub major: u16,
    pub minor: u8,
    pub command: Command,
    pub tag: u32,
}

impl HeaderRepr {
    pub fn parse<T: AsRef<[u8]>>(packet: &HeaderPacket<T>) -> Result<HeaderRepr> {
        packet.check_len()?;
        Ok(HeaderRepr {
            version: packet.version(),
            response: packet.response(),
            error: packet.error_flag().then(|| packet.error()),
            major: packet.major(),
            minor: packet.minor(),
            command: packet.command(),
            tag: packet.tag(),
        })
    }

    /// A version-1 request header (no flags, Error zero).
    pub fn request(major: u16, minor: u8, command: Command, tag: u32) -> HeaderRepr {
        HeaderRepr {
            version: VERSION,
            response: false,
            error: None,
            major,
            minor,
            command,
            tag,
        }
    }

    /// A version-1 response header.
    pub fn response(
        major: u16,
        minor: u8,
        command: Command,
        tag: u32,
        error: Option<ErrorCode>,
    ) -> HeaderRepr {
        HeaderRepr {
            version: VERSION,
            response: true,
            error,
            major,
            minor,
            command,
            tag,
        }
    }

    pub fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Write all ten header bytes (MBZ bits zero; Error zero unless E is set).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut HeaderPacket<T>) {
        let mut flags = 0;
        if self.response {
            flags |= FLAG_RESPONSE;
        }
        if self.error.is_some() {
            flags |= FLAG_ERROR;
        }
        packet.set_version_flags(self.version, flags);
        packet.set_error(self.error.map_or(0, u8::from));
        packet.set_major(self.major);
        packet.set_minor(self.minor);
        packet.set_command(self.command);
        packet.set_tag(self.tag);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::test_frames::{aoe, IPXE, LINUX};
    use crate::wire::WireError;

    #[test]
    fn parses_ipxe_query_config() {
        // Frame 1: iPXE's Query Config to the broadcast MAC, addressed to e0.0.
        let bytes = aoe(IPXE, 1);
        let p = HeaderPacket::new_checked(&bytes[..]).unwrap();
        let r = HeaderRepr::parse(&p).unwrap();
        assert_eq!(
            r,
            HeaderRepr {
                version: 1,
                response: false,
                error: None,
                major: 0,
                minor: 0,
                command: Command::QueryConfig,
                tag: 0x18ae_0001,
            }
        );
        assert!(!p.broadcast_addressed());
    }

    #[test]
    fn parses_linux_broadcast_query_and_vblade_response() {
        let bytes = aoe(LINUX, 1);
        let p = HeaderPacket::new_checked(&bytes[..]).unwrap();
        assert_eq!(p.major(), MAJOR_BROADCAST);
        assert_eq!(p.minor(), MINOR_BROADCAST);
        assert!(p.broadcast_addressed());
        assert_eq!(p.tag(), 0);
        let rsp = aoe(LINUX, 2);
        let r = HeaderRepr::parse(&HeaderPacket::new_checked(&rsp[..]).unwrap()).unwrap();
        assert_eq!(r, HeaderRepr::response(0, 0, Command::QueryConfig, 0, None));
    }

    #[test]
    fn emit_matches_capture() {
        for (name, n) in [(IPXE, 1), (IPXE, 2), (IPXE, 6), (LINUX, 1), (LINUX, 4)] {
            let bytes = aoe(name, n);
            let r = HeaderRepr::parse(&HeaderPacket::new_checked(&bytes[..]).unwrap()).unwrap();
            let mut buf = [0xa5u8; HEADER_LEN];
            r.emit(&mut HeaderPacket::new_unchecked(&mut buf[..]));
            assert_eq!(&buf[..], &bytes[..HEADER_LEN], "{name} frame {n}");
            assert_eq!(
                HeaderRepr::parse(&HeaderPacket::new_unchecked(&buf[..])).unwrap(),
                r
            );
        }
    }

    #[test]
    fn error_flag_round_trip() {
        let r = HeaderRepr::response(
            7,
            3,
            Command::IssueAta,
            0xdead_beef,
            Some(ErrorCode::TargetReserved),
        );
        let mut buf = [0xa5u8; HEADER_LEN];
        r.emit(&mut HeaderPacket::new_unchecked(&mut buf[..]));
        assert_eq!(buf, [0x1c, 6, 0, 7, 3, 0, 0xde, 0xad, 0xbe, 0xef]);
        assert_eq!(
            HeaderRepr::parse(&HeaderPacket::new_unchecked(&buf[..])).unwrap(),
            r
        );
    }

    #[test]
    fn truncated_prefixes_rejected() {
        let bytes = aoe(IPXE, 1);
        for len in 0..HEADER_LEN {
            assert_eq!(
                HeaderPacket::new_checked(&bytes[..len]).unwrap_err(),
                WireError::Truncated
            );
        }
    }

    #[test]
    fn codes_round_trip() {
        for v in 0..=255u8 {
            assert_eq!(u8::from(Command::from(v)), v);
            assert_eq!(u8::from(ErrorCode::from(v)), v);
        }
        assert_eq!(Command::from(0xf0), Command::Vendor(0xf0));
        assert_eq!(Command::from(0xef), Command::Unknown(0xef));
    }
}
