//! End to end, in one process: a framework RESERVEs, CREATEs a persistent volume and launches a
//! task that writes into it; after the task finished it DESTROYs the volume, and the real
//! agent deletes the volume's directory (`WORK_DIR/volumes/<id>`).

use std::time::Duration;

use anyhow::{Context, Result, bail};
use proffer_proto::Resources;
use proffer_proto::v1::{self, event::Event, operation::Op};
use proffer_sdk::driver::{launch_operation, refuse_filters};
use proffer_sdk::{Driver, DriverConfig, DriverEvent, command_task};
use proffer_tests::inproc::InProcess;

/// Generous bound on the framework's part; it normally takes a few seconds.
const RUN_LIMIT: Duration = Duration::from_secs(60);

const RESERVED: &str = "cpus(web,dynamic):0.5;mem(web,dynamic):64;disk(web,dynamic):50";
const VOLUME: &str = "disk(web,dynamic)[data:mnt/data]:50";

fn wire(text: &str) -> Result<Vec<v1::Resource>> {
    Ok(Resources::parse(text)?.to_proto())
}

/// Where the framework is.
#[derive(Debug, PartialEq)]
enum Phase {
    /// Waiting for an offer to reserve, create and launch on.
    Launch,
    /// The writer was launched; waiting for it to finish.
    Running,
    /// Waiting for an offer holding the volume, to destroy it.
    Destroy,
}

/// Runs the framework until it has destroyed the volume; returns what the task wrote into the
/// volume (`volume_file`, read once the task finished).
async fn framework(addr: &str, volume_file: &std::path::Path) -> Result<String> {
    let info = v1::FrameworkInfo {
        name: "volumes".into(),
        roles: vec!["web".into()],
        ..Default::default()
    };
    let (driver, mut events) = Driver::subscribe(DriverConfig::new(addr, info)).await?;
    let mut phase = Phase::Launch;
    let mut written = String::new();
    while let Some(ev) = events.next().await {
        let DriverEvent::Event(ev) = ev else { continue };
        match ev.event {
            Some(Event::Offers(o)) => {
                for offer in o.offers {
                    let have = Resources::from_proto(&offer.resources)?.to_string();
                    let ops = match phase {
                        Phase::Launch => {
                            let task = command_task(
                                "writer",
                                "writer",
                                &offer.agent_id,
                                "echo old-data > mnt/data/file",
                                &Resources::parse(
                                    &RESERVED.replace("disk(web,dynamic):50", VOLUME),
                                )?,
                            );
                            phase = Phase::Running;
                            vec![
                                v1::Operation {
                                    op: Some(Op::Reserve(v1::Reserve {
                                        resources: wire(RESERVED)?,
                                    })),
                                },
                                v1::Operation {
                                    op: Some(Op::Create(v1::CreateVolume {
                                        volumes: wire(VOLUME)?,
                                    })),
                                },
                                launch_operation(vec![task]),
                            ]
                        }
                        Phase::Destroy if have.contains("[data:mnt/data]") => {
                            vec![
                                v1::Operation {
                                    op: Some(Op::Destroy(v1::DestroyVolume {
                                        volumes: wire(VOLUME)?,
                                    })),
                                },
                                v1::Operation {
                                    op: Some(Op::Unreserve(v1::Unreserve {
                                        resources: wire(RESERVED)?,
                                    })),
                                },
                            ]
                        }
                        _ => Vec::new(),
                    };
                    if ops.is_empty() {
                        driver
                            .decline(vec![offer.id], Some(refuse_filters(0.0)))
                            .await?;
                        continue;
                    }
                    let destroying = phase == Phase::Destroy;
                    driver
                        .accept(vec![offer.id], ops, Some(refuse_filters(0.0)))
                        .await?;
                    if destroying {
                        driver.teardown().await?;
                        return Ok(written);
                    }
                }
            }
            Some(Event::Update(u)) => {
                let status = u.status.unwrap_or_default();
                driver.acknowledge(&status).await?;
                let state = v1::TaskState::try_from(status.state)?;
                if state == v1::TaskState::TaskFinished {
                    written = std::fs::read_to_string(volume_file)
                        .with_context(|| format!("reading {}", volume_file.display()))?;
                    phase = Phase::Destroy;
                } else if state.is_terminal() {
                    bail!("writer ended in {state:?}: {}", status.message);
                }
            }
            _ => {}
        }
    }
    bail!("the event stream ended")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destroy_deletes_the_volume_directory_on_the_agent() -> Result<()> {
    let cluster = InProcess::start(&["cpus:2;mem:1024;disk:100"]).await?;
    let (addr, dir) = (&cluster.addr, &cluster.dirs[0]);

    let volume = dir.path().join("volumes").join("data");
    let written = tokio::time::timeout(RUN_LIMIT, framework(addr, &volume.join("file")))
        .await
        .context("the framework did not finish in time")??;
    assert_eq!(written.trim(), "old-data");
    // The agent applies DestroyVolumes shortly after the ACCEPT.
    let deadline = tokio::time::Instant::now() + RUN_LIMIT;
    while volume.exists() {
        if tokio::time::Instant::now() > deadline {
            bail!("{} still exists after DESTROY", volume.display());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(dir.path().join("volumes").is_dir());

    cluster.stop().await
}
