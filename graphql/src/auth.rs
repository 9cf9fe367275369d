//! API tokens: who may read, operate or administer the cluster through its APIs.
//!
//! A master configured with tokens (`[[tokens]]` in its configuration: a name, a role and the
//! BLAKE3 hash of the secret, never the secret) answers its APIs only to a caller presenting
//! one; without tokens it serves everyone, as on a developer's loopback. A token is
//! presented as `Authorization: Bearer <secret>`, as DC/OS's `Authorization: token=<secret>`
//! (marathon-python's `auth_token`), or as HTTP Basic with the secret as the password (what
//! Marathon, Chronos and Mesos clients send when given a user and password; the user name is
//! not checked, the token's own name is the one audited). A websocket presents it in its
//! `connection_init` payload as `authorization`, since browsers cannot set headers there.
//!
//! Roles are ordered: `read` (queries, subscriptions, every GET) < `operate` (mutations and
//! the compatible APIs' writes, a framework's scheduler calls) < `admin` (appending raw
//! records, changing membership). What stays open: the probes (`/livez`, `/readyz`, `/ping`,
//! `/health`, `/version`), the web UI's files (the page must load to ask for a token), the
//! GraphQL console page, and the routes masters and agents call (`/raft/*`,
//! `/v1/cluster/status`, `/v1/agents/*`), which are theirs, not the API's.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde::Deserialize;

/// What a token may do; each role may do what the ones before it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, async_graphql::Enum)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Read,
    Operate,
    Admin,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Operate => "operate",
            Role::Admin => "admin",
        }
    }
}

/// One `[[tokens]]` entry of a master's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TokenSpec {
    /// Who holds it: the name the audit trail records for its writes.
    pub name: String,
    pub role: Role,
    /// The BLAKE3 hash of the secret, 64 hex digits (`cairn token new` prints it).
    pub secret_blake3: String,
}

/// The authenticated caller of a request (a request extension, and GraphQL context data).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub name: String,
    pub role: Role,
}

/// Who the API takes the caller to be (`viewer` in GraphQL): the web UI hides the actions a
/// `read` token may not take.
#[derive(Debug, Clone, async_graphql::SimpleObject)]
pub struct Viewer {
    /// The token's name; on a cluster without tokens, the name the caller claims.
    pub name: String,
    pub role: Role,
    /// Whether this cluster's APIs ask for a token.
    pub token_required: bool,
}

impl Viewer {
    pub(crate) fn of(caller: &Caller, token_required: bool) -> Self {
        Viewer {
            name: caller.name.clone(),
            role: caller.role,
            token_required,
        }
    }
}

/// The tokens a master accepts, by the hash of their secret.
#[derive(Debug, Clone, Default)]
pub struct Tokens(Arc<BTreeMap<[u8; 32], Caller>>);

/// Longest token name: it becomes the audited principal.
const MAX_NAME: usize = 64;
/// Prefix of every secret `cairn token new` makes, so that secret scanners can find leaks.
const SECRET_PREFIX: &str = "cairn-";

impl Tokens {
    /// The table of `specs`, or an error naming the first wrong entry.
    pub fn new(specs: &[TokenSpec]) -> Result<Self, String> {
        let mut table = BTreeMap::new();
        let mut names = std::collections::BTreeSet::new();
        for (i, spec) in specs.iter().enumerate() {
            let at = format!("tokens[{i}]");
            if spec.name.is_empty() || spec.name.len() > MAX_NAME {
                return Err(format!("{at}.name: 1 to {MAX_NAME} characters"));
            }
            if !names.insert(spec.name.as_str()) {
                return Err(format!("{at}.name: {:?} is used twice", spec.name));
            }
            let hash = decode_hex(&spec.secret_blake3)
                .ok_or_else(|| format!("{at}.secret-blake3: not 64 hex digits"))?;
            let caller = Caller {
                name: spec.name.clone(),
                role: spec.role,
            };
            if table.insert(hash, caller).is_some() {
                return Err(format!(
                    "{at}.secret-blake3: the same secret as another token"
                ));
            }
        }
        Ok(Tokens(Arc::new(table)))
    }

    /// Whether callers must present a token.
    pub fn required(&self) -> bool {
        !self.0.is_empty()
    }

