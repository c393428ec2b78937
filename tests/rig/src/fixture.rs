//! Fixtures shared by the tests that drive l2san from hand-made frames or from its control
//! socket: MAC text, a veth pair `a`–`b` in a namespace (l2san on `a`, raw sockets on `b`), an
//! AoE ATA frame to e0.0, `l2san serve --config` with a control socket, and `l2san ctl`.
//!
//! For the tests that send hand-made frames: a patterned image and the check that it is byte
//! for byte what it must be, test payloads, hex dumps, waiting for a frame, the silence check
//! (frames that must go unanswered, then a ping), the clean stop of the target, and AoE
//! requests built field by field ([`aoe`]). For the tests that kill l2san under a guest's
//! verified write workload: the kill, the restart and the checks around them
//! ([`kill_restart_resume`]).

use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use l2san_aoe::initiator::{AtaRequest, Body, Request};
use l2san_common::MacAddr;

use crate::rawsock::RawSocket;
use crate::rig::{self, Child, Netns, Run, Tap, Target};
use crate::workload::{self, L2sanProcess, WorkloadGuest, WorkloadOpts};

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

/// How long a reply to a hand-made frame may take.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(2);
/// Once the ping sent after frames that must go unanswered is answered, how long to keep
/// listening for replies to them.
pub const SILENCE_GRACE: Duration = Duration::from_millis(150);

/// Byte `i` of block `b` of a pristine patterned image: never zero, different in every block.
pub fn pattern(b: u64, i: usize) -> u8 {
    ((b as usize * 7 + i) % 251 + 1) as u8
}

/// Writes `blocks` blocks of `block` bytes of [`pattern`] to `path`; returns what it wrote.
pub fn patterned_image(path: &Path, blocks: u64, block: usize) -> Result<Vec<u8>> {
    let mut image = vec![0u8; blocks as usize * block];
    for (b, chunk) in image.chunks_mut(block).enumerate() {
        for (i, x) in chunk.iter_mut().enumerate() {
            *x = pattern(b as u64, i);
        }
    }
    fs::write(path, &image).with_context(|| format!("cannot write the image {path:?}"))?;
    Ok(image)
}

/// `len` bytes of test payload from `seed`, each with its top bit set (unlike the zeros a
/// target might leave).
pub fn data(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(13).wrapping_add(seed) | 0x80)
        .collect()
}

/// The first 96 bytes of `bytes` in hex, a space every 4, and the length when there are more.
pub fn hex(bytes: &[u8]) -> String {
    let mut s = String::new();
    for (i, b) in bytes.iter().take(96).enumerate() {
        if i > 0 && i % 4 == 0 {
            s.push(' ');
        }
        let _ = write!(s, "{b:02x}");
    }
    if bytes.len() > 96 {
        let _ = write!(s, " ... ({} bytes)", bytes.len());
    }
    s
}

/// The image file at `path` is byte for byte `expected` (a difference is reported with its
/// block of `block` bytes).
pub fn check_image(path: &Path, expected: &[u8], block: usize, what: &str) -> Result<()> {
    let now = fs::read(path)?;
    ensure!(
        now.len() == expected.len(),
        "{what}: the image is {} bytes, was {}",
        now.len(),
        expected.len()
    );
    if let Some(i) = now.iter().zip(expected).position(|(a, b)| a != b) {
        bail!(
            "{what}: the image changed at byte {i} (block {}): {:#04x}, expected {:#04x}",
            i / block,
            now[i],
            expected[i]
        );
    }
    Ok(())
}

/// The first frame on `sock` within `timeout` that `pick` turns into a `T` (it passes over the
/// others); `None` when none came.
pub fn recv_first<T>(
    sock: &RawSocket,
    timeout: Duration,
    mut pick: impl FnMut(Vec<u8>) -> Option<T>,
) -> Result<Option<T>> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Some(f) = sock.recv(left)? else {
            return Ok(None);
        };
        if let Some(t) = pick(f) {
            return Ok(Some(t));
        }
    }
}

/// Listens on `sock` after frames that must go unanswered and then a ping went out. `judge`
/// sees every frame that comes: it fails on a reply to one of the silent frames, and says
/// whether the frame answers the ping. The target handles frames in order, so once the ping is
/// answered (within [`REPLY_TIMEOUT`]) and [`SILENCE_GRACE`] has passed, any reply to the
/// earlier frames would have come. Returns whether the ping was answered.
pub fn listen_for_silence(
    sock: &RawSocket,
    mut judge: impl FnMut(Vec<u8>) -> Result<bool>,
) -> Result<bool> {
    let start = Instant::now();
    let mut pinged: Option<Instant> = None;
    loop {
        let now = Instant::now();
        let until = match pinged {
            Some(t) => t + SILENCE_GRACE,
            None => start + REPLY_TIMEOUT,
        };
        if now >= until {
            break;
        }
        let Some(f) = sock.recv(until - now)? else {
            break;
        };
        if judge(f)? && pinged.is_none() {
            pinged = Some(Instant::now());
        }
    }
    Ok(pinged.is_some())
}

