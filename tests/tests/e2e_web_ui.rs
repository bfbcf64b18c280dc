//! End to end: the master's web UI in a real headless Chromium (Debian `chromium` and
//! `chromium-driver`, driven over WebDriver), against a master and two agents started as
//! `proffer` processes, with running, finished and failed tasks launched through the SDK driver.
//!
//! The test loads the overview, agent, framework, role and task pages, checks the numbers they
//! show against the master's `/state` (and `/roles`, `/why`), reads a task's stdout and stderr
//! through the master's sandbox proxy, watches a ticking task's output grow, checks that a task
//! named `<img src=x onerror=…>` is shown as text, and saves screenshots under
//! `target/ui-screenshots/`. Without the browser it still checks the page and the sandbox proxy
//! over plain HTTP, and prints that the browser part was skipped.

#[path = "web_ui/cluster.rs"]
mod cluster;
#[path = "web_ui/fake_standby.rs"]
mod fake_standby;
#[path = "web_ui/webdriver.rs"]
mod webdriver;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use cluster::{
    MARKER, MARKER_SECURED, STDERR_TEXT, STDOUT_TEXT, UiCluster, XSS_NAME, basic, get, http_post,
    with_cluster,
};
use proffer_proto::Resources;
use proffer_tests::procs::{Proc, free_port, wait_for};
use serde_json::{Value, json};

/// The sandbox proxy over plain HTTP: a file's content, and refusals.
fn check_proxy(c: &UiCluster, framework_id: &str) -> Result<()> {
    let read = format!("/ui/api/sandbox/read?framework_id={framework_id}&task_id=echo&path=stdout");
    let answer = c.json(&read)?;
    assert_eq!(answer["data"], format!("{STDOUT_TEXT}\n"), "{answer}");
    let download =
        format!("/ui/api/sandbox/download?framework_id={framework_id}&task_id=echo&path=stderr");
    let (status, body) = get(&c.master, &download, c.auth.as_deref())?;
    assert!(status.contains(" 200 "), "{status}: {body}");
    assert_eq!(body, format!("{STDERR_TEXT}\n"));
    let browse = c.json(&format!(
        "/ui/api/sandbox/browse?framework_id={framework_id}&task_id=echo"
    ))?;
    let names: Vec<&str> = browse
        .as_array()
        .context("browse answer is not a list")?
        .iter()
        .filter_map(|e| e["name"].as_str())
        .collect();
    assert!(
        names.contains(&"stdout") && names.contains(&"stderr"),
        "{browse}"
    );
    let (status, body) = get(
        &c.master,
        &format!("/ui/api/sandbox/read?framework_id={framework_id}&task_id=echo&path=../../x"),
        c.auth.as_deref(),
    )?;
    assert!(
        status.contains(" 400 ") && body.contains("`..`"),
        "{status}: {body}"
    );
    let (status, body) = get(
        &c.master,
        &format!("/ui/api/sandbox/read?framework_id={framework_id}&task_id=nope&path=stdout"),
        c.auth.as_deref(),
    )?;
    assert!(
        status.contains(" 404 ") && body.contains("nope"),
        "{status}: {body}"
    );
    let (status, body) = get(&c.master, "/", c.auth.as_deref())?;
    assert!(
        status.contains(" 200 ") && body.contains("/ui/assets/app.js"),
        "{status}: {body}"
    );
    Ok(())
}

/// Whether the master answers `POST /api/v1` SUBSCRIBE with a stream (200).
fn event_stream_offered(addr: &str) -> Result<bool> {
    use std::io::{Read, Write};
    let body = r#"{"type":"SUBSCRIBE"}"#;
    let mut stream = std::net::TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "POST /api/v1 HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Accept: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head)?;
    Ok(head.ends_with(b" 200"))
}

/// Where the browser and its driver are, or `None` (with the reason printed).
fn browser() -> Option<(PathBuf, PathBuf)> {
    let find = |names: &[&str]| {
        names.iter().find_map(|n| {
            std::env::var_os("PATH").and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|d| d.join(n))
                    .find(|p| p.is_file())
            })
        })
    };
    match (
        find(&["chromium", "chromium-browser"]),
        find(&["chromedriver"]),
    ) {
        (Some(b), Some(d)) => Some((b, d)),
        _ => {
            println!(
                "skipping the browser part of the web UI test: `chromium` and `chromedriver` \
                 are not installed (Debian packages chromium and chromium-driver; .ci/run \
                 installs them)"
            );
            None
        }
    }
}

