//! Marathon app definitions (the JSON of `POST /v2/apps`, `cairn app apply`) into validated
//! [`AppSpec`]s. Every error is reported at once with its JSON path, Marathon's way
//! (`{"path": "/container/docker/portMappings/0/hostPort", "errors": [...]}`), and a definition
//! with any error yields no spec. Defaults are Marathon's (`app.raml`). Read-only fields an
//! `AppInfo` carries (`version`, `tasks`, …) are ignored, as Marathon ignores them.

use cairn_log::event::{
    AppId, AppSpec, Backoff, CommandSpec, ContainerSpec, DockerNetwork, DockerParameter,
    DockerSpec, HealthCheck, HealthProtocol, PortDefinition, PortMapping, UpgradeStrategy, Volume,
};
use serde_json::{json, Map, Value};

pub use crate::json::{Detail, Invalid};
use crate::json::{Errors, Object};

/// Marathon's path ids: `/group/app`, each segment lower-case letters, digits, `-` and `.`
/// (not only dots); a relative id is taken from the root.
pub fn app_id(raw: &str) -> Result<AppId, String> {
    let trimmed = raw.trim_matches('/');
    if trimmed.is_empty() {
        return Err("must name an app, e.g. /group/app".into());
    }
    for segment in trimmed.split('/') {
        let valid = !segment.is_empty()
            && segment
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
            && !segment.chars().all(|c| c == '.')
            && !segment.starts_with('-')
            && !segment.ends_with('-');
        if !valid {
            return Err(format!(
                "{segment:?} is not a valid id segment: lower-case letters, digits, '-' and '.', not starting or ending with '-'"
            ));
        }
    }
    AppId::new(format!("/{trimmed}")).map_err(|e| e.to_string())
}

