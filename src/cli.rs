//! The command-line contract. Other tools and the tests rely on it: change it only on purpose.

use std::path::PathBuf;
use std::str::FromStr;

use clap::{Args, Parser, Subcommand};
use l2san_common::{Durability, MacAddr};
use l2san_fcoe::wire::Wwn;
use l2san_fcoe::FcoeAllow;

#[derive(Debug, Parser)]
#[command(
    name = "l2san",
    version,
    about = "Layer-2 SAN target: serves disk images over ATA over Ethernet, no IP needed",
    long_about = None
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

// Parsed once per run: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve disk images on an interface over AoE and FCoE until SIGINT or SIGTERM.
    #[command(after_help = "Examples:\n  \
        l2san serve -i eth1 --aoe 0.0=/srv/boot.img\n  \
        l2san serve -i eth1 --aoe 1.0=/srv/golden.img,ro --aoe 1.1=/dev/vg0/data,sync\n  \
        l2san serve -i eth1 --aoe 0.0=/srv/disk.img --fcoe 0=/srv/disk.img\n  \
        l2san serve --config /etc/l2san.toml    (several interfaces; l2san check-config FILE)\n\n\
        iPXE boots e0.0 with:   sanboot aoe:e0.0   (FCoE: sanboot fcp:<wwpn>:0)\n\
        Linux finds AoE with:   modprobe aoe; ls /dev/etherd/\n\
        Linux finds FCoE with:  modprobe fcoe; echo eth0 > /sys/bus/fcoe/ctlr_create;\n\
        \x20                       echo vn2vn > /sys/bus/fcoe/devices/ctlr_0/mode;\n\
        \x20                       echo 1 > /sys/bus/fcoe/devices/ctlr_0/enabled")]
    Serve(ServeArgs),
    /// Boot Debian's iPXE in QEMU from a built-in disk image served by l2san, then tear it down.
    #[command(
        after_help = "Needs root (network namespace, tap), qemu-system-x86 and ipxe:\n  \
        apt-get install -y qemu-system-x86 ipxe"
    )]
    Demo(DemoArgs),
    /// Check a configuration file for `serve --config`: print every problem with its line,
    /// check that its interfaces exist and its images open; exit 0 when clean, 2 when not.
    #[command(
        name = "check-config",
        after_help = "The file's format: README.md, \
        section \"Configuration file\", and packaging/l2san.toml."
    )]
    CheckConfig(CheckConfigArgs),
    /// List every AoE target and FCoE VN2VN port on the segment, and flag duplicates.
    #[command(after_help = "Examples:\n  \
        l2san probe -i eth1\n  \
        l2san probe -i eth1 --timeout 1 --json\n  \
        l2san probe -i eth1 --fcoe-passive --timeout 9\n\n\
        AoE: a broadcast Query Config, then an IDENTIFY to each answer for its size.\n\
        FCoE: a VN2VN Probe Request and Claim Notification for a port ID of the probe's own\n\
        (ENode MAC 0a:4c:32:<last 3 bytes of IFACE's MAC>); every VN_Port answers with a\n\
        Claim Response. With --fcoe-passive it only listens to beacons (every 8 s).\n\
        Needs root or CAP_NET_RAW. Run it from another host (or port) than the targets':\n\
        a target does not hear frames sent from its own interface.\n\n\
        Exit status: 0 the probe ran and found no conflicts (also when nothing answered);\n\
        \x20            1 the probe could not run; 2 bad arguments;\n\
        \x20            3 conflicts found (lines marked DUPLICATE)")]
    Probe(ProbeArgs),
    /// Ask a running `l2san serve` over its control socket: `stats` prints its counters per
    /// interface, worker and export.
    #[command(after_help = "Examples:\n  \
        l2san ctl stats\n  \
        l2san ctl --socket /run/l2san-eth1.sock stats\n  \
        l2san ctl metrics     (the Prometheus text that --metrics serves)\n  \
        l2san ctl reload      (after editing the config file or growing an image)\n  \
        l2san ctl overlay list\n  \
        l2san ctl overlay reset 52:54:00:12:34:56\n  \
        l2san ctl overlay commit 52:54:00:12:34:56 /srv/l2san/golden-v2.img")]
    Ctl(CtlArgs),
}

