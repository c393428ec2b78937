//! FCoE allow-lists end to end: a Linux VN2VN initiator (open-fcoe in QEMU) against l2san LUNs
//! that allow some initiators and not others (`--fcoe LUN=IMAGE,allow=<wwpn|mac>`, and
//! `fcoe-allow` in a configuration file).
//!
//! The guest logs in, waits for the SCSI disks it expects, rescans its SCSI host (`- - -`: every
//! channel, target and LUN, so REPORT LUNS and LUN 0 are asked again), and reports every SCSI
//! device it has (`H:C:T:L`), every disk with its size and MD5, and every remote port. A LUN the
//! guest may not see is "not there" to it, exactly as a LUN that is not configured
//! (`fcoe/src/fc/access.rs`): it must never show up, whatever the guest asks.
//!
//! - `fcoe_allow_by_wwpn`: LUN 0 allows only another WWPN, LUN 1 the guest's WWPN: the guest has
//!   exactly one SCSI device, LUN 1, with LUN 1's size and MD5.
//! - `fcoe_allow_by_mac_in_config_file`: the same through `l2san serve --config`, with the guest
//!   allowed by its ENode MAC on LUN 1, LUN 0 allowed to another WWPN and MAC, and LUN 2 open to
//!   all: the guest has exactly LUNs 1 and 2.
//! - `fcoe_allow_none_refuses_login`: no LUN allows the guest. l2san answers its FIP FLOGI with
//!   LS_RJT (never LS_ACC, and no FCP frame), counts the refusal
//!   (`l2san_fcoe_drop_not_allowed_total`) and opens no session; the guest's remote port never
//!   gets the target role and it has no SCSI device.
//!
//! Every frame of the segment is captured and l2san's frames are checked
//! ([`fcoe_guest::analyze`]). l2san only (vblade has no FCoE): under `L2SAN_E2E_TARGET=vblade`
//! they say so and do not run.

#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use l2san_rig::fcoe_guest::{
    self, captured_segment, fmt_mac, fmt_wwn, wwpn_from_mac, Capture, FrameStats, Mac, Segment,
    Side, FCOE_MODULES,
};
use l2san_rig::linux::{self, Kernel, LinuxOutcome};
use l2san_rig::rig::{self, md5_file, Netns, Run, Tap};
use l2san_rig::workload::L2sanProcess;

/// The tap's MAC: l2san's ENode MAC, and its default WWPN 20:00:02:4c:32:00:80:80.
const TAP_MAC: Mac = [0x02, 0x4c, 0x32, 0x00, 0x80, 0x80];
/// The guest's MAC (WWPN 20:00:02:4c:32:00:f0:f0, higher than l2san's: it sends the PLOGI).
const GUEST_MAC: Mac = [0x02, 0x4c, 0x32, 0x00, 0xf0, 0xf0];
/// Someone else, allowed where the guest is not.
const OTHER_MAC: Mac = [0x02, 0x4c, 0x32, 0x00, 0x99, 0x99];
/// The LUNs' image sizes: all different, so a size names its LUN.
const LUN_MIB: [usize; 3] = [8, 12, 6];
/// How long the guest waits for the disks it expects (for none: the whole time).
const WAIT_S: u32 = 30;
const NONE_WAIT_S: u32 = 12;
/// tcpdump's drain before SIGINT.
const DRAIN: Duration = Duration::from_secs(1);

