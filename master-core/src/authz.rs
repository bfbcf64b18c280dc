//! Authorization (issue 18, item 4): Mesos-style ACLs, evaluated without I/O.
//!
//! An [`Acls`] file (`--acls FILE`, JSON as Mesos's local authorizer) lists, per action, rules
//! of a *subject* entity (`principals`) and an *object* entity (`roles`, `users`, …), each
//! `{"values": [...]}`, `{"type": "ANY"}` or `{"type": "NONE"}`. A request (principal, object)
//! is checked against the action's rules in order: the **first rule that matches decides**
//! (allowed unless it names `NONE` where the request has something); when none matches,
//! `permissive` decides (default `true`, as Mesos). An anonymous caller is the subject `ANY`,
//! matched only by rules whose principals are `ANY` or `NONE`. For role objects a value
//! `eng/%` also matches every role nested below `eng` (Mesos's recursive role ACLs).
//!
//! ```json
//! {"permissive": false,
//!  "register_frameworks": [{"principals": {"values": ["web"]}, "roles": {"values": ["web"]}}],
//!  "view_frameworks": [{"principals": {"type": "ANY"}, "users": {"type": "ANY"}}]}
//! ```
//!
//! [`Authorizer::is_allowed`] only decides; [`Authorizer::authorize`] decides and writes the
//! audit line (tracing target `proffer::audit`): one at `warn` per refusal, one at `debug` per
//! allowed request.

use serde_json::Value;

/// The tracing target of audit lines.
pub const AUDIT_TARGET: &str = "proffer::audit";

macro_rules! actions {
    ($( $variant:ident => $key:literal, $object:literal, $roles:literal; )*) => {
        /// What a principal asks to do.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Action {
            $(
                #[doc = concat!("`", $key, "` (object: `", $object, "`).")]
                $variant,
            )*
        }

        impl Action {
            /// Every action, in the order of the JSON keys.
            pub const ALL: &'static [Action] = &[$(Action::$variant),*];

            /// The ACL list's key in the JSON file (Mesos's name).
            pub fn key(self) -> &'static str {
                match self { $(Action::$variant => $key),* }
            }

            /// The key of a rule's object entity.
            pub fn object_key(self) -> &'static str {
                match self { $(Action::$variant => $object),* }
            }

            /// True if the objects are roles (and `role/%` rules apply to nested roles).
            pub fn on_roles(self) -> bool {
                match self { $(Action::$variant => $roles),* }
            }
        }
    };
}

actions! {
    RegisterFramework => "register_frameworks", "roles", true;
    RunTask => "run_tasks", "users", false;
    TeardownFramework => "teardown_frameworks", "framework_principals", false;
    ReserveResources => "reserve_resources", "roles", true;
    UnreserveResources => "unreserve_resources", "reserver_principals", false;
    CreateVolume => "create_volumes", "roles", true;
    DestroyVolume => "destroy_volumes", "creator_principals", false;
    GetQuota => "get_quotas", "roles", true;
    UpdateQuota => "update_quotas", "roles", true;
    UpdateWeight => "update_weights", "roles", true;
    ViewFramework => "view_frameworks", "users", false;
    ViewTask => "view_tasks", "users", false;
    ViewAgent => "view_agents", "agents", false;
    ViewRole => "view_roles", "roles", true;
    AccessSandbox => "access_sandboxes", "users", false;
    RegisterAgent => "register_agents", "agents", false;
    DrainAgent => "drain_agents", "agents", false;
    DeactivateAgent => "deactivate_agents", "agents", false;
    ReactivateAgent => "reactivate_agents", "agents", false;
    MarkAgentGone => "mark_agents_gone", "agents", false;
    UpdateMaintenanceSchedule => "update_maintenance_schedules", "machines", false;
    GetMaintenanceSchedule => "get_maintenance_schedules", "machines", false;
    GetEndpoint => "get_endpoints", "paths", false;
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.key())
    }
}

/// A subject or object entity of a rule (Mesos `ACL.Entity`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entity {
    /// These values.
    Some(Vec<String>),
    /// Everyone / everything.
    Any,
    /// No one / nothing.
    None,
}

/// One rule: who (`principals`) may act on what (the action's object key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// The subjects.
    pub principals: Entity,
    /// The objects.
    pub objects: Entity,
}

/// Why an ACL file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("ACLs {origin}: {at}: {reason}")]
pub struct AclsError {
    /// The file (or `<inline>`).
    pub origin: String,
    /// Where in the file (`register_frameworks[0].roles`).
    pub at: String,
    /// What is wrong.
    pub reason: String,
}

/// The ACLs, by action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acls {
    /// What a request no rule matches gets (Mesos default: allowed).
    pub permissive: bool,
    rules: Vec<(Action, Vec<Rule>)>,
}

