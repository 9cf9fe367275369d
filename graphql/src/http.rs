//! `/graphql` over HTTP: `POST` runs a query; `GET` upgrades to a subscription websocket
//! (`graphql-transport-ws` or the older `graphql-ws`) or, from a browser, opens the console.

use std::sync::Arc;
use std::time::Duration;

use async_graphql::{Response as GqlResponse, ServerError};
use async_graphql_axum::{GraphQLProtocol, GraphQLWebSocket};
use axum::body::Bytes;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use cairn_log::engine::Log;
use cairn_log::event::{Actor, Origin, Principal};
use cairn_projections::live::Projector;
use cairn_scheduler::Runner;
use tokio::sync::Semaphore;

use crate::auth::{self, Caller, Role, Tokens, Viewer};
use crate::forward::{was_forwarded, Forwarder, FORWARDED_FOR};
use crate::limits::{with_code, MAX_BODY, QUERY_TIMEOUT_SECS};
use crate::views::Views;
use crate::{schema, CairnSchema, Code};

/// Most websocket connections open at once (each may follow the log).
pub const MAX_WEBSOCKETS: usize = 256;

#[derive(Clone)]
struct Api {
    schema: CairnSchema,
    websockets: Arc<Semaphore>,
    /// Who leads, for mutations reaching a follower.
    log: Log,
    forwarder: Forwarder,
    tokens: Tokens,
}

/// The `/graphql` routes over a projector, its log and the runner; `tokens` authenticate
/// websockets (HTTP requests are authenticated in front of every route, [`auth::require`]).
pub fn router(projector: Projector, log: Log, runner: Runner, tokens: Tokens) -> Router {
    let api = Api {
        schema: schema(projector, log.clone(), runner),
        websockets: Arc::new(Semaphore::new(MAX_WEBSOCKETS)),
        log,
        forwarder: Forwarder::default(),
        tokens,
    };
    Router::new()
        .route("/graphql", get(upgrade_or_console).post(query))
        .with_state(api)
}

async fn query(State(api): State<Api>, request: Request) -> Response {
    let actor = actor(&request, "graphql");
    let viewer = viewer(&api.tokens, request.extensions().get::<Caller>(), &actor);
    let (parts, body) = request.into_parts();
    let body = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(body) => body,
        Err(_) => {
            return failure(
                StatusCode::PAYLOAD_TOO_LARGE,
                Code::BodyTooLarge,
                format!("the request body is over the limit of {MAX_BODY} bytes"),
            )
        }
    };
    let request: async_graphql::Request = match parse(&body) {
        Ok(request) => request,
        Err(message) => return failure(StatusCode::BAD_REQUEST, Code::BadRequest, message),
    };
    let mutation = is_mutation(&request);
    let short = parts
        .extensions
        .get::<Caller>()
        .filter(|c| c.role < Role::Operate);
    if let (true, Some(caller)) = (mutation, short) {
        return auth::refused(true, caller, Role::Operate);
    }
    // A mutation reaching a follower is the leader's to decide: sent there, answered as it
    // answers (a query is answered here, from this master's projections).
    // One that arrives during an election waits for the new leader (`LEADER_HOLD`).
    if mutation && !was_forwarded(&parts) {
        if let Some(Some(leader)) = api.log.leader_elsewhere_held().await {
            return match api
                .forwarder
                .forward(&leader, &parts, body, std::future::pending())
                .await
            {
                Ok(response) => response,
                Err(message) => failure(StatusCode::OK, Code::NotLeader, message),
            };
        }
    }
    let request = request.data(Views::default()).data(actor).data(viewer);
    let timeout = Duration::from_secs(QUERY_TIMEOUT_SECS);
    let response = match tokio::time::timeout(timeout, api.schema.execute(request)).await {
        Ok(response) => response,
        Err(_) => {
            return failure(
                StatusCode::OK,
                Code::Timeout,
                format!("the query ran for more than {QUERY_TIMEOUT_SECS} s"),
            )
        }
    };
    json(StatusCode::OK, &response)
}

