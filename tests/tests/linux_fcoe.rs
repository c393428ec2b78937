//! A Debian kernel's FCoE initiator (open-fcoe in VN2VN mode, in QEMU with a busybox initramfs)
//! logs in to l2san, reads, checksums and writes a LUN, and logs out; every frame on the segment is
//! captured and checked (by the test itself, and by tshark on a reduced capture).
//!
//! The guest's WWPN is `20:00:<its MAC>` and l2san's default is `20:00:<tap MAC>`; both MACs are
//! set, so each test knows which side has the higher WWPN and therefore sends the PLOGI.
//!
//! `linux_fcoe_guest_probes_without_target` needs no target: it checks the rig (the guest's VN2VN
//! probes, claim and beacons, and the capture checker) on its own. The others need an l2san that
//! serves `--fcoe`; vblade has no FCoE, so under `L2SAN_E2E_TARGET=vblade` they say so and do
//! not run.
//!
//! The ignored `linux_fcoe_reference_lio_*` tests run the same scenarios and checks against LIO's
//! `tcm_fc` in a second guest (bridged to the initiator's tap), the reference FCoE target:
//! `cargo test -p l2san-tests --test linux_fcoe -- --ignored`.

#![forbid(unsafe_code)]

use anyhow::{bail, ensure, Context, Result};
use l2san_rig::fcoe_guest::{
    self, captured_segment, fmt_mac, port_id_from_mac, wwpn_from_mac, Capture, FcoeExport,
    FcoeMode, FcoeScenario, FrameStats, LioTarget, Mac, Segment, Side,
};
use l2san_rig::linux::{self, Kernel, LinuxOutcome};
use l2san_rig::rig::{self, md5_file, Netns, Run, Tap, Target};
use l2san_rig::{bootdisk, rig::report};
use std::time::Duration;

/// Why the tests of l2san's FCoE do not run against vblade.
const NO_FCOE: &str = "vblade has no FCoE";
/// The tap's MAC: l2san's ENode MAC, and its default WWPN 20:00:02:4c:32:00:80:80.
const TAP_MAC: Mac = [0x02, 0x4c, 0x32, 0x00, 0x80, 0x80];
/// A guest whose WWPN is lower than l2san's: l2san must send the PLOGI.
const GUEST_LOWER: Mac = [0x02, 0x4c, 0x32, 0x00, 0x10, 0x10];
/// A guest whose WWPN is higher than l2san's: the guest sends the PLOGI.
const GUEST_HIGHER: Mac = [0x02, 0x4c, 0x32, 0x00, 0xf0, 0xf0];

/// Frames of any kind (besides all control frames) that tshark decodes.
const TSHARK_HEAD: u32 = 2000;

/// How long tcpdump gets for the last frames before SIGINT.
const DRAIN: Duration = Duration::from_secs(2);

/// The guest's own VN_Port, as sysfs reports it: `0x<wwpn> 0x<port id>`.
fn expected_lport(mac: &Mac) -> String {
    format!("{:#x} {:#08x}", wwpn_from_mac(mac), port_id_from_mac(mac))
}

/// Stops the capture, checks every frame in it and runs tshark over a reduced copy. Fails on any
/// problem in a frame the target sent or anything tshark flags.
fn check_capture(run: &Run, capture: Capture, segment: &Segment) -> Result<FrameStats> {
    let end = capture.stop(DRAIN)?;
    let started = std::time::Instant::now();
    let stats = fcoe_guest::analyze(&end.path, segment)?;
    let analyzed = started.elapsed();
    let started = std::time::Instant::now();
    let tshark = fcoe_guest::tshark_check(&end.path, run.dir(), TSHARK_HEAD)?;
    report(format_args!(
        "{}: capture: {} frames ({} dropped by the kernel, {} truncated; checked in {:.1} s); \
         tshark decoded {} of them in {:.1} s",
        run.name(),
        stats.frames,
        end.dropped
            .map_or_else(|| "?".to_string(), |d| d.to_string()),
        stats.truncated,
        analyzed.as_secs_f64(),
        tshark.frames,
        started.elapsed().as_secs_f64()
    ));
    if !stats.guest_problems.is_empty() {
        report(format_args!(
            "{}: warning: the checker objects to the guest's frames (a rig problem):\n  {}",
            run.name(),
            stats.guest_problems.join("\n  ")
        ));
    }
    if stats.target_problem_count > 0 {
        bail!(
            "{} problems in the target's frames, first ones:\n  {}\n{}",
            stats.target_problem_count,
            stats.target_problems.join("\n  "),
            stats.describe()
        );
    }
    if !tshark.flagged.is_empty() {
        bail!(
            "tshark flags frames ({}):\n  {}\n{}",
            fcoe_guest::TSHARK_BROKEN,
            tshark.flagged.join("\n  "),
            stats.describe()
        );
    }
    Ok(stats)
}

