//! The configuration's behaviour as the operator sees it: every problem with its line and
//! message, from the file and from the flags.

use std::path::{Path, PathBuf};

use clap::Parser as _;
use l2san_common::worker::Backend;
use l2san_common::Durability;
use l2san_fcoe::wire::Wwn;
use l2san_fcoe::FcoeAllow;

use super::check::check_environment;
use super::problem::sort_by_line;
use super::*;

/// Parse and validate `text` as `t.toml`: the plan, or every problem as printed.
fn load(text: &str) -> Result<Plan, Vec<String>> {
    let (plan, mut problems) = parse("t.toml", text);
    if let Some(plan) = &plan {
        problems.extend(validate(plan));
    }
    sort_by_line(&mut problems);
    match plan {
        Some(plan) if problems.is_empty() => Ok(plan),
        _ => Err(problems.iter().map(|p| p.to_string()).collect()),
    }
}

/// `text` has a problem at `line` whose message holds `says`.
#[track_caller]
fn has_problem(text: &str, line: usize, says: &str) {
    let problems = load(text).err().unwrap_or_default();
    let at = format!("t.toml:{line}:");
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with(&at) && p.contains(says)),
        "expected a problem at line {line} saying {says:?}; got {problems:#?}"
    );
}

const IFACE: &str = "[[interface]]\nname = \"eth1\"\n";

fn serve_args(args: &[&str]) -> ServeArgs {
    let cli =
        crate::cli::Cli::try_parse_from(["l2san", "serve"].iter().chain(args.iter()).copied())
            .unwrap();
    match cli.command {
        crate::cli::Command::Serve(s) => s,
        _ => unreachable!(),
    }
}

#[test]
fn the_sample_config_parses() {
    let plan = load(include_str!("../../packaging/l2san.toml")).unwrap();
    let names: Vec<&str> = plan.interfaces.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["eth1", "eth2"]);
    assert_eq!(
        plan.state_file,
        Some(PathBuf::from("/var/lib/l2san/aoe-state"))
    );
    assert_eq!(plan.user.as_deref(), Some("l2san"));
    assert_eq!((plan.workers, plan.flush_interval), (Some(2), 5));
    let golden = &plan.exports[0];
    assert_eq!(golden.origin.label, "export \"golden\"");
    assert_eq!((golden.aoe, golden.lun), (Some((1, 0)), Some(0)));
    assert!(golden.image.read_only);
    assert_eq!(golden.on, [0, 1]);
    let pc1 = &plan.exports[1];
    assert_eq!(
        (pc1.aoe, pc1.lun, &pc1.on[..]),
        (Some((2, 1)), None, &[0][..])
    );
    assert_eq!(pc1.image.durability, Durability::Sync);
    assert_eq!(pc1.image.allow, ["52:54:00:00:01:01".parse().unwrap()]);
    assert_eq!(plan.exports[3].on, [1]);
    assert_eq!(plan.exports[3].image.allow.len(), 2);
    assert_eq!(plan.exports_on(1).count(), 2);
}

#[test]
fn an_empty_ctl_socket_turns_it_off() {
    let args = serve_args(&["-i", "eth0", "--aoe", "0.0=/a.img", "--ctl-socket", ""]);
    let mut plan = Plan::from_flags(&args).unwrap();
    plan.apply_global_flags(&args);
    assert_eq!(plan.ctl_socket, Path::new(""));
    let args = serve_args(&["-i", "eth0", "--aoe", "0.0=/a.img"]);
    let plan = Plan::from_flags(&args).unwrap();
    assert_eq!(plan.ctl_socket, Path::new(DEFAULT_CTL_SOCKET));
}

