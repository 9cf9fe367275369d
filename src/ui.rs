//! The web UI's routes: the page at `/` and its files at `/ui/<name>`, all from the binary
//! (`cairn-ui`).

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use cairn_ui::Asset;

pub(crate) fn routes() -> Router {
    Router::new()
        .route("/", get(|| async { serve(&cairn_ui::INDEX) }))
        .route("/ui/{name}", get(asset))
}

async fn asset(Path(name): Path<String>) -> Response {
    match cairn_ui::asset(&name) {
        Some(asset) => serve(asset),
        None => (StatusCode::NOT_FOUND, format!("no UI file {name}\n")).into_response(),
    }
}

fn serve(asset: &'static Asset) -> Response {
    (
        [
            (header::CONTENT_TYPE, asset.content_type),
            // The files change with the binary: a browser asks again rather than run a stale
            // script against a newer API.
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        asset.body,
    )
        .into_response()
}
