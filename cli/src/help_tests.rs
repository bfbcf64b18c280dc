//! The command-line surface as a whole: every command is in the top-level help, `k8s --help`
//! names every verb, and each `PROFFER_*` environment name means one thing wherever it is read.

use std::collections::BTreeMap;

use clap::CommandFactory;

use crate::Cli;

/// (environment name, command path, argument id) of every argument with an env fallback.
fn envs(cmd: &clap::Command, path: &str, out: &mut Vec<(String, String, String)>) {
    for arg in cmd.get_arguments() {
        if let Some(env) = arg.get_env() {
            out.push((
                env.to_string_lossy().into_owned(),
                path.to_string(),
                arg.get_id().to_string(),
            ));
        }
    }
    for sub in cmd.get_subcommands() {
        envs(sub, &format!("{path} {}", sub.get_name()), out);
    }
}

#[test]
fn each_environment_name_means_one_thing() {
    let mut all = Vec::new();
    envs(&Cli::command(), "proffer", &mut all);
    assert!(all.len() > 30, "{all:?}");
    let mut meaning: BTreeMap<&str, BTreeMap<&str, Vec<&str>>> = BTreeMap::new();
    for (env, path, id) in &all {
        meaning
            .entry(env)
            .or_default()
            .entry(id)
            .or_default()
            .push(path);
    }
    // Names read by several commands must mean the same there: the master(s) a client talks
    // to, the service scheduler's API.
    const SHARED: [&str; 2] = ["PROFFER_MASTER", "PROFFER_SERVICE"];
    for (env, ids) in &meaning {
        assert_eq!(
            ids.len(),
            1,
            "{env} is read as different flags: {ids:?}; give each command its own name"
        );
        let paths: Vec<_> = ids.values().flatten().collect();
        assert!(
            paths.len() == 1 || SHARED.contains(env),
            "{env} is read by several commands ({paths:?}); name it per command"
        );
    }
    // Flags that mean different things per command have per-command names.
    for env in [
        "PROFFER_MASTER_WORK_DIR",
        "PROFFER_AGENT_WORK_DIR",
        "PROFFER_LOCAL_WORK_DIR",
        "PROFFER_AGENT_PORT",
        "PROFFER_LOCAL_PORT",
    ] {
        assert!(meaning.contains_key(env), "{env} missing");
    }
    // work dirs of different commands never share a name
    let work_dirs: Vec<_> = all.iter().filter(|(_, _, id)| id == "work_dir").collect();
    let mut names: Vec<_> = work_dirs.iter().map(|(e, _, _)| e.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), work_dirs.len(), "{work_dirs:?}");
}

#[test]
fn the_help_names_every_command_and_every_k8s_verb() {
    let mut cli = Cli::command();
    let help = cli.render_help().to_string();
    for sub in Cli::command().get_subcommands() {
        if sub.is_hide_set() {
            continue;
        }
        assert!(
            help.contains(sub.get_name()),
            "{} missing:\n{help}",
            sub.get_name()
        );
    }
    let k8s = Cli::command()
        .find_subcommand("k8s")
        .cloned()
        .expect("a k8s command");
    let about = k8s.get_about().map(|a| a.to_string()).unwrap_or_default();
    for verb in k8s.get_subcommands() {
        assert!(
            about.contains(verb.get_name()),
            "`proffer --help` line for k8s does not name `{}`: {about}",
            verb.get_name()
        );
    }
}