#[test]
fn every_key_is_read() {
    let plan = load(&format!(
        "backend = \"auto\"\nbusy-poll-us = 50\nflush-interval = 30\n\
         metrics = \"127.0.0.1:9560\"\nctl-socket = \"/run/l2san-a.sock\"\n{IFACE}\
         wwpn = \"20:00:00:25:b5:00:00:01\"\nwwnn = \"10:00:00:25:b5:00:00:01\"\n\
         [[export]]\nname = \"a\"\nimage = \"/a.img\"\naoe = \"e3.4\"\nbuffer-count = 16\n\
         config-string = \"cluster\"\ndurability = \"writeback\"\nread-only = false\n"
    ))
    .unwrap();
    assert_eq!(plan.backend, Backend::Auto);
    assert_eq!((plan.busy_poll_us, plan.flush_interval), (50, 30));
    assert_eq!(plan.metrics, Some("127.0.0.1:9560".parse().unwrap()));
    assert_eq!(plan.ctl_socket, Path::new("/run/l2san-a.sock"));
    assert_eq!(
        plan.interfaces[0].wwpn,
        Some("20:00:00:25:b5:00:00:01".parse().unwrap())
    );
    assert!(plan.interfaces[0].wwnn.is_some());
    let a = &plan.exports[0];
    assert_eq!((a.aoe, a.buffer_count), (Some((3, 4)), 16));
    assert_eq!(a.config_string, b"cluster");
    // Defaults.
    let plan = load(&format!(
        "{IFACE}[[export]]\nname = \"a\"\nimage = \"/a\"\nfcoe-lun = 7\n"
    ))
    .unwrap();
    assert_eq!(
        (plan.backend, plan.workers, plan.flush_interval),
        (Backend::Packet, None, 5)
    );
    assert_eq!(plan.exports[0].buffer_count, 64);
    assert_eq!(plan.exports[0].lun, Some(7));
    assert!(!plan.exports[0].image.read_only);
    assert!(plan.exports[0].fcoe_allow.is_empty());
    // fcoe-allow: WWPNs and MACs.
    let plan = load(&format!(
        "{IFACE}[[export]]\nname = \"a\"\nimage = \"/a\"\nfcoe-lun = 1\n\
         fcoe-allow = [\"20:00:52:54:00:12:34:56\", \"52:54:00:12:34:57\"]\n"
    ))
    .unwrap();
    assert_eq!(
        plan.exports[0].fcoe_allow,
        [
            FcoeAllow::Wwpn(Wwn(0x2000_5254_0012_3456)),
            FcoeAllow::Mac("52:54:00:12:34:57".parse().unwrap())
        ]
    );
}

