//! The query root: every read model, each as of any moment, plus diffs and the audit trail.

use std::hash::Hash;
use std::ops::Bound;
use std::sync::Arc;

use async_graphql::connection::{Connection, Edge};
use async_graphql::{Context, Json, Object, SimpleObject};
use cairn_log::event::{AppId, JobName, TaskOwner};
use cairn_projections::live::View;
use cairn_projections::IdMap;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::events::{self, EventFilter, EventNode, EventPage};
use crate::limits::{page_cost, page_size};
use crate::model::{
    self, wire, ActorInfo, Agent, AgentStatus, App, Cluster, Deployment, DeploymentStatus,
    Framework, Job, Offer, Run, StateInfo, Task,
};
use crate::views::{AsOf, Views};
use crate::{error, Code};

#[derive(Debug)]
pub struct Query;

/// One field's problems in a definition (Marathon's `details`).
#[derive(SimpleObject)]
pub struct ValidationDetail {
    /// The JSON path, e.g. `/container/docker/portMappings/0/hostPort`.
    path: String,
    errors: Vec<String>,
}

/// What `validateApp` found.
#[derive(SimpleObject)]
pub struct AppValidation {
    valid: bool,
    /// Every problem, all at once; empty when valid.
    details: Vec<ValidationDetail>,
    /// The app as cairn would store it, Marathon's defaults filled in, when valid.
    spec: Option<Json<serde_json::Value>>,
}

#[derive(SimpleObject)]
pub struct Count {
    /// How many items match, over every page.
    total_count: usize,
}

/// A page of a model keyed in order: `after` is the last key of the previous page.
pub type Page<N> = Connection<String, N, Count>;

#[Object]
impl Query {
    /// The position of the state read: its offset and time.
    async fn state(
        &self,
        ctx: &Context<'_>,
        as_of: Option<AsOf>,
    ) -> async_graphql::Result<StateInfo> {
        Ok(StateInfo(Views::get(ctx, as_of.as_ref()).await?))
    }

    /// Masters, the leader, agents, frameworks, offers and resource sums.
    async fn cluster(
        &self,
        ctx: &Context<'_>,
        as_of: Option<AsOf>,
    ) -> async_graphql::Result<Cluster> {
        Ok(Cluster(Views::get(ctx, as_of.as_ref()).await?))
    }

    async fn agents(
        &self,
        ctx: &Context<'_>,
        as_of: Option<AsOf>,
        status: Option<AgentStatus>,
    ) -> async_graphql::Result<Vec<Agent>> {
        Ok(model::agents(
            &Views::get(ctx, as_of.as_ref()).await?,
            status,
        ))
    }

    async fn agent(
        &self,
        ctx: &Context<'_>,
        id: String,
        as_of: Option<AsOf>,
    ) -> async_graphql::Result<Option<Agent>> {
        let view = Views::get(ctx, as_of.as_ref()).await?;
        Ok(key(&view.cluster.agents, &id).map(|k| Agent(view.clone(), k)))
    }

    async fn frameworks(
        &self,
        ctx: &Context<'_>,
        as_of: Option<AsOf>,
    ) -> async_graphql::Result<Vec<Framework>> {
        Ok(model::frameworks(&Views::get(ctx, as_of.as_ref()).await?))
    }

    /// Offers made and not yet accepted, declined or rescinded.
    async fn offers(
        &self,
        ctx: &Context<'_>,
        as_of: Option<AsOf>,
    ) -> async_graphql::Result<Vec<Offer>> {
        Ok(model::offers(&Views::get(ctx, as_of.as_ref()).await?))
    }

    /// Tasks that are not terminal and the latest terminal ones, in id order.
    #[graphql(complexity = "page_cost(first, child_complexity)")]
    #[allow(clippy::too_many_arguments)]
    async fn tasks(
        &self,
        ctx: &Context<'_>,
        as_of: Option<AsOf>,
        app: Option<String>,
        agent: Option<String>,
        #[graphql(desc = "A Mesos state, e.g. TASK_RUNNING.")] state: Option<String>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<Page<Task>> {
        let view = Views::get(ctx, as_of.as_ref()).await?;
        let matches = |t: &cairn_projections::tasks::Task| {
            app.as_deref().is_none_or(
                |a| matches!(&t.owner, TaskOwner::App { app_id, .. } if app_id.as_str() == a),
            ) && agent.as_deref().is_none_or(|a| t.agent_id.as_str() == a)
                && state.as_deref().is_none_or(|s| wire(&t.state) == s)
        };
        page(
            &view,
            &view.tasks.tasks,
            first,
            after,
            |_, t| matches(t),
            Task,
        )
    }

