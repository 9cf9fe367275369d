//! Changes to apps, as Marathon makes them: each is a new version and a deployment with steps
//! (pure: the runner passes the version time and the new deployment's id, and appends what
//! comes out). One deployment per app at a time: a change to an app that a running
//! deployment touches is refused unless forced, which cancels that deployment first. Apps
//! with `dependencies` deploy in order, one step per level of the dependency graph.

use std::collections::{BTreeMap, BTreeSet};

use cairn_log::event::{
    AppCreated, AppDeleted, AppId, AppScaled, AppSpec, AppUpdated, DeploymentAction,
    DeploymentActionKind, DeploymentCanceled, DeploymentId, DeploymentStarted, DeploymentStep,
    Event, Timestamp,
};
use cairn_projections::apps::DeploymentStatus;
use cairn_projections::State;

/// Most apps one change may touch (a group of apps in one deployment).
pub const MAX_APPS_PER_CHANGE: usize = 1_000;

/// Why a change is refused; nothing of it is applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    /// Running deployments touch the apps (Marathon's 409, listing them).
    #[error("{message}")]
    Conflict {
        message: String,
        deployments: Vec<DeploymentId>,
    },
}

/// Whether a put may create apps, update them, or both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Put {
    Create,
    Update,
    CreateOrUpdate,
}

/// A change decided: its events, and the deployment that carries it out (none when nothing
/// changed).
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub events: Vec<Event>,
    pub deployment: Option<(DeploymentId, Timestamp)>,
}

/// Creates or updates `specs` in one deployment.
pub fn put(
    state: &State,
    specs: Vec<AppSpec>,
    mode: Put,
    now: Timestamp,
    deployment_id: DeploymentId,
    force: bool,
) -> Result<Change, Refusal> {
    if specs.is_empty() {
        return Err(Refusal::Invalid("no app given".into()));
    }
    change(state, specs, &[], mode, now, deployment_id, force)
}

/// Creates or updates `specs` and deletes the apps `remove` in one deployment: what
/// Marathon's `PUT /v2/groups/{id}` does to the apps of a group (and `DELETE`, with no specs).
pub fn replace(
    state: &State,
    specs: Vec<AppSpec>,
    remove: &[AppId],
    now: Timestamp,
    deployment_id: DeploymentId,
    force: bool,
) -> Result<Change, Refusal> {
    if specs.is_empty() && remove.is_empty() {
        return Err(Refusal::Invalid("no app given".into()));
    }
    change(
        state,
        specs,
        remove,
        Put::CreateOrUpdate,
        now,
        deployment_id,
        force,
    )
}

