//! `coredns-standin`: reads `-conf Corefile`, requires a `kubernetes` plugin, and serves the
//! `health` plugin's `/health` (default :8080) and the `ready` plugin's `/ready` (default
//! :8181) where the Corefile enables them. `/ready` answers 200 once the apiserver of the
//! plugin's `kubeconfig` answered (the real plugin is ready after its first API sync). No DNS
//! is served.

use super::{
    StandinError, bind, health_handler, load_kubeconfig, probe_apiserver, read_flag_file, refuse,
    serve_all,
};

/// What the stand-in takes from a Corefile.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Corefile {
    /// The `kubernetes` plugin's zones.
    pub zones: Vec<String>,
    /// The `kubernetes` plugin's `kubeconfig PATH`.
    pub kubeconfig: Option<String>,
    /// The `health` plugin's address, if enabled.
    pub health: Option<String>,
    /// The `ready` plugin's address, if enabled.
    pub ready: Option<String>,
}

/// Parses the parts of a Corefile the stand-in uses (directives at any depth, `#` comments).
pub fn parse_corefile(text: &str) -> Result<Corefile, String> {
    let mut c = Corefile::default();
    let mut depth = 0i32;
    let mut in_kubernetes = false;
    let mut has_kubernetes = false;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        let words: Vec<&str> = line
            .split_whitespace()
            .filter(|w| *w != "{" && *w != "}")
            .collect();
        match words.first().copied() {
            Some("kubernetes") if depth == 1 => {
                has_kubernetes = true;
                c.zones = words[1..].iter().map(|z| z.to_string()).collect();
                in_kubernetes = line.ends_with('{');
            }
            Some("kubeconfig") if in_kubernetes => {
                c.kubeconfig = Some(
                    words
                        .get(1)
                        .ok_or_else(|| format!("line {}: kubeconfig needs a path", i + 1))?
                        .to_string(),
                );
            }
            Some("health") if depth == 1 => {
                c.health = Some(words.get(1).unwrap_or(&":8080").to_string())
            }
            Some("ready") if depth == 1 => {
                c.ready = Some(words.get(1).unwrap_or(&":8181").to_string())
            }
            _ => {}
        }
        depth += line.matches('{').count() as i32 - line.matches('}').count() as i32;
        if depth < 0 {
            return Err(format!("line {}: unbalanced `}}`", i + 1));
        }
        if depth <= 1 {
            in_kubernetes = false;
        }
    }
    if depth != 0 {
        return Err("unbalanced `{`".into());
    }
    if !has_kubernetes || c.zones.is_empty() {
        return Err("no `kubernetes ZONE` plugin in a server block (cluster DNS needs one)".into());
    }
    Ok(c)
}

fn addr_port(what: &str, s: &str) -> Result<(String, u16), StandinError> {
    let (h, p) = s
        .rsplit_once(':')
        .ok_or_else(|| refuse(format!("-conf: {what} address `{s}` is not [HOST]:PORT")))?;
    let port = p
        .parse()
        .map_err(|_| refuse(format!("-conf: {what} address `{s}` has a bad port")))?;
    Ok((
        if h.is_empty() {
            "0.0.0.0".into()
        } else {
            h.into()
        },
        port,
    ))
}

/// coredns stand-in entry point (Go-style single-dash flags: `-conf`, `-dns.port`, ...).
pub async fn run(args: Vec<String>) -> Result<(), StandinError> {
    let mut conf = None;
    let mut it = args.into_iter().skip(1);
    while let Some(a) = it.next() {
        let a = a
            .strip_prefix('-')
            .unwrap_or(&a)
            .trim_start_matches('-')
            .to_string();
        let (name, inline) = match a.split_once('=') {
            Some((n, v)) => (n.to_string(), Some(v.to_string())),
            None => (a.clone(), None),
        };
        match name.as_str() {
            "conf" | "dns.port" | "pidfile" => {
                let v = inline
                    .or_else(|| it.next())
                    .ok_or_else(|| refuse(format!("-{name} needs a value")))?;
                if name == "conf" {
                    conf = Some(v);
                } else if name == "dns.port" {
                    v.parse::<u16>()
                        .map_err(|_| refuse(format!("-dns.port: `{v}` is not a port")))?;
                }
            }
            "quiet" | "plugins" => {}
            other => return Err(refuse(format!("unknown flag -{other}"))),
        }
    }
    let conf = conf.ok_or_else(|| refuse("-conf is required"))?;
    let text = read_flag_file("conf", &conf)?;
    let cf = parse_corefile(&text).map_err(|e| refuse(format!("-conf {conf}: {e}")))?;
    let ready = match &cf.kubeconfig {
        Some(p) => Some(probe_apiserver(&load_kubeconfig(
            "conf kubernetes kubeconfig",
            p,
            None,
            None,
        )?)?),
        None => None,
    };
    let mut servers = Vec::new();
    if let Some(h) = &cf.health {
        let (a, p) = addr_port("health", h)?;
        servers.push((
            bind("conf health", &a, p).await?,
            None,
            health_handler(vec![("/health", None)]),
        ));
    }
    if let Some(r) = &cf.ready {
        let (a, p) = addr_port("ready", r)?;
        let cond = ready.map(|f| (f, "kubernetes"));
        servers.push((
            bind("conf ready", &a, p).await?,
            None,
            health_handler(vec![("/ready", cond)]),
        ));
    }
    serve_all(servers).await
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a panic is the failure report
mod tests {
    use super::*;

    #[test]
    fn corefile() {
        let c = parse_corefile(
            ".:53 {\n  errors\n  health :18080 # lameduck\n  ready\n  kubernetes cluster.local in-addr.arpa {\n    kubeconfig /x/k.conf\n    pods insecure\n  }\n  forward . /etc/resolv.conf\n}\n",
        )
        .unwrap();
        assert_eq!(c.zones, vec!["cluster.local", "in-addr.arpa"]);
        assert_eq!(c.kubeconfig.as_deref(), Some("/x/k.conf"));
        assert_eq!(c.health.as_deref(), Some(":18080"));
        assert_eq!(c.ready.as_deref(), Some(":8181"));
        assert!(
            parse_corefile(".:53 {\n health\n}\n")
                .unwrap_err()
                .contains("kubernetes")
        );
        assert!(
            parse_corefile(".:53 {\n kubernetes cluster.local\n")
                .unwrap_err()
                .contains("unbalanced")
        );
    }
}
