//! The AoE side of the load generator: discovery (Query Config, then IDENTIFY for the
//! capacity), and building requests and parsing replies in preallocated frames.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use l2san_aoe::wire::ata::{self, AtaFlags, AtaPacket, AtaRepr};
use l2san_aoe::wire::config::{ConfigCommand, ConfigPacket};
use l2san_aoe::wire::header::{Command, HeaderPacket, HeaderRepr, HEADER_LEN, VERSION};
use l2san_aoe::wire::{ETHERTYPE, ETH_HEADER_LEN};
use l2san_common::ether::{emit_header, MIN_FRAME_LEN};
use l2san_common::io::{FrameRx, FrameTx};
use l2san_common::{EtherType, MacAddr};

use super::{Io, Protocol, Reply, Session};

const ATA_READ_EXT: u8 = 0x24;
const ATA_WRITE_EXT: u8 = 0x34;
const ATA_IDENTIFY: u8 = 0xec;
/// BSY | DF | DRQ | ERR: the status bits on which Linux fails a request.
const ATA_STATUS_BAD: u8 = 0xa9;
/// Offset of the ATA argument in a whole frame, and of the data after it.
const ARG_OFFSET: usize = ETH_HEADER_LEN + HEADER_LEN;
const DATA_OFFSET: usize = ARG_OFFSET + ata::ARG_LEN;
/// Tags of discovery requests: bit 31 set, like the aoetools, so that they never collide
/// with the engine's (which keep bit 31 clear).
const SETUP_TAG: u32 = 0x8000_0000;

/// An AoE target `e<major>.<minor>` at a known MAC.
#[derive(Debug, Clone, Copy)]
pub struct Aoe {
    pub target: MacAddr,
    pub major: u16,
    pub minor: u8,
}

/// Parse `e<shelf>.<slot>` (the `e` is optional).
pub fn parse_target(s: &str) -> Result<(u16, u8)> {
    let t = s.strip_prefix('e').unwrap_or(s);
    let (a, b) = t
        .split_once('.')
        .with_context(|| format!("'{s}' is not e<shelf>.<slot>, e.g. e0.0"))?;
    let major: u16 = a.parse().with_context(|| format!("bad shelf in '{s}'"))?;
    let minor: u8 = b.parse().with_context(|| format!("bad slot in '{s}'"))?;
    if major == 0xffff || minor == 0xff {
        bail!("'{s}' is a broadcast address; name one target");
    }
    Ok((major, minor))
}

impl Aoe {
    fn header(&self, frame: &mut [u8], command: Command, tag: u32) {
        let h = HeaderRepr {
            version: VERSION,
            response: false,
            error: None,
            major: self.major,
            minor: self.minor,
            command,
            tag,
        };
        h.emit(&mut HeaderPacket::new_unchecked(
            &mut frame[ETH_HEADER_LEN..],
        ));
    }
}

impl Protocol for Aoe {
    fn request_capacity(&self, max_write_sectors: u8) -> usize {
        (DATA_OFFSET + max_write_sectors as usize * 512).max(MIN_FRAME_LEN)
    }

    fn prepare(&self, frame: &mut [u8], client: MacAddr) {
        frame.fill(0);
        emit_header(frame, self.target, client, EtherType::Aoe);
        self.header(frame, Command::IssueAta, 0);
    }

    fn build(&self, frame: &mut [u8], io: &Io) -> usize {
        HeaderPacket::new_unchecked(&mut frame[ETH_HEADER_LEN..]).set_tag(io.tag);
        let arg = AtaRepr {
            aflags: AtaFlags(AtaFlags::EXTENDED | if io.write { AtaFlags::WRITE } else { 0 }),
            err_feature: 0,
            sector_count: io.sectors,
            cmd_status: if io.write {
                ATA_WRITE_EXT
            } else {
                ATA_READ_EXT
            },
            lba: io.lba,
        };
        arg.emit(&mut AtaPacket::new_unchecked(&mut frame[ARG_OFFSET..]));
        let data = if io.write {
            io.sectors as usize * 512
        } else {
            0
        };
        (DATA_OFFSET + data).max(MIN_FRAME_LEN)
    }

    fn write_data<'a>(&self, frame: &'a mut [u8], sectors: u8) -> &'a mut [u8] {
        &mut frame[DATA_OFFSET..DATA_OFFSET + sectors as usize * 512]
    }

    fn parse<'a>(&self, frame: &'a [u8]) -> Option<Reply<'a>> {
        if frame.len() < DATA_OFFSET || frame[12..14] != ETHERTYPE.to_be_bytes() {
            return None;
        }
        let h = HeaderPacket::new_unchecked(&frame[ETH_HEADER_LEN..]);
        if !h.response()
            || h.major() != self.major
            || h.minor() != self.minor
            || h.command() != Command::IssueAta
        {
            return None;
        }
        let a = AtaPacket::new_unchecked(h.payload());
        let ok = !h.error_flag() && a.cmd_status() & ATA_STATUS_BAD == 0;
        let mut client = [0u8; 6];
        client.copy_from_slice(&frame[..6]);
        Some(Reply {
            client,
            tag: h.tag(),
            ok,
            data: &frame[DATA_OFFSET..],
        })
    }
}

