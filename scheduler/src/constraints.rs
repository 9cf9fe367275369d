//! Marathon's placement constraints, `[field, operator, value?]`, where `field` is `hostname`
//! or an agent attribute. Pure: whether an instance may go on an agent depends only on that
//! agent and on how many of the app's instances each value of the field already holds.

use std::collections::BTreeMap;

use cairn_projections::cluster::Agent;
use regex::Regex;

/// One parsed constraint.
#[derive(Debug, Clone)]
pub struct Constraint {
    pub field: String,
    op: Op,
    /// As the user wrote it, for messages: `["hostname", "UNIQUE"]`.
    pub text: String,
}

#[derive(Debug, Clone)]
enum Op {
    /// At most one instance per value.
    Unique,
    /// Every instance on one value: the given one, or whichever the first instance took.
    Cluster(Option<String>),
    /// Spread evenly over the values the cluster's agents have.
    GroupBy,
    /// The value matches (all of) the regular expression.
    Like(Regex),
    Unlike(Regex),
    /// At most n instances per value.
    MaxPer(u32),
    /// The value is exactly this.
    Is(String),
}

/// Instances of one app per value of each constrained field.
pub type Counts = BTreeMap<String, BTreeMap<String, u32>>;

impl Constraint {
    /// Parses one constraint as Marathon writes it; the error says what is wrong.
    pub fn parse(parts: &[String]) -> Result<Self, String> {
        let (field, op, value) = match parts {
            [field, op] => (field, op.as_str(), None),
            [field, op, value] => (field, op.as_str(), Some(value.as_str())),
            _ => return Err("must be [field, operator] or [field, operator, value]".into()),
        };
        if field.is_empty() {
            return Err("the field must not be empty".into());
        }
        let regex = |v: Option<&str>| {
            let v = v.ok_or_else(|| format!("{op} needs a regular expression"))?;
            Regex::new(&format!("^(?:{v})$"))
                .map_err(|e| format!("{v:?} is not a regular expression: {e}"))
        };
        let op = match op {
            "UNIQUE" => Op::Unique,
            "CLUSTER" => Op::Cluster(value.filter(|v| !v.is_empty()).map(str::to_owned)),
            "GROUP_BY" => Op::GroupBy,
            "LIKE" => Op::Like(regex(value)?),
            "UNLIKE" => Op::Unlike(regex(value)?),
            "MAX_PER" => Op::MaxPer(
                value
                    .and_then(|v| v.parse().ok())
                    .ok_or("MAX_PER needs a whole number")?,
            ),
            "IS" => Op::Is(value.ok_or("IS needs a value")?.to_owned()),
            other => {
                return Err(format!(
                    "{other:?} is not one of UNIQUE, CLUSTER, GROUP_BY, LIKE, UNLIKE, MAX_PER, IS"
                ))
            }
        };
        Ok(Self {
            field: field.clone(),
            op,
            text: format!("{parts:?}"),
        })
    }

    /// Parses an app's constraints (already validated when the app was accepted).
    pub fn parse_all(raw: &[Vec<String>]) -> Vec<Self> {
        raw.iter().filter_map(|c| Self::parse(c).ok()).collect()
    }

    /// Whether it spreads over every value the agents have (and so needs them all).
    pub fn spreads(&self) -> bool {
        matches!(self.op, Op::GroupBy)
    }

    /// Whether one more instance may go on `agent`. `counts` holds this field's instances
    /// per value; `values` every value the active agents have for it (for `GROUP_BY`).
    pub fn allows(
        &self,
        agent: &Agent,
        counts: Option<&BTreeMap<String, u32>>,
        values: &[&str],
    ) -> bool {
        let Some(value) = value_of(agent, &self.field) else {
            // An agent without the attribute satisfies only "unlike".
            return matches!(self.op, Op::Unlike(_));
        };
        let count = |v: &str| counts.and_then(|c| c.get(v)).copied().unwrap_or(0);
        match &self.op {
            Op::Unique => count(value) == 0,
            Op::Cluster(Some(wanted)) | Op::Is(wanted) => value == wanted,
            Op::Cluster(None) => {
                counts.is_none_or(|c| c.iter().all(|(v, n)| *n == 0 || v == value))
            }
            Op::GroupBy => {
                let least = values.iter().map(|v| count(v)).min().unwrap_or(0);
                count(value) <= least
            }
            Op::Like(re) => re.is_match(value),
            Op::Unlike(re) => !re.is_match(value),
            Op::MaxPer(n) => count(value) < *n,
        }
    }
}

