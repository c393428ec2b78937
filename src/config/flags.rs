//! The plan of the command line: `serve -i <iface> --aoe ... --fcoe ...`, and the global flags
//! that win over the file's keys of the same name.

use std::path::PathBuf;

use l2san_common::store::overlay::DEFAULT_RESET_AFTER;
use l2san_common::worker::Backend;

use super::{
    validate, ExportPlan, IfacePlan, Origin, Plan, Problem, DEFAULT_BUFFER_COUNT,
    DEFAULT_CTL_SOCKET, DEFAULT_FLUSH_INTERVAL,
};
use crate::cli::{ImageSpec, ServeArgs};

impl Plan {
    /// The plan of the flags: one interface, `--aoe` and `--fcoe` exports on it.
    pub fn from_flags(args: &ServeArgs) -> Result<Plan, Vec<Problem>> {
        let Some(name) = &args.interface else {
            return Err(vec![Problem::new(
                None,
                "no interface: give -i <iface> (or --config <file>)",
            )]);
        };
        let label = |what: &str, image: &ImageSpec| Origin {
            label: format!("{what}={}", image.image.display()),
            ..Origin::default()
        };
        let buffer_count = args.buffer_count.unwrap_or(DEFAULT_BUFFER_COUNT);
        let mut exports = Vec::new();
        for a in &args.aoe {
            exports.push(ExportPlan {
                name: format!("--aoe {}.{}", a.shelf, a.slot),
                image: a.image.clone(),
                aoe: Some((a.shelf, a.slot)),
                lun: None,
                fcoe_allow: Vec::new(),
                buffer_count,
                config_string: Vec::new(),
                overlay: None,
                on: vec![0],
                origin: label(&format!("--aoe {}.{}", a.shelf, a.slot), &a.image),
            });
        }
        for f in &args.fcoe {
            exports.push(ExportPlan {
                name: format!("--fcoe {}", f.lun),
                image: f.image.clone(),
                aoe: None,
                lun: Some(f.lun),
                fcoe_allow: f.allow.clone(),
                buffer_count,
                config_string: Vec::new(),
                overlay: None,
                on: vec![0],
                origin: label(&format!("--fcoe {}", f.lun), &f.image),
            });
        }
        let mut plan = Plan {
            interfaces: vec![IfacePlan {
                name: name.clone(),
                wwpn: args.wwpn,
                wwnn: args.wwnn,
                origin: Origin {
                    label: format!("interface {name}"),
                    ..Origin::default()
                },
            }],
            exports,
            state_file: None,
            user: None,
            backend: Backend::default(),
            workers: None,
            flush_interval: DEFAULT_FLUSH_INTERVAL,
            busy_poll_us: 0,
            overlay_reset_after: DEFAULT_RESET_AFTER,
            metrics: None,
            ctl_socket: PathBuf::from(DEFAULT_CTL_SOCKET),
            origin: Origin::default(),
            incomplete: false,
        };
        plan.apply_global_flags(args);
        let problems = validate(&plan);
        if problems.is_empty() {
            Ok(plan)
        } else {
            Err(problems)
        }
    }

    /// The global flags given on the command line win over the file.
    pub(super) fn apply_global_flags(&mut self, args: &ServeArgs) {
        if let Some(p) = &args.state_file {
            self.state_file = Some(p.clone());
        }
        if let Some(u) = &args.user {
            self.user = Some(u.clone());
        }
        if let Some(b) = args.backend {
            self.backend = b;
        }
        if let Some(w) = args.workers {
            self.workers = Some(w);
        }
        if let Some(f) = args.flush_interval {
            self.flush_interval = f;
        }
        if let Some(b) = args.busy_poll_us {
            self.busy_poll_us = b;
        }
        if let Some(m) = args.metrics {
            self.metrics = Some(m);
        }
        if let Some(p) = &args.ctl_socket {
            self.ctl_socket = PathBuf::from(p);
        }
    }
}