#[test]
fn linux_fcoe_guest_probes_without_target() {
    rig::e2e("linux_fcoe_guest_probes_without_target", |run| {
        let kernel = Kernel::debian()?;
        let (ns, tap, capture) = captured_segment(run.dir(), 1500, &TAP_MAC)?;
        let scenario = FcoeScenario {
            mode: FcoeMode::Probe,
            guest_mac: GUEST_LOWER,
            ..FcoeScenario::default()
        };
        let outcome = fcoe_guest::run_fcoe(&ns, &tap, &kernel, &scenario, run.dir())?;
        let seg = Segment {
            guest_mac: GUEST_LOWER,
            target_mac: TAP_MAC,
            mtu: 1500,
        };
        let stats = check_capture(run, capture, &seg)?;
        outcome.check_done()?;
        report(format_args!(
            "{}: guest VN_Port {} online {} ms after ctlr_create (guest run {:.1} s)\n{}",
            run.name(),
            outcome.get("LPORT").unwrap_or("?"),
            outcome.get("ONLINE-MS").unwrap_or("?"),
            outcome.elapsed.as_secs_f64(),
            stats.describe()
        ));
        ensure!(
            outcome.get("MAC") == Some(&fmt_mac(&GUEST_LOWER)),
            "guest MAC {:?}, wanted {} (QEMU -global virtio-net-pci.mac)",
            outcome.get("MAC"),
            fmt_mac(&GUEST_LOWER)
        );
        ensure!(
            outcome.get("LPORT") == Some(&expected_lport(&GUEST_LOWER)),
            "guest VN_Port {:?}, wanted {}",
            outcome.get("LPORT"),
            expected_lport(&GUEST_LOWER)
        );
        let probes = stats.fip_count(Side::Guest, 5, 1);
        let claims = stats.fip_count(Side::Guest, 5, 3);
        let beacons = stats.fip_count(Side::Guest, 5, 5);
        ensure!(
            probes >= 2 && claims >= 1 && beacons >= 1,
            "guest sent {probes} probe requests, {claims} claim notifications, {beacons} \
             beacons; wanted 2, 1 and at least 1:\n{}",
            stats.describe()
        );
        ensure!(
            stats.side(Side::Target).fcoe + stats.side(Side::Target).fip == 0
                && stats.side(Side::Other).fip == 0,
            "frames from someone other than the guest on an empty segment:\n{}",
            stats.describe()
        );
        ensure!(
            stats.guest_problems.is_empty(),
            "the frame checker objects to the guest's frames:\n  {}",
            stats.guest_problems.join("\n  ")
        );
        Ok(())
    });
}

/// One FCoE run.
struct FcoeCase {
    guest_mac: Mac,
    mtu: u32,
    read_only: bool,
    image_mib: usize,
}

/// Guest WWPN lower than the target's (the target sends the PLOGI), MTU 1500 (1452-byte FC
/// payloads).
const LOWER: FcoeCase = FcoeCase {
    guest_mac: GUEST_LOWER,
    mtu: 1500,
    read_only: false,
    image_mib: 64,
};

/// Guest WWPN higher than the target's (the guest sends the PLOGI), MTU 9000 (2112-byte FC
/// payloads).
const HIGHER: FcoeCase = FcoeCase {
    guest_mac: GUEST_HIGHER,
    mtu: 9000,
    read_only: false,
    image_mib: 64,
};

/// A read-only LUN: the guest's writes must fail with DATA PROTECT.
const READONLY: FcoeCase = FcoeCase {
    guest_mac: GUEST_HIGHER,
    mtu: 1500,
    read_only: true,
    image_mib: 32,
};