    async fn task(
        &self,
        ctx: &Context<'_>,
        id: String,
        as_of: Option<AsOf>,
    ) -> async_graphql::Result<Option<Task>> {
        let view = Views::get(ctx, as_of.as_ref()).await?;
        Ok(key(&view.tasks.tasks, &id).map(|k| Task(view.clone(), k)))
    }

    /// Apps in id order.
    #[graphql(complexity = "page_cost(first, child_complexity)")]
    async fn apps(
        &self,
        ctx: &Context<'_>,
        as_of: Option<AsOf>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<Page<App>> {
        let view = Views::get(ctx, as_of.as_ref()).await?;
        page(&view, &view.apps.apps, first, after, |_, _| true, App)
    }

    async fn app(
        &self,
        ctx: &Context<'_>,
        id: String,
        as_of: Option<AsOf>,
    ) -> async_graphql::Result<Option<App>> {
        let view = Views::get(ctx, as_of.as_ref()).await?;
        Ok(key(&view.apps.apps, &id).map(|k| App(view.clone(), k)))
    }

    /// Running deployments and the latest ended ones.
    async fn deployments(
        &self,
        ctx: &Context<'_>,
        as_of: Option<AsOf>,
        status: Option<DeploymentStatus>,
    ) -> async_graphql::Result<Vec<Deployment>> {
        let view = Views::get(ctx, as_of.as_ref()).await?;
        Ok(view
            .apps
            .deployments
            .iter()
            .filter(|(_, d)| status.is_none_or(|s| model::deployment_status(d) == s))
            .map(|(id, _)| Deployment(view.clone(), id.clone()))
            .collect())
    }

    /// Jobs in name order.
    #[graphql(complexity = "page_cost(first, child_complexity)")]
    async fn jobs(
        &self,
        ctx: &Context<'_>,
        as_of: Option<AsOf>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<Page<Job>> {
        let view = Views::get(ctx, as_of.as_ref()).await?;
        page(&view, &view.jobs.jobs, first, after, |_, _| true, Job)
    }

    async fn job(
        &self,
        ctx: &Context<'_>,
        name: String,
        as_of: Option<AsOf>,
    ) -> async_graphql::Result<Option<Job>> {
        let view = Views::get(ctx, as_of.as_ref()).await?;
        Ok(key(&view.jobs.jobs, &name).map(|k| Job(view.clone(), k)))
    }

    /// Every job and the parent → child edges between them (also as Graphviz dot).
    async fn job_graph(
        &self,
        ctx: &Context<'_>,
        as_of: Option<AsOf>,
    ) -> async_graphql::Result<model::JobGraph> {
        let view = Views::get(ctx, as_of.as_ref()).await?;
        Ok(model::JobGraph::of(&view))
    }

    /// Active runs and the latest finished ones, in id order.
    #[graphql(complexity = "page_cost(first, child_complexity)")]
    async fn runs(
        &self,
        ctx: &Context<'_>,
        as_of: Option<AsOf>,
        job: Option<String>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<Page<Run>> {
        let view = Views::get(ctx, as_of.as_ref()).await?;
        page(
            &view,
            &view.jobs.runs,
            first,
            after,
            |_, r| job.as_deref().is_none_or(|j| r.job.as_str() == j),
            Run,
        )
    }

    /// The raw event log, oldest first: `after` an offset (a cursor), or the `last` N before
    /// `before`. A filtered page examines at most 100,000 records; `scannedTo` says where it
    /// stopped, and the next page goes on from there.
    #[graphql(complexity = "page_cost(first.or(last), child_complexity)")]
    #[allow(clippy::too_many_arguments)]
    async fn events(
        &self,
        ctx: &Context<'_>,
        filter: Option<EventFilter>,
        as_of: Option<AsOf>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
    ) -> async_graphql::Result<Connection<String, EventNode, EventPage>> {
        events::page(
            ctx,
            filter.unwrap_or_default(),
            as_of,
            first,
            after,
            last,
            before,
        )
        .await
    }

    /// `points` records spread evenly over the log (2 to 1,000; the first and the head
    /// included): the offset ↔ time mapping of a timeline, and so the density of events.
    async fn timeline(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 100)] points: i32,
    ) -> async_graphql::Result<Vec<events::TimePoint>> {
        events::timeline(ctx, points).await
    }

    /// Who the API takes the caller to be, and what its token allows.
    async fn viewer(&self, ctx: &Context<'_>) -> crate::auth::Viewer {
        ctx.data_opt::<crate::auth::Viewer>()
            .cloned()
            .unwrap_or_else(|| {
                let anonymous = crate::auth::Caller {
                    name: "anonymous".into(),
                    role: crate::auth::Role::Admin,
                };
                crate::auth::Viewer::of(&anonymous, false)
            })
    }

    /// Checks a Marathon app definition (the JSON of `POST /v2/apps`) without changing
    /// anything: every error with its path, or the app as it would be stored.
    async fn validate_app(&self, definition: Json<serde_json::Value>) -> AppValidation {
        match cairn_scheduler::marathon::parse_app(&definition.0) {
            Ok(spec) => AppValidation {
                valid: true,
                details: Vec::new(),
                spec: serde_json::to_value(spec).ok().map(Json),
            },
            Err(invalid) => AppValidation {
                valid: false,
                details: invalid
                    .details
                    .into_iter()
                    .map(|d| ValidationDetail {
                        path: d.path,
                        errors: d.errors,
                    })
                    .collect(),
                spec: None,
            },
        }
    }

    /// How an app or a job changed between two moments: its definition and state before and
    /// after, and the paths that differ.
    async fn diff(
        &self,
        ctx: &Context<'_>,
        app: Option<String>,
        job: Option<String>,
        from: AsOf,
        to: AsOf,
    ) -> async_graphql::Result<Diff> {
        let before_view = Views::get(ctx, Some(&from)).await?;
        let after_view = Views::get(ctx, Some(&to)).await?;
        let pick = |view: &View| -> async_graphql::Result<Option<serde_json::Value>> {
            match (&app, &job) {
                (Some(id), None) => {
                    Ok(key::<AppId, _>(&view.apps.apps, id).map(|k| to_json(&view.apps.apps[&k])))
                }
                (None, Some(name)) => {
                    Ok(key::<JobName, _>(&view.jobs.jobs, name)
                        .map(|k| to_json(&view.jobs.jobs[&k])))
                }
                _ => Err(error(
                    Code::Validation,
                    "diff: give exactly one of `app` and `job`",
                )),
            }
        };
        let (before, after) = (pick(&before_view)?, pick(&after_view)?);
        if before.is_none() && after.is_none() {
            let what = app
                .map(|a| format!("app {a}"))
                .or(job.map(|j| format!("job {j}")));
            return Err(error(
                Code::NotFound,
                format!("{} exists at neither moment", what.unwrap_or_default()),
            ));
        }
        let mut changes = Vec::new();
        let null = serde_json::Value::Null;
        diff_values(
            "",
            before.as_ref().unwrap_or(&null),
            after.as_ref().unwrap_or(&null),
            &mut changes,
        );
        Ok(Diff {
            from: before_view.offset,
            to: after_view.offset,
            before: Json(before),
            after: Json(after),
            changes,
        })
    }

    /// Who changed what, when and from where: changes made by users and frameworks, newest
    /// first, optionally of one subject (`app:/web`, `job:nightly`, …) or by one actor.
    #[graphql(complexity = "page_cost(first, child_complexity)")]
    async fn audit(
        &self,
        ctx: &Context<'_>,
        as_of: Option<AsOf>,
        subject: Option<String>,
        actor: Option<String>,
        first: Option<i32>,
        #[graphql(desc = "The offset of the last entry of the previous page.")] after: Option<
            String,
        >,
    ) -> async_graphql::Result<Connection<String, AuditEntry, Count>> {
        let view = Views::get(ctx, as_of.as_ref()).await?;
        let first = page_size(first)?;
        let before = match after.as_deref() {
            Some(cursor) => cursor.parse::<u64>().map_err(|_| {
                error(
                    Code::Validation,
                    format!("after: {cursor:?} is not an audit cursor"),
                )
            })?,
            None => u64::MAX,
        };
        let matches = |e: &cairn_projections::audit::AuditEntry| {
            subject.as_deref().is_none_or(|s| e.subject == s)
                && actor
                    .as_deref()
                    .is_none_or(|a| events::actor_matches(&e.actor, a))
        };
        let entries = &view.audit.entries;
        let total_count = entries.iter().filter(|e| matches(e)).count();
        let mut found = entries
            .iter()
            .enumerate()
            .rev()
            .filter(|(_, e)| e.offset < before && matches(e));
        let mut connection =
            Connection::with_additional_fields(after.is_some(), false, Count { total_count });
        for (index, entry) in found.by_ref().take(first) {
            connection.edges.push(Edge::new(
                entry.offset.to_string(),
                AuditEntry(view.clone(), index),
            ));
        }
        connection.has_next_page = found.next().is_some();
        Ok(connection)
    }
}

/// One change in the audit trail.
pub struct AuditEntry(Arc<View>, usize);

#[Object]
impl AuditEntry {
    async fn offset(&self) -> u64 {
        self.get().offset
    }
    async fn at(&self) -> String {
        model::time(self.get().at)
    }
    async fn actor(&self) -> ActorInfo {
        (&self.get().actor).into()
    }
    /// The event's type, e.g. `AppUpdated`.
    async fn r#type(&self) -> &str {
        &self.get().kind
    }
    /// What changed: `app:/web`, `job:nightly`, `task:web.1`, `agent:a1`, `framework:f1`.
    async fn subject(&self) -> &str {
        &self.get().subject
    }
    /// The offset of the previous change to the same subject.
    async fn previous(&self) -> Option<u64> {
        self.get().previous
    }
    /// The subject just before and just after this change (apps and jobs). Each computes two
    /// past states, so it costs 1,000 complexity points: at most 49 in one request.
    #[graphql(complexity = 1000)]
    async fn change(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Diff>> {
        let entry = self.get();
        let (kind, name) = entry.subject.split_once(':').unwrap_or(("", ""));
        let (app, job) = match kind {
            "app" => (Some(name.to_owned()), None),
            "job" => (None, Some(name.to_owned())),
            _ => return Ok(None),
        };
        let from = AsOf::Offset(entry.offset - 1);
        let to = AsOf::Offset(entry.offset);
        Query.diff(ctx, app, job, from, to).await.map(Some)
    }
}

impl AuditEntry {
    fn get(&self) -> &cairn_projections::audit::AuditEntry {
        &self.0.audit.entries[self.1]
    }
}

#[derive(SimpleObject)]
pub struct Diff {
    /// The offsets compared.
    from: u64,
    to: u64,
    before: Json<Option<serde_json::Value>>,
    after: Json<Option<serde_json::Value>>,
    /// Every leaf that differs, by JSON path (`/spec/instances`).
    changes: Vec<Change>,
}

#[derive(SimpleObject)]
pub struct Change {
    path: String,
    before: Json<serde_json::Value>,
    after: Json<serde_json::Value>,
}

fn to_json<T: Serialize>(value: &T) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or(serde_json::Value::Null)
}