/// The guest's steps (after [`linux::init_script`]'s prelude and
/// [`fcoe_guest::FCOE_FUNCTIONS`]).
const STEPS: &str = r#"WAIT=30; EXPECT=1
for a in $(cat /proc/cmdline); do
    case "$a" in
    l2san.wait=*) WAIT=${a#*=} ;;
    l2san.expect=*) EXPECT=${a#*=} ;;
    esac
done
echo pfifo_fast > /proc/sys/net/core/default_qdisc || fail "cannot set the default qdisc"
load_modules net
eth0_up
say MAC $(cat /sys/class/net/eth0/address)
load_modules fcoe
vn2vn_create
wait_fc_host
say LPORT $(cat $H/port_name) $(cat $H/port_id)
# Wait for EXPECT disks (EXPECT=0: the whole time).
n=0
while true; do
    c=$(ls /sys/class/scsi_disk 2>/dev/null | wc -l)
    [ $EXPECT -gt 0 ] && [ $c -ge $EXPECT ] && break
    n=$((n + 1)); [ $n -gt $((WAIT * 10)) ] && break
    usleep 100000
done
# Ask again: every channel, target and LUN of the host (LUN 0, then REPORT LUNS).
echo "- - -" > /sys/class/scsi_host/${H##*/}/scan
sleep 2
for r in /sys/class/fc_remote_ports/rport-*; do
    [ -e "$r/port_name" ] || continue
    say "RPORT $(cat $r/port_name) $(cat $r/port_id) $(cat $r/port_state) roles=$(cat $r/roles | tr -d ' ')"
done
for d in /sys/bus/scsi/devices/*:*:*:*; do
    [ -e "$d/type" ] && say "SDEV ${d##*/} type=$(cat $d/type)"
done
for d in /sys/class/scsi_disk/*; do
    [ -e "$d" ] || continue
    B=
    for b in $d/device/block/*; do [ -e "$b" ] && B=${b##*/}; done
    [ -n "$B" ] || continue
    M=$(md5sum /dev/$B) || fail "md5sum /dev/$B"
    set -- $M
    say "DISK ${d##*/} $B $(blockdev --getsize64 /dev/$B) $1"
done
interesting
echo eth0 > /sys/bus/fcoe/ctlr_destroy
usleep 500000
say DONE
poweroff -f
sleep 10
"#;

/// `L2SAN-LINUX <key> ...` lines of a kind (the report keeps only the last of each key).
fn lines<'a>(outcome: &'a LinuxOutcome, key: &str) -> Vec<&'a str> {
    let prefix = format!("L2SAN-LINUX {key} ");
    outcome
        .serial_log
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            l.find(&prefix).map(|at| l[at + prefix.len()..].trim())
        })
        .collect()
}

/// What the guest found: SCSI devices (`H:C:T:L`) and disks (`H:C:T:L`, size, md5).
#[derive(Debug)]
struct Found {
    sdevs: Vec<String>,
    disks: Vec<(String, u64, String)>,
    rports: Vec<String>,
}

impl Found {
    fn parse(outcome: &LinuxOutcome) -> Found {
        Found {
            sdevs: lines(outcome, "SDEV")
                .iter()
                .filter_map(|l| l.split_whitespace().next().map(str::to_string))
                .collect(),
            disks: lines(outcome, "DISK")
                .iter()
                .filter_map(|l| {
                    let w: Vec<&str> = l.split_whitespace().collect();
                    Some((
                        w.first()?.to_string(),
                        w.get(2)?.parse().ok()?,
                        w.get(3)?.to_string(),
                    ))
                })
                .collect(),
            rports: lines(outcome, "RPORT")
                .iter()
                .map(|l| l.to_string())
                .collect(),
        }
    }

    /// The LUNs of the SCSI devices.
    fn luns(&self) -> Vec<u64> {
        let mut l: Vec<u64> = self
            .sdevs
            .iter()
            .filter_map(|h| h.rsplit(':').next()?.parse().ok())
            .collect();
        l.sort_unstable();
        l
    }
}

/// A LUN's image: every sector starts with its LUN and sector number.
fn lun_image(lun: usize) -> Vec<u8> {
    let mut v = vec![0u8; LUN_MIB[lun] << 20];
    for (s, sector) in v.chunks_mut(512).enumerate() {
        let head = format!("L2SAN allow test LUN {lun} sector {s}\n");
        sector[..head.len()].copy_from_slice(head.as_bytes());
        for (i, b) in sector[head.len()..].iter_mut().enumerate() {
            *b = (s * 31 + i * 7 + lun * 101) as u8;
        }
    }
    v
}

/// The segment: a namespace with a tap at [`TAP_MAC`] and tcpdump on it; the images.
struct Fixture {
    ns: Netns,
    tap: Tap,
    capture: Option<Capture>,
    images: Vec<PathBuf>,
    md5s: Vec<String>,
}

