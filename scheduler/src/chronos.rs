//! Chronos job definitions (the JSON of `POST /scheduler/iso8601`, `cairn job apply`) into
//! validated [`JobSpec`]s. Every error is reported at once with its JSON path, and a
//! definition with any error yields no spec. Defaults are Chronos' (`retries` 2, `cpus` 0.1,
//! `mem` 128, `disk` 256, `epsilon` PT60S, `shell` true). The counters Chronos writes back
//! (`successCount`, `lastError`, …) and fields cairn has no use for are ignored, as Chronos
//! ignores them, so a job read from the API can be sent back as it is.
//!
//! What depends on other jobs or on the time (unknown parents, cycles, a finite schedule that
//! has already ended) is checked when the job is put (`jobs::put`).

use std::collections::BTreeMap;

use cairn_log::event::{
    Concurrency, ContainerSpec, DockerNetwork, DockerParameter, DockerSpec, JobName, JobSpec,
    Volume,
};
use cairn_projections::schedule::{Period, Schedule};
use serde_json::Value;

use crate::json::{Errors, Invalid, Object};

/// Chronos' default epsilon: how late a run may still start.
pub const DEFAULT_EPSILON_SECS: u64 = 60;
/// Most retries a job may ask for.
pub const MAX_RETRIES: u64 = 100;

/// Chronos' job names: letters, digits, spaces, `#`, `_`, `-` and `.`.
pub fn job_name(raw: &str) -> Result<JobName, String> {
    let valid = !raw.trim().is_empty()
        && raw
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, ' ' | '#' | '_' | '-' | '.'));
    if !valid {
        return Err(format!(
            "{raw:?} is not a job name: letters, digits, spaces, '#', '_', '-' and '.'"
        ));
    }
    JobName::new(raw).map_err(|e| e.to_string())
}

/// Reads a Chronos job definition; every error at once, or the validated spec.
pub fn parse_job(definition: &Value) -> Result<JobSpec, Invalid> {
    let mut errors = Errors::default();
    let job = Object::new(Some(definition), "", &mut errors);
    let name = match job.string("name", &mut errors) {
        Some(raw) => job_name(&raw).map_err(|e| errors.add("/name", e)).ok(),
        None => {
            errors.add("/name", "is required");
            None
        }
    };
    let container = container(&job, &mut errors);
    let command = job.string("command", &mut errors);
    if command.is_none() && container.is_none() {
        errors.add("/command", "is required (or a Docker container to run)");
    }
    let shell = job.get("shell").is_none() || job.boolean("shell", &mut errors);
    let arguments = strings(&job, "arguments", &mut errors);

    let schedule = job
        .string("schedule", &mut errors)
        .filter(|s| !s.is_empty());
    let zone = job
        .string("scheduleTimeZone", &mut errors)
        .filter(|z| !z.is_empty());
    let parents: Vec<JobName> = strings(&job, "parents", &mut errors)
        .into_iter()
        .enumerate()
        .filter_map(|(i, p)| {
            job_name(&p)
                .map_err(|e| errors.add(&format!("/parents/{i}"), e))
                .ok()
        })
        .collect();
    match (&schedule, parents.is_empty()) {
        (Some(text), true) => {
            if let Err(e) = Schedule::parse(text, zone.as_deref()) {
                let path = if e.contains("time zone") {
                    "/scheduleTimeZone"
                } else {
                    "/schedule"
                };
                errors.add(path, e);
            }
        }
        (None, false) => {}
        (Some(_), false) => errors.add(
            "/parents",
            "a job runs on a schedule or after its parents, not both",
        ),
        (None, true) => errors.add("/schedule", "is required (or parents to run after)"),
    }
    let epsilon_secs = match job.string("epsilon", &mut errors) {
        None => DEFAULT_EPSILON_SECS,
        Some(text) => match Period::parse(&text).map(|p| p.exact_micros()) {
            Ok(Some(micros)) => (micros / 1_000_000) as u64,
            Ok(None) => {
                errors.add(
                    "/epsilon",
                    "must be hours, minutes or seconds (e.g. PT30M), not days or months",
                );
                DEFAULT_EPSILON_SECS
            }
            Err(e) => {
                errors.add("/epsilon", e);
                DEFAULT_EPSILON_SECS
            }
        },
    };
    let retries = job.integer("retries", 2, MAX_RETRIES, &mut errors) as u32;
    let cpus = job.number("cpus", 0.1, 0.0, 1e6, &mut errors);
    let mem = job.number("mem", 128.0, 0.0, 1e9, &mut errors);
    let disk = job.number("disk", 256.0, 0.0, 1e12, &mut errors);
    let concurrency = concurrency(&job, &mut errors);
    let mut env = job.strings("env", &mut errors);
    for (i, var) in job
        .array("environmentVariables", &mut errors)
        .iter()
        .enumerate()
    {
        let path = format!("/environmentVariables/{i}");
        let var = Object::new(Some(var), &path, &mut errors);
        match (
            var.string("name", &mut errors),
            var.string("value", &mut errors),
        ) {
            (Some(name), Some(value)) if !name.is_empty() => {
                env.insert(name, value);
            }
            _ => errors.add(&path, "must be {\"name\": …, \"value\": …}"),
        }
    }
    let constraints = job.constraints(equals_is, &mut errors);
    for unsupported in ["uris", "fetch"] {
        if job
            .get(unsupported)
            .is_some_and(|v| v.as_array().is_none_or(|a| !a.is_empty()))
        {
            errors.add(&format!("/{unsupported}"), "is not supported by cairn yet");
        }
    }
    let owner = job.string("owner", &mut errors).filter(|s| !s.is_empty());
    let owner_name = job
        .string("ownerName", &mut errors)
        .filter(|s| !s.is_empty());
    let description = job
        .string("description", &mut errors)
        .filter(|s| !s.is_empty());
    let run_as_user = job
        .string("runAsUser", &mut errors)
        .filter(|s| !s.is_empty());
    let disabled = job.boolean("disabled", &mut errors);
    let Some(name) = name.filter(|_| errors.is_empty()) else {
        return Err(errors.into_invalid());
    };
    Ok(JobSpec {
        name,
        command: command.unwrap_or_default(),
        shell,
        arguments,
        schedule,
        schedule_time_zone: zone,
        epsilon_secs,
        parents,
        owner,
        owner_name,
        description,
        cpus_milli: (cpus * 1000.0).round() as u64,
        mem_mib: mem.ceil() as u64,
        disk_mib: disk.ceil() as u64,
        retries,
        disabled,
        concurrent: concurrency == Concurrency::Allow,
        // Chronos' field says all but `Queue`.
        concurrency: (concurrency == Concurrency::Queue).then_some(Concurrency::Queue),
        container,
        env,
        constraints,
        run_as_user,
    })
}