/// Reads a Marathon app definition; every error at once, or the validated spec.
pub fn parse_app(definition: &Value) -> Result<AppSpec, Invalid> {
    let mut errors = Errors::default();
    let app = Object::new(Some(definition), "", &mut errors);
    let id = match app.string("id", &mut errors) {
        Some(raw) => app_id(&raw).map_err(|e| errors.add("/id", e)).ok(),
        None => {
            errors.add("/id", "is required");
            None
        }
    };
    let cmd = app.string("cmd", &mut errors);
    let args: Vec<String> = app
        .array("args", &mut errors)
        .iter()
        .enumerate()
        .filter_map(|(i, a)| match a {
            Value::String(s) => Some(s.clone()),
            _ => {
                errors.add(&format!("/args/{i}"), "must be a string");
                None
            }
        })
        .collect();
    if cmd.is_some() && !args.is_empty() {
        errors.add("/", "cmd and args cannot both be given");
    }
    let env = app.strings("env", &mut errors);
    let user = app.string("user", &mut errors);
    let command = match (cmd, args.is_empty()) {
        (Some(value), _) => Some(CommandSpec {
            value: Some(value),
            args: Vec::new(),
            shell: true,
            env: env.clone(),
            user: user.clone(),
        }),
        (None, false) => Some(CommandSpec {
            value: None,
            args,
            shell: false,
            env: env.clone(),
            user: user.clone(),
        }),
        (None, true) => None,
    };
    let (container, bridge_ports) = container(&app, &mut errors);
    if command.is_none() && container.as_ref().and_then(|c| c.docker.as_ref()).is_none() {
        errors.add("/", "an app needs cmd, args or a Docker container");
    }
    let cpus = app.number("cpus", 1.0, 0.0, 1e6, &mut errors);
    let mem = app.number("mem", 128.0, 0.0, 1e9, &mut errors);
    let disk = app.number("disk", 0.0, 0.0, 1e12, &mut errors);
    if cpus == 0.0 && mem == 0.0 {
        errors.add("/cpus", "an app must use some CPU or memory");
    }
    let instances = app.integer("instances", 1, 1_000_000, &mut errors) as u32;
    let constraints = app.constraints(|_| None, &mut errors);
    let health_checks = health_checks(&app, &mut errors);
    let strategy = Object::new(app.get("upgradeStrategy"), "/upgradeStrategy", &mut errors);
    let upgrade_strategy = UpgradeStrategy {
        minimum_health_capacity: strategy.number(
            "minimumHealthCapacity",
            1.0,
            0.0,
            1.0,
            &mut errors,
        ),
        maximum_over_capacity: strategy.number("maximumOverCapacity", 1.0, 0.0, 1.0, &mut errors),
    };
    let backoff = Backoff {
        backoff_secs: app.number("backoffSeconds", 1.0, 0.0, 86_400.0, &mut errors),
        factor: app.number("backoffFactor", 1.15, 1.0, 100.0, &mut errors),
        max_launch_delay_secs: app.number(
            "maxLaunchDelaySeconds",
            300.0,
            0.0,
            86_400.0 * 7.0,
            &mut errors,
        ),
    };
    let port_definitions = port_definitions(&app, bridge_ports, &mut errors);
    let dependencies = app
        .array("dependencies", &mut errors)
        .iter()
        .enumerate()
        .filter_map(|(i, d)| {
            let path = format!("/dependencies/{i}");
            match d.as_str().map(app_id) {
                Some(Ok(id)) => Some(id),
                Some(Err(e)) => {
                    errors.add(&path, e);
                    None
                }
                None => {
                    errors.add(&path, "must be an app id");
                    None
                }
            }
        })
        .collect();
    for unsupported in ["fetch", "uris", "secrets", "readinessChecks", "residency"] {
        if app
            .get(unsupported)
            .is_some_and(|v| v.as_array().is_none_or(|a| !a.is_empty()))
        {
            errors.add(&format!("/{unsupported}"), "is not supported by cairn yet");
        }
    }
    let labels = app.strings("labels", &mut errors);
    let require_ports = app.boolean("requirePorts", &mut errors);
    let kill_grace = app
        .get("taskKillGracePeriodSeconds")
        .map(|_| app.integer("taskKillGracePeriodSeconds", 0, 86_400, &mut errors));
    let Some(id) = id.filter(|_| errors.is_empty()) else {
        return Err(errors.into_invalid());
    };
    Ok(AppSpec {
        id,
        command,
        container,
        cpus_milli: (cpus * 1000.0).round() as u64,
        mem_mib: mem.ceil() as u64,
        disk_mib: disk.ceil() as u64,
        instances,
        port_definitions,
        require_ports,
        env,
        labels,
        constraints,
        health_checks,
        upgrade_strategy,
        backoff,
        user,
        dependencies,
        kill_grace_period_secs: kill_grace,
    })
}

