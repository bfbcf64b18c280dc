use super::*;

fn err(text: &str) -> (usize, String, String) {
    match Scenario::parse(text, Path::new("bad.toml")) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(SimError::Scenario {
            path,
            line,
            field,
            message,
        }) => {
            assert_eq!(path, Path::new("bad.toml"));
            (line, field, message)
        }
        Err(other) => panic!("wrong error {other}"),
    }
}

const BASE: &str = "duration_s = 10\n[[agents]]\nresources = \"cpus:4;mem:4096\"\n";

#[test]
fn minimal_scenario_has_defaults() -> Result<(), SimError> {
    let s = Scenario::parse(BASE, Path::new("x/ok.toml"))?;
    assert_eq!(s.duration_ms(), 10_000);
    assert_eq!(s.tick_ms(), 1000);
    assert_eq!(s.agents[0].count, 1);
    assert_eq!(s.base_dir, Path::new("x"));
    assert_eq!(s.master_config().default_refuse_ms, 5000);
    Ok(())
}

#[test]
fn errors_name_line_and_field() {
    // Bad resources in a framework table, line 6.
    let (line, field, msg) = err(&format!(
        "{BASE}[[frameworks]]\nname = \"a\"\ntask = \"cpus:x\"\n"
    ));
    assert_eq!((line, field.as_str()), (6, "task"), "{msg}");
    // Unknown key.
    let (line, field, _) = err(&format!(
        "{BASE}[[frameworks]]\nname = \"a\"\ntsak = \"cpus:1\"\n"
    ));
    assert_eq!((line, field.as_str()), (6, "tsak"));
    // Missing field.
    let (_, field, msg) = err(&format!("{BASE}[[frameworks]]\nname = \"a\"\n"));
    assert_eq!(field, "task", "{msg}");
    // A bad value in a nested distribution.
    let (line, field, _) = err(&format!(
        "{BASE}[[frameworks]]\nname = \"a\"\ntask = \"cpus:1;mem:1\"\n\
         duration = {{ dist = \"exponential\", mean_s = -3 }}\n"
    ));
    assert_eq!((line, field.as_str()), (7, "mean_s"));
    // Cross-field check on the behaviour model.
    let (_, field, _) = err(&format!(
        "{BASE}[[frameworks]]\nname = \"a\"\ntask = \"cpus:1;mem:1\"\nbehaviour = \"elastic\"\n"
    ));
    assert_eq!(field, "max_running");
    // Top-level checks after parsing.
    let (line, field, _) = err("duration_s = -1\n[[agents]]\nresources = \"cpus:1;mem:1\"\n");
    assert_eq!((line, field.as_str()), (1, "duration_s"));
    let (_, field, _) = err("duration_s = 5\n");
    assert_eq!(field, "agents");
    // Unknown policy.
    let (line, field, msg) = err(&format!("{BASE}[master]\npolicy = \"fifo\"\n"));
    assert_eq!((line, field.as_str()), (5, "policy"), "{msg}");
    assert!(msg.contains("drf"), "{msg}");
    // A malformed attribute.
    let (line, field, _) =
        err("duration_s = 5\n[[agents]]\nresources = \"cpus:1;mem:1\"\nattributes = \"rack\"\n");
    assert_eq!((line, field.as_str()), (4, "attributes"));
    // Syntax error.
    let (line, _, _) = err("duration_s = 10\nname = \n");
    assert_eq!(line, 2);
}

#[test]
fn display_names_file_line_and_field() {
    let e = Scenario::parse("duration_s = \"x\"\n", Path::new("s.toml")).err();
    let text = e.map(|e| e.to_string()).unwrap_or_default();
    assert!(text.starts_with("s.toml:1: field `duration_s`"), "{text}");
}