/// Wait up to `timeout` for a frame `pick` accepts; returns what it made of it.
fn await_reply<T>(
    rx: &mut dyn FrameRx,
    timeout: Duration,
    mut pick: impl FnMut(&[u8]) -> Option<T>,
) -> Result<Option<T>> {
    let deadline = Instant::now() + timeout;
    let mut found = None;
    while found.is_none() {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        rx.recv_batch(
            (deadline - now).min(Duration::from_millis(50)),
            64,
            &mut |f| {
                if found.is_none() {
                    found = pick(f);
                }
            },
        )?;
    }
    Ok(found)
}

/// Find `e<major>.<minor>` with a broadcast Query Config from `client`, then read its capacity
/// with IDENTIFY. Tries a few times, `timeout` each.
pub fn discover(
    rx: &mut dyn FrameRx,
    tx: &mut dyn FrameTx,
    client: MacAddr,
    major: u16,
    minor: u8,
    timeout: Duration,
) -> Result<(Aoe, Session)> {
    let probe = Aoe {
        target: MacAddr::BROADCAST,
        major,
        minor,
    };
    let mut q = vec![0u8; MIN_FRAME_LEN];
    emit_header(&mut q, MacAddr::BROADCAST, client, EtherType::Aoe);
    probe.header(&mut q, Command::QueryConfig, SETUP_TAG);
    {
        let mut c = ConfigPacket::new_unchecked(&mut q[ARG_OFFSET..]);
        c.set_version_command(0, ConfigCommand::Read);
    }
    let mut found = None;
    for _ in 0..3 {
        tx.send_frames(&[&q])?;
        found = await_reply(rx, timeout, |f| {
            if f.len() < ARG_OFFSET + 8 || f[..6] != client.0 {
                return None;
            }
            let h = HeaderPacket::new_unchecked(&f[ETH_HEADER_LEN..]);
            if !h.response()
                || h.error_flag()
                || h.command() != Command::QueryConfig
                || h.major() != major
                || h.minor() != minor
            {
                return None;
            }
            let c = ConfigPacket::new_unchecked(h.payload());
            Some((
                MacAddr::from_bytes(&f[6..12]),
                c.buffer_count(),
                c.sector_count(),
                c.firmware_version(),
            ))
        })?;
        if found.is_some() {
            break;
        }
    }
    let Some((target, buffer_count, sector_count, firmware)) = found else {
        bail!("no answer to Query Config for e{major}.{minor}: is the target serving on this segment?");
    };
    let aoe = Aoe {
        target,
        major,
        minor,
    };

    let mut id = vec![0u8; MIN_FRAME_LEN];
    aoe.prepare(&mut id, client);
    aoe.header(&mut id, Command::IssueAta, SETUP_TAG | 1);
    AtaRepr {
        aflags: AtaFlags(0),
        err_feature: 0,
        sector_count: 1,
        cmd_status: ATA_IDENTIFY,
        lba: 0,
    }
    .emit(&mut AtaPacket::new_unchecked(&mut id[ARG_OFFSET..]));
    let mut ident = None;
    for _ in 0..3 {
        tx.send_frames(&[&id])?;
        ident = await_reply(rx, timeout, |f| {
            let r = aoe.parse(f)?;
            (r.client == client.0 && r.tag == SETUP_TAG | 1).then(|| (r.ok, r.data.to_vec()))
        })?;
        if ident.is_some() {
            break;
        }
    }
    let Some((ok, data)) = ident else {
        bail!("e{major}.{minor} at {target} answered Query Config but not IDENTIFY");
    };
    if !ok || data.len() < 512 {
        bail!(
            "IDENTIFY failed on e{major}.{minor} ({} data bytes)",
            data.len()
        );
    }
    let word = |w: usize| u16::from_le_bytes([data[2 * w], data[2 * w + 1]]) as u64;
    let lba48 = word(83) & (1 << 10) != 0 || word(86) & (1 << 10) != 0;
    let capacity = if lba48 {
        word(100) | word(101) << 16 | word(102) << 32 | word(103) << 48
    } else {
        word(60) | word(61) << 16
    };
    Ok((
        aoe,
        Session {
            target,
            capacity,
            // AoEr11: 0 means 2, for backward compatibility.
            max_sectors: if sector_count == 0 { 2 } else { sector_count },
            buffer_count,
            firmware,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_and_parses_round_trip() {
        let aoe = Aoe {
            target: MacAddr([2, 0, 0, 0, 0, 0xaa]),
            major: 3,
            minor: 1,
        };
        let client = MacAddr([2, 0, 0, 0, 0, 1]);
        let mut f = vec![0u8; aoe.request_capacity(2)];
        aoe.prepare(&mut f, client);
        let io = Io {
            tag: 0x1234_0007,
            lba: 0x0102_0304_0506,
            sectors: 2,
            write: true,
        };
        let len = aoe.build(&mut f, &io);
        assert_eq!(len, 36 + 1024);
        assert_eq!(&f[..6], &aoe.target.0);
        assert_eq!(&f[24..36], &[0x41, 0, 2, 0x34, 6, 5, 4, 3, 2, 1, 0, 0]);
        // Turn it into a response as a target would.
        let mut r = f[..len].to_vec();
        r[..6].copy_from_slice(&client.0);
        r[14] |= 0x08;
        r[27] = 0x40;
        let p = aoe.parse(&r).unwrap();
        assert_eq!((p.client, p.tag, p.ok), (client.0, 0x1234_0007, true));
        r[27] = 0x41;
        assert!(!aoe.parse(&r).unwrap().ok);
        assert_eq!(parse_target("e3.1").unwrap(), (3, 1));
        assert!(parse_target("e65535.0").is_err());
    }
}