/// A list of strings at `key`.
fn strings(job: &Object, key: &str, errors: &mut Errors) -> Vec<String> {
    job.array(key, errors)
        .iter()
        .enumerate()
        .filter_map(|(i, v)| match v {
            Value::String(s) => Some(s.clone()),
            _ => {
                errors.add(&format!("/{key}/{i}"), "must be a string");
                None
            }
        })
        .collect()
}

/// Chronos' `concurrent` (true: allow overlapping runs) or cairn's `concurrencyPolicy`
/// (`SKIP`, `QUEUE`, `ALLOW`).
fn concurrency(job: &Object, errors: &mut Errors) -> Concurrency {
    let concurrent = job
        .get("concurrent")
        .map(|_| job.boolean("concurrent", errors));
    let policy = match job.string("concurrencyPolicy", errors).as_deref() {
        None => None,
        Some("SKIP") => Some(Concurrency::Skip),
        Some("QUEUE") => Some(Concurrency::Queue),
        Some("ALLOW") => Some(Concurrency::Allow),
        Some(other) => {
            errors.add(
                "/concurrencyPolicy",
                format!("{other:?} is not one of SKIP, QUEUE, ALLOW"),
            );
            None
        }
    };
    match (concurrent, policy) {
        (Some(true), Some(p)) if p != Concurrency::Allow => {
            errors.add(
                "/concurrencyPolicy",
                "contradicts concurrent: true (which allows overlapping runs)",
            );
            p
        }
        (_, Some(p)) => p,
        (Some(true), None) => Concurrency::Allow,
        (_, None) => Concurrency::Skip,
    }
}