#[derive(Debug, Args)]
pub struct CtlArgs {
    /// The server's control socket (`serve --ctl-socket`).
    #[arg(long, value_name = "PATH", default_value = "/run/l2san.sock")]
    pub socket: PathBuf,
    /// What to ask: stats, metrics, reload (read the configuration again and serve it, as
    /// SIGHUP does; prints what changed, or exits 1 with why nothing did), or overlay
    /// (list | reset <client> [<export>] | commit <client> <new image> [<export>]).
    #[arg(value_name = "COMMAND", value_parser = ["stats", "metrics", "reload", "overlay"])]
    pub command: String,
    /// The words after `overlay`: list; reset <client> [<export>]; commit <client> <new image>
    /// [<export>]. A client is an AoE MAC or an FCoE WWPN.
    #[arg(value_name = "ARGS", trailing_var_arg = true)]
    pub args: Vec<String>,
}

#[derive(Debug, Args)]
pub struct CheckConfigArgs {
    /// The TOML file to check.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Ethernet interface to serve on.
    #[arg(
        short = 'i',
        long = "interface",
        value_name = "IFACE",
        required_unless_present = "config"
    )]
    pub interface: Option<String>,
    /// Serve what a TOML file describes (interfaces, exports, settings; see `check-config`).
    /// Not with -i, --aoe, --fcoe, --wwpn, --wwnn or --buffer-count; the other flags given
    /// here override the file's.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[arg(
        long = "aoe",
        help = "An AoE export: <shelf>.<slot>=<image>[,ro][,sync][,allow=<mac>]. May be repeated",
        value_name = "SHELF.SLOT=IMAGE[,ro][,sync]",
        required_unless_present_any = ["fcoe", "config"]
    )]
    pub aoe: Vec<AoeSpec>,
    #[arg(
        long = "fcoe",
        value_name = "LUN=IMAGE[,ro][,sync][,allow=<wwpn|mac>]",
        help = "An FCoE LUN: <lun>=<image>[,ro][,sync][,allow=<wwpn|mac>], LUN 0 to 63. With \
                allow= (repeatable) only those initiators (WWPN: 8 octets, ENode MAC: 6) see the \
                LUN. May be repeated; may name the same image as an --aoe export (both then see \
                the same bytes)"
    )]
    pub fcoe: Vec<FcoeSpec>,
    #[arg(
        long,
        value_name = "WWPN",
        help = "FCoE port name [default: 20:00:<interface MAC>]"
    )]
    pub wwpn: Option<Wwn>,
    #[arg(
        long,
        value_name = "WWNN",
        help = "FCoE node name [default: 10:00:<interface MAC>]"
    )]
    pub wwnn: Option<Wwn>,
    /// AoE Buffer Count to advertise: how many requests an initiator may have outstanding
    /// [default: 64].
    #[arg(long, value_parser = clap::value_parser!(u16).range(2..))]
    pub buffer_count: Option<u16>,
    /// Where to keep the AoE config strings, Mac Mask Lists and reservations across restarts
    /// (written whenever an initiator changes them).
    #[arg(long, value_name = "FILE")]
    pub state_file: Option<PathBuf>,
    /// After opening the images, run as this user (name or uid), keeping only CAP_NET_RAW and
    /// CAP_NET_ADMIN. The state file, if any, must be writable by it.
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,
    /// Frame I/O: `packet` (AF_PACKET rings), `xdp` (AF_XDP, copy mode accepted), or `auto`
    /// (AF_XDP where the driver does zero-copy, AF_PACKET elsewhere). Falls back to AF_PACKET,
    /// with a log line, where AF_XDP is refused [default: packet].
    #[arg(long, value_name = "BACKEND")]
    pub backend: Option<l2san_common::worker::Backend>,
    /// Latency mode, for boot storms: while requests keep coming, a worker spins up to this
    /// many microseconds for the next frame instead of sleeping, so that queue-depth-1
    /// initiators (iPXE) get answers without a wake-up each. Costs CPU while traffic flows;
    /// off (0) by default, which suits shared machines.
    #[arg(long, value_name = "MICROSECONDS", value_parser = clap::value_parser!(u64).range(0..=100_000))]
    pub busy_poll_us: Option<u64>,
    /// Worker threads per interface, each with its own receive ring and transmit path
    /// [default: one per core; one on machines of two cores or fewer].
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub workers: Option<u16>,
    /// Seconds between flushes of written-back data to stable storage (writeback exports)
    /// [default: 5].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub flush_interval: Option<u64>,
    /// Serve Prometheus metrics over HTTP at http://ADDR:PORT/metrics (off by default; e.g.
    /// 127.0.0.1:9560).
    #[arg(long, value_name = "ADDR:PORT")]
    pub metrics: Option<std::net::SocketAddr>,
    /// The control socket for `l2san ctl` (root only, mode 0600); an empty path
    /// (`--ctl-socket ""`) turns it off [default: /run/l2san.sock].
    #[arg(long, value_name = "PATH", value_parser = clap::builder::ValueParser::os_string())]
    pub ctl_socket: Option<std::ffi::OsString>,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Keep the QEMU guest's console quiet (print only the outcome).
    #[arg(long)]
    pub quiet: bool,
    /// Skip the FCoE half (a Linux guest finding the same image over FCoE VN2VN).
    #[arg(long)]
    pub no_fcoe: bool,
}

