//! Progress and result output shared by `proffer run`, `proffer service run` and
//! `proffer k8s install|upgrade`.
//!
//! Four styles ([`Style`]):
//! - **bar** (stdout and stderr are terminals): an indicatif bar on stderr with the counts by
//!   state and an ETA; failure lines and the summary go to stdout above it.
//! - **lines** (not a terminal): one line per failure, a one-line count at most every
//!   [`PLAIN_EVERY`] while something changed, and the summary.
//! - **quiet** (`--quiet`): only the summary.
//! - **json** (`--json`): JSON lines on stdout: `{"event":"progress",…}` (at most every
//!   [`PLAIN_EVERY`]), `{"event":"failure",…}` per failure as it happens, and one
//!   `{"event":"summary",…}` object as the last line.
//!
//! The text of every line comes from pure functions ([`counts_text`], [`progress_line`],
//! [`failure_text`]) so it is tested without a terminal.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;

/// How often, at most, a plain progress line (or a JSON `progress` event) is printed.
pub const PLAIN_EVERY: Duration = Duration::from_secs(5);
/// Failures shown with the last lines of their stderr; later ones get their line only.
pub const DETAILED_FAILURES: usize = 5;
/// Failures listed one per line; later ones are only counted.
pub const LISTED_FAILURES: usize = 50;
/// How many lines of a failed task's stderr are shown.
pub const STDERR_LINES: usize = 3;

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// An indicatif bar (on stderr), lines above it on stdout.
    Bar,
    /// Plain lines for logs and pipes.
    Lines,
    /// Only the summary.
    Quiet,
    /// JSON lines (events, then the summary).
    Json,
}

/// The output flags of commands that report progress.
#[derive(Debug, Clone, Copy, Default, clap::Args)]
pub struct OutputArgs {
    /// Print only the summary at the end (errors still go to stderr).
    #[arg(long, short = 'q', conflicts_with = "json")]
    pub quiet: bool,
    /// Print JSON lines for machines: `progress` (at most every 5 s) and `failure` events as
    /// they happen, then one `summary` object as the last line.
    #[arg(long)]
    pub json: bool,
}

impl OutputArgs {
    /// The style these flags ask for on this process's stdout/stderr.
    pub fn style(&self) -> Style {
        Style::choose(*self, is_terminal())
    }
}

impl Style {
    /// The style for `args` when the output is (`tty`) or is not a terminal.
    pub fn choose(args: OutputArgs, tty: bool) -> Style {
        match (args.json, args.quiet, tty) {
            (true, _, _) => Style::Json,
            (_, true, _) => Style::Quiet,
            (_, _, true) => Style::Bar,
            _ => Style::Lines,
        }
    }

    /// The style without flags: a bar on a terminal, plain lines otherwise.
    pub fn auto() -> Style {
        OutputArgs::default().style()
    }
}

/// True when stdout and stderr are both terminals that can redraw a line.
pub fn is_terminal() -> bool {
    let dumb = std::env::var("TERM").is_ok_and(|t| t == "dumb");
    !dumb && std::io::stdout().is_terminal() && std::io::stderr().is_terminal()
}

/// The bar shown now, if any: log lines are written above it (see [`log_writer`]).
static ACTIVE_BAR: Mutex<Option<ProgressBar>> = Mutex::new(None);

fn set_active_bar(bar: Option<ProgressBar>) {
    *ACTIVE_BAR.lock().unwrap_or_else(|e| e.into_inner()) = bar;
}

/// The log writer (stderr) for `tracing_subscriber`: while a progress bar is shown, each log
/// line is written with the bar hidden, so logs scroll above it instead of breaking it.
pub fn log_writer() -> LogWriter {
    LogWriter
}

/// See [`log_writer`].
#[derive(Debug, Clone, Copy)]
pub struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let bar = ACTIVE_BAR.lock().unwrap_or_else(|e| e.into_inner()).clone();
        match bar {
            Some(bar) => bar.suspend(|| std::io::stderr().write(buf)),
            None => std::io::stderr().write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// Counts of items (tasks, plan steps) by state, in display order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    /// How many items there are.
    pub total: u64,
    /// How many reached an end (success or not).
    pub done: u64,
    /// Count per state label, in the order shown (zero counts are skipped when shown).
    pub states: Vec<(&'static str, u64)>,
}

/// `3 staging, 20 running, 10 finished, 2 failed`: the non-zero counts, in order.
pub fn counts_text(tally: &Tally) -> String {
    let parts: Vec<String> = tally
        .states
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(label, n)| format!("{n} {label}"))
        .collect();
    parts.join(", ")
}

