//! `proffer service plan-update SPEC` and `proffer service update SPEC [--dry-run] [--force]`:
//! the scheduler previews the update (what changes, in which order, and whether every new or
//! changed pod can be placed on the cluster's current agents) and refuses one that cannot be
//! placed before anything is killed, unless forced.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use proffer_sdk::service::http::{ClientError, request};
use proffer_sdk::service::preview::UpdatePreview;

use crate::output::text as out;

/// Flags of `proffer service update` and `plan-update`.
#[derive(Debug, Args)]
pub struct UpdateArgs {
    #[command(flatten)]
    pub api: super::ApiArgs,
    /// The new YAML spec.
    pub spec: PathBuf,
    #[command(flatten)]
    pub check: CheckArgs,
}

/// `--dry-run` and `--force` of the commands that send a changed spec to a scheduler.
#[derive(Debug, Clone, Copy, Args)]
pub struct CheckArgs {
    /// Print what would change (pods, which instances restart in which order, which move)
    /// and whether every new or changed pod can be placed on the current agents; change
    /// nothing. Exits non-zero when it cannot be placed.
    #[arg(long)]
    pub dry_run: bool,
    /// Apply the update even when some new or changed pod cannot be placed on the current
    /// agents (it then waits for an agent that can hold it).
    #[arg(long, conflicts_with = "dry_run")]
    pub force: bool,
}

/// The `preview` of a scheduler's answer, if it has one.
fn preview_of(v: &serde_json::Value) -> Option<UpdatePreview> {
    v.get("preview")
        .and_then(|p| serde_json::from_value(p.clone()).ok())
}

/// How [`send`] sends a spec.
#[derive(Debug, Clone, Copy, Default)]
pub struct Send {
    /// Only preview it (`dry-run=true`): nothing changes.
    pub dry_run: bool,
    /// Apply it even when it cannot be placed (`force=true`).
    pub force: bool,
    /// Print the scheduler's JSON answers instead of text.
    pub json: bool,
}

/// `plan-update`, or `update --dry-run`: prints the preview; false when it cannot be placed.
pub async fn plan_update(a: &UpdateArgs) -> Result<bool> {
    let how = Send {
        dry_run: true,
        force: false,
        json: a.api.json,
    };
    let ok = send(&a.api.api, &read(&a.spec)?, how).await?;
    if ok && !a.api.json {
        out("the update can be placed; apply it with: proffer service update");
    }
    Ok(ok)
}

/// `update`: sends the spec; an update that cannot be placed is refused unless `--force`.
pub async fn update(a: &UpdateArgs) -> Result<bool> {
    if a.check.dry_run {
        return plan_update(a).await;
    }
    let how = Send {
        dry_run: false,
        force: a.check.force,
        json: a.api.json,
    };
    send(&a.api.api, &read(&a.spec)?, how).await
}

/// Sends `yaml` to the scheduler at `api` (`/v1/update`) and prints its answer: the preview
/// (what changes, whether it can be placed) and whether it was applied. A dry run answers
/// false when the update cannot be placed; a refused update is an error naming why.
pub async fn send(api: &str, yaml: &str, how: Send) -> Result<bool> {
    if how.dry_run {
        let body = request(api, "POST", "/v1/update?dry-run=true", yaml).await?;
        let preview: UpdatePreview = serde_json::from_str(&body)
            .context("unexpected answer from /v1/update?dry-run=true (an older scheduler?)")?;
        if how.json {
            out(&body);
        } else {
            out(&preview.render());
            if let Some(reason) = preview.refusal() {
                eprintln!("{}", reason.replace("force it", "--force"));
            }
        }
        return Ok(preview.placeable());
    }
    let path = if how.force {
        "/v1/update?force=true"
    } else {
        "/v1/update"
    };
    match request(api, "POST", path, yaml).await {
        Ok(body) if how.json => {
            out(&body);
            Ok(true)
        }
        Ok(body) => {
            let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            if let Some(p) = preview_of(&v) {
                out(&p.render());
                let forced = v.get("forced").and_then(serde_json::Value::as_bool) == Some(true);
                if let (true, Some(reason)) = (forced, p.refusal()) {
                    let why = reason.replace("update refused, nothing was changed: ", "");
                    eprintln!("forced: {}", why.replace(" (force it to apply anyway)", ""));
                }
            }
            out(&crate::service_text::updated(api, &body));
            Ok(true)
        }
        Err(ClientError::Status { status: 409, body }) => {
            if how.json {
                out(&body);
            }
            let v: serde_json::Value = serde_json::from_str(&body)
                .with_context(|| format!("the scheduler refused the update: {}", body.trim()))?;
            if let (false, Some(p)) = (how.json, preview_of(&v)) {
                out(&p.render());
            }
            let reason = v
                .get("reason")
                .and_then(serde_json::Value::as_str)
                .unwrap_or("the scheduler refused the update");
            bail!("{}", reason.replace("force it", "--force"))
        }
        Err(e) => Err(e.into()),
    }
}

fn read(path: &PathBuf) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}