impl Fixture {
    fn new(run: &Run) -> Result<Fixture> {
        let (ns, tap, capture) = captured_segment(run.dir(), 1500, &TAP_MAC)?;
        let mut images = Vec::new();
        let mut md5s = Vec::new();
        for lun in 0..LUN_MIB.len() {
            let path = run.path(&format!("lun{lun}.img"));
            std::fs::write(&path, lun_image(lun))?;
            md5s.push(md5_file(&path)?);
            images.push(path);
        }
        Ok(Fixture {
            ns,
            tap,
            capture: Some(capture),
            images,
            md5s,
        })
    }

    /// Boots the guest (MAC [`GUEST_MAC`]) until it reports what it found.
    fn guest(&self, run: &Run, kernel: &Kernel, expect: u32, wait_s: u32) -> Result<LinuxOutcome> {
        let mut w = linux::base_initramfs(kernel, FCOE_MODULES, "fcoe")?;
        let init = linux::init_script("L2SAN-LINUX", &[fcoe_guest::FCOE_FUNCTIONS, STEPS]);
        w.file("init", 0o755, init.as_bytes());
        let initramfs = run.path("initramfs-allow.cpio");
        std::fs::write(&initramfs, w.finish())?;
        let params = format!("l2san.expect={expect} l2san.wait={wait_s}");
        let guest = linux::Guest {
            name: "linux-fcoe-allow",
            kernel,
            initramfs: &initramfs,
            params: &params,
            mac: Some(GUEST_MAC),
            memory_mb: 384,
        };
        let timeout = Duration::from_secs(u64::from(wait_s) + 60);
        let outcome = linux::boot_guest(&self.ns, &self.tap, &guest, timeout, run.dir())?;
        outcome.check_done()?;
        ensure!(
            outcome.get("MAC") == Some(&fmt_mac(&GUEST_MAC)),
            "guest MAC {:?}",
            outcome.get("MAC")
        );
        Ok(outcome)
    }

    /// Stops tcpdump and checks l2san's frames in the capture.
    fn frames(&mut self) -> Result<FrameStats> {
        let capture = self.capture.take().context("capture already stopped")?;
        let end = capture.stop(DRAIN)?;
        let seg = Segment {
            guest_mac: GUEST_MAC,
            target_mac: TAP_MAC,
            mtu: 1500,
        };
        let stats = fcoe_guest::analyze(&end.path, &seg)?;
        ensure!(
            stats.target_problem_count == 0,
            "problems in l2san's frames: {:?}\n{}",
            stats.target_problems,
            stats.describe()
        );
        Ok(stats)
    }

    /// `--fcoe` arguments: `lun=image,allow=...` for each `(lun, allow-list)`.
    fn fcoe_args(&self, luns: &[(usize, &[String])]) -> Vec<String> {
        let mut args = Vec::new();
        for (lun, allow) in luns {
            let mut spec = format!("{lun}={}", self.images[*lun].display());
            for a in *allow {
                spec.push_str(&format!(",allow={a}"));
            }
            args.push("--fcoe".to_string());
            args.push(spec);
        }
        args
    }
}

/// Checks that the guest found exactly `luns`, each with its image's size and MD5.
fn check_found(fx: &Fixture, found: &Found, luns: &[u64]) -> Result<()> {
    ensure!(
        found.luns() == luns,
        "the guest has SCSI devices {:?}, expected exactly LUNs {luns:?} (remote ports {:?})",
        found.sdevs,
        found.rports
    );
    ensure!(
        found.disks.len() == luns.len(),
        "the guest has disks {:?}, expected LUNs {luns:?}",
        found.disks
    );
    for (hctl, size, md5) in &found.disks {
        let lun: usize = hctl
            .rsplit(':')
            .next()
            .and_then(|l| l.parse().ok())
            .with_context(|| format!("bad H:C:T:L {hctl}"))?;
        ensure!(
            *size == (LUN_MIB[lun] << 20) as u64 && *md5 == fx.md5s[lun],
            "disk {hctl}: {size} bytes, MD5 {md5}; LUN {lun} is {} bytes, MD5 {}",
            LUN_MIB[lun] << 20,
            fx.md5s[lun]
        );
    }
    Ok(())
}

