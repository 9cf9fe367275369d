//! Long-running apps (Marathon semantics) and their deployments.
//!
//! Specs here are already validated: the API boundary turns a Marathon JSON body into an
//! `AppSpec` (with fractional CPUs as milli-CPUs and so on) before anything is appended.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::ids::{AppId, DeploymentId, Timestamp};
use super::tasks::{CommandSpec, ContainerSpec, HealthCheck};

/// A port the app asks for (Marathon's `portDefinitions`; `port: 0` means any).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortDefinition {
    pub port: u16,
    #[serde(default = "tcp")]
    pub protocol: String,
    #[serde(default)]
    pub name: Option<String>,
}

fn tcp() -> String {
    "tcp".to_owned()
}

/// Marathon's `upgradeStrategy`, both fractions of `instances` in `[0, 1]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpgradeStrategy {
    pub minimum_health_capacity: f64,
    pub maximum_over_capacity: f64,
}

/// Marathon's launch backoff.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Backoff {
    pub backoff_secs: f64,
    pub factor: f64,
    pub max_launch_delay_secs: f64,
}

/// A validated app definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppSpec {
    pub id: AppId,
    #[serde(default)]
    pub command: Option<CommandSpec>,
    #[serde(default)]
    pub container: Option<ContainerSpec>,
    pub cpus_milli: u64,
    pub mem_mib: u64,
    #[serde(default)]
    pub disk_mib: u64,
    pub instances: u32,
    #[serde(default)]
    pub port_definitions: Vec<PortDefinition>,
    #[serde(default)]
    pub require_ports: bool,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Marathon constraints as given: `[["hostname", "UNIQUE"], ["rack", "CLUSTER", "r1"]]`.
    #[serde(default)]
    pub constraints: Vec<Vec<String>>,
    #[serde(default)]
    pub health_checks: Vec<HealthCheck>,
    pub upgrade_strategy: UpgradeStrategy,
    pub backoff: Backoff,
    #[serde(default)]
    pub user: Option<String>,
    /// Apps deployed before this one (Marathon's `dependencies`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dependencies: Vec<AppId>,
    /// Time between SIGTERM and SIGKILL when an instance is killed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kill_grace_period_secs: Option<u64>,
}

/// An app was created at `version`.
/// Since v0.1
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppCreated {
    pub app_id: AppId,
    /// Marathon versions are timestamps.
    pub version: Timestamp,
    pub spec: AppSpec,
}

/// An app's definition changed; a deployment rolls it out.
/// Since v0.1
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppUpdated {
    pub app_id: AppId,
    pub version: Timestamp,
    pub spec: AppSpec,
}

/// An app's instance count changed (no new definition).
/// Since v0.1
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppScaled {
    pub app_id: AppId,
    pub version: Timestamp,
    pub instances: u32,
}

/// An app was deleted; its instances are being stopped.
/// Since v0.1
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppDeleted {
    pub app_id: AppId,
}

/// An app's launch delay after failures was cleared by request (Marathon's
/// `DELETE /v2/queue/{id}/delay`): its waiting instances launch at the next offers.
/// Since format 2
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppBackoffReset {
    pub app_id: AppId,
}

/// What one deployment step does to one app.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeploymentActionKind {
    StartApplication,
    ScaleApplication,
    RestartApplication,
    StopApplication,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploymentAction {
    pub action: DeploymentActionKind,
    pub app_id: AppId,
}

/// A step's actions run together; steps run in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploymentStep {
    pub actions: Vec<DeploymentAction>,
}

/// A deployment began.
/// Since v0.1
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploymentStarted {
    pub deployment_id: DeploymentId,
    pub version: Timestamp,
    pub app_ids: Vec<AppId>,
    pub steps: Vec<DeploymentStep>,
}

/// One step of a deployment completed (`step` counts from 1).
/// Since v0.1
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploymentStepFinished {
    pub deployment_id: DeploymentId,
    pub step: u32,
}

/// A deployment completed all its steps.
/// Since v0.1
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploymentFinished {
    pub deployment_id: DeploymentId,
}

/// A deployment stopped without completing.
/// Since v0.1
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploymentFailed {
    pub deployment_id: DeploymentId,
    pub reason: String,
}

/// A user canceled a deployment, with or without rolling back.
/// Since v0.1
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploymentCanceled {
    pub deployment_id: DeploymentId,
    pub rolled_back: bool,
}