#[test]
fn export_problems_name_their_line() {
    let export =
        |body: &str| format!("{IFACE}\n[[export]]\nname = \"pc1\"\nimage = \"/pc1.img\"\n{body}");
    // The body starts at line 7.
    for (body, says) in [
        (
            "aoe = \"65535.0\"",
            "export \"pc1\": shelf 65535 is the broadcast address; use 0-65534",
        ),
        (
            "aoe = \"1.255\"",
            "export \"pc1\": slot 255 is the broadcast address; use 0-254",
        ),
        (
            "aoe = \"70000.0\"",
            "shelf \"70000\" must be a number from 0 to 65534",
        ),
        (
            "aoe = \"1.256\"",
            "slot \"256\" must be a number from 0 to 254",
        ),
        ("aoe = \"1\"", "aoe \"1\" is not <shelf>.<slot>"),
        ("aoe = 1", "aoe must be a string, not integer"),
        ("fcoe-lun = 64", "LUN 64 is out of range; use 0-63"),
        ("fcoe-lun = -1", "fcoe-lun -1 is out of range; use 0-63"),
        (
            "fcoe-lun = \"0\"",
            "fcoe-lun must be a number (0-63), not string",
        ),
        (
            "read-only = \"yes\"",
            "read-only must be true or false, not string",
        ),
        (
            "durability = \"fast\"",
            "durability \"fast\" is not writeback or sync",
        ),
        (
            "aoe = \"1.0\"\nbuffer-count = 1",
            "buffer-count 1 is too small",
        ),
        (
            "aoe = \"1.0\"\nbuffer-count = 70000",
            "buffer-count 70000 is out of range",
        ),
        (
            "aoe = \"1.0\"\nallow = \"52:54:00:00:00:01\"",
            "allow must be an array of strings",
        ),
        (
            "aoe = \"1.0\"\nallow = [\"nope\"]",
            "allow: 'nope' is not a MAC address",
        ),
        (
            "aoe = \"1.0\"\nallow = [\"ff:ff:ff:ff:ff:ff\"]",
            "multicast or broadcast",
        ),
        (
            "aoe = \"1.0\"\ninterfaces = [\"eth9\"]",
            "interface \"eth9\" is not configured",
        ),
        ("aoe = \"1.0\"\ninterfaces = []", "interfaces is empty"),
        (
            "fcoe-lun = 0\nallow = [\"52:54:00:00:00:01\"]",
            "allow is for AoE",
        ),
        (
            "fcoe-lun = 0\nconfig-string = \"x\"",
            "config-string is for AoE",
        ),
        (
            "aoe = \"1.0\"\nfcoe-allow = [\"52:54:00:00:00:01\"]",
            "fcoe-allow is for FCoE",
        ),
        (
            "fcoe-lun = 0\nfcoe-allow = [\"20:00:52:54:00:12:34\"]",
            "export \"pc1\": fcoe-allow: '20:00:52:54:00:12:34' is neither a WWPN (8 octets",
        ),
        (
            "fcoe-lun = 0\nfcoe-allow = \"52:54:00:00:00:01\"",
            "fcoe-allow must be an array of strings",
        ),
        (
            "fcoe-lun = 0\nfcoe-allow = [\"01:00:5e:00:00:01\"]",
            "fcoe-allow 01:00:5e:00:00:01 is a multicast",
        ),
        (
            "aoe = \"1.0\"\noverlay = \"/var/cow\"",
            "'/var/cow' is not an overlay policy: write \"persistent\" or \"reset\"",
        ),
        (
            "aoe = \"1.0\"\noverlay = \"reset\"",
            "overlay needs overlay-dir",
        ),
        (
            "aoe = \"1.0\"\noverlay-dir = \"/var/cow\"",
            "overlay-dir without overlay",
        ),
        (
            "aoe = \"1.0\"\noverlay-dir = \"/c\"\noverlay = \"reset\"\nread-only = true",
            "read-only and overlay contradict each other",
        ),
        (
            "aoe = \"1.0\"\nsise = 3",
            "unknown key \"sise\"; an export takes name, image",
        ),
    ] {
        let line = 7 + body.lines().count() - 1;
        has_problem(&export(body), line, says);
    }
    let long = format!("aoe = \"1.0\"\nconfig-string = \"{}\"", "x".repeat(1025));
    has_problem(
        &export(&long),
        8,
        "config-string is 1025 bytes; AoE allows at most 1024",
    );
    // Missing things point at the name, or at the table.
    has_problem(
        &export("read-only = true"),
        5,
        "export \"pc1\": exported neither over AoE nor over FCoE",
    );
    has_problem(
        &format!("{IFACE}[[export]]\nimage = \"/a\"\naoe = \"1.0\"\n"),
        3,
        "export #1: has no name",
    );
    has_problem(
        &format!("{IFACE}[[export]]\nname = \"a\"\naoe = \"1.0\"\n"),
        3,
        "export \"a\": has no image",
    );
}