fn metric(l2san: &L2sanProcess, ctl: &Path, name: &str) -> Result<f64> {
    Ok(l2san.ctl_metrics(ctl)?.get(name).copied().unwrap_or(0.0))
}

#[test]
fn fcoe_allow_by_wwpn() {
    rig::e2e_l2san("fcoe_allow_by_wwpn", "vblade has no FCoE", |run| {
        let kernel = Kernel::debian()?;
        let mut fx = Fixture::new(run)?;
        let other = [fmt_wwn(wwpn_from_mac(&OTHER_MAC))];
        let guest = [fmt_wwn(wwpn_from_mac(&GUEST_MAC))];
        let ctl = run.path("ctl.sock");
        let mut args = fx.fcoe_args(&[(0, &other), (1, &guest)]);
        args.extend(["--ctl-socket".to_string(), ctl.display().to_string()]);
        let l2san = L2sanProcess::start(&fx.ns, &fx.tap.name, &args, &run.path("l2san.log"))?;
        let outcome = fx.guest(run, &kernel, 1, WAIT_S)?;
        let found = Found::parse(&outcome);
        let logins = metric(&l2san, &ctl, "l2san_fcoe_logins_total")?;
        l2san.stop()?;
        let stats = fx.frames()?;
        rig::report(format_args!(
            "{}: LUN 0 allow={}, LUN 1 allow={}: the guest found {:?}, disks {:?}, remote ports \
             {:?}; l2san counted {logins:.0} logins; guest run {:.1} s",
            run.name(),
            other[0],
            guest[0],
            found.sdevs,
            found.disks,
            found.rports,
            outcome.elapsed.as_secs_f64()
        ));
        check_found(&fx, &found, &[1])?;
        ensure!(
            !stats.els_replies.contains_key(&(Side::Target, 0x01)),
            "l2san rejected an ELS of the allowed guest:\n{}",
            stats.describe()
        );
        Ok(())
    });
}

#[test]
fn fcoe_allow_by_mac_in_config_file() {
    rig::e2e_l2san(
        "fcoe_allow_by_mac_in_config_file",
        "vblade has no FCoE",
        |run| {
            let kernel = Kernel::debian()?;
            let mut fx = Fixture::new(run)?;
            let ctl = run.path("ctl.sock");
            let config = run.path("l2san.toml");
            let toml = format!(
                "ctl-socket = \"{ctl}\"\n\n\
             [[interface]]\nname = \"{tap}\"\n\n\
             [[export]]\nname = \"hidden\"\nimage = \"{i0}\"\nfcoe-lun = 0\n\
             fcoe-allow = [\"{ow}\", \"{om}\"]\n\n\
             [[export]]\nname = \"guest\"\nimage = \"{i1}\"\nfcoe-lun = 1\n\
             fcoe-allow = [\"{gm}\"]\n\n\
             [[export]]\nname = \"open\"\nimage = \"{i2}\"\nfcoe-lun = 2\n",
                ctl = ctl.display(),
                tap = fx.tap.name,
                i0 = fx.images[0].display(),
                i1 = fx.images[1].display(),
                i2 = fx.images[2].display(),
                ow = fmt_wwn(wwpn_from_mac(&OTHER_MAC)),
                om = fmt_mac(&OTHER_MAC),
                gm = fmt_mac(&GUEST_MAC),
            );
            std::fs::write(&config, &toml)?;
            let l2san = L2sanProcess::start_config(
                &fx.ns,
                &fx.tap.name,
                &config,
                &[],
                &run.path("l2san.log"),
            )?;
            let outcome = fx.guest(run, &kernel, 2, WAIT_S)?;
            let found = Found::parse(&outcome);
            let logins = metric(&l2san, &ctl, "l2san_fcoe_logins_total")?;
            l2san.stop()?;
            fx.frames()?;
            rig::report(format_args!(
                "{}: LUN 0 allows another WWPN and MAC, LUN 1 the guest's MAC {}, LUN 2 everyone: \
             the guest found {:?}, disks {:?}; l2san counted {logins:.0} logins; guest run {:.1} s",
                run.name(),
                fmt_mac(&GUEST_MAC),
                found.sdevs,
                found.disks,
                outcome.elapsed.as_secs_f64()
            ));
            check_found(&fx, &found, &[1, 2])
        },
    );
}

