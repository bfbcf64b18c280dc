//! `proffer service check` and the API client's error path, with the real binary.

use std::process::Command;

fn proffer(args: &[&str]) -> std::io::Result<std::process::Output> {
    Command::new(env!("CARGO_BIN_EXE_proffer"))
        .args(args)
        .output()
}

fn spec(name: &str) -> String {
    format!(
        "{}/../sdk/examples-specs/{name}.yaml",
        env!("CARGO_MANIFEST_DIR")
    )
}

#[test]
fn check_prints_the_compiled_plans() -> std::io::Result<()> {
    let out = proffer(&["service", "check", &spec("batch"), "--option", "WORKERS=2"])?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "deploy (serial) PENDING\n  driver (serial) PENDING\n    driver-0:[main] PENDING\n  workers (parallel) PENDING\n    worker-0:[work] PENDING\n    worker-1:[work] PENDING\n"
    );
    Ok(())
}

#[test]
fn check_names_the_bad_field() -> std::io::Result<()> {
    let out = proffer(&[
        "service",
        "check",
        &spec("hello-world"),
        "--option",
        "WEB_COUNT=lots",
    ])?;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("pods.web.count: invalid type: string \"lots\", expected u32"),
        "{err}"
    );
    Ok(())
}

#[test]
fn api_commands_say_when_the_scheduler_is_unreachable() -> std::io::Result<()> {
    let out = proffer(&["service", "why", "--api", "127.0.0.1:1"])?;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot reach the scheduler at 127.0.0.1:1"),
        "{err}"
    );
    Ok(())
}
