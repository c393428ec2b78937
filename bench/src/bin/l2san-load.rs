//! `l2san-load`: an AoE or FCoE (VN2VN) initiator over a raw socket that loads a target and
//! measures it.
//!
//! ```text
//! l2san-load -i veth0 --target e0.0 --op read --pattern random --sectors 1 --qd 16 --duration 5
//! l2san-load -i veth0 --protocol fcoe --lun 0 --op write --sectors 17 --qd 16
//! ```
//! Prints a human summary and one machine-readable line starting with `RESULT`.
#![forbid(unsafe_code)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use clap::{Parser, ValueEnum};
use l2san_bench::load::{self, aoe, fcoe, LoadConfig, Op, Pattern, Protocol, Session};
use l2san_common::io::sys::packet;
use l2san_common::io::sys::{PacketRx, PacketSocket, PacketTx};
use l2san_common::{EtherType, Interface, MacAddr};
use l2san_fcoe::wire::Wwn;

#[derive(Debug, Clone, Copy, ValueEnum)]
enum OpArg {
    Read,
    Write,
    /// Write a seeded pattern, read it back, compare.
    Verify,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ProtocolArg {
    Aoe,
    /// FCoE VN2VN: FIP claim, FLOGI, PLOGI, PRLI, then FCP READ/WRITE.
    Fcoe,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum PatternArg {
    Random,
    Sequential,
}

#[derive(Debug, Parser)]
#[command(
    name = "l2san-load",
    about = "AoE/FCoE load generator: finds the target (AoE e<shelf>.<slot>, or an FCoE VN2VN \
             port and LUN), drives it from simulated clients, reports IOPS, MB/s, latency \
             percentiles and the target's CPU per I/O",
    after_help = "Examples:\n  \
        l2san-load -i veth1 --target e0.0 --pattern random --sectors 1 --qd 16 --duration 5\n  \
        l2san-load -i veth1 --target e0.0 --clients 100 --qd 1 --sectors 2 --pattern sequential\n  \
        l2san-load -i veth1 --target e0.0 --op verify --requests 100000 --target-pid $(pidof vblade)\n  \
        l2san-load -i veth1 --protocol fcoe --lun 0 --op write --sectors 17 --qd 16 --target-pid $(pidof l2san)"
)]
struct Args {
    /// Interface to send from (the target's segment).
    #[arg(short = 'i', long = "interface", value_name = "IFACE")]
    interface: String,
    #[arg(long, value_enum, default_value_t = ProtocolArg::Aoe)]
    protocol: ProtocolArg,
    /// The AoE target, `e<shelf>.<slot>`.
    #[arg(long, value_name = "eX.Y", default_value = "e0.0")]
    target: String,
    /// FCoE: the LUN to load.
    #[arg(long, default_value_t = 0)]
    lun: u16,
    /// FCoE: the target port's WWPN, when several VN2VN targets answer (default: the first).
    #[arg(long, value_name = "WWPN")]
    fcoe_wwpn: Option<Wwn>,
    /// FCoE: client i claims VN2VN port ID BASE+1+i (the target's own ID is skipped).
    #[arg(long, value_name = "BASE", default_value = "0x4c00", value_parser = parse_id_base)]
    fcoe_id_base: u32,
    /// FCoE: READ(16)/WRITE(16) for every request (default: the 10-byte CDBs where they reach).
    #[arg(long)]
    cdb16: bool,
    #[arg(long, value_enum, default_value_t = OpArg::Read)]
    op: OpArg,
    #[arg(long, value_enum, default_value_t = PatternArg::Random)]
    pattern: PatternArg,
    /// Sectors (512 bytes) per request; at most what the target advertises.
    #[arg(long, default_value_t = 1)]
    sectors: u8,
    /// Outstanding requests per client.
    #[arg(long = "qd", visible_alias = "window", default_value_t = 16)]
    qd: u32,
    /// Simulated clients, each with its own source MAC (see --mac-base).
    #[arg(long, default_value_t = 1)]
    clients: u32,
    /// Seconds to run (after the warm-up). Default 5 unless --requests is given.
    #[arg(long)]
    duration: Option<f64>,
    /// Requests to issue (after the warm-up); with --duration, whichever comes first.
    #[arg(long)]
    requests: Option<u64>,
    /// Seconds to run before measuring.
    #[arg(long, default_value_t = 0.0)]
    warmup: f64,
    /// Milliseconds without a reply before a request is sent again.
    #[arg(long, default_value_t = 50)]
    timeout_ms: u64,
    /// Sends per request before it counts as an error.
    #[arg(long, default_value_t = 10)]
    max_tries: u32,
    /// Seed of the random pattern and the verify data (default: from the clock).
    #[arg(long)]
    seed: Option<u64>,
    /// Client i's MAC is this one with the last two bytes set to i+1.
    #[arg(long, default_value = "02:00:00:00:00:00")]
    mac_base: MacAddr,
    /// Use only the first this many MiB of the target.
    #[arg(long)]
    region_mib: Option<u64>,
    /// The target's process: its CPU time (all threads) per I/O is reported.
    #[arg(long)]
    target_pid: Option<u32>,
    /// Do not put the interface in promiscuous mode (veth and tap need none).
    #[arg(long)]
    no_promisc: bool,
    /// A label echoed in the RESULT line.
    #[arg(long, default_value = "-")]
    label: String,
}