    /// The caller holding the credentials of an `Authorization` value, if they are a token.
    pub fn caller(&self, authorization: &str) -> Option<Caller> {
        let secret = secret_of(authorization)?;
        self.0
            .get(blake3::hash(secret.as_bytes()).as_bytes())
            .cloned()
    }
}

/// A new secret and its hash, for `cairn token new`.
pub fn new_secret() -> (String, String) {
    let bytes: [u8; 32] = rand::random();
    let secret = format!("{SECRET_PREFIX}{}", hex(&bytes));
    let hash = hex(blake3::hash(secret.as_bytes()).as_bytes());
    (secret, hash)
}

/// The secret carried by an `Authorization` value, in any of the accepted schemes.
fn secret_of(authorization: &str) -> Option<String> {
    let (scheme, rest) = authorization.trim().split_once(' ').unwrap_or(("", ""));
    if let Some(secret) = authorization.trim().strip_prefix("token=") {
        return Some(secret.to_owned());
    }
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(rest.trim().to_owned());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest.trim())
            .ok()?;
        let decoded = String::from_utf8(decoded).ok()?;
        return decoded
            .split_once(':')
            .map(|(_, password)| password.to_owned());
    }
    None
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn decode_hex(text: &str) -> Option<[u8; 32]> {
    let text = text.as_bytes();
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in text.chunks(2).enumerate() {
        let pair = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(out)
}

/// The role a request needs, or `None` for the routes that stay open.
fn needed(method: &Method, path: &str) -> Option<Role> {
    const OPEN: [&str; 8] = [
        "/",
        "/livez",
        "/readyz",
        "/ping",
        "/health",
        "/master/health",
        "/version",
        // A starting master asks its peers' (to refuse joining another cluster's).
        "/v1/cluster/status",
    ];
    let reads = *method == Method::GET || *method == Method::HEAD;
    if OPEN.contains(&path)
        || path.starts_with("/ui/")
        || path.starts_with("/raft/")
        || path.starts_with("/v1/agents/")
        // The console page, or a websocket that authenticates in its `connection_init`.
        || (path == "/graphql" && reads)
    {
        return None;
    }
    if path == "/v1/log/append" || path.starts_with("/v1/cluster/members") {
        return Some(Role::Admin);
    }
    // GraphQL checks mutations itself; the Mesos operator calls cairn answers only read.
    let read_posts = ["/graphql", "/api/v1", "/api/v1/operator", "/master/api/v1"];
    if reads || read_posts.contains(&path) {
        Some(Role::Read)
    } else {
        Some(Role::Operate)
    }
}

/// The middleware in front of every route: a request that needs a role must carry a token
/// with it; the caller then travels as a request extension.
pub async fn require(State(tokens): State<Tokens>, mut request: Request, next: Next) -> Response {
    if !tokens.required() {
        return next.run(request).await;
    }
    let Some(role) = needed(request.method(), request.uri().path()) else {
        return next.run(request).await;
    };
    let graphql = request.uri().path() == "/graphql";
    let headers = request.headers();
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    // A browser answers a Basic challenge with its own login prompt, which would stall the
    // web UI's requests: a page's script (not a navigation) gets a challenge it handles.
    let scripted = headers
        .get("sec-fetch-mode")
        .is_some_and(|mode| mode != "navigate");
    let Some(caller) = presented.and_then(|v| tokens.caller(v)) else {
        let why = match presented {
            None => "this API needs a token (Authorization: Bearer <token>)",
            Some(_) => "the token presented is not one this cluster accepts",
        };
        drain(request).await;
        let mut response = refusal(
            graphql,
            StatusCode::UNAUTHORIZED,
            crate::Code::Unauthenticated,
            why,
        );
        // Basic first: httplib2 (chronos-python) answers only a Basic challenge.
        let challenge = if scripted {
            "Bearer realm=\"cairn\""
        } else {
            "Basic realm=\"cairn\", Bearer realm=\"cairn\""
        };
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(challenge),
        );
        return response;
    };
    if caller.role < role {
        drain(request).await;
        return refused(graphql, &caller, role);
    }
    request.extensions_mut().insert(caller);
    next.run(request).await
}

/// Most of a refused request's body read before answering.
const DRAIN_LIMIT: usize = 1 << 20;

