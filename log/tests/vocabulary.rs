//! The shape of the vocabulary as packed payloads name it: each enum's variants and each
//! struct's fields, by position. From format 5 a stored record names a variant or a field by
//! its position (`cairn_log::indexed`), so anything but an addition at the end of an enum or
//! a struct would misread every record already stored. The golden logs pin the event kinds
//! they hold; this pins every type the vocabulary reaches, variants no golden record uses
//! included.
//!
//! `golden/vocabulary.json` is the committed shape. After an addition at the end (a new
//! variant, a new `#[serde(default)]` field), rewrite it deliberately with
//! `CAIRN_UPDATE_GOLDEN=1 cargo test -p cairn-log --test vocabulary`.

use std::path::PathBuf;

use cairn_log::event::{
    Concurrency, DeploymentActionKind, DockerNetwork, Entry, Event, HealthProtocol, Principal,
    RunCause, RunOutcome, StatusSource, TaskOwner, TaskState,
};
use serde::de::DeserializeOwned;
use serde_reflection::{ContainerFormat, Registry, Tracer, TracerConfig};

fn shape() -> Registry {
    // Not human-readable, as the packed encoding is (a timestamp is its microseconds).
    let mut tracer = Tracer::new(TracerConfig::default().is_human_readable(false));
    // Only the type traced is walked through all its variants, so every enum of the
    // vocabulary is named here; `registry` names any left incomplete (a new enum to add).
    fn trace<T: DeserializeOwned>(tracer: &mut Tracer) {
        let name = std::any::type_name::<T>();
        tracer
            .trace_simple_type::<T>()
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    trace::<Event>(&mut tracer);
    trace::<Principal>(&mut tracer);
    trace::<TaskState>(&mut tracer);
    trace::<StatusSource>(&mut tracer);
    trace::<TaskOwner>(&mut tracer);
    trace::<DockerNetwork>(&mut tracer);
    trace::<HealthProtocol>(&mut tracer);
    trace::<DeploymentActionKind>(&mut tracer);
    trace::<Concurrency>(&mut tracer);
    trace::<RunCause>(&mut tracer);
    trace::<RunOutcome>(&mut tracer);
    trace::<Entry>(&mut tracer);
    tracer
        .registry()
        .expect("every enum of the vocabulary traced whole")
}

/// Where `now` departs from `then` other than by additions at the end, one line each.
fn moved(then: &Registry, now: &Registry) -> Vec<String> {
    let mut out = Vec::new();
    for (name, was) in then {
        let Some(is) = now.get(name) else {
            out.push(format!("{name}: gone"));
            continue;
        };
        match (was, is) {
            (ContainerFormat::Struct(a), ContainerFormat::Struct(b)) => {
                for (i, field) in a.iter().enumerate() {
                    if b.get(i) != Some(field) {
                        out.push(format!("{name}: field {i} was `{}`", field.name));
                    }
                }
            }
            (ContainerFormat::Enum(a), ContainerFormat::Enum(b)) => {
                for (i, variant) in a {
                    if b.get(i) != Some(variant) {
                        out.push(format!("{name}: variant {i} was `{}`", variant.name));
                    }
                }
            }
            (a, b) if a != b => out.push(format!("{name}: was {a:?}, is {b:?}")),
            _ => {}
        }
    }
    out
}

#[test]
fn the_vocabulary_only_grows_at_the_end() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/vocabulary.json");
    let now = shape();
    if std::env::var_os("CAIRN_UPDATE_GOLDEN").is_some() {
        let text = serde_json::to_string_pretty(&now).unwrap() + "\n";
        std::fs::write(&path, text).unwrap();
    }
    let then: Registry = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let moved = moved(&then, &now);
    assert!(
        moved.is_empty(),
        "the vocabulary changed other than at the end, so stored records would be misread:\n{}",
        moved.join("\n")
    );
    assert!(
        then == now,
        "the vocabulary grew at the end: rewrite {} with CAIRN_UPDATE_GOLDEN=1",
        path.display()
    );
}

/// The check itself: a field moved, a variant inserted before another, a type gone are each
/// found; an addition at the end is not a move.
#[test]
fn moves_are_found_and_additions_at_the_end_are_not() {
    let then = shape();
    let mut grown = then.clone();
    if let Some(ContainerFormat::Enum(variants)) = grown.get_mut("TaskState") {
        let last = variants.values().next_back().cloned().unwrap();
        variants.insert(variants.len() as u32, last);
    }
    assert!(moved(&then, &grown).is_empty());

    let mut swapped = then.clone();
    let Some(ContainerFormat::Struct(fields)) = swapped.get_mut("TaskStatusUpdated") else {
        panic!("TaskStatusUpdated is a struct");
    };
    fields.swap(0, 1);
    assert_eq!(
        moved(&then, &swapped).len(),
        2,
        "{:?}",
        moved(&then, &swapped)
    );

    let mut inserted = then.clone();
    let Some(ContainerFormat::Enum(variants)) = inserted.get_mut("Principal") else {
        panic!("Principal is an enum");
    };
    let shifted: Vec<_> = variants.values().cloned().collect();
    for (i, v) in shifted.into_iter().enumerate() {
        variants.insert(i as u32 + 1, v);
    }
    assert!(!moved(&then, &inserted).is_empty());

    let mut gone = then.clone();
    gone.remove("StatusSource");
    assert_eq!(moved(&then, &gone), ["StatusSource: gone"]);
}