fn parse_id_base(s: &str) -> Result<u32, String> {
    let v = match s.strip_prefix("0x") {
        Some(hex) => u32::from_str_radix(hex, 16),
        None => s.parse(),
    }
    .map_err(|e| format!("'{s}': {e}"))?;
    if v >= 0xfff0 {
        return Err(format!("{v:#x} leaves no VN2VN port IDs below 0xffff"));
    }
    Ok(v)
}

fn main() {
    if let Err(e) = run(Args::parse()) {
        eprintln!("l2san-load: error: {e:#}");
        std::process::exit(1);
    }
}

fn run(args: Args) -> Result<()> {
    let iface = Interface::by_name(&args.interface)?;
    if args.clients == 0 || args.qd == 0 {
        bail!("--clients and --qd must be at least 1");
    }
    let seed = args.seed.unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    let duration = match (args.duration, args.requests) {
        (None, None) => Some(Duration::from_secs(5)),
        (d, _) => d.map(Duration::from_secs_f64),
    };
    let cfg = LoadConfig {
        op: match args.op {
            OpArg::Read => Op::Read,
            OpArg::Write => Op::Write,
            OpArg::Verify => Op::Verify,
        },
        pattern: match args.pattern {
            PatternArg::Random => Pattern::Random,
            PatternArg::Sequential => Pattern::Sequential,
        },
        sectors: args.sectors,
        qd: args.qd,
        clients: args.clients,
        duration,
        requests: args.requests,
        warmup: Duration::from_secs_f64(args.warmup),
        timeout: Duration::from_millis(args.timeout_ms.max(1)),
        max_tries: args.max_tries.max(1),
        seed,
        mac_base: args.mac_base,
        region: args.region_mib.map(|m| m * 2048),
        target_pid: args.target_pid,
    };

    let ethertypes: &[u16] = match args.protocol {
        ProtocolArg::Aoe => &[l2san_aoe::wire::ETHERTYPE],
        ProtocolArg::Fcoe => &[EtherType::FCOE, EtherType::FIP],
    };
    // Ring slots for the interface's MTU, and room for thousands of frames in flight (64
    // clients with 8 jumbo writes each are 2560 data frames at once).
    let mtu = iface.mtu().unwrap_or(1500);
    let slot = packet::ring_slot_size(mtu);
    let (mut rx, mut tx) = PacketSocket::open(ethertypes)
        .and_then(|s| s.bind_ring(iface.index, slot, (slot * 8192).clamp(16 << 20, 64 << 20)))
        .with_context(|| format!("cannot open a packet socket on {} (root?)", iface.name))?;
    // Simulated clients use source MACs the NIC does not own: a real NIC drops the replies to
    // them unless it is promiscuous (the kernel undoes it when the socket closes).
    if !args.no_promisc {
        rx.set_promiscuous(iface.index)
            .context("cannot make the interface promiscuous")?;
    }
    let r = match args.protocol {
        ProtocolArg::Aoe => {
            let (major, minor) = aoe::parse_target(&args.target)?;
            let (proto, session) = aoe::discover(
                &mut rx,
                &mut tx,
                cfg.mac_base,
                cfg.clients,
                major,
                minor,
                Duration::from_millis(500),
            )?;
            drive(&proto, &session, &cfg, &iface.name, &mut rx, &mut tx)?
        }
        ProtocolArg::Fcoe => {
            let opts = fcoe::FcoeOptions {
                lun: args.lun,
                target_wwpn: args.fcoe_wwpn,
                id_base: args.fcoe_id_base,
                mtu,
                cdb16: args.cdb16,
                check_crc: cfg.op == Op::Verify,
                mac_base: cfg.mac_base,
                clients: cfg.clients,
                step_timeout: Duration::from_millis(300),
                step_tries: 10,
            };
            let (proto, session) = fcoe::login(&mut rx, &mut tx, &opts)?;
            let r = drive(&proto, &session, &cfg, &iface.name, &mut rx, &mut tx);
            proto.logout(&mut tx);
            r?
        }
    };
    let ring = rx.stats().unwrap_or_default();

    let us = |ns: u64| ns as f64 / 1000.0;
    let cpu = r
        .target_cpu_us_per_io()
        .map_or_else(|| "na".to_string(), |c| format!("{c:.2}"));
    println!(
        "{} {:?} {:?} {:?} {}x512 qd{} clients{}: {:.0} IOPS, {:.1} MB/s, latency p50 {:.1} us \
         p99 {:.1} us p99.9 {:.1} us max {:.1} us; target CPU {} us/IO, generator CPU {:.2} us/IO; \
         {} retransmits, {} errors, {} lost, {} late{}",
        args.label,
        args.protocol,
        cfg.op,
        cfg.pattern,
        cfg.sectors,
        cfg.qd,
        cfg.clients,
        r.iops(),
        r.mbps(),
        us(r.latency.quantile(0.5)),
        us(r.latency.quantile(0.99)),
        us(r.latency.quantile(0.999)),
        us(r.latency.max()),
        cpu,
        r.own_cpu_us_per_io(),
        r.retransmits,
        r.errors,
        r.lost,
        r.late,
        if cfg.op == Op::Verify {
            format!(", {} mismatched sectors", r.mismatches)
        } else {
            String::new()
        },
    );
    println!(
        "RESULT label={} iops={:.0} mbps={:.2} p50_us={:.1} p99_us={:.1} p999_us={:.1} \
         max_us={:.1} mean_us={:.1} cpu_us_per_io={} gen_cpu_us_per_io={:.2} completed={} \
         secs={:.3} retransmits={} errors={} lost={} late={} mismatches={} stray={} \
         tx_dropped={} ring_drops={}",
        args.label,
        r.iops(),
        r.mbps(),
        us(r.latency.quantile(0.5)),
        us(r.latency.quantile(0.99)),
        us(r.latency.quantile(0.999)),
        us(r.latency.max()),
        r.latency.mean() / 1000.0,
        cpu,
        r.own_cpu_us_per_io(),
        r.completed,
        r.secs(),
        r.retransmits,
        r.errors,
        r.lost,
        r.late,
        r.mismatches,
        r.stray,
        r.tx_dropped,
        ring.drops,
    );
    if let Some(lba) = r.first_mismatch {
        bail!(
            "{} sectors read back differ from what was written (first at LBA {lba})",
            r.mismatches
        );
    }
    if r.completed == 0 {
        bail!("no request completed");
    }
    Ok(())
}

/// Log what was found, then run the load.
fn drive<P: Protocol>(
    proto: &P,
    session: &Session,
    cfg: &LoadConfig,
    iface: &str,
    rx: &mut PacketRx,
    tx: &mut PacketTx,
) -> Result<load::Report> {
    eprintln!(
        "l2san-load: {}; {iface} {:?} {:?} x{} sectors, {} client(s) x QD {}",
        session.summary, cfg.op, cfg.pattern, cfg.sectors, cfg.clients, cfg.qd,
    );
    if let Some(limit) = session.queue_limit {
        if cfg.qd > limit {
            eprintln!(
                "l2san-load: note: QD {} exceeds the target's buffer count {limit}",
                cfg.qd
            );
        }
    }
    load::run(proto, session, cfg, rx, tx)
}