/// The caller, for the audit trail, as `api` saw it: the name of the token it presented; on
/// a master without tokens, what the client claims in `X-Cairn-User` (the CLI sends the
/// login name), `anonymous` otherwise.
pub fn actor(request: &Request, api: &str) -> Actor {
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.chars().take(128).collect::<String>())
    };
    let remote_addr = header(FORWARDED_FOR).or_else(|| {
        request
            .extensions()
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|c| c.0.to_string())
    });
    Actor {
        principal: Principal::User {
            name: match request.extensions().get::<Caller>() {
                Some(caller) => caller.name.clone(),
                None => header("x-cairn-user").unwrap_or_else(|| "anonymous".into()),
            },
        },
        origin: Some(Origin {
            api: api.into(),
            remote_addr,
            request_id: header("x-request-id"),
        }),
    }
}

/// Who asks: the token's holder, or on a master without tokens whoever they say they are,
/// who may do anything.
fn viewer(tokens: &Tokens, caller: Option<&Caller>, actor: &Actor) -> Viewer {
    match caller {
        Some(caller) => Viewer::of(caller, true),
        None => {
            let name = match &actor.principal {
                Principal::User { name } => name.clone(),
                other => crate::model::principal(other),
            };
            let caller = Caller {
                name,
                role: Role::Admin,
            };
            Viewer::of(&caller, tokens.required())
        }
    }
}

/// Whether the request holds a mutation (a document that does not parse is left to the
/// executor, which says why).
fn is_mutation(request: &async_graphql::Request) -> bool {
    async_graphql::parser::parse_query(&request.query).is_ok_and(|doc| {
        doc.operations
            .iter()
            .any(|(_, op)| op.node.ty == async_graphql::parser::types::OperationType::Mutation)
    })
}

fn parse(body: &Bytes) -> Result<async_graphql::Request, String> {
    serde_json::from_slice(body).map_err(|e| {
        format!("the body is not a GraphQL request (JSON with `query`, `variables`, `operationName`): {e}")
    })
}

pub(crate) fn failure(status: StatusCode, code: Code, message: String) -> Response {
    let mut e = ServerError::new(message, None);
    e.extensions
        .get_or_insert_with(Default::default)
        .set("code", code.as_str());
    let mut response = GqlResponse::from_errors(vec![e]);
    for e in &mut response.errors {
        with_code(e);
    }
    json(status, &response)
}

fn json(status: StatusCode, response: &GqlResponse) -> Response {
    match serde_json::to_vec(response) {
        Ok(body) => (
            status,
            [(header::CONTENT_TYPE, "application/graphql-response+json")],
            body,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn upgrade_or_console(State(api): State<Api>, request: Request) -> Response {
    if !is_upgrade(request.headers()) {
        return Html(CONSOLE).into_response();
    }
    let (mut parts, _) = request.into_parts();
    let protocol = match GraphQLProtocol::from_request_parts(&mut parts, &()).await {
        Ok(p) => p,
        Err(_) => {
            return (
                StatusCode::BAD_REQUEST,
                "Sec-WebSocket-Protocol: ask for graphql-transport-ws (or graphql-ws)\n",
            )
                .into_response()
        }
    };
    let upgrade =
        match axum::extract::ws::WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
            Ok(u) => u,
            Err(rejection) => return rejection.into_response(),
        };
    let Ok(permit) = api.websockets.clone().try_acquire_owned() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{MAX_WEBSOCKETS} websockets are open already\n"),
        )
            .into_response();
    };
    let schema = api.schema.clone();
    let tokens = api.tokens.clone();
    upgrade
        .protocols(async_graphql::http::ALL_WEBSOCKET_PROTOCOLS)
        .on_upgrade(move |socket| async move {
            GraphQLWebSocket::new(socket, schema, protocol)
                .on_connection_init(move |payload| async move {
                    let mut data = async_graphql::Data::default();
                    data.insert(Views::default());
                    if tokens.required() {
                        let presented = payload["authorization"].as_str().unwrap_or_default();
                        let Some(caller) = tokens.caller(presented) else {
                            return Err(crate::error(
                                Code::Unauthenticated,
                                "this API needs a token: `authorization` in the connection_init payload",
                            ));
                        };
                        data.insert(Viewer::of(&caller, true));
                    }
                    Ok(data)
                })
                .serve()
                .await;
            drop(permit);
        })
}

fn is_upgrade(headers: &HeaderMap) -> bool {
    headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// The query console: one page, no scripts from elsewhere.
const CONSOLE: &str = include_str!("console.html");
