//! The command-line contract. Other tools and the tests rely on it: change it only on purpose.

use std::path::PathBuf;
use std::str::FromStr;

use clap::{Args, Parser, Subcommand};
use l2san_common::Durability;

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

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve disk images on an interface until SIGINT or SIGTERM.
    #[command(after_help = "Examples:\n  \
        l2san serve -i eth1 --aoe 0.0=/srv/boot.img\n  \
        l2san serve -i eth1 --aoe 1.0=/srv/golden.img,ro --aoe 1.1=/dev/vg0/data,sync\n\n\
        iPXE boots e0.0 with:  sanboot aoe:e0.0\n\
        Linux finds it with:   modprobe aoe; ls /dev/etherd/")]
    Serve(ServeArgs),
    /// Boot Debian's iPXE in QEMU from a built-in disk image served by l2san, then tear it down.
    #[command(
        after_help = "Needs root (network namespace, tap), qemu-system-x86 and ipxe:\n  \
        apt-get install -y qemu-system-x86 ipxe"
    )]
    Demo(DemoArgs),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Ethernet interface to serve on.
    #[arg(short = 'i', long = "interface", value_name = "IFACE")]
    pub interface: String,
    /// An AoE export: <shelf>.<slot>=<image>[,ro][,sync]. May be repeated.
    #[arg(
        long = "aoe",
        value_name = "SHELF.SLOT=IMAGE[,ro][,sync]",
        required = true
    )]
    pub aoe: Vec<AoeSpec>,
    /// AoE Buffer Count to advertise: how many requests an initiator may have outstanding.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(2..))]
    pub buffer_count: u16,
    /// Seconds between flushes of written-back data to stable storage (writeback exports).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub flush_interval: u64,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Keep the QEMU guest's console quiet (print only the outcome).
    #[arg(long)]
    pub quiet: bool,
}

/// One `--aoe` argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AoeSpec {
    pub shelf: u16,
    pub slot: u8,
    pub image: PathBuf,
    pub read_only: bool,
    pub durability: Durability,
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
        let mut parts = rest.split(',');
        let image = parts
            .next()
            .filter(|p| !p.is_empty())
            .ok_or_else(|| format!("no image path in '{s}'; {usage}"))?;
        let mut spec = AoeSpec {
            shelf,
            slot,
            image: PathBuf::from(image),
            read_only: false,
            durability: Durability::Writeback,
        };
        for opt in parts {
            match opt {
                "ro" => spec.read_only = true,
                "sync" => spec.durability = Durability::Sync,
                "writeback" => spec.durability = Durability::Writeback,
                other => {
                    return Err(format!(
                        "unknown option '{other}' in '{s}'; the options are ro, sync and writeback"
                    ))
                }
            }
        }
        Ok(spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_aoe_specs() {
        let s: AoeSpec = "1.2=/srv/a.img,ro,sync".parse().unwrap();
        assert_eq!(
            (s.shelf, s.slot, s.read_only, s.durability),
            (1, 2, true, Durability::Sync)
        );
        assert_eq!(s.image, PathBuf::from("/srv/a.img"));
        let s: AoeSpec = "0.0=disk.img".parse().unwrap();
        assert_eq!((s.read_only, s.durability), (false, Durability::Writeback));
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