impl Default for Acls {
    fn default() -> Self {
        Acls {
            permissive: true,
            rules: Vec::new(),
        }
    }
}

impl Acls {
    /// Parses the JSON of an ACL file; `origin` names it in errors. Unknown keys are refused
    /// (a misspelt action would otherwise silently allow everything).
    pub fn parse(text: &str, origin: &str) -> Result<Self, AclsError> {
        let err = |at: &str, reason: String| AclsError {
            origin: origin.to_string(),
            at: at.to_string(),
            reason,
        };
        let root: Value =
            serde_json::from_str(text).map_err(|e| err("top level", format!("not JSON: {e}")))?;
        let Value::Object(map) = root else {
            return Err(err("top level", "expected a JSON object".into()));
        };
        let mut acls = Acls::default();
        for (key, value) in map {
            if key == "permissive" {
                acls.permissive = value
                    .as_bool()
                    .ok_or_else(|| err("permissive", "expected true or false".into()))?;
                continue;
            }
            let Some(action) = Action::ALL.iter().copied().find(|a| a.key() == key) else {
                let known: Vec<&str> = Action::ALL.iter().map(|a| a.key()).collect();
                return Err(err(
                    &key,
                    format!("unknown action; known: permissive, {}", known.join(", ")),
                ));
            };
            let Value::Array(items) = value else {
                return Err(err(&key, "expected a list of rules".into()));
            };
            let mut rules = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                rules.push(
                    parse_rule(action, item)
                        .map_err(|(at, reason)| err(&format!("{key}[{i}]{at}"), reason))?,
                );
            }
            acls.rules.push((action, rules));
        }
        acls.rules.sort_by_key(|(a, _)| *a);
        Ok(acls)
    }

    /// The rules of `action` (empty when the file has none).
    pub fn rules(&self, action: Action) -> &[Rule] {
        self.rules
            .iter()
            .find(|(a, _)| *a == action)
            .map_or(&[], |(_, r)| r.as_slice())
    }

    /// True if these ACLs allow everything (no rules, permissive).
    pub fn allows_everything(&self) -> bool {
        self.permissive && self.rules.iter().all(|(_, r)| r.is_empty())
    }
}

/// A rule from its JSON; errors are (where below the rule, why).
fn parse_rule(action: Action, item: &Value) -> Result<Rule, (String, String)> {
    let Value::Object(obj) = item else {
        return Err((String::new(), "expected an object".into()));
    };
    let object_key = action.object_key();
    for key in obj.keys() {
        if key != "principals" && key != object_key {
            return Err((
                String::new(),
                format!(
                    "unknown key `{key}` (a {action} rule has `principals` and `{object_key}`)"
                ),
            ));
        }
    }
    let entity = |key: &str| -> Result<Entity, (String, String)> {
        let at = format!(".{key}");
        let v = obj
            .get(key)
            .ok_or_else(|| (String::new(), format!("missing `{key}`")))?;
        parse_entity(v).map_err(|reason| (at, reason))
    };
    Ok(Rule {
        principals: entity("principals")?,
        objects: entity(object_key)?,
    })
}

/// An entity: `{"values": [..]}` (type SOME, the default), `{"type": "ANY"}`, `{"type": "NONE"}`.
fn parse_entity(v: &Value) -> Result<Entity, String> {
    let Value::Object(obj) = v else {
        return Err("expected {\"values\": [...]} or {\"type\": \"ANY\"|\"NONE\"}".into());
    };
    for key in obj.keys() {
        if key != "type" && key != "values" {
            return Err(format!("unknown key `{key}` (expected `values` or `type`)"));
        }
    }
    let kind = match obj.get("type") {
        None => "SOME",
        Some(Value::String(t)) => t.as_str(),
        Some(Value::Number(n)) => match n.as_u64() {
            Some(0) => "SOME",
            Some(1) => "ANY",
            Some(2) => "NONE",
            _ => return Err(format!("unknown type {n}")),
        },
        Some(other) => return Err(format!("type: expected a string, got {other}")),
    };
    match kind.to_ascii_uppercase().as_str() {
        "ANY" => Ok(Entity::Any),
        "NONE" => Ok(Entity::None),
        "SOME" => {
            let Some(Value::Array(values)) = obj.get("values") else {
                return Err("expected `values`: a list of strings (or type ANY or NONE)".into());
            };
            let mut out = Vec::with_capacity(values.len());
            for v in values {
                match v {
                    Value::String(s) => out.push(s.clone()),
                    other => return Err(format!("values: expected strings, got {other}")),
                }
            }
            Ok(Entity::Some(out))
        }
        other => Err(format!("unknown type `{other}` (ANY, NONE or SOME)")),
    }
}