/// Calls `attempt` until it succeeds; once `within` has passed, its error is returned.
pub fn retry_for<T>(within: Duration, mut attempt: impl FnMut() -> Result<T>) -> Result<T> {
    let deadline = Instant::now() + within;
    loop {
        match attempt() {
            Ok(t) => return Ok(t),
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => {}
        }
    }
}

/// The target still running, no panic in its log, and exit 0 on SIGTERM.
pub fn stop_clean(mut target: Target) -> Result<()> {
    target.check_running()?;
    let log = target.log_text();
    ensure!(!log.contains("panicked"), "the target panicked:\n{log}");
    target.stop()
}

/// AoE frames built field by field (AoE r11 §2), so that a test can bend any field, and the
/// replies to them read by offset.
pub mod aoe {
    use anyhow::{bail, ensure, Context, Result};
    use std::time::Duration;

    use super::{fmt_mac, hex, listen_for_silence, recv_first, Mac};
    use crate::rawsock::RawSocket;

    pub const ETHERTYPE_AOE: u16 = 0x88a2;
    /// AoE header flags.
    pub const FLAG_R: u8 = 0x08;
    pub const FLAG_E: u8 = 0x04;
    /// Ethernet header plus AoE header.
    pub const HDR: usize = 24;
    /// ... plus the ATA argument.
    pub const ATA_HDR: usize = 36;
    pub const BROADCAST_MAC: Mac = [0xff; 6];

    /// One request frame, field by field; tests bend any field.
    #[derive(Debug, Clone)]
    pub struct Req {
        pub dst: Mac,
        pub src: Mac,
        /// Version nibble (1) and flags nibble (0) of byte 14.
        pub ver: u8,
        pub flags: u8,
        pub major: u16,
        pub minor: u8,
        pub command: u8,
        pub tag: u32,
        /// Argument and data.
        pub arg: Vec<u8>,
        /// Bytes after the argument (padding, junk).
        pub trailer: Vec<u8>,
        /// Zero-pad the frame to at least this length (60 as a NIC would; 0 for none).
        pub pad_to: usize,
    }

    impl Req {
        /// A well-formed unicast request (Ver 1, no flags) from `src` to e`major`.`minor` at
        /// `dst`, padded to 60 bytes.
        pub fn new(
            dst: Mac,
            src: Mac,
            major: u16,
            minor: u8,
            command: u8,
            tag: u32,
            arg: Vec<u8>,
        ) -> Req {
            Req {
                dst,
                src,
                ver: 1,
                flags: 0,
                major,
                minor,
                command,
                tag,
                arg,
                trailer: Vec::new(),
                pad_to: 60,
            }
        }

        pub fn frame(&self) -> Vec<u8> {
            let mut f = Vec::with_capacity(HDR + self.arg.len() + self.trailer.len() + 60);
            f.extend_from_slice(&self.dst);
            f.extend_from_slice(&self.src);
            f.extend_from_slice(&ETHERTYPE_AOE.to_be_bytes());
            f.push((self.ver << 4) | (self.flags & 0x0f));
            f.push(0);
            f.extend_from_slice(&self.major.to_be_bytes());
            f.push(self.minor);
            f.push(self.command);
            f.extend_from_slice(&self.tag.to_be_bytes());
            f.extend_from_slice(&self.arg);
            f.extend_from_slice(&self.trailer);
            if f.len() < self.pad_to {
                f.resize(self.pad_to, 0);
            }
            f
        }

        /// The request addressed by broadcast: Major/Minor as given, to the broadcast MAC.
        pub fn broadcast(mut self, major: u16, minor: u8) -> Req {
            self.dst = BROADCAST_MAC;
            self.major = major;
            self.minor = minor;
            self
        }

        pub fn unpadded(mut self) -> Req {
            self.pad_to = 0;
            self
        }
    }