#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// Ethernet interface to probe from.
    #[arg(short = 'i', long = "interface", value_name = "IFACE")]
    pub interface: String,
    /// Seconds to collect answers (fractions allowed, 0.2 to 600).
    #[arg(long, default_value_t = 3.0, value_name = "SECS", value_parser = probe_timeout)]
    pub timeout: f64,
    /// Send nothing FCoE: only list the VN2VN ports heard beaconing or claiming (they beacon
    /// every 8 s, so use --timeout 9 or more).
    #[arg(long)]
    pub fcoe_passive: bool,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
}

fn probe_timeout(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.2..=600.0).contains(&v) => Ok(v),
        _ => Err(format!(
            "'{s}' is not a number of seconds from 0.2 to 600, e.g. --timeout 3"
        )),
    }
}

/// One `--aoe` argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AoeSpec {
    pub shelf: u16,
    pub slot: u8,
    pub image: ImageSpec,
}

/// The part after `=` of `--aoe` and `--fcoe`: an image and the export's options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSpec {
    pub image: PathBuf,
    pub read_only: bool,
    pub durability: Durability,
    /// `allow=<mac>` options: the hosts that may see the export (empty: every host).
    pub allow: Vec<MacAddr>,
}

impl ImageSpec {
    fn parse(s: &str, rest: &str, usage: &str) -> Result<ImageSpec, String> {
        let mut parts = rest.split(',');
        let image = parts
            .next()
            .filter(|p| !p.is_empty())
            .ok_or_else(|| format!("no image path in '{s}'; {usage}"))?;
        let mut spec = ImageSpec {
            image: PathBuf::from(image),
            read_only: false,
            durability: Durability::Writeback,
            allow: Vec::new(),
        };
        for opt in parts {
            if let Some(mac) = opt.strip_prefix("allow=") {
                spec.allow
                    .push(mac.parse().map_err(|e| format!("in '{s}': {e}"))?);
                continue;
            }
            match opt {
                "ro" => spec.read_only = true,
                "sync" => spec.durability = Durability::Sync,
                "writeback" => spec.durability = Durability::Writeback,
                other => {
                    return Err(format!(
                        "unknown option '{other}' in '{s}'; the options are ro, sync, writeback and allow=<mac>"
                    ))
                }
            }
        }
        Ok(spec)
    }
}

/// One `--fcoe` argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FcoeSpec {
    pub lun: u16,
    /// The image and its options; its `allow` stays empty (that is AoE's).
    pub image: ImageSpec,
    /// `allow=<wwpn>` and `allow=<mac>` options: the initiators that may see the LUN (empty:
    /// every initiator).
    pub allow: Vec<FcoeAllow>,
}

