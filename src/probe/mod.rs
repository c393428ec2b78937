//! `l2san probe`: list every AoE target and FCoE VN2VN port on the segment, from user space
//! (no `aoe` or `fcoe` kernel module), and flag the conflicts an operator must fix.
//!
//! This module is the driver: it opens the packet socket, feeds [`Discovery`] (`discovery`:
//! the probe without sockets, both initiators, the conflicts) until the timeout, prints the
//! [`Report`](report::Report) (`report`) as a table (`text`) or as JSON (`json`), and makes
//! conflicts the exit code.

mod discovery;
mod json;
mod report;
mod text;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use l2san_common::io::sys::packet;
use l2san_common::{EtherType, FrameRx, FrameTx, Interface};

use crate::cli::ProbeArgs;
use crate::Error;
use discovery::{Discovery, ProbeConfig};

/// Exit code when the probe found conflicting answers.
pub const EXIT_DUPLICATES: u8 = 3;

fn send(tx: &mut impl FrameTx, out: &mut Vec<Vec<u8>>) -> anyhow::Result<()> {
    if out.is_empty() {
        return Ok(());
    }
    let refs: Vec<&[u8]> = out.iter().map(Vec::as_slice).collect();
    let sent = tx.send_frames(&refs).context("sending probe frames")?;
    if sent < refs.len() {
        tracing::warn!(
            "{} of {} probe frames were not sent",
            refs.len() - sent,
            refs.len()
        );
    }
    out.clear();
    Ok(())
}

pub fn run(args: ProbeArgs) -> Result<ExitCode, Error> {
    let iface = Interface::by_name(&args.interface).map_err(|e| Error::Usage(e.to_string()))?;
    if !iface.is_up() {
        return Err(Error::Failed(anyhow::anyhow!(
            "interface {} is down; bring it up first: ip link set {} up",
            iface.name,
            iface.name
        )));
    }
    let timeout = Duration::from_secs_f64(args.timeout);
    let (mut rx, mut tx) = packet::open(iface.index, &[EtherType::AOE, EtherType::FIP])
        .with_context(|| {
            format!(
                "opening a packet socket on {} (needs root or CAP_NET_RAW)",
                iface.name
            )
        })?;
    // VN2VN frames go to All-VN2VN-MACs and to the probe's own ENode MAC, which the NIC would
    // drop; the kernel undoes this when the socket closes.
    if let Err(e) = rx.set_promiscuous(iface.index) {
        tracing::warn!(
            "cannot make {} promiscuous: {e}; FCoE ports may not be heard",
            iface.name
        );
    }
    let seed = {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        h.finish() as u16
    };
    let cfg = ProbeConfig {
        mac: iface.mac,
        tag_seed: seed,
        fcoe_claim: !args.fcoe_passive,
        mtu: iface.mtu().unwrap_or(1500),
    };
    let start = Instant::now();
    let deadline = start + timeout;
    let mut d = Discovery::new(cfg, start);
    let mut out = Vec::new();
    d.start(start, &mut out);
    send(&mut tx, &mut out)?;
    loop {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        d.tick(now, &mut out);
        send(&mut tx, &mut out)?;
        let wait = d
            .next_wakeup()
            .min(deadline)
            .saturating_duration_since(now)
            .max(Duration::from_millis(1));
        rx.recv_batch(wait, 64, &mut |frame| {
            d.on_frame(frame, Instant::now(), &mut out)
        })
        .with_context(|| format!("receiving on {}", iface.name))?;
        send(&mut tx, &mut out)?;
    }
    let report = d.report();
    if args.json {
        print!(
            "{}",
            json::render_json(&report, &iface.name).context("writing the report as JSON")?
        );
    } else {
        print!("{}", text::render_text(&report, &iface.name));
    }
    Ok(if report.has_duplicates() {
        ExitCode::from(EXIT_DUPLICATES)
    } else {
        ExitCode::SUCCESS
    })
}