    /// The ATA argument (12 bytes) followed by `data`. The LBA goes out as its 6 low bytes,
    /// little-endian, exactly as given (28-bit callers put device bits in bits 24..32
    /// themselves).
    pub fn ata_arg(aflags: u8, count: u8, cmd: u8, lba: u64, data: &[u8]) -> Vec<u8> {
        let mut a = vec![aflags, 0, count, cmd];
        a.extend_from_slice(&lba.to_le_bytes()[..6]);
        a.extend_from_slice(&[0, 0]);
        a.extend_from_slice(data);
        a
    }

    /// A received frame, read as an AoE reply (at least [`HDR`] bytes).
    #[derive(Debug, Clone)]
    pub struct Reply {
        pub f: Vec<u8>,
    }

    impl Reply {
        pub fn dst(&self) -> Mac {
            self.f[0..6].try_into().expect("6 bytes")
        }
        pub fn src(&self) -> Mac {
            self.f[6..12].try_into().expect("6 bytes")
        }
        pub fn flags(&self) -> u8 {
            self.f[14] & 0x0f
        }
        pub fn error(&self) -> u8 {
            self.f[15]
        }
        pub fn tag(&self) -> u32 {
            u32::from_be_bytes([self.f[20], self.f[21], self.f[22], self.f[23]])
        }
        pub fn arg(&self) -> &[u8] {
            &self.f[HDR..]
        }
        // ATA reply registers.
        pub fn ata_err(&self) -> u8 {
            self.f[25]
        }
        pub fn ata_count(&self) -> u8 {
            self.f[26]
        }
        pub fn ata_status(&self) -> u8 {
            self.f[27]
        }
        pub fn ata_data(&self, len: usize) -> &[u8] {
            &self.f[ATA_HDR..ATA_HDR + len]
        }
        // Config reply.
        pub fn cfg_sector_count(&self) -> u8 {
            self.f[28]
        }
        pub fn cfg_string(&self) -> &[u8] {
            let len = usize::from(u16::from_be_bytes([self.f[30], self.f[31]]));
            &self.f[32..(32 + len).min(self.f.len())]
        }
        /// The MACs of a Mac Mask List reply (Dir Count directives of 8 bytes after 4, each
        /// ending in its MAC).
        pub fn mask_macs(&self) -> Result<Vec<Mac>> {
            self.macs(
                usize::from(self.arg()[3]),
                4,
                8,
                "mask reply with Dir Count",
            )
        }
        /// The MACs of a Reserve/Release reply (NMacs after RCmd).
        pub fn reserve_macs(&self) -> Result<Vec<Mac>> {
            self.macs(usize::from(self.arg()[1]), 2, 6, "reserve reply with NMacs")
        }
        /// `n` entries of `len` bytes from `at` in the argument, each ending in a MAC.
        fn macs(&self, n: usize, at: usize, len: usize, what: &str) -> Result<Vec<Mac>> {
            let a = self.arg();
            ensure!(
                a.len() >= at + len * n,
                "{what} {n} is too short: {}",
                hex(&self.f)
            );
            Ok((0..n)
                .map(|i| {
                    a[at + len * (i + 1) - 6..at + len * (i + 1)]
                        .try_into()
                        .unwrap()
                })
                .collect())
        }

        /// Bytes from `from` on are zero (no stale bytes past the meaningful part).
        pub fn zero_from(&self, from: usize, what: &str) -> Result<()> {
            if let Some(i) = self.f.iter().skip(from).position(|&b| b != 0) {
                bail!(
                    "{what}: reply byte {} is {:#04x}, expected zero past byte {from} (stale or \
                     unused bytes must be zero): {}",
                    from + i,
                    self.f[from + i],
                    hex(&self.f)
                );
            }
            Ok(())
        }
    }

    /// What the header of every reply to `req` must hold: at least 60 bytes, unicast to
    /// `requester` from `target`, Ver 1, the export's own `major`.`minor` (whatever
    /// address the request used), the request's command.
    pub fn check_header(
        req: &Req,
        r: &Reply,
        (requester, target): (Mac, Mac),
        (major, minor): (u16, u8),
        what: &str,
    ) -> Result<()> {
        let f = &r.f;
        let ctx = || format!("{what}: reply {}", hex(f));
        ensure!(f.len() >= 60, "{}: shorter than 60 bytes", ctx());
        ensure!(
            r.dst() == requester,
            "{}: sent to {}, not to the requester {}",
            ctx(),
            fmt_mac(&r.dst()),
            fmt_mac(&requester)
        );
        ensure!(
            r.src() == target,
            "{}: source {} is not the target's interface MAC",
            ctx(),
            fmt_mac(&r.src())
        );
        ensure!(f[14] >> 4 == 1, "{}: version nibble is not 1", ctx());
        ensure!(
            u16::from_be_bytes([f[16], f[17]]) == major && f[18] == minor,
            "{}: Major/Minor are not e{major}.{minor}",
            ctx()
        );
        ensure!(f[19] == req.command, "{}: command not echoed", ctx());
        Ok(())
    }