/// Chronos' container: `{"type": "DOCKER", "image", "network", "volumes", "parameters",
/// "forcePullImage"}` (the image sits on the container itself, unlike Marathon's).
fn container(job: &Object, errors: &mut Errors) -> Option<ContainerSpec> {
    let c = Object::new(job.get("container"), "/container", errors);
    c.map?;
    match c.string("type", errors).as_deref() {
        None | Some("DOCKER" | "docker") => {}
        Some(other) => errors.add(
            "/container/type",
            format!("{other:?} is not supported: only DOCKER"),
        ),
    }
    let image = c.string("image", errors).filter(|i| !i.is_empty());
    if image.is_none() {
        errors.add("/container/image", "is required");
    }
    let network = match c.string("network", errors).as_deref() {
        None | Some("HOST") => DockerNetwork::Host,
        Some("BRIDGE") => DockerNetwork::Bridge,
        Some("NONE") => DockerNetwork::None,
        Some("USER") => DockerNetwork::User,
        Some(other) => {
            errors.add(
                "/container/network",
                format!("{other:?} is not one of HOST, BRIDGE, NONE, USER"),
            );
            DockerNetwork::Host
        }
    };
    let mut parameters = Vec::new();
    for (i, p) in c.array("parameters", errors).iter().enumerate() {
        let path = format!("/container/parameters/{i}");
        let p = Object::new(Some(p), &path, errors);
        match (p.string("key", errors), p.string("value", errors)) {
            (Some(key), Some(value)) if !key.is_empty() => {
                parameters.push(DockerParameter { key, value })
            }
            _ => errors.add(&path, "must be {\"key\": …, \"value\": …}"),
        }
    }
    let mut volumes = Vec::new();
    for (i, v) in c.array("volumes", errors).iter().enumerate() {
        let path = format!("/container/volumes/{i}");
        let v = Object::new(Some(v), &path, errors);
        let container_path = v.string("containerPath", errors);
        let mode = v.string("mode", errors).unwrap_or_else(|| "RW".into());
        if !matches!(mode.as_str(), "RO" | "RW") {
            errors.add(&format!("{path}/mode"), "must be RO or RW");
        }
        match container_path {
            Some(container_path) if container_path.starts_with('/') => volumes.push(Volume {
                container_path,
                host_path: v.string("hostPath", errors),
                mode,
            }),
            _ => errors.add(&format!("{path}/containerPath"), "must be an absolute path"),
        }
    }
    let force_pull_image = c.boolean("forcePullImage", errors);
    Some(ContainerSpec {
        docker: Some(DockerSpec {
            image: image.unwrap_or_default(),
            network,
            port_mappings: Vec::new(),
            parameters,
            privileged: false,
            force_pull_image,
        }),
        volumes,
    })
}

/// Chronos' constraint operators beyond Marathon's: `EQUALS` is kept as `IS`.
fn equals_is(op: &str) -> Option<&'static str> {
    (op == "EQUALS").then_some("IS")
}