#[test]
fn problems_between_exports_name_both_lines() {
    let two = |a: &str, b: &str| {
        format!("{IFACE}[[interface]]\nname = \"eth2\"\n[[export]]\nname = \"a\"\n{a}\n[[export]]\nname = \"b\"\n{b}\n")
    };
    // a's body is line 7-8, b's body line 11-12.
    has_problem(
        &two(
            "image = \"/a\"\naoe = \"1.0\"",
            "image = \"/b\"\naoe = \"1.0\"",
        ),
        12,
        "export \"b\": e1.0 is already export \"a\" (line 8); give each export its own shelf.slot",
    );
    // On different interfaces still: one address, one disk.
    has_problem(
        &two(
            "image = \"/a\"\naoe = \"1.0\"\ninterfaces = [\"eth1\"]",
            "image = \"/b\"\naoe = \"1.0\"\ninterfaces = [\"eth2\"]",
        ),
        13,
        "e1.0 is already export \"a\"",
    );
    has_problem(
        &two(
            "image = \"/a\"\nfcoe-lun = 3",
            "image = \"/b\"\nfcoe-lun = 3",
        ),
        12,
        "export \"b\": FCoE LUN 3 on eth1 is already export \"a\" (line 8)",
    );
    // A base of overlays written by another export; two overlay exports in one directory.
    has_problem(
        &two(
            "image = \"/a\"\naoe = \"1.0\"\noverlay = \"reset\"\noverlay-dir = \"/c\"",
            "image = \"/a\"\naoe = \"1.1\"",
        ),
        13,
        "image /a is the base of export \"a\"'s overlays and written by export \"b\"",
    );
    load(&two(
        "image = \"/a\"\naoe = \"1.0\"\noverlay = \"reset\"\noverlay-dir = \"/c\"",
        "image = \"/a\"\naoe = \"1.1\"\nread-only = true",
    ))
    .unwrap();
    has_problem(
        &two(
            "image = \"/a\"\naoe = \"1.0\"\noverlay = \"reset\"\noverlay-dir = \"/c\"",
            "image = \"/b\"\naoe = \"1.1\"\noverlay = \"reset\"\noverlay-dir = \"/c\"",
        ),
        16,
        "overlay-dir /c is already export \"a\"'s (line 10)",
    );
    // Each interface is its own FCoE port: LUN 3 on each is fine.
    load(&two(
        "image = \"/a\"\nfcoe-lun = 3\ninterfaces = [\"eth1\"]",
        "image = \"/b\"\nfcoe-lun = 3\ninterfaces = [\"eth2\"]",
    ))
    .unwrap();
    has_problem(
        &two(
            "image = \"/a\"\naoe = \"1.0\"",
            "image = \"/a\"\naoe = \"1.1\"\nread-only = true",
        ),
        13,
        "image /a is read-only here but read-write in export \"a\"",
    );
    has_problem(
        &two(
            "image = \"/a\"\naoe = \"1.0\"",
            "image = \"/a\"\nfcoe-lun = 0\ndurability = \"sync\"",
        ),
        13,
        "image /a is sync here but writeback in export \"a\"",
    );
    has_problem(
        &two(
            "image = \"/a\"\naoe = \"1.0\"",
            "image = \"/b\"\naoe = \"1.1\"\nname = \"c\"",
        ),
        13,
        "duplicate key",
    );
    has_problem(
        &format!("{IFACE}[[export]]\nname = \"a\"\nimage = \"/a\"\naoe = \"1.0\"\n[[export]]\nname = \"a\"\nimage = \"/b\"\naoe = \"1.1\"\n"),
        8,
        "the name is already taken (line 4)",
    );
    // The same image twice with the same options is one image, shared.
    load(&two(
        "image = \"/a\"\naoe = \"1.0\"",
        "image = \"/a\"\nfcoe-lun = 0",
    ))
    .unwrap();
}

#[test]
fn interface_and_global_problems_name_their_line() {
    let export = "[[export]]\nname = \"a\"\nimage = \"/a\"\naoe = \"1.0\"\n";
    for (text, line, says) in [
        (format!("workers = 0\n{IFACE}{export}"), 1, "workers 0 must be from 1 to 256"),
        (format!("\nworkers = \"2\"\n{IFACE}{export}"), 2, "workers must be a number"),
        (format!("flush-interval = 0\n{IFACE}{export}"), 1, "flush-interval 0 must be from 1 to 3600"),
        (format!("busy-poll-us = 200000\n{IFACE}{export}"), 1, "busy-poll-us 200000 must be from 0 to 100000"),
        (format!("backend = \"dpdk\"\n{IFACE}{export}"), 1, "unknown backend 'dpdk': use auto, xdp or packet"),
        (format!("metrics = \"9560\"\n{IFACE}{export}"), 1, "metrics \"9560\" is not an address:port"),
        (format!("colour = 1\n{IFACE}{export}"), 1, "unknown key \"colour\"; the top level takes"),
        (format!("[interface]\nname = \"eth1\"\n{export}"), 1, "interface must be written as [[interface]] tables"),
        (format!("{IFACE}wwpn = \"nope\"\n{export}"), 3, "interface \"eth1\": 'nope' is not a WWN"),
        (format!("{IFACE}mtu = 9000\n{export}"), 3, "unknown key \"mtu\"; an interface takes name, wwpn, wwnn"),
        (format!("[[interface]]\nwwpn = \"20:00:00:25:b5:00:00:01\"\n{IFACE}{export}"), 1, "interface #1: has no name"),
        (format!("{IFACE}{IFACE}{export}"), 4, "interface \"eth1\": listed twice (line 2)"),
        (
            format!("{IFACE}wwpn = \"20:00:00:25:b5:00:00:01\"\n[[interface]]\nname = \"eth2\"\nwwpn = \"20:00:00:25:b5:00:00:01\"\n{export}"),
            6,
            "wwpn 20:00:00:25:b5:00:00:01 is also eth1's (line 3)",
        ),
        (
            format!("{IFACE}[[interface]]\nname = \"eth2\"\n{export}interfaces = [\"eth1\"]\n"),
            4,
            "interface \"eth2\": no export is served on eth2",
        ),
        (export.to_string(), 1, "no interface to serve on"),
        (IFACE.to_string(), 1, "nothing to serve"),
        ("workers = \n".to_string(), 1, "TOML syntax"),
    ] {
        has_problem(&text, line, says);
    }
}