/// What a request names: one value, or anything (`ANY`: an anonymous caller, or an action
/// without a specific object).
#[derive(Debug, Clone, Copy)]
enum Request<'a> {
    One(&'a str),
    Any,
}

impl<'a> From<Option<&'a str>> for Request<'a> {
    fn from(v: Option<&'a str>) -> Self {
        v.map_or(Request::Any, Request::One)
    }
}

/// Mesos's match matrix: does the rule's entity concern the request's?
fn matches(request: Request<'_>, acl: &Entity) -> bool {
    match (request, acl) {
        (_, Entity::Any | Entity::None) => true,
        (Request::One(v), Entity::Some(values)) => values.iter().any(|x| x == v),
        (Request::Any, Entity::Some(_)) => false,
    }
}

/// Mesos's allow matrix: given a match, does the entity allow the request?
fn allows(request: Request<'_>, acl: &Entity) -> bool {
    match (request, acl) {
        (_, Entity::Any) => true,
        (_, Entity::None) => false,
        (Request::One(v), Entity::Some(values)) => values.iter().any(|x| x == v),
        (Request::Any, Entity::Some(_)) => false,
    }
}

/// For role objects: a rule value `eng/%` (alone in its list) covers every role below `eng`.
fn recursive_match(rule: &Rule, object: Request<'_>) -> Option<bool> {
    let (Entity::Some(values), Request::One(role)) = (&rule.objects, object) else {
        return None;
    };
    values
        .iter()
        .filter_map(|v| v.strip_suffix('%'))
        .any(|prefix| prefix.ends_with('/') && role.starts_with(prefix))
        .then_some(true)
}

/// A refusal: who was refused what.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not authorized: {} may not {action}{}", who(principal.as_deref()), on(*action, object.as_deref()))]
pub struct Denied {
    /// The action refused.
    pub action: Action,
    /// The caller (`None`: unauthenticated).
    pub principal: Option<String>,
    /// The object, if the request named one.
    pub object: Option<String>,
}

fn who(principal: Option<&str>) -> String {
    principal.map_or_else(
        || "an unauthenticated caller".to_string(),
        |p| format!("principal `{p}`"),
    )
}

fn on(action: Action, object: Option<&str>) -> String {
    object.map_or_else(String::new, |o| {
        format!(" ({} `{o}`)", action.object_key().trim_end_matches('s'))
    })
}

/// Decides requests against [`Acls`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Authorizer {
    acls: Acls,
}

impl Authorizer {
    /// An authorizer over `acls`.
    pub fn new(acls: Acls) -> Self {
        Authorizer { acls }
    }

    /// The ACLs.
    pub fn acls(&self) -> &Acls {
        &self.acls
    }

    /// True if every request is allowed (the default: no ACLs, permissive).
    pub fn allows_everything(&self) -> bool {
        self.acls.allows_everything()
    }

    /// Whether `principal` (`None`: unauthenticated) may do `action` on `object` (`None`: no
    /// specific object). The first matching rule decides; else `permissive`.
    pub fn is_allowed(
        &self,
        principal: Option<&str>,
        action: Action,
        object: Option<&str>,
    ) -> bool {
        let subject = Request::from(principal);
        let object = Request::from(object);
        for rule in self.acls.rules(action) {
            if action.on_roles() && recursive_match(rule, object).is_some() {
                if matches(subject, &rule.principals) {
                    return allows(subject, &rule.principals);
                }
                continue;
            }
            if matches(subject, &rule.principals) && matches(object, &rule.objects) {
                return allows(subject, &rule.principals) && allows(object, &rule.objects);
            }
        }
        self.acls.permissive
    }

    /// [`Authorizer::is_allowed`], with its audit line: a refusal at `warn`, an allowed request
    /// at `debug` (target [`AUDIT_TARGET`]).
    pub fn authorize(
        &self,
        principal: Option<&str>,
        action: Action,
        object: Option<&str>,
    ) -> Result<(), Denied> {
        let p = principal.unwrap_or("");
        let o = object.unwrap_or("");
        if self.is_allowed(principal, action, object) {
            tracing::debug!(target: AUDIT_TARGET, decision = "allowed", %action, principal = p, object = o, "authorized");
            Ok(())
        } else {
            let denied = Denied {
                action,
                principal: principal.map(str::to_string),
                object: object.map(str::to_string),
            };
            tracing::warn!(target: AUDIT_TARGET, decision = "refused", %action, principal = p, object = o, "{denied}");
            Err(denied)
        }
    }
}

#[cfg(test)]
mod fuzz_tests;
#[cfg(test)]
mod tests;
