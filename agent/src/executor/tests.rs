use super::*;

#[test]
fn argument_forms() {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    assert_eq!(
        parse_args(&s(&["executor", "--probe"])),
        Ok(ExecutorMode::Probe)
    );
    assert_eq!(
        parse_args(&s(&["--run-dir", "/x"])),
        Ok(ExecutorMode::Run("/x".into()))
    );
    assert_eq!(
        parse_args(&s(&["executor", "--run-dir", "/x"])),
        Ok(ExecutorMode::Run("/x".into()))
    );
    assert_eq!(
        parse_args(&s(&["executor", "--supervisor"])),
        Ok(ExecutorMode::Supervisor)
    );
    assert!(parse_args(&s(&["--supervisor", "x"])).is_err());
    let with_runtime = s(&["executor", "--oci-runtime", "/r", "--supervisor"]);
    assert_eq!(parse_args(&with_runtime), Ok(ExecutorMode::Supervisor));
    assert_eq!(oci_runtime_arg(&with_runtime), Some(PathBuf::from("/r")));
    assert_eq!(oci_runtime_arg(&s(&["--probe"])), None);
    assert!(parse_args(&s(&["executor"])).is_err());
    assert!(parse_args(&s(&["--run-dir"])).is_err());
    assert!(parse_args(&s(&["--probe", "x"])).is_err());
}

#[test]
fn only_fetches_images_and_users_leave_the_runtime_to_prepare() {
    let spec = ExecutorSpec::example(Path::new("/w/sandboxes/fw/t"), &[]);
    let plain = TaskInfo {
        command: Some(proffer_proto::v1::CommandInfo {
            value: "true".into(),
            shell: true,
            ..Default::default()
        }),
        ..Default::default()
    };
    assert!(!slow_to_prepare(&spec, &plain), "a plain command");
    let mut fetch = plain.clone();
    if let Some(c) = fetch.command.as_mut() {
        c.uris.push(proffer_proto::v1::Uri {
            value: "http://x/y".into(),
            ..Default::default()
        });
    }
    assert!(slow_to_prepare(&spec, &fetch), "URIs to fetch");
    let image = TaskInfo {
        container: Some(proffer_proto::v1::ContainerInfo {
            image: "busybox".into(),
            ..Default::default()
        }),
        ..plain.clone()
    };
    assert!(slow_to_prepare(&spec, &image), "an image to unpack");
    let user = ExecutorSpec {
        user: Some("nobody".into()),
        ..spec.clone()
    };
    assert!(slow_to_prepare(&user, &plain), "a user to look up");
}

#[tokio::test]
async fn ends_are_recorded_and_nudged_whether_or_not_the_agent_is_there() {
    let dir = tempfile::tempdir().expect("tempdir");
    for gone in [false, true] {
        let agent = AgentLink::default();
        if gone {
            // The first loss syncs the file system of the run directory.
            agent.lost(dir.path());
        }
        assert_eq!(agent.gone(), gone);
        let (tx, mut rx) = mpsc::unbounded_channel();
        let log = EventLog::open(dir.path()).expect("log");
        let mut rec = Recorder {
            log: Arc::new(std::sync::Mutex::new(log)),
            nudge: Nudge::dir(tx, dir.path().to_path_buf(), agent),
        };
        rec.record(&ExecutorEvent::Started { pid: 7 })
            .await
            .expect("started");
        let end = failed("REASON_TEST", "done".into());
        rec.exited(&end, None).await.expect("exited");
        let events = supervisor::Notice::Events(dir.path().to_path_buf());
        assert_eq!(rx.recv().await, Some(events.clone()));
        assert_eq!(rx.recv().await, Some(events));
    }
    let events = protocol::read_events(dir.path(), 0).expect("read");
    let ends = events
        .iter()
        .filter(|(e, _)| matches!(e, Ok(ExecutorEvent::Exited { .. })))
        .count();
    assert_eq!((events.len(), ends), (4, 2));
    // A run directory that is gone: marked gone, the failed sync only reported.
    let lost = AgentLink::default();
    lost.lost(&dir.path().join("missing"));
    assert!(lost.gone());
}
