//! Team mapping: which team owns a workload (ARCHITECTURE.md decision 6).
//!
//! A pod label (`team` by default) wins; otherwise the first namespace rule whose glob matches;
//! otherwise the optional default. The agent stamps the result as the `team` label on every series
//! and log record that has a `namespace`; the control plane uses the same mapping for cost views.
//!
//! ```
//! use pharos_model::team::{TeamMapping, TeamRule};
//! let teams = TeamMapping {
//!     rules: vec![TeamRule { namespace: "spark-*".into(), team: "data-eng".into() }],
//!     ..TeamMapping::default()
//! };
//! let no_labels = std::collections::BTreeMap::new();
//! assert_eq!(teams.team_for("spark-etl", &no_labels).as_deref(), Some("data-eng"));
//! assert_eq!(teams.team_for("kube-system", &no_labels), None);
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The label that carries the owning team.
pub const TEAM_LABEL: &str = "team";

/// The `teams:` config section.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TeamMapping {
    /// Namespace rules, tried in order; the first match wins. Default: none.
    #[serde(default)]
    pub rules: Vec<TeamRule>,
    /// Pod label whose value, when present and non-empty, overrides the rules. Default: `team`.
    #[serde(default = "default_team_pod_label")]
    pub label: String,
    /// Team of namespaces that no rule matches. Default: none (no `team` label is added).
    #[serde(default)]
    pub default: Option<String>,
}

/// One namespace rule.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TeamRule {
    /// Namespace glob: `*` matches any run of characters, `?` any one character
    /// (e.g. `spark-*`). Required.
    pub namespace: String,
    /// The team owning matching namespaces. Required.
    pub team: String,
}

fn default_team_pod_label() -> String {
    TEAM_LABEL.to_string()
}

impl Default for TeamMapping {
    fn default() -> Self {
        TeamMapping { rules: Vec::new(), label: default_team_pod_label(), default: None }
    }
}

impl TeamMapping {
    /// The team of a pod in `namespace` with `pod_labels` (pass an empty map when the pod is
    /// unknown): the pod label override, else the first matching rule, else the default.
    pub fn team_for(&self, namespace: &str, pod_labels: &BTreeMap<String, String>) -> Option<String> {
        if let Some(team) = pod_labels.get(&self.label).filter(|t| !t.is_empty()) {
            return Some(team.clone());
        }
        self.rules
            .iter()
            .find(|r| glob_match(&r.namespace, namespace))
            .map(|r| r.team.clone())
            .or_else(|| self.default.clone().filter(|d| !d.is_empty()))
    }

    /// Checks the mapping; the error names the offending field relative to the section
    /// (`rules[0].team: must not be empty`).
    pub fn validate(&self) -> std::result::Result<(), String> {
        for (i, r) in self.rules.iter().enumerate() {
            if r.namespace.is_empty() {
                return Err(format!("rules[{i}].namespace: must not be empty"));
            }
            if r.team.is_empty() {
                return Err(format!("rules[{i}].team: must not be empty"));
            }
        }
        if self.label.is_empty() {
            return Err("label: must not be empty".into());
        }
        Ok(())
    }
}

/// Shell-style glob match of a whole string: `*` any run (also empty), `?` one character.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    // Iterative matching with backtracking to the last `*` (linear in practice, no recursion).
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
    p[pi..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping() -> TeamMapping {
        TeamMapping {
            rules: vec![
                TeamRule { namespace: "spark-*".into(), team: "data-eng".into() },
                TeamRule { namespace: "trino".into(), team: "analytics".into() },
                TeamRule { namespace: "spark-ml-*".into(), team: "never-reached".into() },
            ],
            label: "team".into(),
            default: Some("unassigned".into()),
        }
    }

    #[test]
    fn pod_label_overrides_rules_and_first_rule_wins() {
        let m = mapping();
        let none = BTreeMap::new();
        assert_eq!(m.team_for("spark-etl", &none).as_deref(), Some("data-eng"));
        // The first rule shadows the later, more specific one.
        assert_eq!(m.team_for("spark-ml-train", &none).as_deref(), Some("data-eng"));
        assert_eq!(m.team_for("trino", &none).as_deref(), Some("analytics"));
        assert_eq!(m.team_for("trino-2", &none).as_deref(), Some("unassigned"));
        let labelled = BTreeMap::from([("team".to_string(), "payments".to_string())]);
        assert_eq!(m.team_for("spark-etl", &labelled).as_deref(), Some("payments"));
        let empty_label = BTreeMap::from([("team".to_string(), String::new())]);
        assert_eq!(m.team_for("trino", &empty_label).as_deref(), Some("analytics"));
    }

    #[test]
    fn no_default_means_no_team() {
        let m = TeamMapping { default: None, ..mapping() };
        assert_eq!(m.team_for("kube-system", &BTreeMap::new()), None);
    }

    #[test]
    fn glob_semantics() {
        assert!(glob_match("spark-*", "spark-"));
        assert!(glob_match("*", ""));
        assert!(glob_match("a*b*c", "axxbyyc"));
        assert!(!glob_match("a*b*c", "axxbyy"));
        assert!(glob_match("ns-?", "ns-1"));
        assert!(!glob_match("ns-?", "ns-12"));
        assert!(!glob_match("spark-*", "xspark-a"));
        assert!(glob_match("*-prod", "billing-prod"));
    }

    #[test]
    fn config_parses_with_defaults_and_rejects_unknown_fields() {
        let m: TeamMapping = serde_json::from_str(r#"{"rules":[{"namespace":"a-*","team":"a"}]}"#).unwrap();
        assert_eq!(m.label, "team");
        assert_eq!(m.default, None);
        assert!(serde_json::from_str::<TeamMapping>(r#"{"rulez":[]}"#).is_err());
        let bad = TeamMapping { rules: vec![TeamRule { namespace: "x".into(), team: String::new() }], ..mapping() };
        assert_eq!(bad.validate().unwrap_err(), "rules[0].team: must not be empty");
    }
}
