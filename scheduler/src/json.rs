//! Reading a JSON definition (a Marathon app, a Chronos job) field by field, collecting every
//! error with its JSON path instead of stopping at the first, so that a user sees all that is
//! wrong at once and nothing is changed.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::constraints::Constraint;

/// One field's errors.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Detail {
    pub path: String,
    pub errors: Vec<String>,
}

/// Marathon's 422 body: `{"message": "Object is not valid", "details": [...]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Invalid {
    pub message: String,
    pub details: Vec<Detail>,
}

/// Collects errors by path while the definition is read.
#[derive(Default)]
pub(crate) struct Errors(BTreeMap<String, Vec<String>>);

impl Errors {
    pub(crate) fn add(&mut self, path: &str, error: impl Into<String>) {
        self.0
            .entry(path.to_owned())
            .or_default()
            .push(error.into());
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The errors as Marathon's 422 body (Chronos' 400 reuses it).
    pub(crate) fn into_invalid(self) -> Invalid {
        Invalid {
            message: "Object is not valid".into(),
            details: self
                .0
                .into_iter()
                .map(|(path, errors)| Detail { path, errors })
                .collect(),
        }
    }
}

/// A reader of one JSON object at `path`.
pub(crate) struct Object<'a> {
    pub(crate) map: Option<&'a Map<String, Value>>,
    pub(crate) path: String,
}

impl<'a> Object<'a> {
    pub(crate) fn new(value: Option<&'a Value>, path: &str, errors: &mut Errors) -> Self {
        let map = match value {
            None | Some(Value::Null) => None,
            Some(Value::Object(map)) => Some(map),
            Some(_) => {
                errors.add(or_root(path), "must be an object");
                None
            }
        };
        Self {
            map,
            path: path.to_owned(),
        }
    }

    pub(crate) fn at(&self, key: &str) -> String {
        format!("{}/{key}", self.path)
    }

    pub(crate) fn get(&self, key: &str) -> Option<&'a Value> {
        self.map?.get(key).filter(|v| !v.is_null())
    }

    pub(crate) fn string(&self, key: &str, errors: &mut Errors) -> Option<String> {
        match self.get(key)? {
            Value::String(s) => Some(s.clone()),
            _ => {
                errors.add(&self.at(key), "must be a string");
                None
            }
        }
    }

    pub(crate) fn number(
        &self,
        key: &str,
        default: f64,
        min: f64,
        max: f64,
        errors: &mut Errors,
    ) -> f64 {
        match self.get(key) {
            None => default,
            Some(Value::Number(n)) => {
                let v = n.as_f64().unwrap_or(f64::NAN);
                if v >= min && v <= max {
                    v
                } else {
                    errors.add(
                        &self.at(key),
                        format!("must be between {min} and {max}, got {v}"),
                    );
                    default
                }
            }
            Some(_) => {
                errors.add(&self.at(key), "must be a number");
                default
            }
        }
    }

    pub(crate) fn integer(&self, key: &str, default: u64, max: u64, errors: &mut Errors) -> u64 {
        match self.get(key) {
            None => default,
            Some(Value::Number(n)) => match n.as_u64() {
                Some(v) if v <= max => v,
                _ => {
                    errors.add(
                        &self.at(key),
                        format!("must be a whole number from 0 to {max}"),
                    );
                    default
                }
            },
            Some(_) => {
                errors.add(&self.at(key), "must be a whole number");
                default
            }
        }
    }

    pub(crate) fn boolean(&self, key: &str, errors: &mut Errors) -> bool {
        match self.get(key) {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                errors.add(&self.at(key), "must be true or false");
                false
            }
        }
    }

    pub(crate) fn array(&self, key: &str, errors: &mut Errors) -> &'a [Value] {
        match self.get(key) {
            None => &[],
            Some(Value::Array(items)) => items,
            Some(_) => {
                errors.add(&self.at(key), "must be an array");
                &[]
            }
        }
    }

    pub(crate) fn strings(&self, key: &str, errors: &mut Errors) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        match self.get(key) {
            None => {}
            Some(Value::Object(map)) => {
                for (k, v) in map {
                    match v {
                        Value::String(s) => {
                            out.insert(k.clone(), s.clone());
                        }
                        _ => errors.add(
                            &format!("{}/{k}", self.at(key)),
                            "must be a string (secrets are not supported)",
                        ),
                    }
                }
            }
            Some(_) => errors.add(&self.at(key), "must be an object of strings"),
        }
        out
    }
}

pub(crate) fn or_root(path: &str) -> &str {
    if path.is_empty() {
        "/"
    } else {
        path
    }
}

impl Object<'_> {
    /// `constraints`: each a list of strings that [`Constraint::parse`] accepts, after the
    /// operator is renamed by `alias` (Chronos' `EQUALS` is Marathon's `IS`).
    pub(crate) fn constraints(
        &self,
        alias: fn(&str) -> Option<&'static str>,
        errors: &mut Errors,
    ) -> Vec<Vec<String>> {
        self.array("constraints", errors)
            .iter()
            .enumerate()
            .filter_map(|(i, c)| {
                let path = self.at(&format!("constraints/{i}"));
                let parts: Option<Vec<String>> = c
                    .as_array()
                    .and_then(|a| a.iter().map(|p| p.as_str().map(str::to_owned)).collect());
                let Some(mut parts) = parts else {
                    errors.add(
                        &path,
                        "must be [field, operator] or [field, operator, value], all strings",
                    );
                    return None;
                };
                if let Some(op) = parts.get(1).and_then(|op| alias(op)) {
                    parts[1] = op.into();
                }
                Constraint::parse(&parts)
                    .map_err(|e| errors.add(&path, e))
                    .ok()
                    .map(|_| parts)
            })
            .collect()
    }
}
