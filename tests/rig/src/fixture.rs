//! Fixtures shared by the tests that drive l2san from hand-made frames or from its control
//! socket: MAC text, a veth pair `a`–`b` in a namespace (l2san on `a`, raw sockets on `b`), an
//! AoE ATA frame to e0.0, `l2san serve --config` with a control socket, and `l2san ctl`.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{anyhow, ensure, Context, Result};
use l2san_aoe::initiator::{AtaRequest, Body, Request};
use l2san_common::MacAddr;

use crate::rawsock::RawSocket;
use crate::rig::{self, Child, Netns, Tap};

/// A MAC address.
pub type Mac = [u8; 6];

/// `aa:bb:cc:dd:ee:ff`.
pub fn fmt_mac(mac: &Mac) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Parses `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(text: &str) -> Result<Mac> {
    let bytes: Vec<u8> = text
        .trim()
        .split(':')
        .map(|b| u8::from_str_radix(b, 16))
        .collect::<std::result::Result<_, _>>()
        .with_context(|| format!("bad MAC {text:?}"))?;
    bytes
        .try_into()
        .map_err(|_| anyhow!("bad MAC {text:?}: not 6 bytes"))
}

/// An AoE Issue ATA Command frame to e0.0 from `src`, `data` after the argument, padded to 60
/// bytes.
pub fn ata_frame(dst: Mac, src: Mac, tag: u32, request: AtaRequest, data: &[u8]) -> Vec<u8> {
    Request {
        dst: MacAddr(dst),
        src: MacAddr(src),
        major: 0,
        minor: 0,
        tag,
        body: Body::Ata(request),
    }
    .to_frame(data)
}

/// The MAC of `dev` inside `ns`.
pub fn mac_of(ns: &Netns, dev: &str) -> Result<Mac> {
    parse_mac(&ns.run("cat", [format!("/sys/class/net/{dev}/address")])?)
}

/// The ifindex of `dev` inside `ns`.
pub fn ifindex_of(ns: &Netns, dev: &str) -> Result<u32> {
    ns.run("cat", [format!("/sys/class/net/{dev}/ifindex")])?
        .trim()
        .parse()
        .context("bad ifindex")
}

/// How [`VethPair::create`] sets both ends up before it brings them up.
#[derive(Debug, Clone, Copy, Default)]
pub struct VethOpts {
    /// `ip link set dev <end> mtu <mtu>`; the kernel's default (1500) when `None`.
    pub mtu: Option<u32>,
    /// `disable_ipv6` on both ends (no router solicitations or DAD on the segment).
    pub no_ipv6: bool,
}

/// The veth pair `a`–`b` inside a namespace, both ends up: the target serves on `a`, the test
/// talks from `b`.
#[derive(Debug, Clone, Copy)]
pub struct VethPair {
    /// `a`'s MAC: where the target answers from.
    pub them: Mac,
    /// `b`'s MAC: ours.
    pub us: Mac,
    /// `a`'s ifindex.
    pub ifindex: u32,
}

impl VethPair {
    /// Creates `a`–`b` in `ns` and brings both up, as `opts` says.
    pub fn create(ns: &Netns, opts: VethOpts) -> Result<VethPair> {
        ns.run(
            "ip",
            [
                "link", "add", "name", "a", "type", "veth", "peer", "name", "b",
            ],
        )
        .context("cannot create a veth pair (veth module?)")?;
        for dev in ["a", "b"] {
            if let Some(mtu) = opts.mtu {
                ns.run("ip", ["link", "set", "dev", dev, "mtu", &mtu.to_string()])?;
            }
            if opts.no_ipv6 {
                let _ = ns.run(
                    "sh",
                    [
                        "-c",
                        &format!("echo 1 > /proc/sys/net/ipv6/conf/{dev}/disable_ipv6"),
                    ],
                );
            }
            ns.run("ip", ["link", "set", "dev", dev, "up"])?;
        }
        Ok(VethPair {
            them: mac_of(ns, "a")?,
            us: mac_of(ns, "b")?,
            ifindex: ifindex_of(ns, "a")?,
        })
    }

    /// A raw socket for `ethertype` on `b`.
    pub fn socket(&self, ns: &Netns, ethertype: u16) -> Result<RawSocket> {
        RawSocket::open_in_netns(ns.name(), "b", ethertype)
            .with_context(|| format!("cannot open a raw {ethertype:#06x} socket on b"))
    }

    /// `a` as a [`Tap`] of `mtu`: `rig::Target` needs only the interface's name and index, and a
    /// veth end has both.
    pub fn tap(&self, mtu: u32) -> Tap {
        Tap {
            name: "a".into(),
            mtu,
            ifindex: self.ifindex,
        }
    }
}

/// `l2san serve --config <config> --ctl-socket <socket>` inside `ns` (`RUST_LOG=info`), its
/// output in `log`; returns once the control socket is there (a stale one is removed first).
pub fn serve_config(ns: &Netns, config: &Path, socket: &Path, log: &Path) -> Result<Child> {
    let _ = fs::remove_file(socket);
    let mut cmd = ns.command(rig::l2san_bin()?);
    cmd.arg("serve")
        .arg("--config")
        .arg(config)
        .arg("--ctl-socket")
        .arg(socket)
        .env("RUST_LOG", "info");
    let child = Child::spawn_logged("l2san", &mut cmd, log)?;
    ensure!(
        rig::wait_until(Duration::from_secs(10), || socket.exists()),
        "no control socket; log:\n{}",
        fs::read_to_string(log).unwrap_or_default()
    );
    Ok(child)
}

/// `<bin> ctl --socket <socket> <args>...` (`bin` from [`rig::l2san_bin`], found once: it runs
/// `cargo build`): whether it exited 0, its stdout, its stderr.
pub fn ctl(bin: &Path, socket: &Path, args: &[&str]) -> Result<(bool, String, String)> {
    let out = Command::new(bin)
        .args(["ctl", "--socket"])
        .arg(socket)
        .args(args)
        .output()?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}