#[test]
fn all_problems_are_reported_at_once() {
    let text = format!(
        "workers = 0\n{IFACE}[[export]]\nname = \"a\"\nimage = \"/a\"\naoe = \"65535.0\"\n\
         sise = 1\n[[export]]\nname = \"b\"\nimage = \"/b\"\nfcoe-lun = 99\n"
    );
    let problems = load(&text).unwrap_err();
    assert_eq!(problems.len(), 4, "{problems:#?}");
    for (p, line) in problems.iter().zip([1, 7, 8, 12]) {
        assert!(p.starts_with(&format!("t.toml:{line}:")), "{p}");
    }
    // Columns count characters.
    let problems = load(&format!(
        "{IFACE}[[export]]\nname = \"a\"\nimage = \"/a\"\naoe = \"1.0\"\nallow = [\"é\", \"x\"]\n"
    ))
    .unwrap_err();
    assert!(problems[1].starts_with("t.toml:7:15:"), "{problems:?}");
}

#[test]
fn flags_share_the_checks() {
    let plan = Plan::from_flags(&serve_args(&[
        "-i",
        "eth1",
        "--aoe",
        "1.0=/a.img,ro",
        "--fcoe",
        "0=/a.img,ro",
        "--buffer-count",
        "8",
    ]))
    .unwrap();
    assert_eq!(plan.interfaces.len(), 1);
    assert_eq!(plan.exports.len(), 2);
    assert_eq!(plan.exports[0].buffer_count, 8);
    assert_eq!((plan.backend, plan.flush_interval), (Backend::Packet, 5));
    let plan = Plan::from_flags(&serve_args(&[
        "-i",
        "eth1",
        "--fcoe",
        "0=/a.img,allow=20:00:52:54:00:12:34:56",
    ]))
    .unwrap();
    assert_eq!(
        plan.exports[0].fcoe_allow,
        [FcoeAllow::Wwpn(Wwn(0x2000_5254_0012_3456))]
    );
    for (args, says) in [
        (&["--aoe", "1.0=/a.img", "--aoe", "1.0=/b.img"][..], "--aoe 1.0=/b.img: e1.0 is already --aoe 1.0=/a.img; give each export its own shelf.slot"),
        (&["--fcoe", "2=/a.img", "--fcoe", "2=/b.img"][..], "FCoE LUN 2 on eth1 is already --fcoe 2=/a.img"),
        (&["--aoe", "1.0=/a.img", "--fcoe", "0=/a.img,ro"][..], "image /a.img is read-only here but read-write in --aoe 1.0=/a.img"),
        (&["--aoe", "1.0=/a.img", "--aoe", "1.1=/a.img,sync"][..], "image /a.img is sync here but writeback"),
        (&["--aoe", "1.0=/a.img,allow=01:00:5e:00:00:01"][..], "multicast or broadcast"),
    ] {
        let mut all = vec!["-i", "eth1"];
        all.extend_from_slice(args);
        let problems = Plan::from_flags(&serve_args(&all)).unwrap_err();
        assert!(problems.iter().any(|p| p.at.is_none() && p.message.contains(says)), "{args:?}: {problems:?}");
    }
}