    pub fn send(sock: &RawSocket, req: &Req) -> Result<()> {
        let f = req.frame();
        sock.send(&f)
            .with_context(|| format!("cannot send {}", hex(&f)))
    }

    /// Sends `req` and returns the first response (R set) with its tag within `timeout`,
    /// unchecked: what its header must hold is the caller's to check.
    pub fn exchange(sock: &RawSocket, req: &Req, timeout: Duration, what: &str) -> Result<Reply> {
        send(sock, req)?;
        let reply = recv_first(sock, timeout, |f| {
            let r = Reply { f };
            (r.f.len() >= HDR && r.tag() == req.tag && r.f[14] & FLAG_R != 0).then_some(r)
        })?;
        reply.with_context(|| {
            format!(
                "{what}: no reply within {timeout:?} to {}",
                hex(&req.frame())
            )
        })
    }

    /// Sends every frame in `reqs`, which must all go unanswered, then `ping`, which must be
    /// answered; fails if any frame carrying one of their tags comes back (see
    /// [`listen_for_silence`]).
    pub fn silent(sock: &RawSocket, reqs: &[Req], ping: &Req, what: &str) -> Result<()> {
        for r in reqs {
            send(sock, r)?;
        }
        send(sock, ping)?;
        let pinged = listen_for_silence(sock, |f| {
            if f.len() < HDR {
                return Ok(false);
            }
            let r = Reply { f };
            if let Some(bad) = reqs.iter().find(|q| q.tag == r.tag()) {
                bail!(
                    "{what}: expected no reply to {}\n  but got {}",
                    hex(&bad.frame()),
                    hex(&r.f)
                );
            }
            Ok(r.tag() == ping.tag)
        })?;
        ensure!(
            pinged,
            "{what}: no reply to the CHECK POWER MODE sent after the silent frames (target dead?)"
        );
        Ok(())
    }
}

/// Kills `l2san` with SIGKILL once `guest`'s workload has some writes acknowledged (the
/// caller waits for that), reads the workload region at once and starts l2san again with the
/// same command line: it must be back within 2 s, every block the guest saw acknowledged must
/// be in the snapshot and nothing but old or new data anywhere in the region (`original` is the
/// image before the workload). Then waits up to `resume_timeout` for the guest's writes to get
/// through again. Reports both.
#[allow(clippy::too_many_arguments)]
pub fn kill_restart_resume(
    run: &Run,
    ns: &Netns,
    l2san: &mut L2sanProcess,
    guest: &mut WorkloadGuest,
    image: &Path,
    original: &[u8],
    opts: &WorkloadOpts,
    resume_timeout: Duration,
) -> Result<()> {
    let original_region = &original[opts.region_offset()..opts.region_offset() + opts.region_len()];
    // The ACKs printed before the kill; the guest goes on writing meanwhile, so read them first.
    let before = guest.progress();
    let first_pid = l2san.pid();
    let t_kill = Instant::now();
    l2san.kill9()?;
    let snapshot = workload::read_region(image, opts)?;
    l2san.restart(ns)?;
    let down = t_kill.elapsed();
    ensure!(
        down < Duration::from_secs(2),
        "l2san took {down:?} to come back after the kill"
    );
    let acked = before.latest();
    let check = workload::check_snapshot(&snapshot, original_region, acked, opts)?;
    rig::report(format_args!(
        "{}: killed l2san (pid {first_pid}) with {} writes acknowledged (latest gen/block {:?}); \
         all {} acknowledged blocks of that generation hold their data, {} later blocks already \
         (partly) new, the rest old; restarted (pid {}) {:.0} ms after the kill",
        run.name(),
        check.acked_writes,
        acked,
        check.acked_blocks_checked,
        check.unacked_blocks_written,
        l2san.pid(),
        down.as_secs_f64() * 1e3
    ));

    // How long until the guest's writes get through again.
    let resumed_from = before.writes_acked(opts.blocks);
    let t_restart = Instant::now();
    let p = guest.wait_for("a write after the restart", resume_timeout, |p| {
        p.writes_acked(opts.blocks) > resumed_from + u64::from(opts.ack_every)
    })?;
    rig::report(format_args!(
        "{}: guest resumed within {:.1} s of the restart ({} writes acknowledged by then)",
        run.name(),
        t_restart.elapsed().as_secs_f64(),
        p.writes_acked(opts.blocks)
    ));
    Ok(())
}