/// A job as Chronos writes it in `GET /scheduler/jobs`, from its spec (counters are added by
/// the API from the projections).
pub fn to_chronos(spec: &JobSpec) -> BTreeMap<&'static str, Value> {
    let mut out = BTreeMap::new();
    out.insert("name", Value::from(spec.name.as_str()));
    out.insert("command", Value::from(spec.command.as_str()));
    out.insert("shell", Value::from(spec.shell));
    out.insert("arguments", Value::from(spec.arguments.clone()));
    out.insert(
        "schedule",
        Value::from(spec.schedule.clone().unwrap_or_default()),
    );
    out.insert(
        "scheduleTimeZone",
        Value::from(spec.schedule_time_zone.clone().unwrap_or_default()),
    );
    out.insert(
        "parents",
        Value::from(
            spec.parents
                .iter()
                .map(|p| p.as_str().to_owned())
                .collect::<Vec<_>>(),
        ),
    );
    out.insert("epsilon", Value::from(format!("PT{}S", spec.epsilon_secs)));
    out.insert("retries", Value::from(spec.retries));
    out.insert("cpus", Value::from(spec.cpus_milli as f64 / 1000.0));
    out.insert("mem", Value::from(spec.mem_mib as f64));
    out.insert("disk", Value::from(spec.disk_mib as f64));
    out.insert("disabled", Value::from(spec.disabled));
    out.insert(
        "concurrent",
        Value::from(spec.concurrency() == Concurrency::Allow),
    );
    out.insert("owner", Value::from(spec.owner.clone().unwrap_or_default()));
    out.insert(
        "ownerName",
        Value::from(spec.owner_name.clone().unwrap_or_default()),
    );
    out.insert(
        "description",
        Value::from(spec.description.clone().unwrap_or_default()),
    );
    out.insert(
        "environmentVariables",
        Value::from(
            spec.env
                .iter()
                .map(|(k, v)| serde_json::json!({"name": k, "value": v}))
                .collect::<Vec<_>>(),
        ),
    );
    out.insert(
        "constraints",
        Value::from(
            spec.constraints
                .iter()
                .map(|c| Value::from(c.clone()))
                .collect::<Vec<_>>(),
        ),
    );
    if let Some(user) = &spec.run_as_user {
        out.insert("runAsUser", Value::from(user.as_str()));
    }
    if let Some(docker) = spec.container.as_ref().and_then(|c| c.docker.as_ref()) {
        out.insert(
            "container",
            serde_json::json!({
                "type": "DOCKER",
                "image": docker.image,
                "network": docker.network,
                "forcePullImage": docker.force_pull_image,
                "parameters": docker.parameters.iter()
                    .map(|p| serde_json::json!({"key": p.key, "value": p.value}))
                    .collect::<Vec<_>>(),
            }),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example(name: &str) -> Value {
        let path = format!(
            "{}/../tests/fixtures/examples/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    #[test]
    fn the_example_jobs_are_accepted_as_they_are() {
        let hourly = parse_job(&example("hourly-job.json")).unwrap();
        assert_eq!(hourly.name.as_str(), "hourly-report");
        assert_eq!(
            hourly.schedule.as_deref(),
            Some("R/2015-10-01T00:00:00Z/PT1H")
        );
        assert_eq!(hourly.epsilon_secs, 1800);
        assert_eq!((hourly.cpus_milli, hourly.mem_mib), (100, 32));
        assert_eq!(hourly.retries, 2);
        assert_eq!(hourly.concurrency(), Concurrency::Skip);
        assert!(hourly.shell);
        let dependent = parse_job(&example("dependent-job.json")).unwrap();
        assert_eq!(dependent.parents, [JobName::new("hourly-report").unwrap()]);
        assert_eq!(dependent.schedule, None);
        assert_eq!(dependent.epsilon_secs, DEFAULT_EPSILON_SECS);
    }

    #[test]
    fn what_chronos_writes_back_is_read_again_unchanged() {
        let spec = parse_job(&serde_json::json!({
            "name": "etl", "command": "run", "schedule": "R5/2030-01-01T00:00:00Z/P1M",
            "scheduleTimeZone": "Europe/Berlin", "epsilon": "PT5M", "concurrent": true,
            "environmentVariables": [{"name": "A", "value": "1"}],
            "constraints": [["rack", "EQUALS", "r1"]],
            "container": {"type": "DOCKER", "image": "busybox", "network": "BRIDGE"},
            "successCount": 3, "lastError": "", "async": false, "softError": false
        }))
        .unwrap();
        assert_eq!(spec.concurrency(), Concurrency::Allow);
        assert_eq!(spec.constraints, [["rack", "IS", "r1"]]);
        let written = Value::Object(
            to_chronos(&spec)
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
        );
        let again = parse_job(&written).unwrap();
        assert_eq!(again, spec);
    }

    #[test]
    fn every_error_is_named_by_its_path_at_once() {
        let invalid = parse_job(&serde_json::json!({
            "name": "bad/name", "schedule": "R/2030-01-01T00:00:00Z/PT1X",
            "epsilon": "P1D", "retries": -1, "cpus": "one", "concurrencyPolicy": "SOMETIMES",
            "container": {"type": "MESOS"}, "environmentVariables": [{"name": "A"}],
            "constraints": [["rack", "NEAR", "x"]]
        }))
        .unwrap_err();
        let paths: Vec<&str> = invalid.details.iter().map(|d| d.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "/concurrencyPolicy",
                "/constraints/0",
                "/container/image",
                "/container/type",
                "/cpus",
                "/environmentVariables/0",
                "/epsilon",
                "/name",
                "/retries",
                "/schedule"
            ]
        );
        let both = parse_job(&serde_json::json!({
            "name": "x", "command": "true", "schedule": "R/2030-01-01T00:00:00Z/PT1H",
            "parents": ["y"]
        }))
        .unwrap_err();
        assert_eq!(both.details[0].path, "/parents");
        let neither = parse_job(&serde_json::json!({"name": "x", "command": "true"})).unwrap_err();
        assert_eq!(neither.details[0].path, "/schedule");
    }
}
