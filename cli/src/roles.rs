//! Operator commands for roles: `proffer quota set|rm`, `proffer weight set`, `proffer roles`,
//! `proffer why` and `proffer reserve|unreserve`, over the master's `Operator` gRPC service.

use anyhow::Context;
use clap::Subcommand;
use proffer_proto::leader::MasterList;
use proffer_proto::{Resources, v1};

use crate::operator::{call, refused};
use crate::table::render;
use proffer_sdk::operator::OperatorError;

/// The master flag shared by these commands.
#[derive(Debug, Clone, clap::Args)]
pub struct MasterFlag {
    /// The master, HOST:PORT, or several, comma-separated (h1:5050,h2:5050,h3:5050): the
    /// command asks whichever leads.
    #[arg(long, env = "PROFFER_MASTER", default_value = "127.0.0.1:5050")]
    pub master: MasterList,
}

/// `proffer quota`.
#[derive(Debug, clap::Args)]
pub struct QuotaArgs {
    #[command(subcommand)]
    command: QuotaCommand,
}

#[derive(Debug, Subcommand)]
enum QuotaCommand {
    /// Set a role's quota: guarantees are set aside for it, limits cap it (and its children).
    Set(QuotaSetArgs),
    /// Remove a role's quota.
    #[command(alias = "remove")]
    Rm(RoleArg),
}

/// Flags of `proffer quota set`.
#[derive(Debug, clap::Args)]
struct QuotaSetArgs {
    /// The role, e.g. `eng/ml`.
    role: String,
    /// Guaranteed resources (scalars), e.g. 'cpus:4;mem:4096'.
    #[arg(long)]
    guarantee: Option<String>,
    /// Limits (scalars), e.g. 'cpus:8'; resources not named are unlimited.
    #[arg(long)]
    limit: Option<String>,
    #[command(flatten)]
    master: MasterFlag,
}

/// A role and the master.
#[derive(Debug, clap::Args)]
struct RoleArg {
    /// The role.
    role: String,
    #[command(flatten)]
    master: MasterFlag,
}

/// `proffer weight`.
#[derive(Debug, clap::Args)]
pub struct WeightArgs {
    #[command(subcommand)]
    command: WeightCommand,
}

#[derive(Debug, Subcommand)]
enum WeightCommand {
    /// Set a role's weight for weighted DRF (positive; default 1).
    Set(WeightSetArgs),
}

/// Flags of `proffer weight set`.
#[derive(Debug, clap::Args)]
struct WeightSetArgs {
    /// The role.
    role: String,
    /// The weight (a positive number).
    #[arg(allow_negative_numbers = true)]
    weight: f64,
    #[command(flatten)]
    master: MasterFlag,
}

/// Flags of `proffer roles`.
#[derive(Debug, clap::Args)]
pub struct RolesArgs {
    /// Print JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    master: MasterFlag,
}

/// Flags of `proffer why`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("subject").required(true).args(["framework_id", "role"])))]
pub struct WhyArgs {
    /// The framework to explain (a role name works too when no framework has that id).
    framework_id: Option<String>,
    /// Explain a role instead.
    #[arg(long)]
    role: Option<String>,
    #[command(flatten)]
    master: MasterFlag,
}

/// Flags of `proffer reserve` and `proffer unreserve`.
#[derive(Debug, clap::Args)]
pub struct ReserveArgs {
    /// The agent.
    agent_id: String,
    /// The reservations, e.g. 'cpus(web,dynamic=ops):2;mem(web,dynamic=ops):1024'.
    resources: String,
    #[command(flatten)]
    master: MasterFlag,
}

/// Parses a resources flag, naming it on error.
fn resources(flag: &str, text: &str) -> anyhow::Result<Resources> {
    Resources::parse(text).with_context(|| format!("invalid --{flag} `{text}`"))
}