/// [`put`] of `specs` and deletion of `remove`, checked together: an app that stays may not
/// depend on one that goes.
fn change(
    state: &State,
    specs: Vec<AppSpec>,
    remove: &[AppId],
    mode: Put,
    now: Timestamp,
    deployment_id: DeploymentId,
    force: bool,
) -> Result<Change, Refusal> {
    if specs.len() + remove.len() > MAX_APPS_PER_CHANGE {
        return Err(Refusal::Invalid(format!(
            "{} apps in one change, at most {MAX_APPS_PER_CHANGE}",
            specs.len() + remove.len()
        )));
    }
    let mut given = BTreeSet::new();
    for spec in &specs {
        if !given.insert(&spec.id) {
            return Err(Refusal::Invalid(format!("app {} is given twice", spec.id)));
        }
    }
    let mut going = BTreeSet::new();
    for app_id in remove {
        existing(state, app_id)?;
        if given.contains(app_id) || !going.insert(app_id) {
            return Err(Refusal::Invalid(format!("app {app_id} is given twice")));
        }
    }
    for spec in &specs {
        for dependency in &spec.dependencies {
            if dependency == &spec.id {
                return Err(Refusal::Invalid(format!(
                    "app {} depends on itself",
                    spec.id
                )));
            }
            let exists = given.contains(dependency) || state.apps.apps.contains_key(dependency);
            if !exists || going.contains(dependency) {
                return Err(Refusal::Invalid(format!(
                    "app {} depends on {dependency}, which does not exist",
                    spec.id
                )));
            }
        }
    }
    // The apps left untouched must not lose what they depend on either.
    if let Some((dependent, app)) = state.apps.apps.iter().find(|(id, a)| {
        !given.contains(id)
            && !going.contains(id)
            && a.spec.dependencies.iter().any(|d| going.contains(d))
    }) {
        let gone = app.spec.dependencies.iter().find(|d| going.contains(d));
        return Err(Refusal::Invalid(format!(
            "app {dependent} depends on {}: delete or change it first",
            gone.map(ToString::to_string).unwrap_or_default()
        )));
    }
    let version = next_version(state, specs.iter().map(|s| &s.id).chain(remove), now);
    let mut events = Vec::new();
    let mut actions = BTreeMap::new();
    for app_id in remove {
        events.push(Event::AppDeleted(AppDeleted {
            app_id: app_id.clone(),
        }));
        actions.insert(app_id.clone(), DeploymentActionKind::StopApplication);
    }
    for spec in &specs {
        let app_id = spec.id.clone();
        let (event, action) = match (state.apps.apps.get(&app_id), mode) {
            (None, Put::Update) => {
                return Err(Refusal::NotFound(format!("app {app_id} does not exist")))
            }
            (Some(_), Put::Create) => {
                return Err(Refusal::Conflict {
                    message: format!("an app with id {app_id} already exists"),
                    deployments: Vec::new(),
                })
            }
            (None, _) => (
                Event::AppCreated(Box::new(AppCreated {
                    app_id: app_id.clone(),
                    version,
                    spec: spec.clone(),
                })),
                DeploymentActionKind::StartApplication,
            ),
            (Some(app), _) if *app.spec == *spec => continue,
            (Some(app), _)
                if AppSpec {
                    instances: spec.instances,
                    ..(*app.spec).clone()
                } == *spec =>
            {
                (
                    Event::AppScaled(AppScaled {
                        app_id: app_id.clone(),
                        version,
                        instances: spec.instances,
                    }),
                    DeploymentActionKind::ScaleApplication,
                )
            }
            (Some(_), _) => (
                Event::AppUpdated(Box::new(AppUpdated {
                    app_id: app_id.clone(),
                    version,
                    spec: spec.clone(),
                })),
                DeploymentActionKind::RestartApplication,
            ),
        };
        events.push(event);
        actions.insert(app_id, action);
    }
    if actions.is_empty() {
        return Ok(Change {
            events: Vec::new(),
            deployment: None,
        });
    }
    let levels = levels(&specs, &actions)?;
    deploy(
        state,
        events,
        actions,
        levels,
        version,
        deployment_id,
        force,
    )
}

/// Sets an app's instance count.
pub fn scale(
    state: &State,
    app_id: &AppId,
    instances: u32,
    now: Timestamp,
    deployment_id: DeploymentId,
    force: bool,
) -> Result<Change, Refusal> {
    let app = existing(state, app_id)?;
    let spec = AppSpec {
        instances,
        ..(*app.spec).clone()
    };
    put(state, vec![spec], Put::Update, now, deployment_id, force)
}

/// Replaces every instance of an app by a rolling restart: the same definition, a new version.
pub fn restart(
    state: &State,
    app_id: &AppId,
    now: Timestamp,
    deployment_id: DeploymentId,
    force: bool,
) -> Result<Change, Refusal> {
    let app = existing(state, app_id)?;
    let version = next_version(state, [app_id], now);
    let event = Event::AppUpdated(Box::new(AppUpdated {
        app_id: app_id.clone(),
        version,
        spec: (*app.spec).clone(),
    }));
    let action = DeploymentActionKind::RestartApplication;
    deploy_one(state, app_id, event, action, version, deployment_id, force)
}

/// Deletes an app; its instances are killed.
pub fn delete(
    state: &State,
    app_id: &AppId,
    now: Timestamp,
    deployment_id: DeploymentId,
    force: bool,
) -> Result<Change, Refusal> {
    let remove = [app_id.clone()];
    change(
        state,
        Vec::new(),
        &remove,
        Put::Update,
        now,
        deployment_id,
        force,
    )
}