/// Reads a refused request's body (up to [`DRAIN_LIMIT`]) before the answer: a client that
/// sends credentials only when challenged (httplib2) is still writing it, and would see its
/// connection closed under it rather than the 401.
async fn drain(request: Request) {
    let _ = axum::body::to_bytes(request.into_body(), DRAIN_LIMIT).await;
}

/// The answer to a caller whose token's role is below the one needed.
pub(crate) fn refused(graphql: bool, caller: &Caller, needed: Role) -> Response {
    let why = format!(
        "the token {:?} has the role {}; this needs {}",
        caller.name,
        caller.role.name(),
        needed.name()
    );
    refusal(graphql, StatusCode::FORBIDDEN, crate::Code::Forbidden, &why)
}

/// A refusal in the shape of the API asked: GraphQL's errors, or Marathon's `{message}`
/// (which the other compatible APIs' clients read as well as any).
fn refusal(graphql: bool, status: StatusCode, code: crate::Code, why: &str) -> Response {
    if graphql {
        return crate::http::failure(status, code, why.to_owned());
    }
    let body = serde_json::json!({ "message": why, "code": code.as_str() });
    (status, axum::Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> (Tokens, String) {
        let (secret, hash) = new_secret();
        let spec = TokenSpec {
            name: "ops".into(),
            role: Role::Operate,
            secret_blake3: hash,
        };
        (Tokens::new(&[spec]).unwrap(), secret)
    }

    #[test]
    fn every_scheme_carries_the_secret() {
        let (tokens, secret) = tokens();
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("anyone:{secret}"));
        for presented in [
            format!("Bearer {secret}"),
            format!("bearer  {secret}"),
            format!("token={secret}"),
            format!("Basic {basic}"),
        ] {
            let caller = tokens.caller(&presented).expect(&presented);
            assert_eq!(caller.name, "ops");
            assert_eq!(caller.role, Role::Operate);
        }
        for wrong in ["", "Bearer", "Bearer nope", "Basic !!", &secret, "Digest x"] {
            assert_eq!(tokens.caller(wrong), None, "{wrong}");
        }
    }

    #[test]
    fn a_wrong_table_names_the_entry() {
        let (_, hash) = new_secret();
        let spec = |name: &str, hash: &str| TokenSpec {
            name: name.into(),
            role: Role::Read,
            secret_blake3: hash.into(),
        };
        let err = Tokens::new(&[spec("a", &hash), spec("a", &hash)]).unwrap_err();
        assert_eq!(err, "tokens[1].name: \"a\" is used twice");
        let err = Tokens::new(&[spec("a", &hash), spec("b", &hash)]).unwrap_err();
        assert!(
            err.starts_with("tokens[1].secret-blake3: the same secret"),
            "{err}"
        );
        let err = Tokens::new(&[spec("a", "abc")]).unwrap_err();
        assert_eq!(err, "tokens[0].secret-blake3: not 64 hex digits");
        let err = Tokens::new(&[spec("", &hash)]).unwrap_err();
        assert!(err.starts_with("tokens[0].name"), "{err}");
        assert!(!Tokens::new(&[]).unwrap().required());
    }

    #[test]
    fn routes_need_the_roles_documented() {
        let get = Method::GET;
        let post = Method::POST;
        let delete = Method::DELETE;
        for open in [
            "/",
            "/ui/app.js",
            "/livez",
            "/ping",
            "/raft/append",
            "/graphql",
        ] {
            assert_eq!(needed(&get, open), None, "{open}");
        }
        assert_eq!(needed(&post, "/v1/agents/register"), None);
        assert_eq!(needed(&get, "/v2/apps"), Some(Role::Read));
        assert_eq!(needed(&post, "/graphql"), Some(Role::Read));
        assert_eq!(needed(&post, "/api/v1"), Some(Role::Read));
        assert_eq!(needed(&post, "/v2/apps"), Some(Role::Operate));
        assert_eq!(needed(&post, "/api/v1/scheduler"), Some(Role::Operate));
        assert_eq!(needed(&delete, "/v2/apps/web"), Some(Role::Operate));
        assert_eq!(needed(&post, "/v1/log/append"), Some(Role::Admin));
        assert_eq!(needed(&delete, "/v1/cluster/members/3"), Some(Role::Admin));
    }
}
