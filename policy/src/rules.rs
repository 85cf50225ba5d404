//! Rule evaluation (SPEC §6), over an index built once per snapshot: rules
//! are grouped by agent (plus one group for all agents) and, inside a
//! group, by exact host, so a decision looks at the few rules that could
//! apply however many the snapshot holds.

use std::collections::{HashMap, HashSet};

use crate::host_index::HostIndex;
use crate::model::{PolicyMode, RuleAction};
use crate::snapshot::{Agent, Rule};

/// What the policy says about one request.
#[derive(Debug)]
pub enum Decision<'a> {
    /// Forward it, after counting it against these rate limits.
    Allow { rate_limits: Vec<&'a Rule> },
    /// A `block` rule matched.
    Block(&'a Rule),
    /// The agent is in `deny` mode and no `allow` or `rate_limit` rule matched.
    BlockByDefault,
    /// A human must approve it first; then these rate limits apply.
    NeedsApproval {
        rule: &'a Rule,
        rate_limits: Vec<&'a Rule>,
    },
}

/// A request as the rules see it (SPEC §6.0, [`crate::canonical`]). `host`
/// is normalized; `path` and `method` are the canonical path and the method
/// as sent, which grants match; `broad_path` and `broad_methods` are what
/// restrictions match.
#[derive(Debug, Clone, Copy)]
pub struct RequestFacts<'a> {
    pub method: &'a str,
    pub host: &'a str,
    pub port: u16,
    pub path: &'a str,
    pub broad_path: &'a str,
    pub broad_methods: &'a [String],
}

#[derive(Debug, Default)]
pub(crate) struct RuleIndex {
    /// Rules for every agent of a project, by project number.
    global: HashMap<u32, HostIndex>,
    per_agent: HashMap<usize, AgentRules>,
}

#[derive(Debug, Default)]
struct AgentRules {
    group: HostIndex,
    /// All-agents rules shadowed by one of this agent's rules with the same
    /// host, path and methods.
    shadowed: HashSet<usize>,
}

/// Rules with the same key shadow each other across scopes.
fn shadow_key(rule: &Rule) -> (u32, String, String, Vec<String>) {
    let mut methods = rule.methods.clone();
    methods.sort();
    (
        rule.project,
        rule.host.to_string(),
        rule.path.to_string(),
        methods,
    )
}

impl RuleIndex {
    pub(crate) fn build(rules: &[Rule]) -> RuleIndex {
        let mut index = RuleIndex::default();
        let mut global_by_key: HashMap<(u32, String, String, Vec<String>), Vec<usize>> =
            HashMap::new();
        for (i, rule) in rules.iter().enumerate() {
            match rule.agent {
                Some(agent) => index
                    .per_agent
                    .entry(agent)
                    .or_default()
                    .group
                    .insert(i, &rule.host),
                None => {
                    index
                        .global
                        .entry(rule.project)
                        .or_default()
                        .insert(i, &rule.host);
                    global_by_key.entry(shadow_key(rule)).or_default().push(i);
                }
            }
        }
        for rule in rules {
            let (Some(agent), Some(shadowed)) = (rule.agent, global_by_key.get(&shadow_key(rule)))
            else {
                continue;
            };
            if let Some(entry) = index.per_agent.get_mut(&agent) {
                entry.shadowed.extend(shadowed.iter().copied());
            }
        }
        index
    }

    pub(crate) fn evaluate<'a>(
        &self,
        rules: &'a [Rule],
        agent: &Agent,
        agent_index: usize,
        req: RequestFacts<'_>,
    ) -> Decision<'a> {
        let own = self.per_agent.get(&agent_index);
        let own_candidates = own.into_iter().flat_map(|a| a.group.candidates(req.host));
        let global_candidates = self
            .global
            .get(&agent.project_index)
            .into_iter()
            .flat_map(|g| g.candidates(req.host))
            .filter(|i| own.is_none_or(|a| !a.shadowed.contains(i)));
        let mut approval = None;
        let mut rate_limits = Vec::new();
        let mut allowed = false;
        for i in own_candidates.chain(global_candidates) {
            let rule = &rules[i];
            match rule.action {
                RuleAction::Block if rule.matches_broadly(req) => return Decision::Block(rule),
                RuleAction::ManualApproval if rule.matches_broadly(req) => {
                    approval.get_or_insert(rule);
                }
                RuleAction::RateLimit { .. } => {
                    // Counted broadly; lets a deny-mode agent through narrowly.
                    if rule.matches_broadly(req) {
                        rate_limits.push(rule);
                    }
                    allowed |= rule.matches_narrowly(req);
                }
                RuleAction::Allow => allowed |= rule.matches_narrowly(req),
                _ => {}
            }
        }
        if let Some(rule) = approval {
            return Decision::NeedsApproval { rule, rate_limits };
        }
        if agent.policy_mode == PolicyMode::Deny && !allowed {
            return Decision::BlockByDefault;
        }
        Decision::Allow { rate_limits }
    }
}

impl Rule {
    /// For restrictions: the broad path, any of the broad methods.
    pub fn matches_broadly(&self, req: RequestFacts<'_>) -> bool {
        self.host.matches(req.host, req.port)
            && self.broad_path.matches(req.broad_path)
            && (self.methods.is_empty()
                || self.methods.iter().any(|m| req.broad_methods.contains(m)))
    }

    /// For grants: the exact path, the method exactly as sent.
    pub fn matches_narrowly(&self, req: RequestFacts<'_>) -> bool {
        self.host.matches(req.host, req.port)
            && self.path.matches(req.path)
            && (self.methods.is_empty() || self.methods.iter().any(|m| m == req.method))
    }
}

#[cfg(test)]
mod tests;
