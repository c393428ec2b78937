//! An AoE initiator, sans-IO: it builds request frames, allocates their tags, matches response
//! frames to the requests it has outstanding and decodes them, and says which requests are due
//! for retransmission. It never touches a socket or a clock: the caller hands it frames and
//! `now`, and sends the frames it is handed back.
//!
//! - [`request`]: request frames (Query Config, IDENTIFY, READ/WRITE SECTORS (EXT), FLUSH
//!   CACHE (EXT)) built in the caller's buffer, for callers that keep their own state (the load
//!   generator's hot path, tests);
//! - [`response`]: a response frame decoded (config fields; ATA status, error and data);
//! - [`Initiator`]: tags, outstanding requests and retransmission over the two.
//!
//! A response answers an outstanding ATA request when it carries the request's tag, comes from
//! the MAC the request went to, names the same shelf.slot and is addressed to the initiator.
//! Query Config goes to the broadcast MAC and may be answered by any number of targets: its
//! responses are not tracked, only checked to carry one of the initiator's tags (or to be a
//! target's unsolicited broadcast advert).

pub mod request;
pub mod response;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use l2san_common::MacAddr;

pub use crate::ata::identify::IdentifyInfo;
use crate::wire::config::ConfigRepr;
use crate::wire::header::{Command, ErrorCode, MAJOR_BROADCAST, MINOR_BROADCAST};
pub use request::{reissue, AtaRequest, Body, Request, ARG_OFFSET, ATA_DATA_OFFSET};
pub use response::{AtaReply, Response, ResponseBody};

/// One export: the MAC it answers from and its shelf.slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Target {
    pub mac: MacAddr,
    pub major: u16,
    pub minor: u8,
}

/// The tags of one initiator: a fixed high half and a 16-bit counter below it.
///
/// aoetools and `l2san probe` set bit 31 so that a Linux `aoe` driver on the same host, which
/// sees every AoE frame, takes the answers for none of its own (its tags keep bit 31 clear).
#[derive(Debug, Clone)]
pub struct Tags {
    high: u32,
    first: u16,
    next: u16,
}

impl Tags {
    /// Tags `high | n`, `n` counting from `first` to 0xffff and round again from `first`.
    /// The low 16 bits of `high` are ignored.
    pub fn new(high: u32, first: u16) -> Tags {
        Tags {
            high: high & 0xffff_0000,
            first,
            next: first,
        }
    }

    /// The next tag; counting on.
    pub fn take(&mut self) -> u32 {
        let tag = self.high | u32::from(self.next);
        self.next = self.next.checked_add(1).unwrap_or(self.first);
        tag
    }

    /// Whether `tag` is one of these.
    pub fn owns(&self, tag: u32) -> bool {
        tag & 0xffff_0000 == self.high
    }
}

/// When an unanswered ATA request is sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// Time since the last send after which it is sent again.
    pub after: Duration,
    /// Sends in all, the first included.
    pub tries: u32,
}

/// Why an ATA request has no result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AtaRefused {
    /// The target set the E flag with this AoE error.
    Aoe(ErrorCode),
    /// The response's ATA argument was cut short.
    Truncated,
}

/// What a received frame meant to the initiator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event<'a> {
    /// A target's config: the answer to a Query Config of ours, or its broadcast advert.
    Config {
        target: Target,
        tag: u32,
        config: ConfigRepr<'a>,
    },
    /// The answer to an outstanding ATA request, which is no longer outstanding.
    Ata {
        target: Target,
        tag: u32,
        request: AtaRequest,
        reply: Result<AtaReply<'a>, AtaRefused>,
    },
}

struct Outstanding {
    target: Target,
    request: AtaRequest,
    data: Vec<u8>,
    sent: Instant,
    tries: u32,
}

/// An initiator at one MAC.
pub struct Initiator {
    mac: MacAddr,
    tags: Tags,
    retry: Option<Retry>,
    outstanding: BTreeMap<u32, Outstanding>,
}

impl Initiator {
    /// Requests go out from `mac` with tags from `tags`; unanswered ATA requests are sent
    /// again as `retry` says (never when `None`).
    pub fn new(mac: MacAddr, tags: Tags, retry: Option<Retry>) -> Initiator {
        Initiator {
            mac,
            tags,
            retry,
            outstanding: BTreeMap::new(),
        }
    }

    pub fn mac(&self) -> MacAddr {
        self.mac
    }