/// Appends to `out` every path under which `a` and `b` differ, objects compared key by key.
fn diff_values(path: &str, a: &serde_json::Value, b: &serde_json::Value, out: &mut Vec<Change>) {
    use serde_json::Value::Object;
    match (a, b) {
        (Object(x), Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            let null = serde_json::Value::Null;
            for k in keys {
                let child = format!("{path}/{k}");
                diff_values(
                    &child,
                    x.get(k).unwrap_or(&null),
                    y.get(k).unwrap_or(&null),
                    out,
                );
            }
        }
        _ if a != b => out.push(Change {
            path: if path.is_empty() {
                "/".into()
            } else {
                path.into()
            },
            before: Json(a.clone()),
            after: Json(b.clone()),
        }),
        _ => {}
    }
}

/// The key of `map` spelled `id`, if present.
fn key<K: DeserializeOwned + Ord + Hash + Clone, V>(map: &IdMap<K, V>, id: &str) -> Option<K> {
    let k: K = serde_json::from_value(serde_json::Value::String(id.to_owned())).ok()?;
    map.contains_key(&k).then_some(k)
}

/// One page of a keyed model, in key order, after the key `after`.
fn page<K, V, N>(
    view: &Arc<View>,
    map: &IdMap<K, V>,
    first: Option<i32>,
    after: Option<String>,
    matches: impl Fn(&K, &V) -> bool,
    node: impl Fn(Arc<View>, K) -> N,
) -> async_graphql::Result<Page<N>>
where
    K: DeserializeOwned + Serialize + Ord + Hash + Clone,
    N: async_graphql::OutputType,
{
    let first = page_size(first)?;
    let start = match &after {
        Some(cursor) => {
            let k: K = serde_json::from_value(serde_json::Value::String(cursor.clone())).map_err(
                |_| {
                    error(
                        Code::Validation,
                        format!("after: {cursor:?} is not a cursor here"),
                    )
                },
            )?;
            Bound::Excluded(k)
        }
        None => Bound::Unbounded,
    };
    let total_count = map.iter().filter(|(k, v)| matches(k, v)).count();
    let mut found = map
        .range((start, Bound::Unbounded))
        .filter(|(k, v)| matches(k, v));
    let mut connection =
        Connection::with_additional_fields(after.is_some(), false, Count { total_count });
    for (k, _) in found.by_ref().take(first) {
        connection
            .edges
            .push(Edge::new(wire(k), node(view.clone(), k.clone())));
    }
    connection.has_next_page = found.next().is_some();
    Ok(connection)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_names_every_changed_leaf() {
        let a = serde_json::json!({"spec": {"instances": 1, "cmd": "x"}, "gone": true});
        let b = serde_json::json!({"spec": {"instances": 3, "cmd": "x"}, "new": [1]});
        let mut changes = Vec::new();
        diff_values("", &a, &b, &mut changes);
        let paths: Vec<_> = changes.iter().map(|c| c.path.as_str()).collect();
        assert_eq!(paths, ["/gone", "/new", "/spec/instances"]);
        assert_eq!(changes[2].before.0, 1);
        assert_eq!(changes[2].after.0, 3);
    }
}
