//! An Environment's status as seed 004 names it: phase Pending → Building → Deploying →
//! Ready | Failed, its URL, and the conditions NamespaceReady, BuildReady and
//! DeploymentReady. Pure: derived from what the cluster and the registry said.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    Pending,
    Building,
    Deploying,
    Ready,
    Failed,
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Condition {
    #[serde(rename = "type")]
    pub kind: String,
    /// "True", "False" or "Unknown", as Kubernetes writes it.
    pub status: String,
    pub reason: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// One part of the way to a running preview.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Done(String),
    Waiting(String, String),
    Failed(String, String),
    Unknown(String, String),
}

impl Step {
    fn condition(&self, kind: &'static str) -> Condition {
        let (status, reason, message) = match self {
            Step::Done(r) => ("True", r, ""),
            Step::Waiting(r, m) => ("False", r, m.as_str()),
            Step::Failed(r, m) => ("False", r, m.as_str()),
            Step::Unknown(r, m) => ("Unknown", r, m.as_str()),
        };
        Condition {
            kind: kind.to_string(),
            status: status.to_string(),
            reason: reason.clone(),
            message: message.to_string(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvironmentStatus {
    pub claim: String,
    pub environment: String,
    pub namespace: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    pub phase: Phase,
    pub url: String,
    pub conditions: Vec<Condition>,
}

impl EnvironmentStatus {
    /// The phase follows the first step not done.
    pub fn new(
        claim: String,
        environment: String,
        namespace: String,
        commit: Option<String>,
        url: String,
        steps: [&Step; 3],
    ) -> EnvironmentStatus {
        let [ns, build, deploy] = steps;
        let phase = if steps.iter().any(|s| matches!(s, Step::Failed(..))) {
            Phase::Failed
        } else if !matches!(ns, Step::Done(_)) {
            Phase::Pending
        } else if !matches!(build, Step::Done(_)) {
            Phase::Building
        } else if !matches!(deploy, Step::Done(_)) {
            Phase::Deploying
        } else {
            Phase::Ready
        };
        EnvironmentStatus {
            claim,
            environment,
            namespace,
            commit,
            phase,
            url,
            conditions: vec![
                ns.condition("NamespaceReady"),
                build.condition("BuildReady"),
                deploy.condition("DeploymentReady"),
            ],
        }
    }

    pub fn condition(&self, kind: &str) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.kind == kind)
    }
}

/// A table for `claimd status`.
pub fn table(statuses: &[EnvironmentStatus]) -> String {
    let mut rows = vec![[
        "ENVIRONMENT".to_string(),
        "NAMESPACE".to_string(),
        "PHASE".to_string(),
        "URL".to_string(),
        "MESSAGE".to_string(),
    ]];
    for s in statuses {
        let message = s
            .conditions
            .iter()
            .find(|c| c.status != "True")
            .map(|c| format!("{}: {}", c.kind, c.message))
            .unwrap_or_default();
        rows.push([
            s.environment.clone(),
            s.namespace.clone(),
            s.phase.to_string(),
            s.url.clone(),
            message,
        ]);
    }
    let widths: Vec<usize> = (0..5)
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, cell)| format!("{cell:<w$}", w = widths[i]))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(steps: [&Step; 3]) -> EnvironmentStatus {
        EnvironmentStatus::new("c".into(), "e".into(), "n".into(), None, "u".into(), steps)
    }

    #[test]
    fn phases() {
        let done = Step::Done("Ok".into());
        let wait = Step::Waiting("Wait".into(), "m".into());
        let failed = Step::Failed("Bad".into(), "m".into());
        assert_eq!(status([&wait, &wait, &wait]).phase, Phase::Pending);
        assert_eq!(status([&done, &wait, &wait]).phase, Phase::Building);
        assert_eq!(status([&done, &done, &wait]).phase, Phase::Deploying);
        assert_eq!(status([&done, &done, &done]).phase, Phase::Ready);
        assert_eq!(status([&done, &failed, &wait]).phase, Phase::Failed);
        let s = status([&done, &failed, &wait]);
        assert_eq!(s.condition("BuildReady").unwrap().status, "False");
        assert!(table(&[s]).contains("BuildReady: m"));
    }
}
