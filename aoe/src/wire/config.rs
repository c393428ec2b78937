//! Command 1, Query Config Information (AoEr11 §3.2).
//!
//! Offsets are from the start of the argument (AoE header offset 10, frame offset 24):
//!
//! ```text
//!  offset  size  field
//!  0       2     Buffer Count: messages the server queues; more are dropped
//!  2       2     Firmware Version
//!  4       1     Sector Count: max sectors per ATA command (0 means 2)
//!  5       1     AoE version (high nibble) | CCmd (low nibble)
//!  6       2     Config String Length (<= 1024)
//!  8       ...   Config String
//! ```
//!
//! Linux and iPXE send the request argument all zero, so the version nibble of a request may
//! be 0; nothing here requires it to be 1.

use super::{Result, WireError};

mod field {
    use core::ops::Range;
    pub const BUFFER_COUNT: Range<usize> = 0..2;
    pub const FIRMWARE_VERSION: Range<usize> = 2..4;
    pub const SECTOR_COUNT: usize = 4;
    pub const VER_CCMD: usize = 5;
    pub const STRING_LEN: Range<usize> = 6..8;
    pub const STRING: usize = 8;
}

/// Length of the config argument before the string.
pub const ARG_LEN: usize = field::STRING;
/// Longest config string AoEr11 allows.
pub const MAX_CONFIG_STRING: usize = 1024;

/// The CCmd nibble.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConfigCommand {
    /// Respond with the current config string.
    Read,
    /// Respond only if the string matches exactly.
    Test,
    /// Respond only if the argument is a prefix of the string.
    TestPrefix,
    /// Set the string if it is empty (or equal), else Error 4.
    Set,
    /// Set the string unconditionally.
    ForceSet,
    Unknown(u8),
}

impl From<u8> for ConfigCommand {
    fn from(v: u8) -> ConfigCommand {
        match v {
            0 => ConfigCommand::Read,
            1 => ConfigCommand::Test,
            2 => ConfigCommand::TestPrefix,
            3 => ConfigCommand::Set,
            4 => ConfigCommand::ForceSet,
            _ => ConfigCommand::Unknown(v),
        }
    }
}

impl From<ConfigCommand> for u8 {
    fn from(c: ConfigCommand) -> u8 {
        match c {
            ConfigCommand::Read => 0,
            ConfigCommand::Test => 1,
            ConfigCommand::TestPrefix => 2,
            ConfigCommand::Set => 3,
            ConfigCommand::ForceSet => 4,
            ConfigCommand::Unknown(v) => v,
        }
    }
}

/// A view of the config argument over the AoE header's payload.
#[derive(Debug, Clone)]
pub struct ConfigPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ConfigPacket<T> {
    pub fn new_unchecked(buffer: T) -> Self {
        ConfigPacket { buffer }
    }

    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// Checks the fixed part only; [`Self::config_string`] checks the string.
    pub fn check_len(&self) -> Result<()> {
        super::check_fixed(self.buffer.as_ref(), ARG_LEN)
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn buffer_count(&self) -> u16 {
        let b = &self.buffer.as_ref()[field::BUFFER_COUNT];
        u16::from_be_bytes([b[0], b[1]])
    }
    pub fn firmware_version(&self) -> u16 {
        let b = &self.buffer.as_ref()[field::FIRMWARE_VERSION];
        u16::from_be_bytes([b[0], b[1]])
    }
    pub fn sector_count(&self) -> u8 {
        self.buffer.as_ref()[field::SECTOR_COUNT]
    }
    /// The AoE version nibble (0 in Linux and iPXE requests).
    pub fn aoe_version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_CCMD] >> 4
    }
    pub fn command(&self) -> ConfigCommand {
        ConfigCommand::from(self.buffer.as_ref()[field::VER_CCMD] & 0x0f)
    }
    pub fn string_len(&self) -> u16 {
        let b = &self.buffer.as_ref()[field::STRING_LEN];
        u16::from_be_bytes([b[0], b[1]])
    }
    /// The config string, checked against the bytes the frame actually carries (not its total
    /// length) and against the 1024-byte limit.
    pub fn config_string(&self) -> Result<&[u8]> {
        string_of(self.buffer.as_ref())
    }
}

