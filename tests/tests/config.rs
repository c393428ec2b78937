//! The configuration file, end to end: `l2san check-config` on broken and good files, and
//! `l2san serve --config` on two veth interfaces, each answering an AoE Query Config from its
//! own MAC for the exports configured on it.
//!
//! `config_check_*` need no privileges and always run; `config_serve_two_interfaces` needs root
//! (network namespace, veth pairs): without it, it says it was skipped and fails instead under
//! `L2SAN_REQUIRE_E2E=1`. Under `L2SAN_E2E_TARGET=vblade` it says so and does not run.

#![forbid(unsafe_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use l2san_rig::rawsock::RawSocket;
use l2san_rig::rig::{self, Child, Netns, Run};

const ETHERTYPE_AOE: u16 = 0x88a2;
const CMD_CONFIG: u8 = 1;
const FLAG_R: u8 = 0x08;

/// A fresh directory for a test that needs no root (and so no [`rig::e2e`] run directory).
fn scratch(name: &str) -> PathBuf {
    let dir = rig::rig_dir().join("runs").join(name);
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// `l2san <args>` in `dir`, to completion.
fn l2san_in(dir: &Path, args: &[&str]) -> Output {
    let bin = rig::l2san_bin().expect("building l2san");
    Command::new(bin)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("running l2san")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `out` has a line starting with `at` (`l2san.toml:12:`) that contains `says`.
#[track_caller]
fn has_line(out: &str, at: &str, says: &str) {
    assert!(
        out.lines().any(|l| l.starts_with(at) && l.contains(says)),
        "expected a line starting {at:?} with {says:?} in:\n{out}"
    );
}

#[test]
fn config_check_reports_every_problem_with_its_line() {
    let dir = scratch("config_check_broken");
    fs::write(dir.join("odd.img"), [0u8; 1000]).unwrap();
    fs::write(dir.join("good.img"), [0u8; 4096]).unwrap();
    let file = "\
workers = 0

[[interface]]
name = \"nosuch0\"

[[export]]
name = \"pc1\"
image = \"odd.img\"
aoe = \"65535.0\"

[[export]]
name = \"pc2\"
image = \"missing.img\"
aoe = \"1.0\"
fcoe-lun = 64
allow = [\"52:54:00:zz:00:01\"]
fcoe-allow = [\"20:00:zz\"]
sise = 1

[[export]]
name = \"pc3\"
image = \"good.img\"
aoe = \"1.0\"
durability = \"fast\"
interfaces = [\"eth9\"]
overlay = \"/var/cow\"
";
    fs::write(dir.join("l2san.toml"), file).unwrap();
    let out = l2san_in(&dir, &["check-config", "l2san.toml"]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(2), "{all}");
    for (line, says) in [
        (1, "workers 0 must be from 1 to 256"),
        (4, "interface \"nosuch0\": no network interface named 'nosuch0'"),
        (8, "export \"pc1\": image odd.img is 1000 bytes, not a whole number of 512-byte sectors; pad it"),
        (9, "export \"pc1\": shelf 65535 is the broadcast address; use 0-65534"),
        (13, "export \"pc2\": cannot open image missing.img"),
        (15, "export \"pc2\": LUN 64 is out of range; use 0-63"),
        (16, "export \"pc2\": allow: '52:54:00:zz:00:01' is not a MAC address"),
        (17, "export \"pc2\": fcoe-allow: "),
        (18, "export \"pc2\": unknown key \"sise\""),
        (23, "export \"pc3\": e1.0 is already export \"pc2\" (line 14)"),
        (24, "export \"pc3\": durability \"fast\" is not writeback or sync"),
        (25, "export \"pc3\": interface \"eth9\" is not configured"),
        (
            26,
            "export \"pc3\": '/var/cow' is not an overlay policy: write \"persistent\" or \"reset\"",
        ),
    ] {
        has_line(&all, &format!("l2san.toml:{line}:"), says);
    }
    has_line(&all, "l2san.toml: 13 problems", "");

    // A syntax error: its line and column.
    fs::write(
        dir.join("syntax.toml"),
        "workers = 1\n[[export]\nname = \"a\"\n",
    )
    .unwrap();
    let out = l2san_in(&dir, &["check-config", "syntax.toml"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    has_line(&text(&out), "syntax.toml:2:", "TOML syntax");

    // serve --config on a broken file: the same problems, exit 2, nothing served.
    let out = l2san_in(&dir, &["serve", "--config", "l2san.toml"]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(2), "{all}");
    assert!(all.contains("problems in l2san.toml"), "{all}");
    has_line(
        &all,
        "  l2san.toml:9:",
        "shelf 65535 is the broadcast address",
    );

    // Export flags next to --config are refused, by name.
    let out = l2san_in(
        &dir,
        &["serve", "--config", "l2san.toml", "--aoe", "0.0=good.img"],
    );
    let all = text(&out);
    assert_eq!(out.status.code(), Some(2), "{all}");
    assert!(
        all.contains("--aoe cannot be combined with --config"),
        "{all}"
    );

    // A file that cannot be read.
    let out = l2san_in(&dir, &["check-config", "nonexistent.toml"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("cannot read config file"));
    let _ = fs::remove_dir_all(&dir);
}

/// A veth pair `a{n}`–`b{n}` in `ns`, both ends up: (MAC of a, MAC of b, ifindex of a).
fn veth(ns: &Netns, n: u32) -> Result<([u8; 6], [u8; 6], u32)> {
    let (a, b) = (format!("a{n}"), format!("b{n}"));
    ns.run(
        "ip",
        [
            "link", "add", "name", &a, "type", "veth", "peer", "name", &b,
        ],
    )
    .context("cannot create a veth pair (veth module?)")?;
    for dev in [&a, &b] {
        let _ = ns.run(
            "sh",
            [
                "-c",
                &format!("echo 1 > /proc/sys/net/ipv6/conf/{dev}/disable_ipv6"),
            ],
        );
        ns.run("ip", ["link", "set", "dev", dev, "up"])?;
    }
    let mac = |dev: &str| -> Result<[u8; 6]> {
        let s = ns.run("cat", [format!("/sys/class/net/{dev}/address")])?;
        let bytes: Vec<u8> = s
            .trim()
            .split(':')
            .map(|p| u8::from_str_radix(p, 16))
            .collect::<Result<_, _>>()
            .with_context(|| format!("bad MAC {s:?}"))?;
        bytes
            .try_into()
            .map_err(|_| anyhow::anyhow!("bad MAC {s:?}"))
    };
    let ifindex = ns
        .run("cat", [format!("/sys/class/net/{a}/ifindex")])?
        .trim()
        .parse()
        .context("bad ifindex")?;
    Ok((mac(&a)?, mac(&b)?, ifindex))
}

fn mac_str(m: &[u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// One Query Config reply: who sent it, for which export, what it says.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct ConfigReply {
    src: [u8; 6],
    shelf: u16,
    slot: u8,
    buffer_count: u16,
    config: Vec<u8>,
}

/// A broadcast Query Config (read) from `us` on `sock`; every reply with our tag within 1 s.
fn query_config(sock: &RawSocket, us: [u8; 6], tag: u32) -> Result<Vec<ConfigReply>> {
    config_command(sock, us, [0xff; 6], (0xffff, 0xff), tag, 0, b"")
}

/// A Config command `ccmd` with `string` from `us` to `dst` for `shelf.slot` on `sock`; every
/// reply with our tag within 1 s, sorted.
fn config_command(
    sock: &RawSocket,
    us: [u8; 6],
    dst: [u8; 6],
    (shelf, slot): (u16, u8),
    tag: u32,
    ccmd: u8,
    string: &[u8],
) -> Result<Vec<ConfigReply>> {
    sock.drain();
    let mut f = vec![0u8; 60.max(32 + string.len())];
    f[0..6].copy_from_slice(&dst);
    f[6..12].copy_from_slice(&us);
    f[12..14].copy_from_slice(&ETHERTYPE_AOE.to_be_bytes());
    f[14] = 0x10; // version 1, no flags
    f[16..18].copy_from_slice(&shelf.to_be_bytes());
    f[18] = slot;
    f[19] = CMD_CONFIG;
    f[20..24].copy_from_slice(&tag.to_be_bytes());
    // Config argument: buffer count, firmware, sector count (all 0), CCmd, string length, string.
    f[29] = ccmd;
    f[30..32].copy_from_slice(&(string.len() as u16).to_be_bytes());
    f[32..32 + string.len()].copy_from_slice(string);
    sock.send(&f)?;
    let mut replies = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(1);
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        let Some(r) = sock.recv(left)? else { break };
        if r.len() < 32
            || r[14] & FLAG_R == 0
            || r[19] != CMD_CONFIG
            || r[20..24] != tag.to_be_bytes()
        {
            continue;
        }
        ensure!(
            r[0..6] == us,
            "a reply to {} instead of us",
            mac_str(&r[0..6].try_into()?)
        );
        let len = u16::from_be_bytes([r[30], r[31]]) as usize;
        replies.push(ConfigReply {
            src: r[6..12].try_into()?,
            shelf: u16::from_be_bytes([r[16], r[17]]),
            slot: r[18],
            buffer_count: u16::from_be_bytes([r[24], r[25]]),
            config: r.get(32..32 + len).unwrap_or_default().to_vec(),
        });
    }
    replies.sort();
    Ok(replies)
}

/// Whether `pid` has a packet socket bound to each of `ifindexes`.
fn bound_to_all(pid: u32, ifindexes: &[u32]) -> bool {
    let Ok(table) = fs::read_to_string(format!("/proc/{pid}/net/packet")) else {
        return false;
    };
    // sk RefCnt Type Proto Iface R Rmem User Inode
    let bound: Vec<u32> = table
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(4)?.parse().ok())
        .collect();
    ifindexes.iter().all(|i| bound.contains(i))
}

#[test]
fn config_serve_two_interfaces() {
    rig::e2e_l2san(
        "config_serve_two_interfaces",
        "configuration files are l2san's",
        serve_two_interfaces,
    );
}

fn serve_two_interfaces(run: &Run) -> Result<()> {
    for name in ["golden", "pc1", "pc2", "pc3"] {
        fs::write(run.path(&format!("{name}.img")), vec![0u8; 1 << 20])?;
    }
    let ns = Netns::new()?;
    let (a1, b1, if1) = veth(&ns, 1)?;
    let (a2, b2, if2) = veth(&ns, 2)?;
    let img = |n: &str| run.path(&format!("{n}.img")).display().to_string();
    // golden on both NICs (AoE and FCoE), pc1 on a1 only, pc2 and pc3 on a2 only, pc3 for
    // another host than ours.
    let config = format!(
        "workers = 1\n\
         state-file = \"{state}\"\n\
         [[interface]]\nname = \"a1\"\n\
         [[interface]]\nname = \"a2\"\n\
         [[export]]\nname = \"golden\"\nimage = \"{golden}\"\nread-only = true\n\
         aoe = \"1.0\"\nfcoe-lun = 0\nconfig-string = \"golden\"\n\
         [[export]]\nname = \"pc1\"\nimage = \"{pc1}\"\naoe = \"2.1\"\ninterfaces = [\"a1\"]\n\
         buffer-count = 16\n\
         [[export]]\nname = \"pc2\"\nimage = \"{pc2}\"\ndurability = \"sync\"\naoe = \"2.2\"\n\
         interfaces = [\"a2\"]\nallow = [\"{b2}\"]\n\
         [[export]]\nname = \"pc3\"\nimage = \"{pc3}\"\naoe = \"2.3\"\ninterfaces = [\"a2\"]\n\
         allow = [\"52:54:00:00:00:99\"]\n",
        state = run.path("state").display(),
        golden = img("golden"),
        pc1 = img("pc1"),
        pc2 = img("pc2"),
        pc3 = img("pc3"),
        b2 = mac_str(&b2),
    );
    let path = run.path("l2san.toml");
    fs::write(&path, &config)?;
    let bin = rig::l2san_bin()?;

    // check-config, in the namespace where the interfaces exist: clean, with a summary.
    let out = ns
        .command(&bin)
        .arg("check-config")
        .arg(&path)
        .stdin(Stdio::null())
        .output()?;
    let all = text(&out);
    ensure!(out.status.code() == Some(0), "check-config failed: {all}");
    ensure!(
        all.contains("OK: 2 interfaces, 4 exports"),
        "summary: {all}"
    );
    ensure!(
        all.contains(&format!("interface a1 ({})", mac_str(&a1))),
        "summary: {all}"
    );
    ensure!(
        all.contains(&format!("interface a2 ({})", mac_str(&a2))),
        "summary: {all}"
    );

    let s1 = RawSocket::open_in_netns(ns.name(), "b1", ETHERTYPE_AOE)?;
    let s2 = RawSocket::open_in_netns(ns.name(), "b2", ETHERTYPE_AOE)?;
    let log = run.path("target.log");
    let mut cmd = ns.command(&bin);
    cmd.arg("serve").arg("--config").arg(&path);
    if std::env::var_os("RUST_LOG").is_none() {
        cmd.env("RUST_LOG", "info");
    }
    let mut target = Child::spawn_logged("l2san", &mut cmd, &log)?;
    let ready = rig::wait_until(Duration::from_secs(10), || {
        matches!(target.exited(), Ok(Some(_))) || bound_to_all(target.pid(), &[if1, if2])
    });
    if let Some(status) = target.exited()? {
        bail!("l2san exited at start ({status})");
    }
    ensure!(
        ready,
        "l2san has no packet socket on both a1 and a2 after 10 s"
    );

    let golden = |src: [u8; 6]| ConfigReply {
        src,
        shelf: 1,
        slot: 0,
        buffer_count: 64,
        config: b"golden".to_vec(),
    };
    let on_1 = query_config(&s1, b1, 0x0c0f_0001)?;
    let want_1 = vec![
        golden(a1),
        ConfigReply {
            src: a1,
            shelf: 2,
            slot: 1,
            buffer_count: 16,
            config: Vec::new(),
        },
    ];
    ensure!(on_1 == want_1, "on a1: got {on_1:#?}, expected {want_1:#?}");
    let on_2 = query_config(&s2, b2, 0x0c0f_0002)?;
    let want_2 = vec![
        golden(a2),
        ConfigReply {
            src: a2,
            shelf: 2,
            slot: 2,
            buffer_count: 64,
            config: Vec::new(),
        },
    ];
    ensure!(
        on_2 == want_2,
        "on a2 (e2.3 is for another host): got {on_2:#?}, expected {want_2:#?}"
    );

    // One disk, one state: a config string set through a1 is golden's on a2 too (copied on
    // the next pass, within 100 ms), and in the state file once.
    let set = config_command(&s1, b1, a1, (1, 0), 0x0c0f_0003, 4, b"shared")?;
    ensure!(
        set.len() == 1 && set[0].config == b"shared",
        "force-set through a1: {set:#?}"
    );
    let mut seen = Vec::new();
    let copied = rig::wait_until(Duration::from_secs(3), || {
        seen = query_config(&s2, b2, 0x0c0f_0004).unwrap_or_default();
        seen.iter().any(|r| r.shelf == 1 && r.config == b"shared")
    });
    ensure!(
        copied,
        "a2 does not report the config string set through a1: {seen:#?}"
    );
    let state = run.path("state");
    let saved = rig::wait_until(Duration::from_secs(3), || {
        fs::read_to_string(&state).is_ok_and(|s| s.contains("e1.0 config 736861726564"))
    });
    let state_text = fs::read_to_string(&state).unwrap_or_default();
    ensure!(saved, "state file:\n{state_text}");
    ensure!(
        state_text.matches("e1.0 config").count() == 1,
        "e1.0 twice in the state file:\n{state_text}"
    );

    let status = target.stop(Duration::from_secs(20))?;
    ensure!(status.success(), "l2san exited with {status} after SIGTERM");
    let log_text = fs::read_to_string(&log).unwrap_or_default();
    for line in [
        "AoE export e1.0 on a1",
        "AoE export e1.0 on a2",
        "FCoE LUN 0 on a1",
        "FCoE LUN 0 on a2",
    ] {
        ensure!(
            log_text.contains(line),
            "no {line:?} in the log:\n{log_text}"
        );
    }
    Ok(())
}
