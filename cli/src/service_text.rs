//! Human text for the answers of a service scheduler's HTTP API (`proffer service pod`,
//! `update`, `uninstall`, `proffer k8s status|upgrade|uninstall`); `--json` prints the
//! answers as they are instead.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use proffer_sdk::service::store::TaskRecord;

/// The pods of `/v1/pod` (JSON) as a table: `POD TASK STATE READY AGENT`, one row per task.
pub fn pods(body: &str) -> Result<String> {
    let pods: BTreeMap<String, Vec<TaskRecord>> =
        serde_json::from_str(body).context("unexpected answer from /v1/pod")?;
    Ok(pods_table(&pods))
}

/// `pods` as a table (the header alone when there are none).
pub fn pods_table(pods: &BTreeMap<String, Vec<TaskRecord>>) -> String {
    let mut rows = vec![
        ["POD", "TASK", "STATE", "READY", "AGENT"]
            .map(String::from)
            .to_vec(),
    ];
    for (pod, tasks) in pods {
        for t in tasks {
            rows.push(vec![
                pod.clone(),
                t.task.clone(),
                t.state.clone(),
                if t.ready { "yes" } else { "no" }.into(),
                t.hostname.clone(),
            ]);
        }
    }
    let widths: Vec<usize> = (0..5)
        .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
        .collect();
    let mut text = String::new();
    for r in rows {
        let cells: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        text.push_str(cells.join("  ").trim_end());
        text.push('\n');
    }
    text
}

/// The answer to `POST /v1/pod/NAME/ACTION`.
pub fn pod_action(name: &str, action: &str, _body: &str) -> String {
    match action {
        "restart" => format!("pod {name}: restart requested (in place, on the same agent)"),
        "replace" => {
            format!("pod {name}: replace requested (it may move; its volumes are dropped)")
        }
        other => format!("pod {name}: {other} requested"),
    }
}

/// The answer to `POST /v1/update`.
pub fn updated(api: &str, body: &str) -> String {
    if answer_flag(body, "updated") {
        format!(
            "spec accepted: the update plan rolls the changed pods \
             (follow with: proffer service plan --api {api} update)"
        )
    } else {
        format!("the scheduler answered: {}", body.trim())
    }
}

/// The answer to `POST /v1/uninstall`.
pub fn uninstalling(api: &str, body: &str) -> String {
    if answer_flag(body, "uninstalling") {
        format!(
            "the scheduler at {api} is uninstalling: tasks are killed, reservations released, \
             then it exits (follow with: proffer service plan --api {api} uninstall)"
        )
    } else {
        format!("the scheduler answered: {}", body.trim())
    }
}

/// True when `body` is a JSON object whose `key` is `true`.
fn answer_flag(body: &str, key: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get(key).and_then(serde_json::Value::as_bool))
        == Some(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PODS: &str = r#"{"web-0": [{"name": "web-0-server", "task_id": "t1", "pod": "web",
        "index": 0, "task": "server", "agent_id": "S1", "hostname": "host-a", "attributes": [],
        "state": "TASK_RUNNING", "message": "", "config": "", "ready": true, "launches": 1,
        "resources": "", "ports": [], "reserved": "", "permanent_failure": false}]}"#;

    #[test]
    fn pods_are_a_table() -> Result<()> {
        assert_eq!(
            pods(PODS)?,
            "POD    TASK    STATE         READY  AGENT\nweb-0  server  TASK_RUNNING  yes    host-a\n"
        );
        assert_eq!(pods("{}")?, "POD  TASK  STATE  READY  AGENT\n");
        assert!(pods("[").is_err());
        Ok(())
    }

    #[test]
    fn answers_are_sentences() {
        assert!(updated("h:1", r#"{"updated": true}"#).starts_with("spec accepted"));
        assert_eq!(updated("h:1", "odd"), "the scheduler answered: odd");
        assert!(
            uninstalling("h:1", r#"{"uninstalling": true}"#)
                .starts_with("the scheduler at h:1 is uninstalling")
        );
        assert_eq!(
            pod_action("web-0", "restart", "{}"),
            "pod web-0: restart requested (in place, on the same agent)"
        );
    }
}