/// `proffer quota …`.
pub async fn quota(args: QuotaArgs) -> anyhow::Result<()> {
    match args.command {
        QuotaCommand::Set(a) => {
            if a.guarantee.is_none() && a.limit.is_none() {
                anyhow::bail!("give --guarantee and/or --limit");
            }
            let guarantees = a
                .guarantee
                .as_deref()
                .map(|g| resources("guarantee", g))
                .transpose()?
                .unwrap_or_default();
            let limits = a
                .limit
                .as_deref()
                .map(|l| resources("limit", l))
                .transpose()?
                .unwrap_or_default();
            let req = v1::SetQuotaRequest {
                role: a.role.clone(),
                guarantees: guarantees.to_proto(),
                limits: limits.to_proto(),
            };
            call(&a.master.master, async |c| c.set_quota(req.clone()).await)
                .await
                .map_err(|e| refused("quota", e))?;
            crate::output::text(&format!("quota of role {} set", a.role));
        }
        QuotaCommand::Rm(a) => {
            let req = v1::RemoveQuotaRequest {
                role: a.role.clone(),
            };
            call(&a.master.master, async |c| {
                c.remove_quota(req.clone()).await
            })
            .await
            .map_err(|e| refused("removing the quota", e))?;
            crate::output::text(&format!("quota of role {} removed", a.role));
        }
    }
    Ok(())
}

/// `proffer weight set ROLE W`.
pub async fn weight(args: WeightArgs) -> anyhow::Result<()> {
    let WeightCommand::Set(a) = args.command;
    let req = v1::SetWeightRequest {
        role: a.role.clone(),
        weight: a.weight,
    };
    call(&a.master.master, async |c| c.set_weight(req.clone()).await)
        .await
        .map_err(|e| refused("weight", e))?;
    crate::output::text(&format!("weight of role {} set to {}", a.role, a.weight));
    Ok(())
}

/// Flags of `proffer drain` and `proffer reactivate`.
#[derive(Debug, clap::Args)]
pub struct DrainArgs {
    /// The agent id.
    agent_id: String,
    /// Why (shown to the agent and in logs).
    #[arg(long, default_value = "maintenance")]
    reason: String,
    #[command(flatten)]
    master: MasterFlag,
}

/// Flags of `proffer maintenance`.
#[derive(Debug, clap::Args)]
pub struct MaintenanceArgs {
    #[command(subcommand)]
    command: MaintenanceCommand,
}

#[derive(Debug, clap::Subcommand)]
enum MaintenanceCommand {
    /// Schedule a window: frameworks using the agent get inverse offers now; the agent is
    /// drained when the window starts and offered again when it ends.
    Schedule {
        /// The agent id.
        agent_id: String,
        /// When the window starts, from now (e.g. `10m`).
        #[arg(long = "in", default_value = "0s", allow_hyphen_values = true)]
        starts_in: String,
        /// How long it lasts (e.g. `1h`).
        #[arg(long = "for", allow_hyphen_values = true)]
        duration: String,
        #[command(flatten)]
        master: MasterFlag,
    },
    /// Show the schedule and the frameworks' answers.
    Status {
        #[command(flatten)]
        master: MasterFlag,
    },
}

/// `proffer maintenance schedule|status`.
pub async fn maintenance(args: MaintenanceArgs) -> anyhow::Result<()> {
    match args.command {
        MaintenanceCommand::Schedule {
            agent_id,
            starts_in,
            duration,
            master,
        } => {
            let secs = |t: &str| {
                crate::duration::parse_duration(t)
                    .map(|d| d.as_secs_f64())
                    .map_err(anyhow::Error::msg)
            };
            let (start, length) = (secs(&starts_in)?, secs(&duration)?);
            let req = v1::ScheduleMaintenanceRequest {
                agent_id: agent_id.clone(),
                starts_in_secs: start,
                duration_secs: length,
            };
            call(&master.master, async |c| {
                c.schedule_maintenance(req.clone()).await
            })
            .await
            .map_err(|e| refused("maintenance", e))?;
            crate::output::text(&format!(
                "maintenance of {agent_id} scheduled in {starts_in} for {duration}"
            ));
        }
        MaintenanceCommand::Status { master } => {
            let windows = call(&master.master, async |c| {
                c.get_maintenance(v1::GetMaintenanceRequest {}).await
            })
            .await
            .map_err(|e| refused("GetMaintenance", e))?
            .windows;
            if windows.is_empty() {
                crate::output::text("no maintenance scheduled");
            }
            for w in windows {
                let u = w.unavailability.unwrap_or_default();
                let answers: Vec<String> = w
                    .frameworks
                    .iter()
                    .map(|f| format!("{}={}", f.framework_id, f.status))
                    .collect();
                crate::output::text(&format!(
                    "{}  starts in {:.0}s  lasts {:.0}s  {}  {}",
                    w.agent_id,
                    u.starts_in_ms as f64 / 1000.0,
                    u.duration_ms as f64 / 1000.0,
                    if w.started { "STARTED" } else { "scheduled" },
                    answers.join(" ")
                ));
            }
        }
    }
    Ok(())
}

