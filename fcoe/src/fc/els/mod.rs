//! Extended link services (FC-LS-3): the ELS requests we answer, by family, and the ports
//! that send them without a login.
//!
//! - `login`: FLOGI, PLOGI (received, and the one we originate in VN2VN), LOGO.
//! - `prli`: PRLI and PRLO, the FCP image pair (FCP-4).
//! - `service`: ADISC, RTV, ECHO and RRQ, answered within a login.
//! - `reply`: how replies and our own requests leave, and the one LS_RJT helper.
//!
//! Anything else (REC, RLS, SRR...) gets LS_RJT "command not supported".
//! ELS replies leave RX_ID 0xFFFF (libfc and iPXE do).

mod login;
mod prli;
mod reply;
mod service;

use std::time::Duration;

use l2san_common::io::Transmit;

use super::session::Personality;
use super::{FcPort, RxContext};
use crate::wire::els::{ElsCommand, ElsPacket, LoginRepr, LogoRepr};
use crate::wire::fc::FcHeaderRepr;
pub(crate) use reply::Path;
use reply::{originate_els, Refusal, Request};

/// At most one LOGO per stranger per this long.
const STRANGER_LOGO_EVERY: Duration = Duration::from_secs(1);
/// How many strangers' LOGO times we remember.
const MAX_LOGO_SENT: usize = 256;

impl FcPort {
    /// One ELS request, plain FCoE or FIP-encapsulated (`path`).
    pub(super) fn els_request(
        &mut self,
        tx: &mut dyn Transmit,
        rx: &RxContext,
        hdr: &FcHeaderRepr,
        payload: &[u8],
        path: Path,
    ) {
        self.stats.els_requests += 1;
        let Ok(els) = ElsPacket::new_checked(payload) else {
            self.stats.drop_truncated += 1;
            return;
        };
        let req = Request { rx, hdr, path };
        let key = rx.key(hdr.s_id);
        let logged_in = self.sessions.get(&key).is_some_and(|s| s.plogi);
        match els.command() {
            ElsCommand::Flogi | ElsCommand::Plogi => match LoginRepr::parse(&els) {
                Ok(login) if els.command() == ElsCommand::Flogi => self.flogi(tx, req, &login),
                Ok(login) => self.plogi(tx, req, &login),
                Err(_) => self.ls_rjt(tx, req, Refusal::BadPayload),
            },
            ElsCommand::Logo => self.logo(tx, req, &els),
            _ if !logged_in => self.reject_stranger(tx, rx, hdr),
            ElsCommand::Prli => self.prli(tx, req, &els),
            ElsCommand::Prlo => self.prlo(tx, req, &els),
            ElsCommand::Adisc => self.adisc(tx, req),
            ElsCommand::Rtv => self.rtv(tx, req),
            ElsCommand::Rrq => self.rrq(tx, req, &els),
            ElsCommand::Echo => self.echo(tx, req, &els),
            _ => self.ls_rjt(tx, req, Refusal::NotSupported),
        }
    }

    /// LS_RJT "PLOGI required": the answer to ELS and FCP from ports without a login
    /// (libfc answers strangers this way).
    pub(crate) fn reject_stranger(
        &mut self,
        tx: &mut dyn Transmit,
        rx: &RxContext,
        hdr: &FcHeaderRepr,
    ) {
        self.stats.drop_no_login += 1;
        let req = Request {
            rx,
            hdr,
            path: Path::Fcoe,
        };
        self.ls_rjt(tx, req, Refusal::PlogiRequired);
        self.logo_stranger(tx, rx, hdr);
    }

    /// A VN2VN port that sends us commands without a login believes in a session we do not
    /// have (l2san restarted under it). Linux ignores an LS_RJT on an FCP exchange and waits
    /// for its 30 s SCSI timeout, LUN reset and host reset (80 s, seen with a 6.1 guest); a
    /// LOGO (FC-LS-3: the answer to a frame from a port that is not logged in) makes it drop
    /// the session and log in again at once. Rate limited per port.
    fn logo_stranger(&mut self, tx: &mut dyn Transmit, rx: &RxContext, hdr: &FcHeaderRepr) {
        if rx.personality != Personality::Vn2Vn {
            return;
        }
        let key = rx.key(hdr.s_id);
        if self
            .logo_sent
            .get(&key)
            .is_some_and(|&t| rx.now.saturating_duration_since(t) < STRANGER_LOGO_EVERY)
        {
            return;
        }
        if self.logo_sent.len() >= MAX_LOGO_SENT {
            self.logo_sent
                .retain(|_, t| rx.now.saturating_duration_since(*t) < STRANGER_LOGO_EVERY);
            if self.logo_sent.len() >= MAX_LOGO_SENT {
                return;
            }
        }
        self.logo_sent.insert(key, rx.now);
        let ox_id = self.alloc_xid(&key);
        let seq_id = self.seq_id();
        let logo = LogoRepr {
            n_port_id: hdr.d_id,
            wwpn: self.wwpn,
        };
        self.stats.logouts += 1;
        originate_els(
            tx,
            (rx.reply_mac(hdr.s_id), rx.local_mac),
            (hdr.s_id, hdr.d_id),
            (seq_id, ox_id),
            &logo,
        );
    }
}