/// Who serves the LUN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Server {
    /// l2san on the tap, ENode MAC [`TAP_MAC`].
    L2san,
    /// LIO `tcm_fc` in a second guest with NIC MAC [`TAP_MAC`], bridged to the initiator's tap.
    Lio,
}

/// A running target of either kind.
enum Served {
    L2san(Target),
    Lio(LioTarget),
}

impl Served {
    fn check_running(&mut self) -> Result<()> {
        match self {
            Served::L2san(t) => t.check_running(),
            Served::Lio(t) => t.check_running(),
        }
    }
}

/// Two taps (the initiator's first) on a bridge, for a target that is itself a guest.
fn bridged(ns: &Netns, mtu: u32) -> Result<(Tap, Tap)> {
    let guest = ns.tap("tap0", mtu)?;
    let target = ns.tap("tap1", mtu)?;
    ns.run("ip", ["link", "add", "br0", "type", "bridge"])
        .context("cannot create a bridge")?;
    for tap in [&guest, &target] {
        ns.run("ip", ["link", "set", "dev", &tap.name, "master", "br0"])?;
    }
    ns.run("ip", ["link", "set", "dev", "br0", "up"])?;
    Ok((guest, target))
}

fn linux_fcoe(run: &Run, case: &FcoeCase, server: Server) -> Result<()> {
    let kernel = Kernel::debian()?;
    let image = run.path("disk.img");
    let original = bootdisk::build(case.image_mib << 20);
    std::fs::write(&image, &original)?;
    let original_md5 = md5_file(&image)?;
    let pattern = run.path("pattern.bin");
    std::fs::write(&pattern, linux::aoe_pattern())?;
    let pattern_md5 = md5_file(&pattern)?;
    let at = fcoe_guest::FCOE_PATTERN_LBA as usize * 512;
    let region = run.path("region.bin");
    std::fs::write(&region, &original[at..at + linux::aoe_pattern().len()])?;
    let region_md5 = md5_file(&region)?;

    let (ns, tap, capture, mut target) = match server {
        Server::L2san => {
            let (ns, tap, capture) = captured_segment(run.dir(), case.mtu, &TAP_MAC)?;
            let mut export = FcoeExport::new(0, &image);
            if case.read_only {
                export = export.read_only();
            }
            let mut target = Target::l2san_args(
                &ns,
                &tap,
                &rig::l2san_bin()?,
                &["--fcoe".to_string(), export.l2san_arg()],
                &run.path("target.log"),
            )?;
            // Target::l2san_args counts tcpdump's packet socket as the target's: catch a target
            // that refuses its arguments here rather than after the guest's login timeout.
            std::thread::sleep(Duration::from_secs(1));
            target.check_running()?;
            (ns, tap, capture, Served::L2san(target))
        }
        Server::Lio => {
            let ns = Netns::new()?;
            let (tap, lio_tap) = bridged(&ns, case.mtu)?;
            let capture = Capture::start(
                &ns,
                &tap,
                &run.path("segment.pcap"),
                &run.path("tcpdump.log"),
            )?;
            let lio = LioTarget::start(
                &ns,
                &lio_tap,
                &kernel,
                &TAP_MAC,
                &original,
                wwpn_from_mac(&case.guest_mac),
                case.read_only,
                run.dir(),
            )?;
            (ns, tap, capture, Served::Lio(lio))
        }
    };
    let scenario = FcoeScenario {
        mode: if case.read_only {
            FcoeMode::ReadOnly
        } else {
            FcoeMode::ReadWrite
        },
        guest_mac: case.guest_mac,
        mtu: case.mtu,
        write_mib: case.image_mib as u64 / 4,
        ..FcoeScenario::default()
    };
    let outcome = fcoe_guest::run_fcoe(&ns, &tap, &kernel, &scenario, run.dir())?;
    let seg = Segment {
        guest_mac: case.guest_mac,
        target_mac: TAP_MAC,
        mtu: case.mtu,
    };
    let stats = check_capture(run, capture, &seg);
    target.check_running()?;
    report_outcome(run, case, &outcome);
    outcome.check_done()?;
    let stats = stats?;
    report(format_args!("{}: {}", run.name(), stats.describe()));
    check_guest_report(case, &outcome, &original_md5)?;
    if case.read_only {
        ensure!(
            outcome.get("WRITE-REFUSED").is_some(),
            "the guest reports no refused write"
        );
        ensure!(
            outcome.md5("RO-READBACK-MD5")? == region_md5,
            "the sectors of the refused write read back as {}, not the image's {region_md5}",
            outcome.md5("RO-READBACK-MD5")?
        );
        ensure!(
            outcome.get("SG-WRITE-SENT").is_some(),
            "the guest sent no raw WRITE"
        );
        let data_protect: u64 = stats
            .scsi_status
            .iter()
            .filter(|((status, key), _)| *status == 0x02 && *key == Some(0x07))
            .map(|(_, n)| n)
            .sum();
        ensure!(
            data_protect > 0,
            "no CHECK CONDITION with sense key DATA PROTECT from the target for the raw WRITE \
             ({} WRITE(10) commands on the wire):\n{}",
            stats.scsi_commands.get(&0x2a).copied().unwrap_or(0),
            stats.describe()
        );
    } else {
        ensure!(
            outcome.md5("READBACK-MD5")? == pattern_md5,
            "O_DIRECT read-back md5 {} differs from the pattern's {pattern_md5}",
            outcome.md5("READBACK-MD5")?
        );
        ensure!(
            outcome.get("IO-ERRORS") == Some("0"),
            "the guest logged {:?} I/O errors",
            outcome.get("IO-ERRORS")
        );
    }
    check_logins(case, &stats)?;
    match target {
        Served::L2san(target) => target.stop()?,
        // LIO's copy of the image lives in its guest's RAM.
        Served::Lio(lio) => {
            lio.stop();
            return Ok(());
        }
    }
    let after = std::fs::read(&image)?;
    let expected = if case.read_only {
        original
    } else {
        fcoe_guest::expected_after_fcoe(&original, scenario.write_mib)
    };
    if let Some(diff) = bootdisk::first_difference(&after, &expected) {
        bail!("image after the guest's run: {diff}");
    }
    Ok(())
}

