//! Responses as an initiator reads them: a whole Ethernet frame in, the addresses, the header
//! and the decoded argument out. Stateless: which request a response answers is
//! [`Initiator`](super::Initiator)'s business.

use l2san_common::ether::EthernetFrame;
use l2san_common::{EtherType, MacAddr};

use crate::ata::identify::{self, IdentifyInfo};
use crate::ata::status;
use crate::wire::ata::AtaPacket;
use crate::wire::config::{ConfigPacket, ConfigRepr};
use crate::wire::header::{Command, ErrorCode, HeaderPacket, HeaderRepr};

/// The result of an Issue ATA Command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AtaReply<'a> {
    /// The ATA Status register.
    pub status: u8,
    /// The ATA Error register.
    pub error: u8,
    /// The Sector Count register as the target left it.
    pub sector_count: u8,
    /// The 48 LBA bits as echoed.
    pub lba: u64,
    /// Everything after the argument: a read's sectors, the identify block (padding included).
    pub data: &'a [u8],
}

impl<'a> AtaReply<'a> {
    /// The command failed: BSY, DF, DRQ or ERR set, the bits on which Linux fails a request.
    pub fn failed(&self) -> bool {
        self.status & (status::BSY | status::DF | status::DRQ | status::ERR) != 0
    }

    /// The data as an IDENTIFY DEVICE block; `None` when it is shorter than 512 bytes.
    pub fn identify(&self) -> Option<IdentifyInfo> {
        identify::parse(self.data)
    }
}

/// What a response carries after its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseBody<'a> {
    /// Query Config Information: the target's config.
    Config(ConfigRepr<'a>),
    /// Issue ATA Command: status, error and data.
    Ata(AtaReply<'a>),
    /// The E flag is set: the target refused the request with this error.
    Error(ErrorCode),
    /// The argument of the command is cut short, or its config string overruns the frame.
    Truncated,
    /// Mac Mask List, Reserve/Release, vendor and unknown commands.
    Other,
}

/// One AoE response frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Response<'a> {
    pub dst: MacAddr,
    pub src: MacAddr,
    pub header: HeaderRepr,
    pub body: ResponseBody<'a>,
}

impl<'a> Response<'a> {
    /// `None` unless `frame` is an AoE frame with a whole header and the R flag.
    pub fn parse(frame: &'a [u8]) -> Option<Response<'a>> {
        let eth = EthernetFrame::new_checked(frame).ok()?;
        if eth.ethertype() != EtherType::Aoe {
            return None;
        }
        let payload: &'a [u8] = &frame[l2san_common::ether::HEADER_LEN..];
        let packet = HeaderPacket::new_checked(payload).ok()?;
        let header = HeaderRepr::parse(&packet).ok()?;
        if !header.response {
            return None;
        }
        let arg: &'a [u8] = &payload[crate::wire::header::HEADER_LEN..];
        let body = match (header.error, header.command) {
            (Some(e), _) => ResponseBody::Error(e),
            (None, Command::QueryConfig) => ConfigPacket::new_checked(arg)
                .and_then(|p| ConfigRepr::parse(&p))
                .map_or(ResponseBody::Truncated, ResponseBody::Config),
            (None, Command::IssueAta) => match AtaPacket::new_checked(arg) {
                Ok(p) => ResponseBody::Ata(AtaReply {
                    status: p.cmd_status(),
                    error: p.err_feature(),
                    sector_count: p.sector_count(),
                    lba: p.lba(),
                    data: &arg[crate::wire::ata::ARG_LEN..],
                }),
                Err(_) => ResponseBody::Truncated,
            },
            _ => ResponseBody::Other,
        };
        Some(Response {
            dst: eth.dst(),
            src: eth.src(),
            header,
            body,
        })
    }
}