/// [`deploy`] of one event about one app, in one step.
fn deploy_one(
    state: &State,
    app_id: &AppId,
    event: Event,
    action: DeploymentActionKind,
    version: Timestamp,
    deployment_id: DeploymentId,
    force: bool,
) -> Result<Change, Refusal> {
    let actions = BTreeMap::from([(app_id.clone(), action)]);
    let levels = BTreeMap::from([(app_id.clone(), 0)]);
    deploy(
        state,
        vec![event],
        actions,
        levels,
        version,
        deployment_id,
        force,
    )
}

/// Cancels a running deployment. With `rollback`, each of its apps goes back to what it was
/// before (`previous`: the definition then, `None` for an app the deployment created or
/// deleted; a deletion is not undone) in a
/// new deployment, as Marathon's rollback does.
pub fn cancel(
    state: &State,
    deployment_id: &DeploymentId,
    rollback: Option<(BTreeMap<AppId, Option<AppSpec>>, DeploymentId)>,
    now: Timestamp,
) -> Result<Change, Refusal> {
    let Some(deployment) = state.apps.deployments.get(deployment_id) else {
        return Err(Refusal::NotFound(format!(
            "deployment {deployment_id} does not exist"
        )));
    };
    if deployment.status != DeploymentStatus::Running {
        return Err(Refusal::Conflict {
            message: format!("deployment {deployment_id} has already ended"),
            deployments: Vec::new(),
        });
    }
    let canceled = Event::DeploymentCanceled(DeploymentCanceled {
        deployment_id: deployment_id.clone(),
        rolled_back: rollback.is_some(),
    });
    let Some((previous, new_id)) = rollback else {
        return Ok(Change {
            events: vec![canceled],
            deployment: None,
        });
    };
    let version = next_version(state, previous.keys(), now);
    let mut events = vec![canceled];
    let mut actions = BTreeMap::new();
    for (app_id, before) in previous {
        let stopped = deployment
            .steps
            .iter()
            .flat_map(|s| &s.actions)
            .any(|a| a.app_id == app_id && a.action == DeploymentActionKind::StopApplication);
        let (event, action) = match (before, state.apps.apps.get(&app_id)) {
            (_, None) if stopped => {
                return Err(Refusal::Invalid(format!(
                    "the deployment deleted app {app_id}; a deletion cannot be rolled back (create the app again)"
                )))
            }
            (_, None) => continue,
            (None, Some(_)) => (
                Event::AppDeleted(AppDeleted {
                    app_id: app_id.clone(),
                }),
                DeploymentActionKind::StopApplication,
            ),
            (Some(spec), Some(_)) => (
                Event::AppUpdated(Box::new(AppUpdated {
                    app_id: app_id.clone(),
                    version,
                    spec,
                })),
                DeploymentActionKind::RestartApplication,
            ),
        };
        events.push(event);
        actions.insert(app_id, action);
    }
    if actions.is_empty() {
        return Ok(Change {
            events,
            deployment: None,
        });
    }
    let levels = actions.keys().map(|id| (id.clone(), 0)).collect();
    // The canceled deployment no longer conflicts: it is canceled by the first event.
    Ok(deploy_unchecked(events, actions, levels, version, new_id))
}

fn existing<'a>(
    state: &'a State,
    app_id: &AppId,
) -> Result<&'a cairn_projections::apps::App, Refusal> {
    state
        .apps
        .apps
        .get(app_id)
        .ok_or_else(|| Refusal::NotFound(format!("app {app_id} does not exist")))
}

/// A version later than `now`'s and than every given app's current one: versions order an
/// app's definitions even if the leader's clock steps back.
fn next_version<'a>(
    state: &State,
    ids: impl IntoIterator<Item = &'a AppId>,
    now: Timestamp,
) -> Timestamp {
    let latest = ids
        .into_iter()
        .filter_map(|id| state.apps.apps.get(id))
        .map(|a| a.version.as_micros() + 1)
        .max()
        .unwrap_or(i64::MIN);
    Timestamp::from_micros(now.as_micros().max(latest))
}