/// `container` (Docker, with Marathon 1.4's and 1.5's places for port mappings and the
/// network); also whether it maps ports on a bridge (then no port definitions by default).
fn container(app: &Object, errors: &mut Errors) -> (Option<ContainerSpec>, bool) {
    let container = Object::new(app.get("container"), "/container", errors);
    if container.map.is_none() {
        return (None, false);
    }
    match container.string("type", errors).as_deref() {
        None | Some("DOCKER") => {}
        Some("MESOS") if container.get("docker").is_none() => {}
        Some(other) => errors.add(
            &container.at("type"),
            format!("{other:?} is not DOCKER or MESOS (with an image in docker)"),
        ),
    }
    let docker = Object::new(container.get("docker"), "/container/docker", errors);
    let volumes = container
        .array("volumes", errors)
        .iter()
        .enumerate()
        .filter_map(|(i, v)| {
            let volume = Object::new(Some(v), &format!("/container/volumes/{i}"), errors);
            let container_path = volume.string("containerPath", errors);
            if container_path.is_none() {
                errors.add(&volume.at("containerPath"), "is required");
            }
            let mode = volume.string("mode", errors).unwrap_or_else(|| "RW".into());
            if mode != "RO" && mode != "RW" {
                errors.add(&volume.at("mode"), format!("{mode:?} is not RO or RW"));
            }
            Some(Volume {
                container_path: container_path?,
                host_path: volume.string("hostPath", errors),
                mode,
            })
        })
        .collect();
    let Some(_) = docker.map else {
        return (
            Some(ContainerSpec {
                docker: None,
                volumes,
            }),
            false,
        );
    };
    let image = docker.string("image", errors).unwrap_or_default();
    if image.trim().is_empty() {
        errors.add(&docker.at("image"), "is required");
    }
    // The network: Marathon 1.4's `docker.network`, or 1.5's `networks[0].mode`.
    let network = match (
        docker.string("network", errors),
        app.array("networks", errors).first(),
    ) {
        (Some(n), _) => match n.as_str() {
            "BRIDGE" => DockerNetwork::Bridge,
            "HOST" => DockerNetwork::Host,
            "NONE" => DockerNetwork::None,
            "USER" => DockerNetwork::User,
            other => {
                errors.add(
                    &docker.at("network"),
                    format!("{other:?} is not BRIDGE, HOST, NONE or USER"),
                );
                DockerNetwork::Host
            }
        },
        (None, Some(first)) => match first.get("mode").and_then(Value::as_str) {
            Some("container/bridge") => DockerNetwork::Bridge,
            Some("container") => DockerNetwork::User,
            Some("host") | None => DockerNetwork::Host,
            Some(other) => {
                errors.add(
                    "/networks/0/mode",
                    format!("{other:?} is not host, container/bridge or container"),
                );
                DockerNetwork::Host
            }
        },
        (None, None) => DockerNetwork::Host,
    };
    let (mappings, at) = if docker.get("portMappings").is_some() {
        (
            docker.array("portMappings", errors),
            docker.at("portMappings"),
        )
    } else {
        (
            container.array("portMappings", errors),
            container.at("portMappings"),
        )
    };
    let port_mappings: Vec<PortMapping> = mappings
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let mapping = Object::new(Some(m), &format!("{at}/{i}"), errors);
            let container_port = mapping.integer("containerPort", 0, 65_535, errors) as u16;
            let host_port = mapping.integer("hostPort", 0, 65_535, errors) as u16;
            let protocol = mapping
                .string("protocol", errors)
                .unwrap_or_else(|| "tcp".into());
            if !matches!(protocol.as_str(), "tcp" | "udp" | "udp,tcp" | "tcp,udp") {
                errors.add(
                    &mapping.at("protocol"),
                    format!("{protocol:?} is not tcp, udp or udp,tcp"),
                );
            }
            PortMapping {
                container_port,
                host_port,
                protocol,
                name: mapping.string("name", errors),
            }
        })
        .collect();
    if !port_mappings.is_empty()
        && network != DockerNetwork::Bridge
        && network != DockerNetwork::User
    {
        errors.add(&at, "port mappings need a BRIDGE or USER network");
    }
    let parameters = docker
        .array("parameters", errors)
        .iter()
        .enumerate()
        .filter_map(|(i, p)| {
            let parameter = Object::new(
                Some(p),
                &format!("/container/docker/parameters/{i}"),
                errors,
            );
            let key = parameter.string("key", errors);
            let value = parameter.string("value", errors);
            if key.as_deref().is_none_or(str::is_empty) {
                errors.add(&parameter.at("key"), "is required");
            }
            Some(DockerParameter {
                key: key?,
                value: value.unwrap_or_default(),
            })
        })
        .collect();
    let bridge = !port_mappings.is_empty();
    (
        Some(ContainerSpec {
            docker: Some(DockerSpec {
                image,
                network,
                port_mappings,
                parameters,
                privileged: docker.boolean("privileged", errors),
                force_pull_image: docker.boolean("forcePullImage", errors),
            }),
            volumes,
        }),
        bridge,
    )
}

