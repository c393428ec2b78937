//! l2san killed with SIGKILL in the middle of a Linux FCoE (VN2VN) guest's I/O and started again
//! within about a second, with the same command line on the same tap and image.
//!
//! The guest (open-fcoe in VN2VN mode, [`WorkloadGuest::start_fcoe`]) logs in to l2san, finds
//! its disk and runs the verified write workload of [`l2san_rig::workload`] on it: O_DIRECT
//! 64 KiB writes in generations, `ACK` lines, read-back verify. Once some writes are
//! acknowledged, l2san is killed; the image is read at once (every block the guest saw
//! acknowledged must be in it, and nothing but old or new data anywhere in the region) and
//! l2san is started again. The new process has no sessions and must claim its VN2VN
//! port id again; Linux has to notice and log in again. The workload must end with no I/O error
//! and a verified read-back, and the image must hold the last generation.
//!
//! Every frame is captured; the control frames (FIP, ELS, BLS, failed FCP_RSPs) are reported, so
//! what Linux sent after the restart and what l2san answered can be read off.
//!
//! What happens (Debian kernel, TCG): the restarted l2san probes and claims its old port id and
//! beacons; Linux answers the claim, but its rport is still READY, so the beacon does not make it
//! log in again. The write in flight at the kill stalls; ~3 s later Linux sends REC; l2san (no
//! session) answers LS_RJT "PLOGI required" and sends a LOGO (FC-LS: a frame from a port that is
//! not logged in is answered with LOGO); libfc deletes the rport, logs in again (FLOGI, PLOGI,
//! PRLI) and retries the write: the guest writes again about 3 s after the restart. Before l2san
//! sent that LOGO, libfc ignored the LS_RJTs on its FCP exchanges and only recovered through the
//! 30 s SCSI timeout, a LUN reset and a host reset: a stall of 75-80 s (no I/O error even then).
//!
//! l2san only (vblade has no FCoE): under `L2SAN_E2E_TARGET=vblade` it says so and does not run.

#![forbid(unsafe_code)]

use std::time::Duration;

use anyhow::{ensure, Result};
use l2san_rig::fcoe_guest::{self, captured_segment, FcoeExport, Mac, Segment};
use l2san_rig::linux::Kernel;
use l2san_rig::rig::{self, Run};
use l2san_rig::workload::{self, L2sanProcess, WorkloadGuest, WorkloadOpts};
use l2san_rig::{bootdisk, fixture};

/// The tap's MAC: l2san's ENode MAC, and its default WWPN 20:00:02:4c:32:00:80:80.
const TAP_MAC: Mac = [0x02, 0x4c, 0x32, 0x00, 0x80, 0x80];
/// The guest's MAC; its WWPN is higher than l2san's, so Linux sends the PLOGI.
const GUEST_MAC: Mac = [0x02, 0x4c, 0x32, 0x00, 0xf0, 0xf0];
/// Image size: the workload region (1 MiB .. 5 MiB) and untouched space after it.
const IMAGE_MIB: usize = 16;
/// Writes acknowledged before the kill.
const KILL_AFTER_WRITES: u64 = 24;
/// Time for the guest to boot, log in, find the disk and reach the kill point.
const BOOT_TIMEOUT: Duration = Duration::from_secs(90);
/// Time for the rest of the workload.
const FINISH_TIMEOUT: Duration = Duration::from_secs(120);
/// How soon the guest must write again after the restart: l2san LOGOs a port that sends it
/// commands without a login, and Linux logs in again at once (3.3 s seen; without the LOGO it
/// took 80 s, through the SCSI timeout and a host reset).
const RESUME_TIMEOUT: Duration = Duration::from_secs(20);

fn fcoe_crash_restart(run: &Run) -> Result<()> {
    let kernel = Kernel::debian()?;
    let image = run.path("disk.img");
    let original = bootdisk::build(IMAGE_MIB << 20);
    std::fs::write(&image, &original)?;
    let opts = WorkloadOpts {
        blocks: 64,
        ..WorkloadOpts::default()
    };

    let (ns, tap, capture) = captured_segment(run.dir(), opts.mtu, &TAP_MAC)?;
    let segment = Segment {
        guest_mac: GUEST_MAC,
        target_mac: TAP_MAC,
        mtu: opts.mtu,
    };
    let mut l2san = L2sanProcess::start(
        &ns,
        &tap.name,
        &["--fcoe".into(), FcoeExport::new(0, &image).l2san_arg()],
        &run.path("l2san.log"),
    )?;
    let mut guest = WorkloadGuest::start_fcoe(&ns, &tap, &kernel, &opts, &GUEST_MAC, run.dir())?;

    let body = (|| -> Result<()> {
        guest.wait_for("writes to kill at", BOOT_TIMEOUT, |p| {
            p.writes_acked(opts.blocks) >= KILL_AFTER_WRITES
        })?;
        fixture::kill_restart_resume(
            run,
            &ns,
            &mut l2san,
            &mut guest,
            &image,
            &original,
            &opts,
            RESUME_TIMEOUT,
        )
    })();
    if let Err(e) = body {
        // Stop the guest (dropping it kills QEMU) and show what went over the wire.
        drop(guest);
        let end = capture.stop(Duration::from_millis(500))?;
        let stats = fcoe_guest::analyze(&end.path, &segment)?;
        return Err(e.context(format!("frames on the segment: {}", stats.describe())));
    }
    let (p, elapsed) = guest.finish(FINISH_TIMEOUT)?;
    let end = capture.stop(Duration::from_millis(500))?;
    let stats = fcoe_guest::analyze(&end.path, &segment)?;
    let outcome = workload::check_outcome(&p, &opts).and_then(|()| {
        l2san.check_running()?;
        Ok(())
    });
    if let Err(e) = outcome {
        return Err(e.context(format!(
            "guest dmesg:\n  {}\nframes on the segment: {}",
            p.dmesg.join("\n  "),
            stats.describe()
        )));
    }
    let log = l2san.log_text();
    l2san.stop()?;
    let after = std::fs::read(&image)?;
    workload::check_final(&after, &original, &opts, after.len())?;
    ensure!(
        stats.target_problem_count == 0,
        "problems in l2san's frames: {:?}",
        stats.target_problems
    );
    rig::report(format_args!(
        "{}: {} (guest run {:.1} s); read-back {}; image holds the last generation in all {} \
         blocks; l2san warnings: {}\n{}",
        run.name(),
        p.written.as_deref().unwrap_or("?"),
        elapsed.as_secs_f64(),
        p.verify.as_deref().unwrap_or("?"),
        opts.blocks,
        workload::warn_lines(&log).len(),
        stats.describe()
    ));
    for line in p.dmesg.iter().take(40) {
        rig::report(format_args!("{}:   guest: {line}", run.name()));
    }
    Ok(())
}

#[test]
fn fcoe_crash_restart_vn2vn() {
    rig::e2e_l2san(
        "fcoe_crash_restart_vn2vn",
        "vblade has no FCoE",
        fcoe_crash_restart,
    );
}