/// The value of `field` on `agent`: its hostname, or an attribute.
pub fn value_of<'a>(agent: &'a Agent, field: &str) -> Option<&'a str> {
    if field == "hostname" {
        Some(&agent.hostname)
    } else {
        agent.attributes.get(field).map(String::as_str)
    }
}

/// Counts one instance on `agent` for each constrained field.
pub fn count(counts: &mut Counts, constraints: &[Constraint], agent: &Agent) {
    for c in constraints {
        if let Some(value) = value_of(agent, &c.field) {
            *counts
                .entry(c.field.clone())
                .or_default()
                .entry(value.to_owned())
                .or_default() += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use cairn_log::event::{Resources, Timestamp};
    use cairn_projections::cluster::AgentStatus;

    use super::*;

    fn agent(host: &str, rack: Option<&str>) -> Agent {
        Agent {
            hostname: host.into(),
            address: format!("{host}:5051"),
            attributes: rack
                .map(|r| BTreeMap::from([("rack".to_owned(), r.to_owned())]))
                .unwrap_or_default(),
            version: "0".into(),
            status: AgentStatus::Active,
            registered_at: Timestamp::from_micros(0),
            updated_at: Timestamp::from_micros(0),
            total: Resources::default(),
            used: Resources::default(),
            offered: Resources::default(),
            tasks: BTreeSet::new(),
        }
    }

    fn c(parts: &[&str]) -> Constraint {
        Constraint::parse(&parts.iter().map(|p| p.to_string()).collect::<Vec<_>>()).unwrap()
    }

    /// Places instances one by one on the first agent each constraint allows.
    fn place(constraints: &[Constraint], agents: &[Agent], n: usize) -> Vec<String> {
        let mut counts = Counts::new();
        let mut placed = Vec::new();
        for _ in 0..n {
            let found = agents.iter().find(|a| {
                constraints.iter().all(|c| {
                    let values: Vec<&str> = agents
                        .iter()
                        .filter_map(|a| value_of(a, &c.field))
                        .collect();
                    c.allows(a, counts.get(&c.field), &values)
                })
            });
            let Some(a) = found else { break };
            count(&mut counts, constraints, a);
            placed.push(a.hostname.clone());
        }
        placed
    }

    #[test]
    fn each_operator_places_as_marathon_does() {
        let agents = [
            agent("h1", Some("r1")),
            agent("h2", Some("r1")),
            agent("h3", Some("r2")),
            agent("h4", None),
        ];
        assert_eq!(
            place(&[c(&["hostname", "UNIQUE"])], &agents, 9),
            ["h1", "h2", "h3", "h4"]
        );
        assert_eq!(place(&[c(&["rack", "UNIQUE"])], &agents, 9), ["h1", "h3"]);
        assert_eq!(
            place(&[c(&["rack", "CLUSTER", "r2"])], &agents, 2),
            ["h3", "h3"]
        );
        assert_eq!(
            place(&[c(&["rack", "CLUSTER"])], &agents, 3),
            ["h1", "h1", "h1"]
        );
        assert_eq!(
            place(&[c(&["rack", "GROUP_BY"])], &agents, 4),
            ["h1", "h3", "h1", "h3"]
        );
        assert_eq!(
            place(&[c(&["hostname", "LIKE", "h[34]"])], &agents, 1),
            ["h3"]
        );
        assert_eq!(
            place(&[c(&["hostname", "LIKE", "h"])], &agents, 1),
            Vec::<String>::new()
        );
        assert_eq!(place(&[c(&["rack", "UNLIKE", "r1"])], &agents, 1), ["h3"]);
        assert_eq!(
            place(&[c(&["rack", "MAX_PER", "2"])], &agents, 9),
            ["h1", "h1", "h3", "h3"]
        );
        assert_eq!(place(&[c(&["rack", "IS", "r1"])], &agents, 1), ["h1"]);
        // Together: unique hosts in rack r1 only.
        assert_eq!(
            place(
                &[c(&["hostname", "UNIQUE"]), c(&["rack", "LIKE", "r1"])],
                &agents,
                9
            ),
            ["h1", "h2"]
        );
    }

    #[test]
    fn malformed_constraints_say_what_is_wrong() {
        let err = |parts: &[&str]| {
            Constraint::parse(&parts.iter().map(|p| p.to_string()).collect::<Vec<_>>()).unwrap_err()
        };
        assert!(err(&["rack", "NEAR"]).contains("not one of"));
        assert!(err(&["rack", "LIKE"]).contains("regular expression"));
        assert!(err(&["rack", "LIKE", "("]).contains("not a regular expression"));
        assert!(err(&["rack", "MAX_PER", "x"]).contains("whole number"));
        assert!(err(&["rack"]).contains("[field, operator]"));
    }
}
