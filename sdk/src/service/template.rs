//! `{{NAME}}` templating.
//!
//! Two passes, as in DC/OS Commons: options are substituted into the whole YAML text when the
//! spec is loaded ([`render_options`]); the per-instance built-ins ([`BUILTINS`]) are substituted
//! into commands, environment values and URIs when a task is launched ([`render`]).

use std::collections::BTreeMap;

use super::SpecError;

/// Variables known only at launch time; left untouched by [`render_options`].
pub const BUILTINS: &[&str] = &[
    "POD_INDEX",
    "POD_NAME",
    "POD_TYPE",
    "TASK_NAME",
    "FRAMEWORK_NAME",
    "FRAMEWORK_HOST",
    "FRAMEWORK_ROLE",
];

/// One `{{…}}` occurrence: byte range of the whole placeholder and the trimmed name.
struct Placeholder<'a> {
    start: usize,
    end: usize,
    name: &'a str,
}

/// Finds the placeholders in `text`; an unclosed `{{` is an error.
fn placeholders(text: &str) -> Result<Vec<Placeholder<'_>>, String> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(rel) = text[from..].find("{{") {
        let start = from + rel;
        let Some(close) = text[start + 2..].find("}}") else {
            return Err(format!("unclosed `{{{{` at byte {start}"));
        };
        let end = start + 2 + close + 2;
        let name = text[start + 2..end - 2].trim();
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("invalid template variable `{}`", &text[start..end]));
        }
        out.push(Placeholder { start, end, name });
        from = end;
    }
    Ok(out)
}

/// Substitutes `vars` into `text`; a variable that is neither in `vars` nor in `keep` is an error.
fn substitute(
    text: &str,
    vars: &BTreeMap<String, String>,
    keep: &[&str],
) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for p in placeholders(text)? {
        out.push_str(&text[last..p.start]);
        match vars.get(p.name) {
            Some(v) => out.push_str(v),
            None if keep.contains(&p.name) => out.push_str(&text[p.start..p.end]),
            None => return Err(format!("unknown template variable `{}`", p.name)),
        }
        last = p.end;
    }
    out.push_str(&text[last..]);
    Ok(out)
}

/// Substitutes options into the YAML text, leaving built-ins for launch time. An unknown
/// variable is reported with its line number.
pub fn render_options(yaml: &str, options: &BTreeMap<String, String>) -> Result<String, SpecError> {
    let mut out = String::with_capacity(yaml.len());
    for (i, line) in yaml.split_inclusive('\n').enumerate() {
        // Comments may mention variables freely.
        if line.trim_start().starts_with('#') {
            out.push_str(line);
            continue;
        }
        let rendered =
            substitute(line, options, BUILTINS).map_err(|reason| SpecError::Template {
                line: i + 1,
                reason,
            })?;
        out.push_str(&rendered);
    }
    Ok(out)
}

/// Replaces every placeholder with `x`, so that the text parses as YAML before options are known
/// (an unquoted `count: {{N}}` would otherwise read as a flow mapping).
pub fn neutralize(text: &str) -> String {
    match placeholders(text) {
        Ok(ps) => {
            let mut out = String::with_capacity(text.len());
            let mut last = 0;
            for p in ps {
                out.push_str(&text[last..p.start]);
                out.push('x');
                last = p.end;
            }
            out.push_str(&text[last..]);
            out
        }
        Err(_) => text.to_string(),
    }
}

/// Substitutes launch-time variables; any unknown variable is an error.
pub fn render(text: &str, vars: &BTreeMap<String, String>) -> Result<String, String> {
    substitute(text, vars, &[])
}

/// Checks that `text` uses only built-in variables (used by validation after options are in).
pub fn check_builtins_only(text: &str) -> Result<(), String> {
    for p in placeholders(text)? {
        if !BUILTINS.contains(&p.name) {
            return Err(format!(
                "unknown template variable `{}` (built-ins: {}; options must be declared under `options`)",
                p.name,
                BUILTINS.join(", ")
            ));
        }
    }
    Ok(())
}

/// The built-in variables of one task of one pod instance.
pub fn builtins(
    framework: &str,
    framework_host: &str,
    role: &str,
    pod_type: &str,
    index: u32,
    task: &str,
) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    m.insert("POD_INDEX".into(), index.to_string());
    m.insert("POD_NAME".into(), format!("{pod_type}-{index}"));
    m.insert("POD_TYPE".into(), pod_type.to_string());
    m.insert("TASK_NAME".into(), format!("{pod_type}-{index}-{task}"));
    m.insert("FRAMEWORK_NAME".into(), framework.to_string());
    m.insert("FRAMEWORK_HOST".into(), framework_host.to_string());
    m.insert("FRAMEWORK_ROLE".into(), role.to_string());
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn options_are_substituted_and_builtins_kept() -> Result<(), SpecError> {
        let text = "cmd: echo {{GREETING}} {{ POD_INDEX }}\n# {{NOT_AN_OPTION}}\n";
        let out = render_options(text, &vars(&[("GREETING", "hi")]))?;
        assert_eq!(out, "cmd: echo hi {{ POD_INDEX }}\n# {{NOT_AN_OPTION}}\n");
        Ok(())
    }

    #[test]
    fn unknown_option_names_its_line() {
        let err = render_options("a: 1\nb: {{NOPE}}\n", &BTreeMap::new()).err();
        assert_eq!(
            err.map(|e| e.to_string()),
            Some("template error on line 2: unknown template variable `NOPE`".to_string())
        );
        let err = render_options("b: {{oops\n", &BTreeMap::new()).err();
        assert!(err.is_some_and(|e| e.to_string().contains("unclosed")));
    }

    #[test]
    fn launch_rendering_uses_builtins() -> Result<(), String> {
        let b = builtins("svc", "sched.example", "*", "web", 3, "server");
        let out = render(
            "{{POD_NAME}} {{TASK_NAME}} {{POD_INDEX}} {{FRAMEWORK_HOST}}",
            &b,
        )?;
        assert_eq!(out, "web-3 web-3-server 3 sched.example");
        assert!(render("{{X}}", &b).is_err());
        assert!(check_builtins_only("echo {{POD_INDEX}}").is_ok());
        assert!(check_builtins_only("echo {{PORT}}").is_err());
        Ok(())
    }
}
