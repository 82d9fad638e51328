//! Install-patches jobs (issue 17): the signed package names (already
//! checked against Debian's grammar by `JobStatement::validate`, step 2),
//! or every pending security update when none is named, upgraded by apt
//! under the job supervisor like a script (timeout, process group, an
//! interrupted run reported at the next start, without its patch report).
//!
//! The report compares simulated upgrades before and after: a target no
//! longer pending was installed (old -> new as apt planned it), one still
//! pending failed. Its exit code is apt's, or 1 when apt exited 0 but a
//! package named was not upgraded, so the target's state says "failed"
//! whenever the report lists a failure.

use std::path::Path;
use std::time::Duration;

use bulwark_policy::Interpreter;
use bulwark_protocol::message::{AgentRefusalCode, JobOutcome};
use tracing::{error, info};

use super::{JobRunner, now_ms, refused};
use crate::updates::{REBOOT_REQUIRED, Updates, install_script, patch_report, select_targets};

impl JobRunner {
    pub(super) async fn install_patches(
        &mut self,
        id: &str,
        job_id: [u8; 16],
        packages: &[String],
        updates: &Updates,
        timeout: Duration,
    ) -> JobOutcome {
        let started_at_ms = now_ms();
        let agent_error = |why: String| {
            error!(job_id = %id, %why, "Cannot install patches.");
            refused(job_id, AgentRefusalCode::AgentError, &why).outcome
        };
        let before = match updates.read_pending().await {
            Ok(before) => before,
            Err(error) => return agent_error(format!("cannot read pending updates: {error:#}")),
        };
        let (targets, failed) = select_targets(packages, &before);
        let mut run = if targets.is_empty() {
            super::run::done_without_script(b"Nothing to upgrade.\n", started_at_ms, now_ms())
        } else {
            let Some(script) = install_script(updates.apt_config(), &targets) else {
                return agent_error("the apt configuration path cannot be quoted".into());
            };
            info!(job_id = %id, packages = targets.len(), "Upgrading packages with apt.");
            // Streamed, but never killed on a cancel: apt and dpkg stopped
            // midway leave packages half configured (RFD 0012).
            match super::run::run_script_watched(
                &self.run_dir,
                &job_id,
                script.as_bytes(),
                Interpreter::Sh,
                timeout,
                self.max_output,
                &self.supervisor,
                Some(self.watch(false)),
            )
            .await
            {
                Ok(run) => run,
                Err(error) => return agent_error(format!("cannot run apt-get: {error}")),
            }
        };
        let apt_status = match (run.timed_out, run.exit_code) {
            (true, _) => "apt-get timed out".to_owned(),
            (false, Some(code)) => format!("apt-get exit code {code}"),
            (false, None) => "apt-get was killed".to_owned(),
        };
        let after = match updates.read_pending().await {
            Ok(after) => after,
            // Unknown: every target is reported as not known to be upgraded.
            Err(error) => {
                error!(job_id = %id, %error, "Cannot read pending updates after the upgrade.");
                targets.clone()
            }
        };
        let reboot = Path::new(REBOOT_REQUIRED).exists();
        let report = patch_report(&targets, failed, &after, &apt_status, reboot);
        if run.exit_code == Some(0) && !report.failed.is_empty() {
            run.exit_code = Some(1);
        }
        info!(
            job_id = %id,
            installed = report.installed.len(),
            failed = report.failed.len(),
            reboot_required = report.reboot_required,
            "Patch job finished."
        );
        run.started_at_ms = started_at_ms;
        run.patches = Some(report);
        JobOutcome::Ran(run)
    }
}