fn string_of(buffer: &[u8]) -> Result<&[u8]> {
    let len = usize::from(u16::from_be_bytes([
        buffer[field::STRING_LEN.start],
        buffer[field::STRING_LEN.start + 1],
    ]));
    let rest = &buffer[field::STRING..];
    if len > MAX_CONFIG_STRING || len > rest.len() {
        return Err(WireError::BadLength);
    }
    Ok(&rest[..len])
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> ConfigPacket<T> {
    pub fn set_buffer_count(&mut self, v: u16) {
        self.buffer.as_mut()[field::BUFFER_COUNT].copy_from_slice(&v.to_be_bytes());
    }
    pub fn set_firmware_version(&mut self, v: u16) {
        self.buffer.as_mut()[field::FIRMWARE_VERSION].copy_from_slice(&v.to_be_bytes());
    }
    pub fn set_sector_count(&mut self, v: u8) {
        self.buffer.as_mut()[field::SECTOR_COUNT] = v;
    }
    pub fn set_version_command(&mut self, version: u8, command: ConfigCommand) {
        self.buffer.as_mut()[field::VER_CCMD] = (version << 4) | (u8::from(command) & 0x0f);
    }
    pub fn set_string_len(&mut self, v: u16) {
        self.buffer.as_mut()[field::STRING_LEN].copy_from_slice(&v.to_be_bytes());
    }
    pub fn string_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::STRING..]
    }
}

/// The meaning of a config argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfigRepr<'a> {
    pub buffer_count: u16,
    pub firmware_version: u16,
    pub sector_count: u8,
    /// AoE version nibble: 1 in responses, often 0 in requests.
    pub aoe_version: u8,
    pub command: ConfigCommand,
    pub config_string: &'a [u8],
}

impl ConfigRepr<'static> {
    /// A Query Config request with CCmd 0 (read): every field zero, the version nibble
    /// included, as Linux and iPXE send it.
    pub const READ_REQUEST: ConfigRepr<'static> = ConfigRepr {
        buffer_count: 0,
        firmware_version: 0,
        sector_count: 0,
        aoe_version: 0,
        command: ConfigCommand::Read,
        config_string: b"",
    };
}

