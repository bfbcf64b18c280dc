//! End to end, in one process: the real master server, two real agents running real shell
//! processes, and the SDK's batch framework running 50 tasks to TASK_FINISHED.

use std::time::Duration;

use anyhow::{Context, Result};
use proffer_proto::v1;
use proffer_sdk::{BatchProgress, BatchSpec, run_batch};
use proffer_tests::inproc::InProcess;
use tokio_util::sync::CancellationToken;

/// Generous bound on the whole run; the batch normally takes a few seconds.
const RUN_LIMIT: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_of_50_tasks_finishes_on_in_process_master_and_agents() -> Result<()> {
    let cluster = InProcess::start(&["cpus:2;mem:1024;ports:[31000-31099]"; 2]).await?;
    let addr = cluster.addr.clone();

    let spec = BatchSpec {
        cpus: 0.25,
        mem: 32.0,
        ..BatchSpec::new("e2e", 50, "echo task $PWD")
    };
    let progress = |_: &BatchProgress| {};
    let summary = tokio::time::timeout(
        RUN_LIMIT,
        run_batch(&addr, spec, progress, CancellationToken::new()),
    )
    .await
    .context("batch did not finish in time")??;
    assert_eq!(summary.tasks, 50);
    assert_eq!(summary.launched, 50, "{summary}");
    assert_eq!(summary.finished, 50, "{summary}");
    assert!(summary.all_finished(), "{summary}");
    // At most 8 tasks of 0.25 cpu fit on an agent with 2 cpus, so several offers were needed.
    assert!(summary.offers_received >= 50 / 16, "{summary}");

    // The master saw two agents, every task completed, and the framework is gone after TEARDOWN.
    let mut client = v1::operator_client::OperatorClient::connect(format!("http://{addr}")).await?;
    let state = client.get_state(v1::GetStateRequest {}).await?.into_inner();
    assert_eq!(state.agents.len(), 2, "{:?}", state.agents);
    assert!(
        state.tasks.is_empty(),
        "no active tasks remain: {:?}",
        state.tasks
    );
    let finished: Vec<_> = state
        .completed_tasks
        .iter()
        .filter(|t| t.id.starts_with("e2e-") && t.state == "TASK_FINISHED")
        .collect();
    assert_eq!(
        finished.len(),
        50,
        "completed tasks: {:?}",
        state.completed_tasks
    );
    assert!(
        state.frameworks.iter().all(|f| f.name != "e2e"),
        "framework was torn down: {:?}",
        state.frameworks
    );

    cluster.stop().await
}

/// UPDATE_FRAMEWORK through the real gRPC server: the new offer limit shows in the operator's
/// state at once, and a refused update names the field with the gRPC code for bad input.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_framework_changes_the_offer_limit_over_grpc() -> Result<()> {
    use proffer_sdk::{Driver, DriverConfig, DriverError};

    let cluster = InProcess::start(&["cpus:2;mem:1024"]).await?;
    let addr = cluster.addr.clone();
    let info = v1::FrameworkInfo {
        name: "limits".into(),
        max_outstanding_offers: Some(1),
        ..Default::default()
    };
    let (driver, _events) = Driver::subscribe(DriverConfig::new(addr.clone(), info)).await?;
    let mut client = v1::operator_client::OperatorClient::connect(format!("http://{addr}")).await?;
    let limit = |state: &v1::StateSnapshot| {
        state
            .frameworks
            .iter()
            .find(|f| f.name == "limits")
            .map(|f| f.max_outstanding_offers)
    };
    let state = client.get_state(v1::GetStateRequest {}).await?.into_inner();
    assert_eq!(limit(&state), Some(Some(1)));

    let mut more = driver.framework_info();
    more.max_outstanding_offers = Some(8);
    driver.update_framework(more).await?;
    let state = client.get_state(v1::GetStateRequest {}).await?.into_inner();
    assert_eq!(limit(&state), Some(Some(8)));

    let mut bad = driver.framework_info();
    bad.roles = vec!["elsewhere".into()];
    match driver.update_framework(bad).await {
        Err(DriverError::Call { code, message, .. }) => {
            assert_eq!(code, tonic::Code::InvalidArgument, "{message}");
            assert!(message.contains("framework_info.roles"), "{message}");
        }
        other => anyhow::bail!("expected a refusal, got {other:?}"),
    }
    assert_eq!(driver.framework_info().max_outstanding_offers, Some(8));
    driver.teardown().await?;
    cluster.stop().await
}
