//! End to end with the real binary and a real network partition (issue 17, item 6): an agent
//! in a network namespace of its own, reaching the master over a veth pair. Taking the link
//! down partitions it: the master marks it unreachable and the PARTITION_AWARE framework hears
//! TASK_UNREACHABLE for each of its tasks (which keep running on the agent); bringing the link
//! up heals it: the agent re-registers and the framework hears TASK_RUNNING for each again —
//! nothing relaunched, nothing killed.
//!
//! Needs root and `ip` (iproute2); skipped, saying why, otherwise.

use std::process::Command;

use anyhow::{Context, Result, bail};
use proffer_proto::Resources;
use proffer_proto::v1::{self, TaskState, event::Event};
use proffer_sdk::driver::{Driver, DriverConfig, DriverEvent, EventStream, command_task};
use proffer_tests::long_tasks::{self, LIMIT, next};
use proffer_tests::procs::{Proc, free_port, state_json, wait_for};

const TASKS: usize = 5;
const MARKER: &str = "7200.1706";

/// A network namespace joined to the host by a veth pair; removed on drop.
struct Netns {
    name: String,
    host_if: String,
    host_ip: String,
}

fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip").args(args).output().context("run ip")?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

impl Netns {
    fn create() -> Result<Netns> {
        let id = std::process::id() % 200 + 20;
        let name = format!("proffer-pt{id}");
        let (host_if, ns_if) = (format!("pfh{id}"), format!("pfn{id}"));
        let (host_ip, ns_ip) = (format!("10.213.{id}.1"), format!("10.213.{id}.2"));
        let _ = ip(&["netns", "del", &name]);
        ip(&["netns", "add", &name])?;
        let ns = Netns {
            name,
            host_if,
            host_ip,
        };
        ip(&[
            "link",
            "add",
            &ns.host_if,
            "type",
            "veth",
            "peer",
            "name",
            &ns_if,
        ])?;
        ip(&["link", "set", &ns_if, "netns", &ns.name])?;
        ip(&[
            "addr",
            "add",
            &format!("{}/24", ns.host_ip),
            "dev",
            &ns.host_if,
        ])?;
        ip(&["link", "set", &ns.host_if, "up"])?;
        let exec = |args: &[&str]| {
            let mut all = vec!["netns", "exec", ns.name.as_str(), "ip"];
            all.extend_from_slice(args);
            ip(&all)
        };
        exec(&["addr", "add", &format!("{ns_ip}/24"), "dev", &ns_if])?;
        exec(&["link", "set", &ns_if, "up"])?;
        exec(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    fn link(&self, up: bool) -> Result<()> {
        ip(&["link", "set", &self.host_if, if up { "up" } else { "down" }])
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = ip(&["link", "del", &self.host_if]);
        let _ = ip(&["netns", "del", &self.name]);
    }
}

/// Why the test cannot run here, if it cannot.
fn cannot_run() -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    // /proc/self belongs to the effective user.
    if std::fs::metadata("/proc/self").map_or(true, |m| m.uid() != 0) {
        return Some("not root".into());
    }
    if Command::new("ip").arg("-V").output().is_err() {
        return Some("`ip` (iproute2) is not installed".into());
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_agents_tasks_are_unreachable_then_running_again() -> Result<()> {
    if let Some(why) = cannot_run() {
        println!("skipped: {why}; a network-namespace partition needs root and iproute2");
        return Ok(());
    }
    let netns = match Netns::create() {
        Ok(n) => n,
        Err(e) => {
            println!("skipped: cannot make a network namespace here: {e:#}");
            return Ok(());
        }
    };
    let result = scenario(&netns).await;
    long_tasks::stop_sleepers(MARKER);
    result
}

async fn scenario(netns: &Netns) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let master = format!("{}:{}", netns.host_ip, free_port()?);
    let work = dir.path().join("master").to_string_lossy().to_string();
    let _master = Proc::start(
        "master",
        &[
            "master",
            "--listen",
            &master,
            "--work-dir",
            &work,
            "--allocation-interval",
            "100ms",
            "--agent-ping-interval",
            "500ms",
            "--agent-max-missed-pings",
            "4",
            // The host end of the veth pair is not loopback: open on purpose (a test network).
            "--insecure",
        ],
        dir.path(),
    )?;
    tokio::task::block_in_place(|| wait_for("the master", LIMIT, || state_json(&master).ok()))?;
    let agent_dir = dir.path().join("agent").to_string_lossy().to_string();
    std::fs::create_dir_all(&agent_dir)?;
    let _agent = Proc::start_in_netns(
        "agent",
        &netns.name,
        &[
            "agent",
            "--master",
            &master,
            "--work-dir",
            &agent_dir,
            "--resources",
            "cpus:1;mem:512",
            "--hostname",
            "partitioned",
        ],
        dir.path(),
    )?;
    let info = v1::FrameworkInfo {
        name: "partition-e2e".into(),
        failover_timeout: 3600.0,
        capabilities: vec!["PARTITION_AWARE".into()],
        ..Default::default()
    };
    let (driver, mut events) = Driver::subscribe(DriverConfig::new(master.as_str(), info)).await?;
    launch(&driver, &mut events).await?;
    tokio::task::block_in_place(|| long_tasks::wait_sleepers(MARKER, TASKS))?;

    netns.link(false)?;
    let unreachable = updates(&driver, &mut events, TaskState::TaskUnreachable).await?;
    assert_eq!(unreachable, TASKS, "every task unreachable");
    assert_eq!(
        long_tasks::sleepers(MARKER),
        TASKS,
        "tasks keep running on the agent"
    );
    netns.link(true)?;
    let running = updates(&driver, &mut events, TaskState::TaskRunning).await?;
    assert_eq!(running, TASKS, "every task running again");
    let s = state_json(&master)?;
    let known = s["tasks"]
        .as_array()
        .context("tasks")?
        .iter()
        .filter(|t| t["state"] == "TASK_RUNNING")
        .count();
    assert_eq!(known, TASKS, "{s}");
    assert_eq!(long_tasks::sleepers(MARKER), TASKS, "nothing relaunched");
    driver.teardown().await?;
    Ok(())
}

/// Launches `TASKS` sleepers on the one agent and waits until they run.
async fn launch(driver: &Driver, events: &mut EventStream) -> Result<()> {
    let res = Resources::parse("cpus:0.1;mem:16")?;
    let deadline = tokio::time::Instant::now() + LIMIT;
    // Distinct ids: an update not yet acknowledged may be re-sent.
    let mut running = std::collections::HashSet::new();
    let mut launched = false;
    while running.len() < TASKS {
        let DriverEvent::Event(e) = next(events, deadline).await? else {
            continue;
        };
        match e.event {
            Some(Event::Offers(o)) => {
                for offer in o.offers {
                    if launched {
                        driver.decline(vec![offer.id], None).await?;
                        continue;
                    }
                    let tasks = (0..TASKS)
                        .map(|i| {
                            let id = format!("p-{i}");
                            let cmd = format!("exec sleep {MARKER}");
                            command_task(&id, &id, &offer.agent_id, &cmd, &res)
                        })
                        .collect();
                    driver.launch(vec![offer.id], tasks, None).await?;
                    launched = true;
                }
            }
            Some(Event::Update(u)) => {
                let st = u.status.context("status")?;
                driver.acknowledge(&st).await?;
                if st.state == TaskState::TaskRunning as i32 {
                    running.insert(st.task_id.clone());
                }
            }
            _ => {}
        }
    }
    driver.suppress().await?;
    Ok(())
}

/// Counts updates to `want` until there are `TASKS` of them (within the time limit); any
/// other state but RUNNING/UNREACHABLE fails.
async fn updates(driver: &Driver, events: &mut EventStream, want: TaskState) -> Result<usize> {
    let deadline = tokio::time::Instant::now() + LIMIT;
    let mut seen = std::collections::HashSet::new();
    while seen.len() < TASKS {
        let DriverEvent::Event(e) = next(events, deadline).await? else {
            continue;
        };
        let Some(Event::Update(u)) = e.event else {
            continue;
        };
        let st = u.status.context("status")?;
        driver.acknowledge(&st).await?;
        let state = TaskState::try_from(st.state).unwrap_or(TaskState::TaskLost);
        if state == want {
            seen.insert(st.task_id.clone());
        } else if !matches!(state, TaskState::TaskRunning | TaskState::TaskUnreachable) {
            bail!("unexpected update while waiting for {want:?}: {st:?}");
        }
    }
    Ok(seen.len())
}