fn health_checks(app: &Object, errors: &mut Errors) -> Vec<HealthCheck> {
    app.array("healthChecks", errors)
        .iter()
        .enumerate()
        .filter_map(|(i, h)| {
            let check = Object::new(Some(h), &format!("/healthChecks/{i}"), errors);
            let protocol = match check
                .string("protocol", errors)
                .as_deref()
                .unwrap_or("HTTP")
            {
                "HTTP" | "MESOS_HTTP" => HealthProtocol::Http,
                "HTTPS" | "MESOS_HTTPS" => {
                    errors.add(
                        &check.at("protocol"),
                        "HTTPS health checks are not supported by cairn yet (use HTTP or TCP)",
                    );
                    return None;
                }
                "TCP" | "MESOS_TCP" => HealthProtocol::Tcp,
                "COMMAND" => HealthProtocol::Command,
                other => {
                    errors.add(
                        &check.at("protocol"),
                        format!("{other:?} is not HTTP, HTTPS, TCP or COMMAND (or MESOS_*)"),
                    );
                    return None;
                }
            };
            // `{"value": "…"}`, or the bare string some clients send.
            let command = match check.get("command") {
                Some(Value::String(c)) => Some(c.clone()),
                other => Object::new(other, &check.at("command"), errors).string("value", errors),
            };
            if protocol == HealthProtocol::Command && command.is_none() {
                errors.add(&check.at("command"), "a COMMAND check needs command.value");
            }
            Some(HealthCheck {
                protocol,
                path: match protocol {
                    HealthProtocol::Http | HealthProtocol::Https => {
                        Some(check.string("path", errors).unwrap_or_else(|| "/".into()))
                    }
                    _ => None,
                },
                port_index: match protocol {
                    HealthProtocol::Command => None,
                    _ => Some(check.integer("portIndex", 0, 1000, errors) as u32),
                },
                command,
                grace_period_secs: check.integer("gracePeriodSeconds", 300, 86_400, errors),
                interval_secs: check.integer("intervalSeconds", 60, 86_400, errors),
                timeout_secs: check.integer("timeoutSeconds", 20, 86_400, errors),
                max_consecutive_failures: check.integer(
                    "maxConsecutiveFailures",
                    3,
                    1_000_000,
                    errors,
                ) as u32,
            })
        })
        .collect()
}

/// `portDefinitions` (or the deprecated `ports`); by default, with host networking, one port.
fn port_definitions(app: &Object, bridge: bool, errors: &mut Errors) -> Vec<PortDefinition> {
    if app.get("portDefinitions").is_some() {
        return app
            .array("portDefinitions", errors)
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let definition = Object::new(Some(d), &format!("/portDefinitions/{i}"), errors);
                let protocol = definition
                    .string("protocol", errors)
                    .unwrap_or_else(|| "tcp".into());
                if !matches!(protocol.as_str(), "tcp" | "udp" | "udp,tcp" | "tcp,udp") {
                    errors.add(
                        &definition.at("protocol"),
                        format!("{protocol:?} is not tcp, udp or udp,tcp"),
                    );
                }
                PortDefinition {
                    port: definition.integer("port", 0, 65_535, errors) as u16,
                    protocol,
                    name: definition.string("name", errors),
                }
            })
            .collect();
    }
    if app.get("ports").is_some() {
        return app
            .array("ports", errors)
            .iter()
            .enumerate()
            .filter_map(|(i, p)| match p.as_u64().filter(|p| *p <= 65_535) {
                Some(port) => Some(PortDefinition {
                    port: port as u16,
                    protocol: "tcp".into(),
                    name: None,
                }),
                None => {
                    errors.add(&format!("/ports/{i}"), "must be a port number");
                    None
                }
            })
            .collect();
    }
    if bridge {
        Vec::new()
    } else {
        vec![PortDefinition {
            port: 0,
            protocol: "tcp".into(),
            name: None,
        }]
    }
}

