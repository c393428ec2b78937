//! The AoE side of the load generator: discovery (Query Config, then IDENTIFY for the
//! capacity) through [`l2san_aoe::initiator`], and requests reissued and replies decoded in
//! preallocated frames by the same initiator's request and response code.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use l2san_aoe::initiator::{
    reissue, AtaRefused, AtaRequest, Body, Event as AoeEvent, Initiator, Request, Response,
    ResponseBody, Tags, Target, ATA_DATA_OFFSET,
};
use l2san_aoe::wire::Command;
use l2san_common::ether::MIN_FRAME_LEN;
use l2san_common::io::{FrameRx, FrameTx};
use l2san_common::MacAddr;

use super::{client_mac, client_of, Event, Io, Protocol, Reply, Send, Session};

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

/// The engine's request for `io`.
fn ata_request(io: &Io) -> AtaRequest {
    if io.write {
        AtaRequest::Write {
            lba: io.lba,
            sector_count: io.sectors,
            lba48: true,
        }
    } else {
        AtaRequest::Read {
            lba: io.lba,
            sector_count: io.sectors,
            lba48: true,
        }
    }
}

impl Protocol for Aoe {
    fn area_len(&self, write_sectors: u8) -> usize {
        (ATA_DATA_OFFSET + write_sectors as usize * 512).max(MIN_FRAME_LEN)
    }

    fn prepare(&self, area: &mut [u8], client: u32) {
        area.fill(0);
        // The addresses; `build` writes the tag and the argument of each request.
        Request {
            dst: self.target,
            src: client_mac(self.mac_base, client),
            major: self.major,
            minor: self.minor,
            tag: 0,
            body: Body::Ata(AtaRequest::Identify),
        }
        .emit(area);
    }

    fn write_data(&self, area: &mut [u8], sectors: u8, fill: &mut dyn FnMut(u64, &mut [u8])) {
        fill(
            0,
            &mut area[ATA_DATA_OFFSET..ATA_DATA_OFFSET + sectors as usize * 512],
        );
    }

    fn build(&self, area: &mut [u8], io: &Io, send: &mut Send<'_>) {
        let len = reissue(area, io.tag, ata_request(io));
        send(0, len);
    }

    fn parse<'a>(&self, frame: &'a [u8]) -> Option<Reply<'a>> {
        let r = Response::parse(frame)?;
        let h = r.header;
        if h.major != self.major || h.minor != self.minor || h.command != Command::IssueAta {
            return None;
        }
        let (ok, data) = match r.body {
            ResponseBody::Ata(a) => (!a.failed(), a.data),
            ResponseBody::Error(_) => (false, frame.get(ATA_DATA_OFFSET..)?),
            _ => return None,
        };
        Some(Reply {
            client: client_of(self.mac_base, self.clients, &r.dst.0)?,
            tag: h.tag,
            event: Event::Done { ok, data },
        })
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
    let mut initiator = Initiator::new(client_mac(mac_base, 0), Tags::new(SETUP_TAG, 0), None);
    let mut out = Vec::new();
    initiator.query_config(major, minor, &mut out);
    let mut found = None;
    for _ in 0..3 {
        tx.send_frames(&[&out[0]])?;
        found = super::await_frame(rx, timeout, |f| match initiator.on_frame(f)? {
            AoeEvent::Config { target, config, .. }
                if target.major == major && target.minor == minor =>
            {
                Some((
                    target.mac,
                    config.buffer_count,
                    config.sector_count,
                    config.firmware_version,
                ))
            }
            _ => None,
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
        mac_base,
        clients,
    };

    // Sent again by hand below, the same frame each time.
    out.clear();
    let export = Target {
        mac: target,
        major,
        minor,
    };
    initiator.ata(
        export,
        AtaRequest::Identify,
        &[],
        std::time::Instant::now(),
        &mut out,
    );
    let mut ident = None;
    for _ in 0..3 {
        tx.send_frames(&[&out[0]])?;
        ident = super::await_frame(rx, timeout, |f| match initiator.on_frame(f)? {
            // The identity, or how many data bytes came back.
            AoeEvent::Ata { reply, .. } => Some(match reply {
                Ok(a) if !a.failed() => a.identify().ok_or(a.data.len()),
                Ok(a) => Err(a.data.len()),
                Err(AtaRefused::Aoe(_) | AtaRefused::Truncated) => {
                    Err(f.len().saturating_sub(ATA_DATA_OFFSET))
                }
            }),
            _ => None,
        })?;
        if ident.is_some() {
            break;
        }
    }
    let Some(ident) = ident else {
        bail!("e{major}.{minor} at {target} answered Query Config but not IDENTIFY");
    };
    let capacity = match ident {
        Ok(info) => info.sectors,
        Err(len) => bail!("IDENTIFY failed on e{major}.{minor} ({len} data bytes)"),
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
