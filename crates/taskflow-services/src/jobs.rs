//! Reminders' timers in the Dapr Jobs API (`--timers dapr-jobs`): each pending reminder is a
//! job `reminder-{id}` due at its time (`POST /v1.0-alpha1/jobs/{name}`, overwritten when the
//! reminder moves, deleted when it goes); the sidecar calls `POST /job/{name}` at the time, and
//! the trigger fires what is due through the same store transaction as the database's
//! scheduler ([`Scheduler::tick`]: never early, at most once, late ones marked). The
//! scheduler still sweeps the table now and then and at start, so a job lost or missed while
//! the process was down fires anyway, marked late.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::json;
use taskflow_bus::dapr::Sidecar;

/// The job of a reminder.
pub fn job_name(reminder_id: &str) -> String {
    format!("reminder-{reminder_id}")
}

/// A client of the sidecar's Jobs API.
#[derive(Debug, Clone)]
pub struct DaprJobs {
    sidecar: Sidecar,
}

impl DaprJobs {
    pub fn new(sidecar: Sidecar) -> Self {
        Self { sidecar }
    }

    /// Schedules (or moves) the job of reminder `id` to `at`.
    pub async fn set(&self, id: &str, task_id: &str, at: DateTime<Utc>) -> Result<(), String> {
        let name = job_name(id);
        let body = json!({
            // To the microsecond: a time rounded down would trigger before the reminder is due.
            "dueTime": at.to_rfc3339_opts(SecondsFormat::Micros, true),
            "data": {"reminder_id": id, "task_id": task_id, "fire_at": at},
            "overwrite": true,
        });
        let res = self
            .sidecar
            .request(reqwest::Method::POST, &format!("/v1.0-alpha1/jobs/{name}"))
            .json(&body)
            .send()
            .await
            .map_err(|e| format!("cannot schedule job {name}: {e}"))?;
        if res.status().is_success() {
            Ok(())
        } else {
            Err(format!(
                "the Dapr sidecar refused job {name}: {}",
                res.status()
            ))
        }
    }

    /// Deletes the job of reminder `id` (a job that is not there is fine).
    pub async fn cancel(&self, id: &str) -> Result<(), String> {
        let name = job_name(id);
        let res = self
            .sidecar
            .request(
                reqwest::Method::DELETE,
                &format!("/v1.0-alpha1/jobs/{name}"),
            )
            .send()
            .await
            .map_err(|e| format!("cannot delete job {name}: {e}"))?;
        let status = res.status();
        if status.is_success() || status == reqwest::StatusCode::NOT_FOUND {
            Ok(())
        } else {
            Err(format!(
                "the Dapr sidecar refused to delete job {name}: {status}"
            ))
        }
    }
}