/// `target/ui-screenshots/` (the test binary is in `target/<profile>/deps/`).
fn screenshot_dir() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let target = exe
        .ancestors()
        .nth(3)
        .context("unexpected test binary path")?;
    let dir = target.join("ui-screenshots");
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn save(session: &webdriver::Session, dir: &Path, name: &str) -> Result<()> {
    let png = session.screenshot()?;
    anyhow::ensure!(png.starts_with(b"\x89PNG"), "{name}: not a PNG");
    std::fs::write(dir.join(format!("{name}.png")), png)?;
    Ok(())
}

/// Runs `script` until it returns a value `check` accepts, failing with the last value.
fn until(
    session: &webdriver::Session,
    what: &str,
    script: &str,
    args: Value,
    mut check: impl FnMut(&Value) -> bool,
) -> Result<Value> {
    let start = std::time::Instant::now();
    loop {
        let v = session.exec(script, args.clone())?;
        if check(&v) {
            return Ok(v);
        }
        if start.elapsed() > Duration::from_secs(20) {
            bail!("timed out waiting for {what}; the page shows {v}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A number as the UI rounds it (3 decimals, no trailing zeros).
fn ui_num(x: f64) -> String {
    let r = (x * 1000.0).round() / 1000.0;
    format!("{r}")
}

/// Scalar totals of a resource text, by name.
fn scalars(text: &str) -> Result<BTreeMap<String, f64>> {
    let mut out = BTreeMap::new();
    for name in ["cpus", "mem", "disk"] {
        let r = Resources::parse(text)?;
        let v = match name {
            "cpus" => r.cpus_milli() as f64 / 1000.0,
            "mem" => r.mem_milli() as f64 / 1000.0,
            _ => r.scalar_milli("disk") as f64 / 1000.0,
        };
        out.insert(name.to_string(), v);
    }
    Ok(out)
}

/// What the overview should show, from `/state`: counts, tasks by state, each agent's
/// used/total cpus and mem, each framework's dominant share.
fn expected_overview(state: &Value) -> Result<Value> {
    let list = |k: &str| state[k].as_array().cloned().unwrap_or_default();
    let mut by_state = BTreeMap::<String, usize>::new();
    for t in list("tasks").iter().chain(list("completed_tasks").iter()) {
        *by_state
            .entry(t["state"].as_str().unwrap_or("").to_string())
            .or_default() += 1;
    }
    let mut agents = BTreeMap::new();
    for a in list("agents") {
        let used = scalars(a["allocated"].as_str().unwrap_or(""))?;
        let total = scalars(a["total"].as_str().unwrap_or(""))?;
        let show = |n: &str| format!("{} / {}", ui_num(used[n]), ui_num(total[n]));
        agents.insert(
            a["id"].as_str().unwrap_or("").to_string(),
            json!({"cpus": show("cpus"), "mem": show("mem"), "tasks": a["active_tasks"].to_string()}),
        );
    }
    let mut frameworks = BTreeMap::new();
    for f in list("frameworks") {
        let share = f["dominant_share"].as_f64().unwrap_or(0.0);
        frameworks.insert(
            f["id"].as_str().unwrap_or("").to_string(),
            json!(format!("{:.1}%", share * 100.0)),
        );
    }
    Ok(json!({
        "agents": list("agents").len().to_string(),
        "frameworks": list("frameworks").len().to_string(),
        "live": list("tasks").len().to_string(),
        "completed": list("completed_tasks").len().to_string(),
        "offers": list("offers").len().to_string(),
        "by_state": by_state.into_iter().map(|(k, v)| (k, json!(v.to_string()))).collect::<serde_json::Map<_, _>>(),
        "agent_rows": agents,
        "framework_rows": frameworks,
    }))
}

/// The same, read from the page.
const SHOWN_OVERVIEW: &str = r#"
const text = (sel, root) => { const e = (root || document).querySelector(sel); return e ? e.textContent : null; };
const out = { agents: text('#count-agents'), frameworks: text('#count-frameworks'),
  live: text('#count-tasks-live'), completed: text('#count-tasks-completed'),
  offers: text('#count-offers'), by_state: {}, agent_rows: {}, framework_rows: {} };
for (const tr of document.querySelectorAll('#tasks-by-state tr[data-state]'))
  out.by_state[tr.dataset.state] = text('.count', tr);
for (const tr of document.querySelectorAll('#agents tr[data-agent-id]'))
  out.agent_rows[tr.dataset.agentId] = { cpus: text('.used-cpus', tr), mem: text('.used-mem', tr),
    tasks: text('.active-tasks', tr) };
for (const tr of document.querySelectorAll('#frameworks tr[data-framework-id]'))
  out.framework_rows[tr.dataset.frameworkId] = text('.share', tr);
return out;
"#;

/// Reads the page until it shows what `/state` says (read again each time: the page polls).
fn overview_matches_state(c: &UiCluster, session: &webdriver::Session) -> Result<Value> {
    let start = std::time::Instant::now();
    loop {
        let want = expected_overview(&c.json("/state")?)?;
        let shown = session.exec(SHOWN_OVERVIEW, json!([]))?;
        if shown == want {
            return Ok(shown);
        }
        if start.elapsed() > Duration::from_secs(20) {
            bail!("the overview shows\n{shown:#}\nbut /state says\n{want:#}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

const TEXT_OF: &str =
    "const e = document.querySelector(arguments[0]); return e ? e.textContent : null;";

/// A browser session on the cluster's UI, and where its screenshots go.
struct Ui<'a> {
    c: &'a UiCluster,
    session: webdriver::Session,
    shots: PathBuf,
}

impl Ui<'_> {
    /// Loads the UI page `route` (`""` is `/`).
    fn goto(&self, route: &str) -> Result<()> {
        self.session.goto(&self.c.url(route))
    }

    /// Waits until the element `sel` shows exactly `want`.
    fn text_is(&self, sel: &str, want: &str) -> Result<()> {
        until(&self.session, sel, TEXT_OF, json!([sel]), |v| {
            v.as_str() == Some(want)
        })
        .map(|_| ())
    }

    /// Waits until the element `sel` shows text `check` accepts; returns that text.
    fn text_until(&self, sel: &str, check: impl Fn(&str) -> bool) -> Result<String> {
        let v = until(&self.session, sel, TEXT_OF, json!([sel]), |v| {
            v.as_str().is_some_and(&check)
        })?;
        Ok(v.as_str().unwrap_or_default().to_string())
    }

    fn save(&self, name: &str) -> Result<()> {
        save(&self.session, &self.shots, name)
    }
}

/// The overview against `/state`, the agent, framework (with `why`) and role pages.
fn cluster_pages(ui: &Ui, framework_id: &str) -> Result<()> {
    ui.goto("")?;
    let shown = overview_matches_state(ui.c, &ui.session)?;
    println!("overview shows {shown}");
    assert_eq!(shown["agents"], "2");
    assert_eq!(shown["by_state"]["TASK_RUNNING"], "2", "{shown}");
    ui.save("overview")?;
    // A counter of /metrics (stable: nothing is launched meanwhile).
    let (_, metrics) = get(&ui.c.master, "/metrics", ui.c.auth.as_deref())?;
    let launched = metrics
        .lines()
        .find_map(|l| l.strip_prefix("proffer_tasks_launched_total "))
        .context("no proffer_tasks_launched_total in /metrics")?
        .trim()
        .parse::<f64>()?;
    ui.text_is("#metric-tasks-launched", &ui_num(launched))?;
    if event_stream_offered(&ui.c.master)? {
        ui.text_until("#status", |t| t.contains("live"))?;
        println!("the page follows the operator event stream");
    } else {
        println!("the master offers no operator event stream: the page polls /state");
    }

    // The agent page of the agent running the tasks.
    let state = ui.c.json("/state")?;
    let agent = state["tasks"][0]["agent_id"]
        .as_str()
        .context("no running task")?;
    let a = state["agents"]
        .as_array()
        .and_then(|l| l.iter().find(|a| a["id"] == agent))
        .context("task's agent not in /state")?;
    ui.goto(&format!("ui#/agent/{agent}"))?;
    ui.text_is("#agent-total", a["total"].as_str().unwrap_or_default())?;
    ui.text_is(
        "#agent-allocated",
        a["allocated"].as_str().unwrap_or_default(),
    )?;
    ui.save("agent")?;

    // The framework page, with its `why` explanation, reached by clicking its link.
    ui.goto("ui#/frameworks")?;
    let sel = format!("#frameworks tr[data-framework-id=\"{framework_id}\"] a");
    let click = "const a = document.querySelector(arguments[0]); if (a) a.click(); return !!a;";
    until(
        &ui.session,
        "the framework link",
        click,
        json!([sel]),
        |v| v == true,
    )?;
    ui.text_is("#framework-name", "web-ui-e2e")?;
    let why = ui.c.json(&format!("/why?framework_id={framework_id}"))?;
    let first = why["lines"][0].as_str().context("empty why")?;
    ui.text_until("#why", |t| t.contains(first))?;
    ui.save("framework")?;

    // A role with a weight and a quota, and why it waits.
    ui.goto("ui#/role/analytics")?;
    ui.text_is("#role-weight", "2")?;
    let why = ui.c.json("/why?role=analytics")?;
    let lines: Vec<&str> = why["lines"]
        .as_array()
        .context("why lines")?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    ui.text_is("#why", &lines.join("\n"))?;
    ui.save("role")
}

/// Task pages: stdout and stderr of a finished task, a running task's output growing, and
/// markup in a task name shown as text.
fn task_pages(ui: &Ui, framework_id: &str) -> Result<()> {
    ui.goto(&format!("ui#/task/{framework_id}/echo"))?;
    ui.text_until("#output", |t| t.contains(STDOUT_TEXT))?;
    ui.save("task-stdout")?;
    ui.session.exec(
        "document.querySelector('#sandbox-files a[data-file=stderr]').click();",
        json!([]),
    )?;
    ui.text_until("#output", |t| {
        t.contains(STDERR_TEXT) && !t.contains(STDOUT_TEXT)
    })?;

    ui.goto(&format!("ui#/task/{framework_id}/ticker"))?;
    let ticks = |t: &str| {
        t.lines()
            .filter_map(|l| l.strip_prefix("tick ")?.parse::<u64>().ok())
            .max()
    };
    let first = ticks(&ui.text_until("#output", |t| ticks(t).is_some())?).unwrap_or(0);
    ui.text_until("#output", |t| ticks(t).is_some_and(|n| n >= first + 5))?;
    ui.save("task-tail")?;

    ui.goto(&format!("ui#/task/{framework_id}/xss"))?;
    ui.text_is("#task-name", XSS_NAME)?;
    ui.goto("ui#/tasks")?;
    ui.text_is("tr[data-task-id=\"xss\"] td.name", XSS_NAME)?;
    let injected = ui.session.exec(
        "return [document.querySelectorAll('img').length, typeof window.__xss];",
        json!([]),
    )?;
    assert_eq!(
        injected,
        json!([0, "undefined"]),
        "the task name was interpreted as markup"
    );
    ui.save("xss")?;
    filter_tasks(ui)
}

/// The tasks page's filter: rows by id or name, and the box keeps its text and focus across
/// the page's refreshes.
fn filter_tasks(ui: &Ui) -> Result<()> {
    let rows = "return [...document.querySelectorAll('#tasks tr[data-task-id]')]
        .map((r) => r.dataset.taskId).sort();";
    let typed = ui.session.exec(
        "const f = document.querySelector('#task-filter'); f.focus(); f.value = 'TICK';
         f.dispatchEvent(new Event('input')); return f.value;",
        json!([]),
    )?;
    assert_eq!(typed, "TICK");
    assert_eq!(ui.session.exec(rows, json!([]))?, json!(["ticker"]));
    // Wait for the next refresh of the page, then look again.
    let status = "return document.querySelector('#status').textContent;";
    let before = ui.session.exec(status, json!([]))?;
    until(&ui.session, "a refresh", status, json!([]), |v| {
        *v != before
    })?;
    let kept = ui.session.exec(
        "return [document.activeElement.id, document.querySelector('#task-filter').value];",
        json!([]),
    )?;
    assert_eq!(
        kept,
        json!(["task-filter", "TICK"]),
        "the filter box was replaced"
    );
    assert_eq!(ui.session.exec(rows, json!([]))?, json!(["ticker"]));
    ui.save("tasks-filter")
}

fn browse_pages(
    c: &UiCluster,
    framework_id: &str,
    chromium: &Path,
    chromedriver: &Path,
) -> Result<()> {
    let port = free_port()?;
    let log = c.dir.path().join("chromedriver.log");
    let driver = webdriver::Driver::start(chromedriver, port, &log)?;
    let ui = Ui {
        c,
        session: driver.session(chromium, 1400, 1000)?,
        shots: screenshot_dir()?,
    };
    cluster_pages(&ui, framework_id)?;
    task_pages(&ui, framework_id)?;
    println!("screenshots in {}", ui.shots.display());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_ui_shows_the_cluster_in_a_real_browser() -> Result<()> {
    with_cluster(false, MARKER, |cluster, framework_id| {
        // A role with a weight and a quota for the roles table and the role's `why`.
        let weight = json!({"role": "analytics", "weight": 2});
        http_post(&cluster.master, "/weights", &weight)?;
        let quota = json!({"role": "analytics", "guarantees": "cpus:1;mem:256"});
        http_post(&cluster.master, "/quota", &quota)?;
        check_proxy(cluster, framework_id)?;
        match browser() {
            Some((chromium, chromedriver)) => {
                browse_pages(cluster, framework_id, &chromium, &chromedriver)
            }
            None => Ok(()),
        }
    })
    .await
}

/// With authentication: the browser's Basic credentials reach the master and, through the
/// sandbox proxy, the agent, whose `access_sandboxes` ACL decides (`web` reads, `eve` is
/// refused and the page says so).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_authentication_the_agent_decides_who_reads_a_sandbox() -> Result<()> {
    with_cluster(true, MARKER_SECURED, |cluster, framework_id| {
        let read =
            format!("/ui/api/sandbox/read?framework_id={framework_id}&task_id=echo&path=stdout");
        let (status, body) = get(&cluster.master, &read, None)?;
        assert!(status.contains(" 401 "), "{status}: {body}");
        let (status, body) = get(&cluster.master, &read, Some(&basic("web")?))?;
        assert!(
            status.contains(" 200 ") && body.contains(STDOUT_TEXT),
            "{status}: {body}"
        );
        let (status, body) = get(&cluster.master, &read, Some(&basic("eve")?))?;
        assert!(
            status.contains(" 403 ") && body.contains("access_sandboxes"),
            "{status}: {body}"
        );
        let Some((chromium, chromedriver)) = browser() else {
            return Ok(());
        };
        let port = free_port()?;
        let log = cluster.dir.path().join("chromedriver.log");
        let driver = webdriver::Driver::start(&chromedriver, port, &log)?;
        let ui = Ui {
            c: cluster,
            session: driver.session(&chromium, 1200, 800)?,
            shots: screenshot_dir()?,
        };
        // Credentials in the address: the browser sends them with the page's requests.
        let task = format!("{}/ui#/task/{framework_id}/echo", cluster.master);
        ui.session.goto(&format!("http://web:web-secret@{task}"))?;
        ui.text_until("#output", |t| t.contains(STDOUT_TEXT))?;
        ui.save("secured-web")?;
        ui.session.goto(&format!("http://eve:eve-secret@{task}"))?;
        ui.text_until("#output-status", |t| {
            t.contains("403") && t.contains("access_sandboxes")
        })?;
        ui.save("secured-eve")
    })
    .await
}

/// A page left open on a master that has become a standby moves to the leader, on the same
/// page: the first master is killed and a stand-in standby takes its address, naming a second
/// master as the leader.
#[test]
fn a_page_on_a_master_turned_standby_moves_to_the_leader() -> Result<()> {
    let Some((chromium, chromedriver)) = browser() else {
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let start = |name: &str| -> Result<(String, Proc)> {
        let addr = format!("127.0.0.1:{}", free_port()?);
        let work = dir.path().join(name).to_string_lossy().to_string();
        let args = ["master", "--listen", &addr, "--work-dir", &work];
        let proc = Proc::start(name, &args, dir.path())?;
        wait_for(name, Duration::from_secs(60), || {
            get(&addr, "/health", None)
                .ok()
                .filter(|(s, _)| s.contains(" 200 "))
        })?;
        Ok((addr, proc))
    };
    let (first, mut first_proc) = start("first")?;
    let (second, _second_proc) = start("second")?;
    let driver = webdriver::Driver::start(
        &chromedriver,
        free_port()?,
        &dir.path().join("chromedriver.log"),
    )?;
    let session = driver.session(&chromium, 1200, 800)?;
    session.goto(&format!("http://{first}/ui#/roles"))?;
    let status = "return document.querySelector('#status').textContent;";
    until(&session, "the page to load", status, json!([]), |v| {
        v.as_str().is_some_and(|t| t.starts_with("updated"))
    })?;
    first_proc.kill9()?;
    let _standby = fake_standby::FakeStandby::start(&first, &second)?;
    let want = format!("http://{second}/ui#/roles");
    until(
        &session,
        "the page to move to the leader",
        "return location.href;",
        json!([]),
        |v| v.as_str() == Some(want.as_str()),
    )?;
    until(&session, "the leader's data", status, json!([]), |v| {
        v.as_str().is_some_and(|t| t.starts_with("updated"))
    })?;
    Ok(())
}