/// `proffer drain AGENT` (`drain` true) or `proffer reactivate AGENT`.
pub async fn drain(args: DrainArgs, drain: bool) -> anyhow::Result<()> {
    let masters = &args.master.master;
    if drain {
        let req = v1::DrainAgentRequest {
            agent_id: args.agent_id.clone(),
            reason: args.reason.clone(),
        };
        call(masters, async |c| c.drain_agent(req.clone()).await)
            .await
            .map_err(|e| refused("drain", e))?;
        crate::output::text(&format!(
            "agent {} is draining: no new offers, its tasks are being killed",
            args.agent_id
        ));
    } else {
        let req = v1::ReactivateAgentRequest {
            agent_id: args.agent_id.clone(),
        };
        call(masters, async |c| c.reactivate_agent(req.clone()).await)
            .await
            .map_err(|e| refused("reactivate", e))?;
        crate::output::text(&format!("agent {} is offered again", args.agent_id));
    }
    Ok(())
}

/// Flags of `proffer agent-gone`.
#[derive(Debug, clap::Args)]
pub struct AgentGoneArgs {
    /// The agent id (see `proffer state`).
    agent_id: String,
    #[command(flatten)]
    master: MasterFlag,
}

/// `proffer agent-gone AGENT`: the agent is gone for good (Mesos MARK_AGENT_GONE).
pub async fn agent_gone(args: AgentGoneArgs) -> anyhow::Result<()> {
    let req = v1::MarkAgentGoneRequest {
        agent_id: args.agent_id.clone(),
    };
    call(&args.master.master, async |c| {
        c.mark_agent_gone(req.clone()).await
    })
    .await
    .map_err(|e| refused("agent-gone", e))?;
    crate::output::text(&format!(
        "agent {} is gone: its tasks ended (TASK_GONE_BY_OPERATOR for partition-aware frameworks, TASK_LOST for others); it may never come back with this id",
        args.agent_id
    ));
    Ok(())
}

/// Flags of `proffer teardown`.
#[derive(Debug, clap::Args)]
pub struct TeardownArgs {
    /// The framework id (see `proffer state`).
    framework_id: String,
    #[command(flatten)]
    master: MasterFlag,
}

/// `proffer teardown FRAMEWORK`: removes a framework for good (Mesos `/teardown`; the ACL
/// `teardown_frameworks` decides who may).
pub async fn teardown(args: TeardownArgs) -> anyhow::Result<()> {
    let req = v1::TeardownFrameworkRequest {
        framework_id: args.framework_id.clone(),
    };
    call(&args.master.master, async |c| {
        c.teardown_framework(req.clone()).await
    })
    .await
    .map_err(|e| refused("teardown", e))?;
    crate::output::text(&format!(
        "framework {} torn down: its tasks are killed and its id may not subscribe again",
        args.framework_id
    ));
    Ok(())
}

/// `proffer roles`: a table (or JSON) of every role the allocator knows.
pub async fn roles(args: RolesArgs) -> anyhow::Result<()> {
    let roles = call(&args.master.master, async |c| {
        c.get_roles(v1::GetRolesRequest {}).await
    })
    .await
    .map_err(|e| refused("GetRoles", e))?
    .roles;
    if args.json {
        let list: Vec<serde_json::Value> = roles
            .iter()
            .map(|r| {
                serde_json::json!({
                    "role": r.role, "weight": r.weight, "guarantees": r.guarantees,
                    "limits": r.limits, "allocated": r.allocated, "frameworks": r.frameworks,
                })
            })
            .collect();
        crate::output::text(&serde_json::to_string_pretty(&list)?);
    } else {
        crate::output::text(&render_roles(&roles));
    }
    Ok(())
}

