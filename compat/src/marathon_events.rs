//! Marathon's event stream, `GET /v2/events`: Server-Sent Events with Marathon's event types,
//! translated from the log as it commits. `event_type=` (repeatable) filters; each record's
//! last event carries its log offset as the SSE `id`, so a client that reconnects with
//! `Last-Event-ID` resumes after it, with no gap and no duplicate (Marathon cannot do that).
//! Only the types marathon-python knows are sent: it ends its stream on any other.

use std::convert::Infallible;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event as Sse, KeepAlive};
use axum::response::{IntoResponse, Response};
use cairn_log::event::{wire, Event, Principal, TaskOwner};
use cairn_log::Record;
use cairn_projections::apps::Deployment;
use cairn_projections::State as Cluster;
use cairn_scheduler::marathon::to_marathon;
use serde_json::{json, Value};

use crate::marathon::{deployment_json, host_and_ip};
use crate::{Compat, Failure};

const API_POST: &str = "api_post_event";

/// The Marathon events a record becomes, in order, with the state (as of now) to name the
/// app, host and deployment plan.
pub fn marathon_events(state: &Cluster, record: &Record) -> Vec<(&'static str, Value)> {
    let at = record.at.to_string();
    let mut out = Vec::new();
    match &record.event {
        Event::TaskStatusUpdated(u) => {
            let Some(task) = state.tasks.tasks.get(&u.task_id) else {
                return out;
            };
            let TaskOwner::App { app_id, version } = &task.owner else {
                return out;
            };
            let (host, ip) = host_and_ip(state, &u.agent_id);
            out.push((
                "status_update_event",
                json!({
                    "eventType": "status_update_event", "timestamp": at,
                    "slaveId": u.agent_id, "taskId": u.task_id, "taskStatus": wire(&u.state),
                    "message": u.message.clone().unwrap_or_default(), "appId": app_id,
                    "host": host, "ports": task.spec.ports, "version": version.to_string(),
                    "ipAddresses": [{ "ipAddress": ip, "protocol": "IPv4" }],
                }),
            ));
            out.push((
                "instance_changed_event",
                json!({
                    "eventType": "instance_changed_event", "timestamp": at,
                    "instanceId": u.task_id, "condition": wire(&u.state), "runSpecId": app_id,
                    "agentId": u.agent_id, "host": host, "runSpecVersion": version.to_string(),
                }),
            ));
            if let Some(alive) = u.healthy {
                out.push((
                    "health_status_changed_event",
                    json!({
                        "eventType": "health_status_changed_event", "timestamp": at,
                        "appId": app_id, "taskId": u.task_id, "instanceId": u.task_id,
                        "version": version.to_string(), "alive": alive,
                    }),
                ));
            }
        }
        Event::DeploymentStarted(d) => {
            out.extend(deployment(state, &d.deployment_id, "deployment_info", &at))
        }
        Event::DeploymentStepFinished(d) => out.extend(deployment(
            state,
            &d.deployment_id,
            "deployment_step_success",
            &at,
        )),
        Event::DeploymentFinished(d) => out.extend(deployment(
            state,
            &d.deployment_id,
            "deployment_success",
            &at,
        )),
        Event::DeploymentFailed(d) => out.extend(deployment(
            state,
            &d.deployment_id,
            "deployment_failed",
            &at,
        )),
        Event::AppCreated(_)
        | Event::AppUpdated(_)
        | Event::AppScaled(_)
        | Event::AppDeleted(_) => {
            // A user's change through an API (the schedulers' own are not API posts).
            if !matches!(record.actor.principal, Principal::User { .. }) {
                return out;
            }
            let (id, definition) = match &record.event {
                Event::AppCreated(e) => (&e.app_id, Value::Object(to_marathon(&e.spec))),
                Event::AppUpdated(e) => (&e.app_id, Value::Object(to_marathon(&e.spec))),
                Event::AppScaled(e) => (
                    &e.app_id,
                    json!({ "id": e.app_id, "instances": e.instances }),
                ),
                Event::AppDeleted(e) => (&e.app_id, json!({ "id": e.app_id })),
                _ => unreachable!("matched above"),
            };
            let origin = record.actor.origin.as_ref();
            out.push((
                API_POST,
                json!({
                    "eventType": API_POST, "timestamp": at,
                    "clientIp": origin.and_then(|o| o.remote_addr.as_deref())
                        .and_then(|a| a.rsplit_once(':').map(|(ip, _)| ip.to_owned())),
                    "uri": format!("/v2/apps{id}"),
                    "appDefinition": definition,
                }),
            ));
        }
        _ => {}
    }
    out
}

