//! `l2san probe` on a segment with three stations: a bridge in a namespace with three veth
//! ports.
//!
//! - `l2`: l2san serving e1.1 (64 MiB) and e1.2 (32 MiB) over AoE and an FCoE LUN;
//! - `vb`: two vblade processes serving e1.2 (16 MiB, a deliberate duplicate of l2san's) and
//!   e1.3 (8 MiB);
//! - `pr`: the probe, `l2san probe -i pr`.
//!
//! The probe must list e1.1, e1.2 twice (both marked DUPLICATE, and a warning naming both
//! MACs), e1.3, every capacity, l2san's firmware 0x4c32, and l2san's VN2VN port with its
//! default WWPN 20:00:<MAC>, and exit 3 (conflicts). A second probe (`--json`) must find the
//! FCoE port at the same port ID (the probe's claim did not make it give its ID up), and
//! l2san must still run and exit 0 on SIGTERM. Bad arguments exit 2 and name the fix.
//!
//! The targets are fixed (l2san and vblade together). The program under test is l2san (its probe
//! and its target), so under `L2SAN_E2E_TARGET=vblade` the test says so and does not run.

#![forbid(unsafe_code)]

use std::fs;
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use l2san_rig::rig::{self, AoeExport, Netns, Run, Tap, Target};

const MIB: u64 = 1 << 20;

/// A sparse image of `mib` MiB.
fn image(run: &Run, name: &str, mib: u64) -> Result<std::path::PathBuf> {
    let path = run.path(name);
    let f = fs::File::create(&path)?;
    f.set_len(mib * MIB)?;
    Ok(path)
}

/// A veth pair `name`–`name-br`, the second end enslaved to `br0`, both up, no IPv6.
fn port(ns: &Netns, name: &str) -> Result<Tap> {
    let peer = format!("{name}-br");
    ns.run(
        "ip",
        [
            "link", "add", "name", name, "type", "veth", "peer", "name", &peer,
        ],
    )
    .context("cannot create a veth pair (veth module?)")?;
    ns.run("ip", ["link", "set", "dev", &peer, "master", "br0"])?;
    for dev in [name, peer.as_str()] {
        ns.link_up(dev)?;
    }
    ns.link(name, 1500)
}

fn mac_of(ns: &Netns, dev: &str) -> Result<String> {
    Ok(ns
        .run("cat", [format!("/sys/class/net/{dev}/address")])?
        .trim()
        .to_string())
}

fn probe(ns: &Netns, bin: &Path, args: &[&str]) -> Result<Output> {
    let out = ns
        .command(bin)
        .arg("probe")
        .args(args)
        .output()
        .context("cannot run l2san probe")?;
    Ok(out)
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The AoE line for `target` from `mac`.
fn aoe_line<'a>(stdout: &'a str, target: &str, mac: &str) -> Result<&'a str> {
    stdout
        .lines()
        .find(|l| {
            l.starts_with("AoE ")
                && l.split_whitespace().nth(1) == Some(target)
                && l.split_whitespace().nth(2) == Some(mac)
        })
        .with_context(|| format!("no AoE line for {target} from {mac}"))
}

/// The value after `key` in a flat JSON object (strings unquoted): enough for our checks.
fn json_field<'a>(json: &'a str, key: &str) -> Option<&'a str> {
    let at = json.find(&format!("\"{key}\":"))? + key.len() + 3;
    let rest = &json[at..];
    let end = rest.find([',', '}'])?;
    Some(rest[..end].trim_matches('"'))
}