/// The plain progress line: `12/300 tasks done: 18 running, 10 finished, 2 failed [4s]`.
pub fn progress_line(noun: &str, tally: &Tally, elapsed: Duration) -> String {
    let counts = counts_text(tally);
    let sep = if counts.is_empty() { "" } else { ": " };
    format!(
        "{}/{} {noun} done{sep}{counts} [{}]",
        tally.done,
        tally.total,
        short_duration(elapsed)
    )
}

/// `850ms`, `4.2s`, `3m05s`, `1h02m`.
pub fn short_duration(d: Duration) -> String {
    let secs = d.as_secs();
    if secs < 1 {
        format!("{}ms", d.as_millis())
    } else if secs < 60 {
        format!("{:.1}s", d.as_secs_f64())
    } else if secs < 3600 {
        format!("{}m{:02}s", secs / 60, secs % 60)
    } else {
        format!("{}h{:02}m", secs / 3600, (secs % 3600) / 60)
    }
}

/// One failed item, as shown to people and machines.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Failure {
    /// What failed: a task id, or `step (task)` for a service.
    pub id: String,
    /// The state it ended in, e.g. `TASK_FAILED`.
    pub state: String,
    /// The status message (e.g. `Command exited with status 3`).
    pub message: String,
    /// Where it ran (agent address or hostname; empty if unknown).
    pub agent: String,
    /// Its sandbox, as far as known (`sandboxes/FW/TASK` on the agent).
    pub sandbox: Option<String>,
    /// The last lines of its stderr (empty when the sandbox could not be read).
    pub stderr: Vec<String>,
}

/// The failure line, then one indented line per stderr line:
///
/// ```text
/// FAILED b-0003 TASK_FAILED on 127.0.0.1:5051: Command exited with status 3 (sandbox sandboxes/F/b-0003)
///   stderr| sh: 1: nope: not found
/// ```
pub fn failure_text(f: &Failure) -> String {
    let mut line = format!("FAILED {} {}", f.id, f.state);
    if !f.agent.is_empty() {
        line.push_str(&format!(" on {}", f.agent));
    }
    if !f.message.is_empty() {
        line.push_str(&format!(": {}", one_line(&f.message)));
    }
    if let Some(sandbox) = &f.sandbox {
        line.push_str(&format!(" (sandbox {sandbox})"));
    }
    for l in &f.stderr {
        line.push_str(&format!("\n  stderr| {}", one_line(l)));
    }
    line
}

/// The JSON form of a failure event.
pub fn failure_json(f: &Failure) -> serde_json::Value {
    json!({
        "event": "failure",
        "id": f.id,
        "state": f.state,
        "message": f.message,
        "agent": f.agent,
        "sandbox": f.sandbox,
        "stderr": f.stderr,
    })
}

/// The JSON form of a progress event.
pub fn progress_json(tally: &Tally, elapsed: Duration) -> serde_json::Value {
    let states: serde_json::Map<String, serde_json::Value> = tally
        .states
        .iter()
        .map(|(label, n)| ((*label).to_string(), json!(n)))
        .collect();
    json!({
        "event": "progress",
        "total": tally.total,
        "done": tally.done,
        "states": states,
        "elapsed_secs": elapsed.as_secs_f64(),
    })
}

/// `text` on one line, at most 300 characters (control characters dropped).
fn one_line(text: &str) -> String {
    const MAX: usize = 300;
    let clean: String = text
        .trim_end()
        .chars()
        .map(|c| if c == '\n' || c == '\t' { ' ' } else { c })
        .filter(|c| !c.is_control())
        .collect();
    if clean.chars().count() > MAX {
        let cut: String = clean.chars().take(MAX).collect();
        format!("{cut}…")
    } else {
        clean
    }
}

/// Shows progress in one [`Style`]: counts as they change, failures as they happen, and the
/// summary at the end.
#[derive(Debug)]
pub struct Reporter {
    style: Style,
    noun: &'static str,
    bar: Option<ProgressBar>,
    start: Instant,
    /// When the last plain/JSON progress line was printed.
    last_plain: Option<Instant>,
    /// The latest tally not printed yet (plain and JSON styles).
    pending: Option<Tally>,
    /// The last tally printed.
    shown: Option<Tally>,
    listed: usize,
    unlisted: usize,
}