/// An app's definition as Marathon writes it (`GET /v2/apps/{id}` without the status fields
/// the API adds): only keys marathon-python accepts, and what [`parse_app`] reads back to the
/// same spec.
pub fn to_marathon(spec: &AppSpec) -> Map<String, Value> {
    let mut out = Map::new();
    out.insert("id".into(), json!(spec.id));
    let command = spec.command.as_ref();
    out.insert(
        "cmd".into(),
        json!(command.and_then(|c| c.shell.then(|| c.value.clone()).flatten())),
    );
    if let Some(c) = command.filter(|c| !c.shell && !c.args.is_empty()) {
        out.insert("args".into(), json!(c.args));
    }
    if let Some(user) = &spec.user {
        out.insert("user".into(), json!(user));
    }
    out.insert("env".into(), json!(spec.env));
    out.insert("instances".into(), json!(spec.instances));
    out.insert("cpus".into(), json!(spec.cpus_milli as f64 / 1000.0));
    out.insert("mem".into(), json!(spec.mem_mib as f64));
    out.insert("disk".into(), json!(spec.disk_mib as f64));
    out.insert("gpus".into(), json!(0));
    out.insert("constraints".into(), json!(spec.constraints));
    out.insert(
        "portDefinitions".into(),
        json!(spec
            .port_definitions
            .iter()
            .map(|p| {
                let mut d = json!({"port": p.port, "protocol": p.protocol});
                if let Some(name) = &p.name {
                    d["name"] = json!(name);
                }
                d
            })
            .collect::<Vec<_>>()),
    );
    out.insert("requirePorts".into(), json!(spec.require_ports));
    out.insert("backoffSeconds".into(), json!(spec.backoff.backoff_secs));
    out.insert("backoffFactor".into(), json!(spec.backoff.factor));
    out.insert(
        "maxLaunchDelaySeconds".into(),
        json!(spec.backoff.max_launch_delay_secs),
    );
    if let Some(container) = &spec.container {
        let mut c = json!({
            "type": "DOCKER",
            "volumes": container.volumes.iter().map(|v| {
                let mut volume = json!({"containerPath": v.container_path, "mode": v.mode});
                if let Some(host) = &v.host_path {
                    volume["hostPath"] = json!(host);
                }
                volume
            }).collect::<Vec<_>>(),
        });
        if let Some(d) = &container.docker {
            c["docker"] = json!({
                "image": d.image,
                "network": d.network,
                "portMappings": d.port_mappings.iter().map(|m| {
                    let mut mapping = json!({
                        "containerPort": m.container_port,
                        "hostPort": m.host_port,
                        "protocol": m.protocol,
                    });
                    if let Some(name) = &m.name {
                        mapping["name"] = json!(name);
                    }
                    mapping
                }).collect::<Vec<_>>(),
                "parameters": d.parameters.iter()
                    .map(|p| json!({"key": p.key, "value": p.value}))
                    .collect::<Vec<_>>(),
                "privileged": d.privileged,
                "forcePullImage": d.force_pull_image,
            });
        } else {
            c["type"] = json!("MESOS");
        }
        out.insert("container".into(), c);
    }
    out.insert(
        "healthChecks".into(),
        json!(spec
            .health_checks
            .iter()
            .map(|h| {
                let mut check = json!({
                    "protocol": h.protocol,
                    "gracePeriodSeconds": h.grace_period_secs,
                    "intervalSeconds": h.interval_secs,
                    "timeoutSeconds": h.timeout_secs,
                    "maxConsecutiveFailures": h.max_consecutive_failures,
                });
                if let Some(path) = &h.path {
                    check["path"] = json!(path);
                }
                if let Some(i) = h.port_index {
                    check["portIndex"] = json!(i);
                }
                if let Some(command) = &h.command {
                    check["command"] = json!({"value": command});
                }
                check
            })
            .collect::<Vec<_>>()),
    );
    out.insert("dependencies".into(), json!(spec.dependencies));
    out.insert(
        "upgradeStrategy".into(),
        json!({
            "minimumHealthCapacity": spec.upgrade_strategy.minimum_health_capacity,
            "maximumOverCapacity": spec.upgrade_strategy.maximum_over_capacity,
        }),
    );
    out.insert("labels".into(), json!(spec.labels));
    if let Some(grace) = spec.kill_grace_period_secs {
        out.insert("taskKillGracePeriodSeconds".into(), json!(grace));
    }
    out
}