/// Each changed app's step: one more than the deepest changed app it depends on. A cycle
/// among them is refused.
fn levels(
    specs: &[AppSpec],
    changed: &BTreeMap<AppId, DeploymentActionKind>,
) -> Result<BTreeMap<AppId, usize>, Refusal> {
    let deps: BTreeMap<&AppId, Vec<&AppId>> = specs
        .iter()
        .filter(|s| changed.contains_key(&s.id))
        .map(|s| {
            let within = s
                .dependencies
                .iter()
                .filter(|d| changed.contains_key(*d))
                .collect();
            (&s.id, within)
        })
        .collect();
    let mut levels: BTreeMap<AppId, usize> = BTreeMap::new();
    // Repeated relaxation: at most one pass per app settles a graph without cycles.
    for _ in 0..=deps.len() {
        let mut moved = false;
        for (id, ds) in &deps {
            let level = ds
                .iter()
                .map(|d| levels.get(*d).map_or(1, |l| l + 1))
                .max()
                .unwrap_or(0);
            if levels.get(*id) != Some(&level) {
                levels.insert((*id).clone(), level);
                moved = true;
            }
        }
        if !moved {
            return Ok(levels);
        }
    }
    let cycle: Vec<String> = deps.keys().map(|id| id.to_string()).collect();
    Err(Refusal::Invalid(format!(
        "the dependencies among {} form a cycle",
        cycle.join(", ")
    )))
}

/// Starts the deployment of `events`, first canceling (when forced) or refusing running
/// deployments that touch the same apps.
fn deploy(
    state: &State,
    events: Vec<Event>,
    actions: BTreeMap<AppId, DeploymentActionKind>,
    levels: BTreeMap<AppId, usize>,
    version: Timestamp,
    deployment_id: DeploymentId,
    force: bool,
) -> Result<Change, Refusal> {
    let conflicting: Vec<DeploymentId> = state
        .apps
        .deployments
        .iter()
        .filter(|(_, d)| d.status == DeploymentStatus::Running)
        .filter(|(_, d)| d.app_ids.iter().any(|a| actions.contains_key(a)))
        .map(|(id, _)| id.clone())
        .collect();
    if !conflicting.is_empty() && !force {
        let ids: Vec<String> = conflicting.iter().map(|d| d.to_string()).collect();
        return Err(Refusal::Conflict {
            message: format!(
                "App is locked by one or more deployments ({}); force the change to cancel them",
                ids.join(", ")
            ),
            deployments: conflicting,
        });
    }
    let mut all: Vec<Event> = conflicting
        .into_iter()
        .map(|deployment_id| {
            Event::DeploymentCanceled(DeploymentCanceled {
                deployment_id,
                rolled_back: false,
            })
        })
        .collect();
    all.extend(events);
    Ok(deploy_unchecked(
        all,
        actions,
        levels,
        version,
        deployment_id,
    ))
}

fn deploy_unchecked(
    mut events: Vec<Event>,
    actions: BTreeMap<AppId, DeploymentActionKind>,
    levels: BTreeMap<AppId, usize>,
    version: Timestamp,
    deployment_id: DeploymentId,
) -> Change {
    let depth = levels.values().max().copied().unwrap_or(0) + 1;
    let mut steps = vec![
        DeploymentStep {
            actions: Vec::new()
        };
        depth
    ];
    for (app_id, action) in &actions {
        let level = levels.get(app_id).copied().unwrap_or(0);
        steps[level].actions.push(DeploymentAction {
            action: *action,
            app_id: app_id.clone(),
        });
    }
    events.push(Event::DeploymentStarted(DeploymentStarted {
        deployment_id: deployment_id.clone(),
        version,
        app_ids: actions.keys().cloned().collect(),
        steps,
    }));
    Change {
        events,
        deployment: Some((deployment_id, version)),
    }
}