    /// A Query Config (read) to the broadcast MAC for `major`.`minor` (0xffff and 0xff are
    /// every shelf and every slot); returns its tag.
    pub fn query_config(&mut self, major: u16, minor: u8, out: &mut Vec<Vec<u8>>) -> u32 {
        let tag = self.tags.take();
        out.push(
            Request {
                dst: MacAddr::BROADCAST,
                src: self.mac,
                major,
                minor,
                tag,
                body: Body::QueryConfig,
            }
            .to_frame(&[]),
        );
        tag
    }

    /// An ATA request to `target`, with a write's `data`; outstanding until answered or
    /// [`cancel`](Self::cancel)led. Returns its tag.
    pub fn ata(
        &mut self,
        target: Target,
        request: AtaRequest,
        data: &[u8],
        now: Instant,
        out: &mut Vec<Vec<u8>>,
    ) -> u32 {
        let tag = self.tags.take();
        let o = Outstanding {
            target,
            request,
            data: data.to_vec(),
            sent: now,
            tries: 1,
        };
        out.push(self.frame(tag, &o));
        self.outstanding.insert(tag, o);
        tag
    }

    fn frame(&self, tag: u32, o: &Outstanding) -> Vec<u8> {
        Request {
            dst: o.target.mac,
            src: self.mac,
            major: o.target.major,
            minor: o.target.minor,
            tag,
            body: Body::Ata(o.request),
        }
        .to_frame(&o.data)
    }

    /// Forget an outstanding request: a late answer to it is ignored.
    pub fn cancel(&mut self, tag: u32) {
        self.outstanding.remove(&tag);
    }

    /// How many ATA requests are unanswered.
    pub fn outstanding(&self) -> usize {
        self.outstanding.len()
    }

    /// Send again what is due; returns how many were sent. A request that has had all its
    /// tries stays outstanding (a late answer still counts) until answered or cancelled.
    pub fn poll(&mut self, now: Instant, out: &mut Vec<Vec<u8>>) -> usize {
        let Some(retry) = self.retry else {
            return 0;
        };
        let due: Vec<u32> = self
            .outstanding
            .iter()
            .filter(|(_, o)| o.tries < retry.tries && now >= o.sent + retry.after)
            .map(|(&tag, _)| tag)
            .collect();
        for &tag in &due {
            if let Some(o) = self.outstanding.get(&tag) {
                let f = self.frame(tag, o);
                out.push(f);
            }
            if let Some(o) = self.outstanding.get_mut(&tag) {
                o.sent = now;
                o.tries += 1;
            }
        }
        due.len()
    }

    /// When [`poll`](Self::poll) next has something to send.
    pub fn next_wakeup(&self) -> Option<Instant> {
        let retry = self.retry?;
        self.outstanding
            .values()
            .filter(|o| o.tries < retry.tries)
            .map(|o| o.sent + retry.after)
            .min()
    }

    /// One received frame: what it means to us, or `None` when it is none of ours.
    pub fn on_frame<'a>(&mut self, frame: &'a [u8]) -> Option<Event<'a>> {
        let r = Response::parse(frame)?;
        if r.src == self.mac {
            return None;
        }
        let h = r.header;
        let target = Target {
            mac: r.src,
            major: h.major,
            minor: h.minor,
        };
        match h.command {
            Command::QueryConfig => {
                // Ours, or a target's unsolicited broadcast advert (sent when it starts).
                let ours = r.dst == self.mac && self.tags.owns(h.tag);
                if !(ours || r.dst.is_broadcast()) {
                    return None;
                }
                // A response names one shelf.slot.
                if h.major == MAJOR_BROADCAST || h.minor == MINOR_BROADCAST {
                    return None;
                }
                let ResponseBody::Config(config) = r.body else {
                    return None;
                };
                Some(Event::Config {
                    target,
                    tag: h.tag,
                    config,
                })
            }
            Command::IssueAta => {
                if r.dst != self.mac {
                    return None;
                }
                if self.outstanding.get(&h.tag)?.target != target {
                    return None;
                }
                let reply = match r.body {
                    ResponseBody::Ata(a) => Ok(a),
                    ResponseBody::Error(e) => Err(AtaRefused::Aoe(e)),
                    _ => Err(AtaRefused::Truncated),
                };
                let o = self.outstanding.remove(&h.tag)?;
                Some(Event::Ata {
                    target,
                    tag: h.tag,
                    request: o.request,
                    reply,
                })
            }
            _ => None,
        }
    }
}