fn report_outcome(run: &Run, case: &FcoeCase, outcome: &LinuxOutcome) {
    let order = if wwpn_from_mac(&case.guest_mac) < wwpn_from_mac(&TAP_MAC) {
        "lower"
    } else {
        "higher"
    };
    report(format_args!(
        "{}: MTU {}, guest WWPN {order} ({}), rport {}; online {} ms, rport {} ms, disk {} ms \
         after ctlr_create; O_DIRECT read {}, O_DIRECT write {} (guest run {:.1} s)",
        run.name(),
        outcome.get("MTU").unwrap_or("?"),
        outcome.get("LPORT").unwrap_or("?"),
        outcome.get("RPORT").unwrap_or("?"),
        outcome.get("ONLINE-MS").unwrap_or("?"),
        outcome.get("RPORT-MS").unwrap_or("?"),
        outcome.get("DISK-MS").unwrap_or("?"),
        outcome.rate("READ-RATE"),
        if case.read_only {
            format!("refused: {}", outcome.get("WRITE-REFUSED").unwrap_or("?"))
        } else {
            outcome.rate("WRITE-RATE")
        },
        outcome.elapsed.as_secs_f64()
    ));
}

/// What the guest saw: its MTU and VN_Port, l2san's port and the disk's size and content.
fn check_guest_report(case: &FcoeCase, outcome: &LinuxOutcome, original_md5: &str) -> Result<()> {
    ensure!(
        outcome.get("MTU") == Some(&case.mtu.to_string()),
        "guest eth0 MTU is {:?}, wanted {}",
        outcome.get("MTU"),
        case.mtu
    );
    ensure!(
        outcome.get("LPORT") == Some(&expected_lport(&case.guest_mac)),
        "guest VN_Port {:?}, wanted {}",
        outcome.get("LPORT"),
        expected_lport(&case.guest_mac)
    );
    let rport = outcome.get("RPORT").unwrap_or("");
    let target_wwpn = format!("{:#x}", wwpn_from_mac(&TAP_MAC));
    ensure!(
        rport.split_whitespace().next() == Some(&target_wwpn) && rport.contains("FCP Target"),
        "remote port {rport:?}, wanted WWPN {target_wwpn} with the FCP Target role"
    );
    let size = outcome
        .get("DEVICE")
        .and_then(|d| d.split_whitespace().nth(1))
        .and_then(|s| s.parse::<usize>().ok());
    ensure!(
        size == Some(case.image_mib << 20),
        "disk {:?}, wanted {} bytes",
        outcome.get("DEVICE"),
        case.image_mib << 20
    );
    ensure!(
        outcome.get("DISK-RO") == Some(if case.read_only { "1" } else { "0" }),
        "the guest's read-only flag for the disk is {:?} (read_only {})",
        outcome.get("DISK-RO"),
        case.read_only
    );
    ensure!(
        outcome.md5("READ-MD5")? == original_md5,
        "whole-disk md5 in the guest {} differs from the image's {original_md5}",
        outcome.md5("READ-MD5")?
    );
    Ok(())
}

