//! `l2san demo`: filled in once the test rig lands.

use std::process::ExitCode;

use crate::cli::DemoArgs;
use crate::Error;

pub fn run(_args: DemoArgs) -> Result<ExitCode, Error> {
    Err(Error::Usage("the demo is not built yet".into()))
}