/// `proffer why FRAMEWORK_ID | --role ROLE`: the allocator's explanation, a line each. A name
/// the master knows neither as a framework nor as a role (`NotFound`) is an error.
pub async fn why(args: WhyArgs) -> anyhow::Result<()> {
    let subject = match (args.framework_id, args.role) {
        (Some(id), None) => v1::why_request::Subject::FrameworkId(id),
        (None, Some(role)) => v1::why_request::Subject::Role(role),
        _ => anyhow::bail!("give a framework id or --role ROLE"),
    };
    let req = v1::WhyRequest {
        subject: Some(subject),
    };
    let lines = call(&args.master.master, async |c| c.why(req.clone()).await)
        .await
        .map_err(|e| match e {
            OperatorError::Status(s) if s.code() == tonic::Code::NotFound => {
                anyhow::anyhow!("{}", s.message())
            }
            e => refused("why", e),
        })?
        .lines;
    crate::output::text(&render_why(&lines));
    Ok(())
}

/// `proffer reserve` (`reserve` true) or `proffer unreserve`: dynamic reservations of resources
/// no task uses on an agent.
pub async fn reserve(args: ReserveArgs, reserve: bool) -> anyhow::Result<()> {
    let resources = resources("resources", &args.resources)?.to_proto();
    let masters = &args.master.master;
    let agent_id = args.agent_id.clone();
    if reserve {
        let req = v1::ReserveResourcesRequest {
            agent_id,
            resources,
        };
        call(masters, async |c| c.reserve_resources(req.clone()).await)
            .await
            .map_err(|e| refused("reserve", e))?;
        crate::output::text(&format!("reserved {} on {}", args.resources, args.agent_id));
    } else {
        let req = v1::UnreserveResourcesRequest {
            agent_id,
            resources,
        };
        call(masters, async |c| c.unreserve_resources(req.clone()).await)
            .await
            .map_err(|e| refused("unreserve", e))?;
        crate::output::text(&format!(
            "unreserved {} on {}",
            args.resources, args.agent_id
        ));
    }
    Ok(())
}

fn or_dash(s: &str) -> String {
    if s.is_empty() { "-".into() } else { s.into() }
}

/// Table of roles.
pub fn render_roles(roles: &[v1::RoleSummary]) -> String {
    let rows: Vec<Vec<String>> = roles
        .iter()
        .map(|r| {
            vec![
                r.role.clone(),
                format!("{}", r.weight),
                or_dash(&r.guarantees),
                or_dash(&r.limits),
                or_dash(&r.allocated),
                r.frameworks.len().to_string(),
            ]
        })
        .collect();
    render(
        &[
            "ROLE",
            "WEIGHT",
            "GUARANTEES",
            "LIMITS",
            "ALLOCATED",
            "FRAMEWORKS",
        ],
        &rows,
    )
}

/// The explanation as `- line` bullets (or a note when there is nothing to say).
pub fn render_why(lines: &[String]) -> String {
    if lines.is_empty() {
        return "nothing to explain".into();
    }
    lines.iter().map(|l| format!("- {l}\n")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_roles_and_explanations() {
        let roles = vec![v1::RoleSummary {
            role: "eng".into(),
            weight: 2.0,
            guarantees: "cpus:1".into(),
            limits: String::new(),
            allocated: "cpus:0.5".into(),
            frameworks: vec!["f1".into()],
        }];
        assert_eq!(
            render_roles(&roles),
            "ROLE  WEIGHT  GUARANTEES  LIMITS  ALLOCATED  FRAMEWORKS\n\
             eng   2       cpus:1      -       cpus:0.5   1\n"
        );
        assert_eq!(render_why(&["a".into(), "b".into()]), "- a\n- b\n");
        assert_eq!(render_why(&[]), "nothing to explain");
    }

    #[test]
    fn bad_resource_flags_name_the_flag() {
        let err = resources("guarantee", "cpus:-1").expect_err("negative");
        let text = format!("{err:#}");
        assert!(
            text.contains("--guarantee") && text.contains("negative"),
            "{text}"
        );
    }
}