impl<'a> ConfigRepr<'a> {
    /// `Truncated` if the fixed part is missing, `BadLength` if the string length field names
    /// more than the frame carries or more than 1024 bytes.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &ConfigPacket<&'a T>) -> Result<Self> {
        packet.check_len()?;
        let buffer: &'a [u8] = packet.buffer.as_ref();
        Ok(ConfigRepr {
            buffer_count: packet.buffer_count(),
            firmware_version: packet.firmware_version(),
            sector_count: packet.sector_count(),
            aoe_version: packet.aoe_version(),
            command: packet.command(),
            config_string: string_of(buffer)?,
        })
    }

    pub fn buffer_len(&self) -> usize {
        ARG_LEN + self.config_string.len()
    }

    /// Write [`Self::buffer_len`] bytes. The string must be at most 1024 bytes (callers
    /// enforce it; a longer one is cut to 1024 so that the length field stays truthful).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut ConfigPacket<T>) {
        let s = &self.config_string[..self.config_string.len().min(MAX_CONFIG_STRING)];
        packet.set_buffer_count(self.buffer_count);
        packet.set_firmware_version(self.firmware_version);
        packet.set_sector_count(self.sector_count);
        packet.set_version_command(self.aoe_version, self.command);
        // Cannot truncate: s.len() <= 1024.
        packet.set_string_len(s.len() as u16);
        packet.string_mut()[..s.len()].copy_from_slice(s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::test_frames::{arg, IPXE, LINUX};

    #[test]
    fn parses_ipxe_request_with_zero_version() {
        let bytes = arg(IPXE, 1);
        let p = ConfigPacket::new_checked(&bytes[..]).unwrap();
        let r = ConfigRepr::parse(&p).unwrap();
        assert_eq!(r, ConfigRepr::READ_REQUEST);
        assert_eq!((r.aoe_version, r.command), (0, ConfigCommand::Read));
    }

    #[test]
    fn parses_vblade_response() {
        let bytes = arg(LINUX, 2);
        let p = ConfigPacket::new_checked(&bytes[..]).unwrap();
        let r = ConfigRepr::parse(&p).unwrap();
        assert_eq!(
            (
                r.buffer_count,
                r.firmware_version,
                r.sector_count,
                r.aoe_version
            ),
            (16, 0x4019, 2, 1)
        );
        assert_eq!(r.command, ConfigCommand::Read);
        assert!(r.config_string.is_empty());
    }

    #[test]
    fn emit_matches_capture() {
        for (name, n) in [(IPXE, 1), (IPXE, 2), (LINUX, 1), (LINUX, 2)] {
            let bytes = arg(name, n);
            let p = ConfigPacket::new_checked(&bytes[..]).unwrap();
            let r = ConfigRepr::parse(&p).unwrap();
            let mut buf = [0xa5u8; ARG_LEN];
            r.emit(&mut ConfigPacket::new_unchecked(&mut buf[..]));
            assert_eq!(&buf[..], &bytes[..ARG_LEN], "{name} frame {n}");
        }
    }

    #[test]
    fn string_round_trip_and_padding() {
        let r = ConfigRepr {
            buffer_count: 64,
            firmware_version: 0x4c32,
            sector_count: 17,
            aoe_version: 1,
            command: ConfigCommand::ForceSet,
            config_string: b"boot image",
        };
        let mut buf = [0xa5u8; 40];
        r.emit(&mut ConfigPacket::new_unchecked(&mut buf[..]));
        assert_eq!(&buf[..8], &[0, 64, 0x4c, 0x32, 17, 0x14, 0, 10]);
        // Trailing bytes (padding) after the string are ignored.
        let p = ConfigPacket::new_checked(&buf[..]).unwrap();
        assert_eq!(ConfigRepr::parse(&p).unwrap(), r);
        assert_eq!(r.buffer_len(), 18);
    }

    #[test]
    fn string_length_checked_against_payload_and_limit() {
        let mut buf = [0u8; 8 + 10];
        ConfigPacket::new_unchecked(&mut buf[..]).set_string_len(11);
        let p = ConfigPacket::new_checked(&buf[..]).unwrap();
        assert_eq!(p.config_string(), Err(WireError::BadLength));
        assert_eq!(ConfigRepr::parse(&p), Err(WireError::BadLength));

        let mut big = vec![0u8; 8 + 2000];
        ConfigPacket::new_unchecked(&mut big[..]).set_string_len(1025);
        let p = ConfigPacket::new_checked(&big[..]).unwrap();
        assert_eq!(p.config_string(), Err(WireError::BadLength));
        ConfigPacket::new_unchecked(&mut big[..]).set_string_len(1024);
        let p = ConfigPacket::new_checked(&big[..]).unwrap();
        assert_eq!(p.config_string().unwrap().len(), 1024);
    }

    #[test]
    fn truncated_prefixes_rejected() {
        let bytes = arg(LINUX, 1);
        for len in 0..ARG_LEN {
            assert_eq!(
                ConfigPacket::new_checked(&bytes[..len]).unwrap_err(),
                WireError::Truncated
            );
        }
        // With a string: every prefix that cuts the string is refused too.
        let mut buf = [0u8; 8 + 5];
        {
            let mut p = ConfigPacket::new_unchecked(&mut buf[..]);
            p.set_string_len(5);
            p.string_mut().copy_from_slice(b"hello");
        }
        for len in 0..buf.len() {
            let p = ConfigPacket::new_unchecked(&buf[..len]);
            assert!(ConfigRepr::parse(&p).is_err(), "{len}");
        }
    }
}