#[test]
fn config_excludes_export_flags_and_global_flags_override_it() {
    let path = std::env::temp_dir().join(format!("l2san-config-test-{}.toml", std::process::id()));
    std::fs::write(
        &path,
        format!("workers = 2\nflush-interval = 9\nstate-file = \"/s\"\n{IFACE}[[export]]\nname = \"a\"\nimage = \"/a\"\naoe = \"1.0\"\n"),
    )
    .unwrap();
    let p = path.to_str().unwrap();
    let plan = Plan::for_serve(&serve_args(&["--config", p])).unwrap();
    assert_eq!((plan.workers, plan.flush_interval), (Some(2), 9));
    let plan = Plan::for_serve(&serve_args(&[
        "--config",
        p,
        "--workers",
        "1",
        "--state-file",
        "/t",
        "--backend",
        "xdp",
        "--busy-poll-us",
        "10",
    ]))
    .unwrap();
    assert_eq!(
        (plan.workers, plan.flush_interval, plan.busy_poll_us),
        (Some(1), 9, 10)
    );
    assert_eq!(
        (plan.state_file.as_deref(), plan.backend),
        (Some(Path::new("/t")), Backend::Xdp)
    );
    for flags in [
        &["-i", "eth1"][..],
        &["--aoe", "2.0=/b"],
        &["--fcoe", "1=/b"],
        &["--wwpn", "20:00:00:25:b5:00:00:01"],
        &["--buffer-count", "8"],
    ] {
        let mut args = vec!["--config", p];
        args.extend_from_slice(flags);
        let e = Plan::for_serve(&serve_args(&args)).unwrap_err().to_string();
        assert!(
            e.contains("cannot be combined with --config"),
            "{flags:?}: {e}"
        );
        assert!(
            e.contains(flags[0].trim_start_matches('-')),
            "{flags:?}: {e}"
        );
    }
    // A bad file: every problem, with its line, in one error.
    std::fs::write(
        &path,
        format!("workers = 0\n{IFACE}[[export]]\nname = \"a\"\nimage = \"/a\"\naoe = \"1.255\"\n"),
    )
    .unwrap();
    let e = Plan::for_serve(&serve_args(&["--config", p])).unwrap_err();
    let _ = std::fs::remove_file(&path);
    let msg = e.to_string();
    assert!(msg.starts_with("2 problems in"), "{msg}");
    assert!(msg.contains(&format!("{p}:1:1: workers 0")), "{msg}");
    assert!(
        msg.contains(&format!("{p}:7:1: export \"a\": slot 255 is the broadcast")),
        "{msg}"
    );
    let missing =
        Plan::for_serve(&serve_args(&["--config", "/nonexistent/l2san.toml"])).unwrap_err();
    assert!(
        missing.to_string().contains("cannot read config file"),
        "{missing}"
    );
}

#[test]
fn environment_problems_name_the_fix() {
    let dir = std::env::temp_dir().join(format!("l2san-config-env-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let odd = dir.join("odd.img");
    std::fs::write(&odd, [0u8; 1000]).unwrap();
    let good = dir.join("good.img");
    std::fs::write(&good, [0u8; 1024]).unwrap();
    let text = format!(
        "[[interface]]\nname = \"no-such-if0\"\n[[export]]\nname = \"odd\"\nimage = \"{}\"\naoe = \"1.0\"\n\
         [[export]]\nname = \"gone\"\nimage = \"{}\"\naoe = \"1.1\"\n\
         [[export]]\nname = \"good\"\nimage = \"{}\"\naoe = \"1.2\"\n",
        odd.display(),
        dir.join("gone.img").display(),
        good.display()
    );
    let plan = load(&text).unwrap();
    let problems: Vec<String> = check_environment(&plan)
        .iter()
        .map(|p| p.to_string())
        .collect();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(problems.len(), 3, "{problems:#?}");
    assert!(
        problems[0].starts_with(
            "t.toml:2:1: interface \"no-such-if0\": no network interface named 'no-such-if0'"
        ),
        "{problems:?}"
    );
    assert!(
        problems[1].starts_with("t.toml:5:1: export \"odd\": image")
            && problems[1].contains("truncate -s"),
        "{problems:?}"
    );
    assert!(
        problems[2].starts_with("t.toml:9:1: export \"gone\": cannot open image"),
        "{problems:?}"
    );
}
