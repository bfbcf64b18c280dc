//! Placement rules, checked against where the service's pod instances already are.

use super::spec::PlacementRule;

/// Where one pod instance runs (or is being launched).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// The pod type.
    pub pod: String,
    /// The instance index.
    pub index: u32,
    /// The agent id.
    pub agent_id: String,
    /// The agent's hostname.
    pub hostname: String,
    /// The agent's attributes.
    pub attributes: Vec<(String, String)>,
}

impl Placement {
    /// `POD-INDEX`.
    pub fn instance(&self) -> String {
        format!("{}-{}", self.pod, self.index)
    }
}

/// The agent an offer comes from, as placement rules see it.
#[derive(Debug, Clone, Copy)]
pub struct AgentView<'a> {
    /// The agent id.
    pub agent_id: &'a str,
    /// The hostname.
    pub hostname: &'a str,
    /// The attributes.
    pub attributes: &'a [(String, String)],
}

impl AgentView<'_> {
    /// The value of `name` (`hostname` is the agent's hostname unless an attribute overrides it).
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .or_else(|| (name == "hostname").then_some(self.hostname))
    }
}

fn attribute_of<'a>(p: &'a Placement, name: &str) -> Option<&'a str> {
    p.attributes
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .or_else(|| (name == "hostname").then_some(p.hostname.as_str()))
}

/// Shell-style pattern match: `*` any run of characters, `?` one character.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

fn names(ps: &[&Placement]) -> String {
    ps.iter()
        .map(|p| p.instance())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Checks one rule for an instance of `pod` on `agent`; `others` excludes the instance itself.
/// `Err` says why the agent does not qualify.
pub fn check_rule(
    rule: &PlacementRule,
    pod: &str,
    agent: &AgentView<'_>,
    others: &[Placement],
) -> Result<(), String> {
    match rule {
        PlacementRule::OnePerAgent => {
            let here: Vec<&Placement> = others
                .iter()
                .filter(|p| p.pod == pod && p.agent_id == agent.agent_id)
                .collect();
            if here.is_empty() {
                Ok(())
            } else {
                Err(format!(
                    "one-per-agent: agent {} already runs {}",
                    agent.hostname,
                    names(&here)
                ))
            }
        }
        PlacementRule::MaxPer { attribute, max } => {
            let Some(value) = agent.attribute(attribute) else {
                return Err(format!(
                    "max-per {attribute}: agent {} has no attribute `{attribute}`",
                    agent.hostname
                ));
            };
            let here: Vec<&Placement> = others
                .iter()
                .filter(|p| p.pod == pod && attribute_of(p, attribute) == Some(value))
                .collect();
            if (here.len() as u64) < u64::from(*max) {
                Ok(())
            } else {
                Err(format!(
                    "max-per {attribute}: {attribute}={value} already has {} of at most {max} ({})",
                    here.len(),
                    names(&here)
                ))
            }
        }
        PlacementRule::AttributeEquals { attribute, value } => match agent.attribute(attribute) {
            Some(v) if v == value => Ok(()),
            Some(v) => Err(format!(
                "attribute-equals {attribute}={value}: agent {} has {attribute}={v}",
                agent.hostname
            )),
            None => Err(format!(
                "attribute-equals {attribute}={value}: agent {} has no attribute `{attribute}`",
                agent.hostname
            )),
        },
        PlacementRule::AttributeLike { attribute, pattern } => match agent.attribute(attribute) {
            Some(v) if glob_match(pattern, v) => Ok(()),
            Some(v) => Err(format!(
                "attribute-like {attribute}~{pattern}: agent {} has {attribute}={v}",
                agent.hostname
            )),
            None => Err(format!(
                "attribute-like {attribute}~{pattern}: agent {} has no attribute `{attribute}`",
                agent.hostname
            )),
        },
        PlacementRule::Avoid(other) => {
            let here: Vec<&Placement> = others
                .iter()
                .filter(|p| p.pod == *other && p.agent_id == agent.agent_id)
                .collect();
            if here.is_empty() {
                Ok(())
            } else {
                Err(format!(
                    "avoid {other}: agent {} runs {}",
                    agent.hostname,
                    names(&here)
                ))
            }
        }
        PlacementRule::Colocate(other) => {
            if others
                .iter()
                .any(|p| p.pod == *other && p.agent_id == agent.agent_id)
            {
                Ok(())
            } else {
                Err(format!(
                    "colocate {other}: agent {} runs no {other} instance",
                    agent.hostname
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob() {
        assert!(glob_match("us-*", "us-east"));
        assert!(glob_match("r?", "r1"));
        assert!(!glob_match("r?", "r12"));
        assert!(glob_match("*", ""));
        assert!(glob_match("a*b*c", "axxbyyc"));
        assert!(!glob_match("a*b", "axxc"));
    }
}
