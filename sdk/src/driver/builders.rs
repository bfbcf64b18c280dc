//! Helpers that build protocol messages for frameworks.

use proffer_proto::{Resources, v1};

/// A task that runs `cmd` under `/bin/sh -c` on `agent_id` with `resources`.
pub fn command_task(
    task_id: &str,
    name: &str,
    agent_id: &str,
    cmd: &str,
    resources: &Resources,
) -> v1::TaskInfo {
    v1::TaskInfo {
        name: name.to_string(),
        task_id: task_id.to_string(),
        agent_id: agent_id.to_string(),
        resources: resources.to_proto(),
        command: Some(v1::CommandInfo {
            value: cmd.to_string(),
            shell: true,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// One LAUNCH operation for `tasks`.
pub fn launch_operation(tasks: Vec<v1::TaskInfo>) -> v1::Operation {
    v1::Operation {
        op: Some(v1::operation::Op::Launch(v1::Launch { tasks })),
    }
}

/// Filters that refuse the given resources for `seconds`.
pub fn refuse_filters(seconds: f64) -> v1::Filters {
    v1::Filters {
        refuse_seconds: Some(seconds),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_task_is_a_shell_command_with_resources() -> Result<(), proffer_proto::ResourceError>
    {
        let res = Resources::parse("cpus:0.5;mem:64")?;
        let t = command_task("t-1", "job", "a-1", "echo hi", &res);
        assert_eq!(t.task_id, "t-1");
        assert_eq!(t.name, "job");
        assert_eq!(t.agent_id, "a-1");
        let cmd = t.command.unwrap_or_default();
        assert!(cmd.shell);
        assert_eq!(cmd.value, "echo hi");
        assert_eq!(Resources::from_proto(&t.resources)?, res);
        Ok(())
    }

    #[test]
    fn launch_operation_wraps_tasks() {
        let op = launch_operation(vec![v1::TaskInfo::default(), v1::TaskInfo::default()]);
        match op.op {
            Some(v1::operation::Op::Launch(l)) => assert_eq!(l.tasks.len(), 2),
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(refuse_filters(1.5).refuse_seconds, Some(1.5));
    }
}
