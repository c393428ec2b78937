//! The AoE side of the load generator: discovery (Query Config, then IDENTIFY for the
//! capacity), and building requests and parsing replies in preallocated frames.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use l2san_aoe::wire::ata::{self, AtaFlags, AtaPacket, AtaRepr};
use l2san_aoe::wire::config::{ConfigCommand, ConfigPacket};
use l2san_aoe::wire::header::{Command, HeaderPacket, HeaderRepr, HEADER_LEN, VERSION};
use l2san_aoe::wire::{ETHERTYPE, ETH_HEADER_LEN};
use l2san_common::ether::{emit_header, MIN_FRAME_LEN};
use l2san_common::io::{FrameRx, FrameTx};
use l2san_common::{EtherType, MacAddr};

use super::{client_mac, client_of, Event, Io, Protocol, Reply, Send, Session};

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

/// An AoE target `e<major>.<minor>` at a known MAC, and the clients that load it.
#[derive(Debug, Clone, Copy)]
pub struct Aoe {
    pub target: MacAddr,
    pub major: u16,
    pub minor: u8,
    /// Client `i` sends from [`client_mac`]`(mac_base, i)`.
    pub mac_base: MacAddr,
    pub clients: u32,
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
    fn area_len(&self, write_sectors: u8) -> usize {
        (DATA_OFFSET + write_sectors as usize * 512).max(MIN_FRAME_LEN)
    }

    fn prepare(&self, area: &mut [u8], client: u32) {
        area.fill(0);
        emit_header(
            area,
            self.target,
            client_mac(self.mac_base, client),
            EtherType::Aoe,
        );
        self.header(area, Command::IssueAta, 0);
    }

    fn write_data(&self, area: &mut [u8], sectors: u8, fill: &mut dyn FnMut(u64, &mut [u8])) {
        fill(
            0,
            &mut area[DATA_OFFSET..DATA_OFFSET + sectors as usize * 512],
        );
    }

    fn build(&self, area: &mut [u8], io: &Io, send: &mut Send<'_>) {
        HeaderPacket::new_unchecked(&mut area[ETH_HEADER_LEN..]).set_tag(io.tag);
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
        arg.emit(&mut AtaPacket::new_unchecked(&mut area[ARG_OFFSET..]));
        let data = if io.write {
            io.sectors as usize * 512
        } else {
            0
        };
        send(0, (DATA_OFFSET + data).max(MIN_FRAME_LEN));
    }

    fn parse<'a>(&self, frame: &'a [u8]) -> Option<Reply<'a>> {
        let (client, tag, ok, data) = self.reply(frame)?;
        Some(Reply {
            client: client_of(self.mac_base, self.clients, &client)?,
            tag,
            event: Event::Done { ok, data },
        })
    }
}

impl Aoe {
    /// An ATA response of our target: (destination MAC, tag, success, data after the
    /// argument).
    fn reply<'a>(&self, frame: &'a [u8]) -> Option<([u8; 6], u32, bool, &'a [u8])> {
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
        Some((client, h.tag(), ok, &frame[DATA_OFFSET..]))
    }
}

/// Find `e<major>.<minor>` with a broadcast Query Config from the first client, then read its
/// capacity with IDENTIFY. Tries a few times, `timeout` each. The result drives `clients`
/// clients from `mac_base` on.
pub fn discover(
    rx: &mut dyn FrameRx,
    tx: &mut dyn FrameTx,
    mac_base: MacAddr,
    clients: u32,
    major: u16,
    minor: u8,
    timeout: Duration,
) -> Result<(Aoe, Session)> {
    let client = client_mac(mac_base, 0);
    let probe = Aoe {
        target: MacAddr::BROADCAST,
        major,
        minor,
        mac_base,
        clients,
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
        found = super::await_frame(rx, timeout, |f| {
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
    let aoe = Aoe { target, ..probe };

    let mut id = vec![0u8; MIN_FRAME_LEN];
    aoe.prepare(&mut id, 0);
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
        ident = super::await_frame(rx, timeout, |f| {
            let (to, tag, ok, data) = aoe.reply(f)?;
            (to == client.0 && tag == SETUP_TAG | 1).then(|| (ok, data.to_vec()))
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
    // AoEr11: 0 means 2, for backward compatibility.
    let max_sectors = if sector_count == 0 { 2 } else { sector_count };
    Ok((
        aoe,
        Session {
            capacity,
            max_sectors,
            summary: format!(
                "e{major}.{minor} at {target} ({} MiB, {max_sectors} sectors/request max, \
                 buffer count {buffer_count}, firmware {firmware:#06x})",
                capacity / 2048
            ),
            queue_limit: Some(buffer_count as u32),
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
            mac_base: MacAddr([2, 0, 0, 0, 0, 0]),
            clients: 1,
        };
        let client = MacAddr([2, 0, 0, 0, 0, 1]);
        let mut f = vec![0u8; aoe.area_len(2)];
        aoe.prepare(&mut f, 0);
        let io = Io {
            tag: 0x1234_0007,
            lba: 0x0102_0304_0506,
            sectors: 2,
            write: true,
        };
        let mut len = 0;
        aoe.build(&mut f, &io, &mut |start, l| {
            assert_eq!(start, 0);
            len = l
        });
        assert_eq!(len, 36 + 1024);
        assert_eq!(&f[..6], &aoe.target.0);
        assert_eq!(&f[24..36], &[0x41, 0, 2, 0x34, 6, 5, 4, 3, 2, 1, 0, 0]);
        // Turn it into a response as a target would.
        let mut r = f[..len].to_vec();
        r[..6].copy_from_slice(&client.0);
        r[14] |= 0x08;
        r[27] = 0x40;
        let p = aoe.parse(&r).unwrap();
        assert_eq!((p.client, p.tag), (0, 0x1234_0007));
        assert!(matches!(p.event, Event::Done { ok: true, data } if data.len() == 1024));
        r[27] = 0x41;
        assert!(matches!(
            aoe.parse(&r).unwrap().event,
            Event::Done { ok: false, .. }
        ));
        r[5] = 2;
        assert!(aoe.parse(&r).is_none(), "a reply to another client's MAC");
        assert_eq!(parse_target("e3.1").unwrap(), (3, 1));
        assert!(parse_target("e65535.0").is_err());
    }
}