impl Reporter {
    /// A reporter for `total` items called `noun` (e.g. `tasks`, `steps`).
    pub fn new(style: Style, total: u64, noun: &'static str) -> Reporter {
        let bar = (style == Style::Bar).then(|| {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            let template =
                "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {prefix} done {msg} (ETA {eta})";
            if let Ok(s) = ProgressStyle::with_template(template) {
                bar.set_style(s.progress_chars("=> "));
            }
            bar.set_prefix(noun);
            bar.enable_steady_tick(Duration::from_millis(200));
            set_active_bar(Some(bar.clone()));
            bar
        });
        Reporter {
            style,
            noun,
            bar,
            start: Instant::now(),
            last_plain: None,
            pending: None,
            shown: None,
            listed: 0,
            unlisted: 0,
        }
    }

    /// True while a new failure would still be listed.
    pub fn wants_failure(&self) -> bool {
        self.style != Style::Quiet && self.listed < LISTED_FAILURES
    }

    /// Prints an informational line (bar and lines styles only).
    pub fn note(&self, text: &str) {
        match self.style {
            Style::Bar | Style::Lines => self.print(text),
            Style::Quiet | Style::Json => {}
        }
    }

    /// Shows `tally` (the bar at once; plain/JSON lines at most every [`PLAIN_EVERY`]).
    pub fn progress(&mut self, tally: &Tally) {
        match (&self.bar, self.style) {
            (Some(bar), _) => {
                bar.set_length(tally.total);
                bar.set_position(tally.done);
                let counts = counts_text(tally);
                bar.set_message(if counts.is_empty() {
                    String::new()
                } else {
                    format!("({counts})")
                });
            }
            (None, Style::Lines | Style::Json) => {
                if self.shown.as_ref() != Some(tally) {
                    self.pending = Some(tally.clone());
                }
                self.tick();
            }
            _ => {}
        }
    }

    /// Prints the latest count if it changed and [`PLAIN_EVERY`] passed since the last one
    /// (call now and then: counts that change and then stand still are still shown).
    pub fn tick(&mut self) {
        let due = self.last_plain.is_none_or(|t| t.elapsed() >= PLAIN_EVERY)
            && self.start.elapsed() >= PLAIN_EVERY;
        if !due {
            return;
        }
        let Some(tally) = self.pending.take() else {
            return;
        };
        self.last_plain = Some(Instant::now());
        let elapsed = self.start.elapsed();
        match self.style {
            Style::Lines => self.print(&progress_line(self.noun, &tally, elapsed)),
            Style::Json => self.print(&progress_json(&tally, elapsed).to_string()),
            Style::Bar | Style::Quiet => {}
        }
        self.shown = Some(tally);
    }

    /// True while a new failure would still be shown with its stderr (worth fetching).
    pub fn wants_detail(&self) -> bool {
        self.style != Style::Quiet && self.listed < DETAILED_FAILURES
    }

    /// Shows one failure (the first [`LISTED_FAILURES`]; later ones are counted).
    pub fn failure(&mut self, failure: &Failure) {
        if self.style == Style::Quiet {
            return;
        }
        if self.listed >= LISTED_FAILURES {
            self.unlisted += 1;
            return;
        }
        self.listed += 1;
        match self.style {
            Style::Json => self.print(&failure_json(failure).to_string()),
            _ => self.print(&failure_text(failure)),
        }
    }

    /// Ends the progress display and prints the summary: `text` for people, `summary` (an
    /// object; `"event": "summary"` is added) for `--json`.
    pub fn finish(self, text: &str, mut summary: serde_json::Value) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        if self.unlisted > 0 && matches!(self.style, Style::Bar | Style::Lines) {
            crate::output::text(&format!(
                "… and {} more failures (not listed)",
                self.unlisted
            ));
        }
        match self.style {
            Style::Json => {
                if let Some(map) = summary.as_object_mut() {
                    map.insert("event".into(), json!("summary"));
                    map.insert(
                        "elapsed_secs".into(),
                        json!(self.start.elapsed().as_secs_f64()),
                    );
                }
                crate::output::text(&summary.to_string());
            }
            _ => crate::output::text(text),
        }
    }

    /// Ends the progress display when the run failed before a summary existed: `--json`
    /// prints `{"event":"summary","ok":false,"error":…}`, the other styles nothing (the
    /// error goes to stderr).
    pub fn finish_error(self, error: &str) {
        if self.style == Style::Json {
            self.finish("", json!({"ok": false, "error": error}));
        } else if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }

    /// Prints `text` on stdout, above the bar if there is one.
    fn print(&self, text: &str) {
        match &self.bar {
            Some(bar) => bar.suspend(|| crate::output::text(text)),
            None => crate::output::text(text),
        }
    }
}