fn deployment(
    state: &Cluster,
    id: &cairn_log::event::DeploymentId,
    kind: &'static str,
    at: &str,
) -> Option<(&'static str, Value)> {
    let d: &Deployment = state.apps.deployments.get(id)?;
    let shown = deployment_json(id, d);
    // The plan as marathon-python reads it: `original` and `target` groups with only the
    // keys it accepts.
    let group = json!({ "id": "/", "apps": [], "groups": [], "dependencies": [],
        "version": d.version.to_string(), "pods": [] });
    let plan = json!({ "id": id, "version": d.version.to_string(), "original": group,
        "target": group, "steps": shown["steps"] });
    let step = d.steps.get(d.completed_steps.saturating_sub(1) as usize);
    let current = json!({ "actions": step.map(|s| s.actions.iter()
        .map(|a| json!({ "action": wire(&a.action), "app": a.app_id }))
        .collect::<Vec<_>>()).unwrap_or_default() });
    let mut event = json!({ "eventType": kind, "timestamp": at, "plan": plan });
    match kind {
        "deployment_info" | "deployment_step_success" => event["currentStep"] = current,
        _ => event["id"] = json!(id),
    }
    Some((kind, event))
}

/// `GET /v2/events`.
pub(crate) async fn stream(
    State(c): State<Compat>,
    Query(params): Query<Vec<(String, String)>>,
    headers: HeaderMap,
) -> Result<Response, Failure> {
    let wanted: Vec<String> = params
        .iter()
        .filter(|(k, _)| k == "event_type")
        .map(|(_, v)| v.clone())
        .collect();
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let from = resume.map_or(c.log.head() + 1, |last| last + 1);
    let follow = c.follow(from).map_err(|e| Failure {
        status: StatusCode::SERVICE_UNAVAILABLE,
        body: json!({ "message": e.to_string() }),
    })?;
    let projector = c.projector.clone();
    let events = futures_util::stream::unfold(
        (follow, projector, wanted, std::collections::VecDeque::new()),
        |(mut follow, projector, wanted, mut ready)| async move {
            loop {
                if let Some(event) = ready.pop_front() {
                    return Some((
                        Ok::<_, Infallible>(event),
                        (follow, projector, wanted, ready),
                    ));
                }
                let record = match follow.next().await? {
                    Ok(record) => record,
                    // The log failed under the stream: end it; the client resumes.
                    Err(_) => return None,
                };
                // The state has folded this record once the projector has caught up to it.
                if projector.wait_for(record.offset.get()).await.is_err() {
                    return None;
                }
                let translated = marathon_events(&*projector.current().await, &record);
                let kept: Vec<_> = translated
                    .into_iter()
                    .filter(|(kind, _)| wanted.is_empty() || wanted.iter().any(|w| w == kind))
                    .collect();
                let n = kept.len();
                for (i, (kind, data)) in kept.into_iter().enumerate() {
                    let mut event = Sse::default().event(kind).data(data.to_string());
                    if i + 1 == n {
                        event = event.id(record.offset.get().to_string());
                    }
                    ready.push_back(event);
                }
            }
        },
    );
    Ok(axum::response::Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response())
}