fn body(run: &Run) -> Result<()> {
    let bin = rig::l2san_bin()?;
    let ns = Netns::new()?;
    ns.run("ip", ["link", "add", "name", "br0", "type", "bridge"])
        .context("cannot create a bridge")?;
    ns.link_up("br0")?;
    let l2 = port(&ns, "l2")?;
    let vb = port(&ns, "vb")?;
    port(&ns, "pr")?;
    let l2_mac = mac_of(&ns, "l2")?;
    let vb_mac = mac_of(&ns, "vb")?;
    let wwpn = format!("20:00:{l2_mac}");

    let e11 = image(run, "e11.img", 64)?;
    let e12 = image(run, "e12.img", 32)?;
    let v12 = image(run, "v12.img", 16)?;
    let v13 = image(run, "v13.img", 8)?;
    let started = Instant::now();
    let mut l2san = Target::l2san_args(
        &ns,
        &l2,
        &bin,
        &[
            "--aoe".into(),
            AoeExport::new(1, 1, &e11).l2san_arg(),
            "--aoe".into(),
            AoeExport::new(1, 2, &e12).l2san_arg(),
            "--fcoe".into(),
            format!("0={}", e11.display()),
        ],
        &run.path("l2san.log"),
    )?;
    let mut vblade12 = Target::vblade(
        &ns,
        &vb,
        &AoeExport::new(1, 2, &v12),
        &run.path("vblade12.log"),
    )?;
    let mut vblade13 = Target::vblade(
        &ns,
        &vb,
        &AoeExport::new(1, 3, &v13),
        &run.path("vblade13.log"),
    )?;
    // l2san's VN_Port needs about a second to probe and claim its ID.
    std::thread::sleep(Duration::from_millis(1500).saturating_sub(started.elapsed()));

    // The default timeout (3 s), as an operator runs it.
    let t = Instant::now();
    let out = probe(&ns, &bin, &["-i", "pr"])?;
    let took = t.elapsed();
    let all = text(&out);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    eprintln!("probe took {:.1} s:\n{all}", took.as_secs_f64());
    ensure!(
        out.status.code() == Some(3),
        "probe must exit 3 (duplicates):\n{all}"
    );
    ensure!(
        took < Duration::from_secs(6),
        "probe took {took:?} with the default 3 s timeout"
    );
    let l11 = aoe_line(&stdout, "e1.1", &l2_mac)?;
    ensure!(
        l11.contains("64 MiB (131072 sectors)")
            && l11.contains("fw 0x4c32")
            && l11.contains("buffers 64")
            && l11.contains("sectors/frame 2")
            && !l11.contains("DUPLICATE"),
        "e1.1 line: {l11}"
    );
    let l12 = aoe_line(&stdout, "e1.2", &l2_mac)?;
    ensure!(
        l12.contains("32 MiB (65536 sectors)") && l12.contains("fw 0x4c32"),
        "l2san's e1.2 line: {l12}"
    );
    let v12l = aoe_line(&stdout, "e1.2", &vb_mac)?;
    ensure!(
        v12l.contains("16 MiB (32768 sectors)"),
        "vblade's e1.2 line: {v12l}"
    );
    ensure!(
        l12.ends_with("DUPLICATE") && v12l.ends_with("DUPLICATE"),
        "both e1.2 lines must be marked DUPLICATE:\n{all}"
    );
    let v13l = aoe_line(&stdout, "e1.3", &vb_mac)?;
    ensure!(
        v13l.contains("8 MiB (16384 sectors)") && !v13l.contains("DUPLICATE"),
        "e1.3 line: {v13l}"
    );
    ensure!(
        stdout.lines().filter(|l| l.starts_with("AoE ")).count() == 4,
        "exactly four AoE lines expected:\n{all}"
    );
    // Sorted by shelf.slot.
    let order: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("AoE "))
        .filter_map(|l| l.split_whitespace().nth(1))
        .collect();
    ensure!(order == ["e1.1", "e1.2", "e1.2", "e1.3"], "order {order:?}");
    let warning = stdout
        .lines()
        .find(|l| l.starts_with("warning: DUPLICATE e1.2"))
        .with_context(|| format!("no duplicate warning for e1.2:\n{all}"))?;
    ensure!(
        warning.contains(&l2_mac) && warning.contains(&vb_mac),
        "the warning must name both MACs: {warning}"
    );
    let fcoe: Vec<&str> = stdout.lines().filter(|l| l.starts_with("FCoE ")).collect();
    ensure!(fcoe.len() == 1, "one FCoE port expected:\n{all}");
    let f = fcoe[0];
    ensure!(
        f.contains(&format!("WWPN {wwpn}"))
            && f.contains(&format!("WWNN 10:00:{l2_mac}"))
            && f.contains(&format!("ENode {l2_mac}"))
            && f.contains("FCP target")
            && f.contains("claim response")
            && !f.contains("DUPLICATE"),
        "FCoE line: {f}"
    );
    let port_id = f
        .split("port ID ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .context("no port ID")?
        .to_string();
    let id = u32::from_str_radix(port_id.trim_start_matches("0x"), 16)?;
    let vn_mac = format!(
        "0e:fd:00:{:02x}:{:02x}:{:02x}",
        id >> 16,
        (id >> 8) & 0xff,
        id & 0xff
    );
    ensure!(f.contains(&format!("MAC {vn_mac}")), "FCoE line: {f}");

    // JSON, shorter: the same port at the same ID (the claim did not displace it).
    let out = probe(&ns, &bin, &["-i", "pr", "--timeout", "1", "--json"])?;
    let all = text(&out);
    ensure!(
        out.status.code() == Some(3),
        "json probe must exit 3:\n{all}"
    );
    let json = String::from_utf8_lossy(&out.stdout).to_string();
    eprintln!("probe --json:\n{json}");
    ensure!(
        json.trim_start().starts_with('{') && json.trim_end().ends_with('}'),
        "not one JSON object:\n{all}"
    );
    ensure!(json.contains("\"duplicates\":true"), "{all}");
    let fc = &json[json.find("\"fcoe\":[").context("no fcoe array")?..];
    ensure!(
        json_field(fc, "wwpn") == Some(wwpn.as_str())
            && json_field(fc, "port_id") == Some(port_id.as_str()),
        "second probe: FCoE port moved or vanished (expected {wwpn} at {port_id}):\n{all}"
    );
    ensure!(json.matches("\"target\":\"e1.2\"").count() == 2, "{all}");

    // Bad arguments: exit 2 naming the fix.
    let out = probe(&ns, &bin, &["-i", "nosuch0"])?;
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    ensure!(
        out.status.code() == Some(2) && stderr.contains("pick one of") && stderr.contains("pr"),
        "unknown interface:\n{}",
        text(&out)
    );
    let out = probe(&ns, &bin, &[])?;
    ensure!(
        out.status.code() == Some(2)
            && String::from_utf8_lossy(&out.stderr).contains("--interface"),
        "missing interface:\n{}",
        text(&out)
    );
    let out = probe(&ns, &bin, &["-i", "pr", "--timeout", "0"])?;
    ensure!(
        out.status.code() == Some(2),
        "zero timeout:\n{}",
        text(&out)
    );

    l2san.check_running()?;
    vblade12.check_running()?;
    vblade13.check_running()?;
    let log = l2san.log_text();
    if log.contains("panicked") {
        bail!("l2san panicked:\n{log}");
    }
    l2san.stop()?;
    vblade12.stop()?;
    vblade13.stop()?;
    Ok(())
}

#[test]
fn probe_lists_targets_and_duplicates() {
    rig::e2e_l2san(
        "probe_lists_targets_and_duplicates",
        "it tests `l2san probe`, with vblade beside l2san whatever the choice",
        body,
    );
}