/// Fields a group definition may have (`version` and `pods` as a client echoes them).
const GROUP_FIELDS: [&str; 7] = [
    "id",
    "apps",
    "groups",
    "dependencies",
    "version",
    "pods",
    "enforceRole",
];
/// Deepest nesting of groups read.
const MAX_GROUP_DEPTH: usize = 16;

/// A Marathon group definition (`POST`/`PUT /v2/groups`): its id and its apps, nested groups
/// flattened, ids made absolute (a relative one is taken under its parent group, and must
/// stay under it); every error at once with its path. `at` is the group's id when the URL
/// names it, else the body's `id` is.
pub fn parse_group(
    definition: &Value,
    at: Option<&str>,
) -> Result<(String, Vec<AppSpec>), Invalid> {
    let mut errors = Errors::default();
    let raw = at.or_else(|| definition.get("id").and_then(Value::as_str));
    let id = match raw {
        None => {
            errors.add("/id", "is required");
            "/".to_owned()
        }
        Some(raw) if raw.trim_matches('/').is_empty() => "/".to_owned(),
        Some(raw) => match app_id(&under("/", raw)) {
            Ok(id) => id.to_string(),
            Err(e) => {
                errors.add("/id", e);
                "/".to_owned()
            }
        },
    };
    let mut specs = Vec::new();
    read_group(definition, &id, "", 0, &mut specs, &mut errors);
    if errors.is_empty() {
        Ok((id, specs))
    } else {
        Err(errors.into_invalid())
    }
}

/// `raw` (absolute, or relative to `parent`) as an absolute path.
fn under(parent: &str, raw: &str) -> String {
    if raw.starts_with('/') {
        raw.to_owned()
    } else {
        format!("{}/{raw}", parent.trim_end_matches('/'))
    }
}

/// The absolute id of a member (`raw`, at `path`) of group `group`, if it is one.
fn member(group: &str, raw: Option<&str>, path: &str, errors: &mut Errors) -> Option<String> {
    let Some(raw) = raw else {
        errors.add(&format!("{path}/id"), "is required");
        return None;
    };
    let full = match app_id(&under(group, raw)) {
        Ok(id) => id.to_string(),
        Err(e) => {
            errors.add(&format!("{path}/id"), e);
            return None;
        }
    };
    let within = full.starts_with(&format!("{}/", group.trim_end_matches('/')));
    if !within {
        errors.add(
            &format!("{path}/id"),
            format!("{full} is not within the group {group}"),
        );
        return None;
    }
    Some(full)
}