impl FromStr for FcoeSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let usage =
            "write it as <lun>=<image>[,ro][,sync][,allow=<wwpn|mac>], e.g. 0=/srv/disk.img";
        let (lun, rest) = s
            .split_once('=')
            .ok_or_else(|| format!("'{s}' has no '='; {usage}"))?;
        let lun: u16 = lun
            .parse()
            .ok()
            .filter(|&v| (v as usize) < l2san_fcoe::scsi::MAX_LUNS)
            .ok_or_else(|| {
                format!(
                    "LUN '{lun}' must be a number from 0 to {}",
                    l2san_fcoe::scsi::MAX_LUNS - 1
                )
            })?;
        // allow= names WWPNs or MACs here, not only MACs as for AoE: take them out first.
        let mut allow = Vec::new();
        let mut others = Vec::new();
        for (i, part) in rest.split(',').enumerate() {
            match part.strip_prefix("allow=") {
                Some(a) if i > 0 => allow.push(a.parse().map_err(|e| format!("in '{s}': {e}"))?),
                _ => others.push(part),
            }
        }
        Ok(FcoeSpec {
            lun,
            image: ImageSpec::parse(s, &others.join(","), usage)?,
            allow,
        })
    }
}

impl FromStr for AoeSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let usage = "write it as <shelf>.<slot>=<image>[,ro][,sync], e.g. 0.0=/srv/disk.img";
        let (addr, rest) = s
            .split_once('=')
            .ok_or_else(|| format!("'{s}' has no '='; {usage}"))?;
        let (shelf, slot) = addr
            .split_once('.')
            .ok_or_else(|| format!("'{addr}' is not <shelf>.<slot>; {usage}"))?;
        let shelf: u16 = shelf.parse().ok().filter(|&v| v < 0xffff).ok_or_else(|| {
            format!("shelf '{shelf}' must be a number from 0 to 65534 (65535 is broadcast)")
        })?;
        let slot: u8 = slot.parse().ok().filter(|&v| v < 0xff).ok_or_else(|| {
            format!("slot '{slot}' must be a number from 0 to 254 (255 is broadcast)")
        })?;
        Ok(AoeSpec {
            shelf,
            slot,
            image: ImageSpec::parse(s, rest, usage)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_aoe_specs() {
        let s: AoeSpec = "1.2=/srv/a.img,ro,sync".parse().unwrap();
        assert_eq!((s.shelf, s.slot), (1, 2));
        assert_eq!(
            (s.image.read_only, s.image.durability),
            (true, Durability::Sync)
        );
        assert_eq!(s.image.image, PathBuf::from("/srv/a.img"));
        let s: AoeSpec = "0.0=disk.img".parse().unwrap();
        assert_eq!(
            (s.image.read_only, s.image.durability),
            (false, Durability::Writeback)
        );
        let s: AoeSpec = "0.0=d,allow=52:54:00:12:34:56,allow=52:54:00:12:34:57"
            .parse()
            .unwrap();
        assert_eq!(s.image.allow.len(), 2);
        assert!("0.0=d,allow=nope"
            .parse::<AoeSpec>()
            .unwrap_err()
            .contains("not a MAC"));
        let f: FcoeSpec = "3=/dev/sdb,ro".parse().unwrap();
        assert_eq!((f.lun, f.image.read_only), (3, true));
        assert!(f.allow.is_empty());
        let f: FcoeSpec = "1=/d,allow=20:00:52:54:00:12:34:56,sync,allow=52:54:00:12:34:57"
            .parse()
            .unwrap();
        assert_eq!(
            f.allow,
            [
                FcoeAllow::Wwpn(Wwn(0x2000_5254_0012_3456)),
                FcoeAllow::Mac("52:54:00:12:34:57".parse().unwrap())
            ]
        );
        assert_eq!(f.image.durability, Durability::Sync);
        assert!(f.image.allow.is_empty());
        assert!("1=/d,allow=52:54:00:12:34"
            .parse::<FcoeSpec>()
            .unwrap_err()
            .contains("neither a WWPN"));
        for (bad, says) in [
            ("64=x", "from 0 to 63"),
            ("x", "no '='"),
            ("0=", "no image path"),
        ] {
            let e = bad.parse::<FcoeSpec>().unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn rejects_bad_specs_with_the_fix() {
        for (bad, says) in [
            ("0.0", "no '='"),
            ("0=disk", "<shelf>.<slot>"),
            ("65535.0=d", "broadcast"),
            ("0.255=d", "broadcast"),
            ("x.0=d", "shelf"),
            ("0.0=", "no image path"),
            ("0.0=d,fast", "unknown option"),
        ] {
            let e = bad.parse::<AoeSpec>().unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
}