impl Drop for Reporter {
    fn drop(&mut self) {
        if let Some(bar) = &self.bar {
            set_active_bar(None);
            if !bar.is_finished() {
                bar.finish_and_clear();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tally() -> Tally {
        Tally {
            total: 300,
            done: 12,
            states: vec![
                ("pending", 270),
                ("staging", 0),
                ("running", 18),
                ("finished", 10),
                ("failed", 2),
            ],
        }
    }

    #[test]
    fn counts_skip_zeros_and_keep_the_order() {
        assert_eq!(
            counts_text(&tally()),
            "270 pending, 18 running, 10 finished, 2 failed"
        );
        assert_eq!(counts_text(&Tally::default()), "");
    }

    #[test]
    fn progress_lines_show_done_of_total_and_time() {
        assert_eq!(
            progress_line("tasks", &tally(), Duration::from_millis(4200)),
            "12/300 tasks done: 270 pending, 18 running, 10 finished, 2 failed [4.2s]"
        );
        let empty = Tally {
            total: 3,
            ..Tally::default()
        };
        assert_eq!(
            progress_line("steps", &empty, Duration::from_secs(185)),
            "0/3 steps done [3m05s]"
        );
        let json = progress_json(&tally(), Duration::from_secs(1));
        assert_eq!(json["event"], "progress");
        assert_eq!(json["states"]["running"], 18);
        assert_eq!(
            (json["done"].as_u64(), json["total"].as_u64()),
            (Some(12), Some(300))
        );
    }

    #[test]
    fn durations_are_short() {
        assert_eq!(short_duration(Duration::from_millis(850)), "850ms");
        assert_eq!(short_duration(Duration::from_secs(3725)), "1h02m");
    }

    #[test]
    fn failure_lines_name_task_agent_sandbox_and_stderr() {
        let f = Failure {
            id: "b-0003".into(),
            state: "TASK_FAILED".into(),
            message: "Command exited with status 3\n".into(),
            agent: "127.0.0.1:5051".into(),
            sandbox: Some("sandboxes/F/b-0003".into()),
            stderr: vec!["sh: 1: nope: not found".into(), "bye\tnow".into()],
        };
        assert_eq!(
            failure_text(&f),
            "FAILED b-0003 TASK_FAILED on 127.0.0.1:5051: Command exited with status 3 \
             (sandbox sandboxes/F/b-0003)\n  stderr| sh: 1: nope: not found\n  stderr| bye now"
        );
        let bare = Failure {
            id: "b-1".into(),
            state: "TASK_LOST".into(),
            ..Failure::default()
        };
        assert_eq!(failure_text(&bare), "FAILED b-1 TASK_LOST");
        let json = failure_json(&f);
        assert_eq!(json["event"], "failure");
        assert_eq!(json["stderr"][0], "sh: 1: nope: not found");
        assert_eq!(failure_json(&bare)["sandbox"], serde_json::Value::Null);
    }

    #[test]
    fn long_messages_are_cut() {
        let long = "x".repeat(400);
        let line = one_line(&long);
        assert_eq!(line.chars().count(), 301);
        assert!(line.ends_with('…'));
    }

    #[test]
    fn flags_choose_the_style() {
        let args = |quiet, json| OutputArgs { quiet, json };
        assert_eq!(Style::choose(args(false, false), true), Style::Bar);
        assert_eq!(Style::choose(args(false, false), false), Style::Lines);
        assert_eq!(Style::choose(args(true, false), true), Style::Quiet);
        assert_eq!(Style::choose(args(false, true), true), Style::Json);
    }

    #[test]
    fn quiet_reporters_want_no_detail() {
        assert!(!Reporter::new(Style::Quiet, 1, "tasks").wants_detail());
        let mut r = Reporter::new(Style::Lines, 1, "tasks");
        assert!(r.wants_detail());
        r.listed = DETAILED_FAILURES;
        assert!(!r.wants_detail());
    }
}