#[test]
fn fcoe_allow_none_refuses_login() {
    rig::e2e_l2san(
        "fcoe_allow_none_refuses_login",
        "vblade has no FCoE",
        |run| {
            let kernel = Kernel::debian()?;
            let mut fx = Fixture::new(run)?;
            let other_wwpn = [fmt_wwn(wwpn_from_mac(&OTHER_MAC))];
            let other_mac = [fmt_mac(&OTHER_MAC)];
            let ctl = run.path("ctl.sock");
            let mut args = fx.fcoe_args(&[(0, &other_wwpn), (1, &other_mac)]);
            args.extend(["--ctl-socket".to_string(), ctl.display().to_string()]);
            let l2san = L2sanProcess::start(&fx.ns, &fx.tap.name, &args, &run.path("l2san.log"))?;
            let outcome = fx.guest(run, &kernel, 0, NONE_WAIT_S)?;
            let found = Found::parse(&outcome);
            let metrics = l2san.ctl_metrics(&ctl)?;
            let m = |name: &str| metrics.get(name).copied().unwrap_or(0.0);
            let (refused, logins, sessions) = (
                m("l2san_fcoe_drop_not_allowed_total"),
                m("l2san_fcoe_logins_total"),
                m("l2san_fcoe_sessions"),
            );
            l2san.stop()?;
            let stats = fx.frames()?;
            let guest_flogi = stats.els_count(Side::Guest, 0x04);
            // Replies to the FIP FLOGIs (descriptor 7); the guest's LOGO at shutdown, when it
            // comes before the capture ends, is accepted like any logout.
            let flogi_reply = |code: u8| {
                stats
                    .fip_els_replies
                    .get(&(Side::Target, 7, code))
                    .copied()
                    .unwrap_or(0)
            };
            let (rjt, acc) = (flogi_reply(0x01), flogi_reply(0x02));
            let target = stats.side(Side::Target);
            rig::report(format_args!(
            "{}: no LUN allows the guest: it sent {guest_flogi} FLOGIs in {NONE_WAIT_S} s, l2san \
             answered {rjt} LS_RJT and {acc} LS_ACC to them and sent {} FCoE frames; l2san counted \
             {refused:.0} refused logins, {logins:.0} logins, {sessions:.0} sessions; the guest \
             found {:?}, remote ports {:?}\n{}",
            run.name(),
            target.fcoe,
            found.sdevs,
            found.rports,
            stats.describe()
        ));
            ensure!(
                guest_flogi >= 1,
                "the guest never tried to log in (no FLOGI in the capture)"
            );
            ensure!(
                rjt >= guest_flogi && acc == 0,
                "l2san answered {guest_flogi} FLOGIs with {rjt} LS_RJT and {acc} LS_ACC; expected \
             LS_RJT only"
            );
            ensure!(
            target.fcoe == 0 && stats.scsi_commands.is_empty(),
            "FCoE frames between the refused guest and l2san ({} from l2san, SCSI commands {:?})",
            target.fcoe,
            stats.scsi_commands
        );
            ensure!(
                refused >= guest_flogi as f64 && logins == 0.0 && sessions == 0.0,
                "l2san's counters: {refused} refused, {logins} logins, {sessions} sessions"
            );
            ensure!(
                found.sdevs.is_empty() && found.disks.is_empty(),
                "the refused guest has SCSI devices {:?}",
                found.sdevs
            );
            ensure!(
                !found.rports.iter().any(|r| r.contains("Target")),
                "the refused guest has a target port: {:?}",
                found.rports
            );
            Ok(())
        },
    );
}