fn read_group(
    group: &Value,
    id: &str,
    path: &str,
    depth: usize,
    specs: &mut Vec<AppSpec>,
    errors: &mut Errors,
) {
    let Some(map) = group.as_object() else {
        errors.add(
            if path.is_empty() { "/" } else { path },
            "must be a group object",
        );
        return;
    };
    for key in map.keys().filter(|k| !GROUP_FIELDS.contains(&k.as_str())) {
        errors.add(&format!("{path}/{key}"), "is not a field of a group");
    }
    if map
        .get("dependencies")
        .and_then(Value::as_array)
        .is_some_and(|d| !d.is_empty())
    {
        errors.add(
            &format!("{path}/dependencies"),
            "groups do not depend on groups in cairn: give the apps their dependencies",
        );
    }
    let items = |key: &str, errors: &mut Errors| -> Vec<Value> {
        match map.get(key) {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items.clone(),
            Some(_) => {
                errors.add(&format!("{path}/{key}"), "must be an array");
                Vec::new()
            }
        }
    };
    for (i, mut app) in items("apps", errors).into_iter().enumerate() {
        let at = format!("{path}/apps/{i}");
        let raw = app.get("id").and_then(Value::as_str).map(str::to_owned);
        let Some(full) = member(id, raw.as_deref(), &at, errors) else {
            continue;
        };
        if let Some(app) = app.as_object_mut() {
            app.insert("id".into(), json!(full));
        }
        match parse_app(&app) {
            Ok(spec) => specs.push(spec),
            Err(invalid) => {
                for detail in invalid.details {
                    for e in detail.errors {
                        errors.add(&format!("{at}{}", detail.path), e);
                    }
                }
            }
        }
    }
    for (i, child) in items("groups", errors).into_iter().enumerate() {
        let at = format!("{path}/groups/{i}");
        if depth + 1 >= MAX_GROUP_DEPTH {
            errors.add(&at, format!("groups nest at most {MAX_GROUP_DEPTH} deep"));
            continue;
        }
        let raw = child.get("id").and_then(Value::as_str);
        if let Some(full) = member(id, raw, &at, errors) {
            read_group(&child, &full, &at, depth + 1, specs, errors);
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_nginx_example_is_accepted_as_it_is() {
        let text = include_str!("../../tests/fixtures/examples/nginx-app.json");
        let spec = parse_app(&serde_json::from_str(text).unwrap()).unwrap();
        assert_eq!(spec.id.as_str(), "/nginx");
        assert_eq!(
            (spec.cpus_milli, spec.mem_mib, spec.instances),
            (200, 32, 1)
        );
        let docker = spec.container.unwrap().docker.unwrap();
        assert_eq!(docker.image, "million12/nginx");
        assert_eq!(docker.network, DockerNetwork::Bridge);
        assert_eq!(docker.port_mappings[0].container_port, 80);
        assert_eq!(docker.port_mappings[0].host_port, 0);
        assert_eq!(docker.parameters[0].key, "volume-driver");
        assert_eq!(docker.parameters[1].value, "nginx-data:/data/www");
        assert!(
            spec.port_definitions.is_empty(),
            "a bridge maps its ports itself"
        );
        assert_eq!(spec.upgrade_strategy.minimum_health_capacity, 1.0);
        assert_eq!(spec.backoff.factor, 1.15);
    }

    #[test]
    fn an_app_written_as_marathon_writes_it_reads_back_the_same() {
        let nginx: Value =
            serde_json::from_str(include_str!("../../tests/fixtures/examples/nginx-app.json"))
                .unwrap();
        let rich = json!({
            "id": "/web/api", "args": ["serve", "--port", "$PORT0"], "user": "www",
            "env": {"A": "1"}, "instances": 3, "cpus": 0.25, "mem": 100, "disk": 10,
            "constraints": [["hostname", "UNIQUE"], ["rack", "GROUP_BY", "2"]],
            "portDefinitions": [{"port": 10001, "protocol": "tcp", "name": "http"}],
            "requirePorts": true, "backoffSeconds": 2, "backoffFactor": 1.5,
            "maxLaunchDelaySeconds": 60, "dependencies": ["/db"],
            "container": {"type": "MESOS", "volumes": [{"containerPath": "/data", "hostPath": "/srv", "mode": "RO"}]},
            "healthChecks": [
                {"protocol": "HTTP", "path": "/health", "portIndex": 0, "gracePeriodSeconds": 5},
                {"protocol": "COMMAND", "command": "true"}
            ],
            "upgradeStrategy": {"minimumHealthCapacity": 0.5, "maximumOverCapacity": 0.2},
            "labels": {"team": "a"}, "taskKillGracePeriodSeconds": 3
        });
        for definition in [nginx, rich] {
            let spec = parse_app(&definition).unwrap();
            let written = Value::Object(to_marathon(&spec));
            assert_eq!(parse_app(&written).unwrap(), spec, "{written:#}");
        }
    }

    #[test]
    fn defaults_are_marathons() {
        let spec =
            parse_app(&json!({"id": "web", "cmd": "python3 -m http.server $PORT0"})).unwrap();
        assert_eq!(spec.id.as_str(), "/web");
        assert_eq!(
            (spec.cpus_milli, spec.mem_mib, spec.disk_mib, spec.instances),
            (1000, 128, 0, 1)
        );
        assert_eq!(
            spec.port_definitions.len(),
            1,
            "one port with host networking"
        );
        assert!(spec.command.unwrap().shell);
        assert_eq!(spec.backoff.max_launch_delay_secs, 300.0);
    }

    #[test]
    fn every_error_is_reported_at_once_with_its_path() {
        let err = parse_app(&json!({
            "id": "/Bad_Id",
            "cpus": -1,
            "instances": "three",
            "container": {"docker": {"image": "x", "network": "BRIDGE",
                "portMappings": [{"containerPort": 80, "hostPort": 70000}]}},
            "constraints": [["hostname", "UNIQUE"], ["rack", "NEAR"], ["zone", "MAX_PER"]],
            "healthChecks": [{"protocol": "COMMAND"}],
            "upgradeStrategy": {"minimumHealthCapacity": 2},
            "env": {"A": 1},
            "fetch": [{"uri": "http://x"}]
        }))
        .unwrap_err();
        let paths: Vec<&str> = err.details.iter().map(|d| d.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "/constraints/1",
                "/constraints/2",
                "/container/docker/portMappings/0/hostPort",
                "/cpus",
                "/env/A",
                "/fetch",
                "/healthChecks/0/command",
                "/id",
                "/instances",
                "/upgradeStrategy/minimumHealthCapacity",
            ]
        );
        assert_eq!(err.message, "Object is not valid");
    }

    #[test]
    fn https_health_checks_are_refused_until_the_agent_speaks_tls() {
        let err = parse_app(&json!({"id": "/x", "cmd": "a",
            "healthChecks": [{"protocol": "HTTPS"}]}))
        .unwrap_err();
        assert_eq!(err.details[0].path, "/healthChecks/0/protocol");
        assert!(err.details[0].errors[0].contains("not supported"));
    }

    #[test]
    fn an_app_needs_something_to_run() {
        let err = parse_app(&json!({"id": "/x", "cmd": "a", "args": ["b"]})).unwrap_err();
        assert_eq!(err.details[0].path, "/");
        let err = parse_app(&json!({"id": "/x"})).unwrap_err();
        assert!(err.details[0].errors[0].contains("cmd, args or a Docker container"));
        assert!(parse_app(&json!("nope")).is_err());
    }

    #[test]
    fn a_group_flattens_to_absolute_apps_with_every_error_at_its_path() {
        let group = json!({
            "id": "/prod",
            "apps": [{"id": "web", "cmd": "serve", "mem": 32}],
            "groups": [{"id": "db", "apps": [{"id": "/prod/db/pg", "cmd": "pg", "mem": 64}]}]
        });
        let (id, specs) = parse_group(&group, None).unwrap();
        assert_eq!(id, "/prod");
        let ids: Vec<&str> = specs.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["/prod/web", "/prod/db/pg"]);
        // The URL names the group; the body's id then does not matter.
        let (id, _) = parse_group(&json!({"apps": []}), Some("/stage/")).unwrap();
        assert_eq!(id, "/stage");

        let bad = json!({
            "id": "/prod",
            "apps": [{"id": "/elsewhere/web", "cmd": "serve"}, {"id": "ok", "mem": -1, "cmd": "x"}],
            "groups": [{"apps": []}, {"id": "sub", "apps": "none"}],
            "dependencies": ["/other"],
            "color": "red"
        });
        let invalid = parse_group(&bad, None).unwrap_err();
        let paths: Vec<&str> = invalid.details.iter().map(|d| d.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "/apps/0/id",
                "/apps/1/mem",
                "/color",
                "/dependencies",
                "/groups/0/id",
                "/groups/1/apps"
            ],
            "{invalid:?}"
        );
    }
}