/// The logins on the wire: the higher WWPN sent a PLOGI, the target sent data, the guest sent a
/// FIP LOGO when its controller was destroyed, and the target accepted it. (Linux sends a FIP
/// FLOGI to the target; LIO sends one back too, but answering is enough.)
fn check_logins(case: &FcoeCase, stats: &FrameStats) -> Result<()> {
    let plogi_from = if wwpn_from_mac(&case.guest_mac) > wwpn_from_mac(&TAP_MAC) {
        Side::Guest
    } else {
        Side::Target
    };
    ensure!(
        stats.els_count(plogi_from, 0x03) > 0,
        "no PLOGI from the {plogi_from}, the side with the higher WWPN:\n{}",
        stats.describe()
    );
    ensure!(
        stats.side(Side::Target).data_frames > 0,
        "no FCP_DATA from the target:\n{}",
        stats.describe()
    );
    let logo = stats
        .events
        .iter()
        .rposition(|e| e.contains(" guest ") && e.contains("carrying LOGO"))
        .with_context(|| {
            format!(
                "no FIP LOGO from the guest after ctlr_destroy:\n{}",
                stats.describe()
            )
        })?;
    ensure!(
        stats.events[logo..].iter().any(|e| e.contains(" target ")
            && e.contains("FIP ELS reply")
            && e.contains("carrying LS_ACC")),
        "the target did not accept the guest's FIP LOGO:\n{}",
        stats.describe()
    );
    if case.mtu >= 2500 {
        // Baby jumbo frames: Linux advertises 2112-byte payloads; l2san should fill them.
        let largest = stats.side(Side::Target).max_data_payload;
        if largest < 2112 {
            report(format_args!(
                "note: at MTU {} the target's largest FCP_DATA payload is {largest} bytes",
                case.mtu
            ));
        }
    }
    Ok(())
}

#[test]
fn linux_fcoe_guest_wwpn_lower() {
    rig::e2e_l2san("linux_fcoe_guest_wwpn_lower", NO_FCOE, |run| {
        linux_fcoe(run, &LOWER, Server::L2san)
    });
}

#[test]
fn linux_fcoe_guest_wwpn_higher() {
    rig::e2e_l2san("linux_fcoe_guest_wwpn_higher", NO_FCOE, |run| {
        linux_fcoe(run, &HIGHER, Server::L2san)
    });
}

#[test]
fn linux_fcoe_readonly() {
    rig::e2e_l2san("linux_fcoe_readonly", NO_FCOE, |run| {
        linux_fcoe(run, &READONLY, Server::L2san)
    });
}

/// The same checks against LIO's `tcm_fc` in a second guest (the reference FCoE target), to tell
/// a rig or test problem from an l2san one: `cargo test -p l2san-tests --test linux_fcoe --
/// --ignored`. LIO keeps the image in its guest's RAM, so the image file is not checked.
#[test]
#[ignore = "reference run against LIO in a second guest"]
fn linux_fcoe_reference_lio_lower() {
    rig::e2e("linux_fcoe_reference_lio_lower", |run| {
        linux_fcoe(run, &LOWER, Server::Lio)
    });
}

#[test]
#[ignore = "reference run against LIO in a second guest"]
fn linux_fcoe_reference_lio_higher() {
    rig::e2e("linux_fcoe_reference_lio_higher", |run| {
        linux_fcoe(run, &HIGHER, Server::Lio)
    });
}

#[test]
#[ignore = "reference run against LIO in a second guest"]
fn linux_fcoe_reference_lio_readonly() {
    rig::e2e("linux_fcoe_reference_lio_readonly", |run| {
        linux_fcoe(run, &READONLY, Server::Lio)
    });
}
