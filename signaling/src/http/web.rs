//! The web client, served from the binary (or from `--web-dir` during development). Paths the
//! app routes itself (e.g. `/invite/CODE`) get `index.html`.

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::path::PathBuf;

#[derive(rust_embed::RustEmbed)]
#[folder = "../web"]
struct Assets;

pub fn routes<S: Clone + Send + Sync + 'static>(web_dir: Option<PathBuf>) -> Router<S> {
    let dir = web_dir.clone();
    Router::new()
        .route("/", get(move || serve(dir.clone(), String::new())))
        .route(
            "/{*path}",
            get(move |Path(p): Path<String>| serve(web_dir.clone(), p)),
        )
        .layer(tower_http::compression::CompressionLayer::new())
}

async fn serve(dir: Option<PathBuf>, path: String) -> Response {
    let path = if path.is_empty() {
        "index.html".to_string()
    } else {
        path
    };
    if path
        .split('/')
        .any(|seg| seg == ".." || seg.starts_with('.'))
    {
        return StatusCode::NOT_FOUND.into_response();
    }
    let found = load(&dir, &path).await;
    let (bytes, name) = match found {
        Some(b) => (b, path),
        // Client-side routes: no file extension → the app.
        None if !path.rsplit('/').next().unwrap_or("").contains('.') => {
            match load(&dir, "index.html").await {
                Some(b) => (b, "index.html".to_string()),
                None => return StatusCode::NOT_FOUND.into_response(),
            }
        }
        None => return StatusCode::NOT_FOUND.into_response(),
    };
    let mime = mime_guess(&name);
    // The page and the service worker are always revalidated: a new version reaches clients
    // at their next load.
    let cache = if name == "index.html" || name == "sw.js" {
        "no-cache"
    } else {
        "public, max-age=300"
    };
    (
        [(header::CONTENT_TYPE, mime), (header::CACHE_CONTROL, cache)],
        bytes,
    )
        .into_response()
}

async fn load(dir: &Option<PathBuf>, path: &str) -> Option<Vec<u8>> {
    match dir {
        Some(d) => tokio::fs::read(d.join(path)).await.ok(),
        None => Assets::get(path).map(|f| f.data.into_owned()),
    }
}

fn mime_guess(name: &str) -> &'static str {
    match name.rsplit('.').next().unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" => "application/json",
        "webmanifest" => "application/manifest+json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "wav" => "audio/wav",
        "woff2" => "font/woff2",
        // Browsers compile WebAssembly with streaming only when served as application/wasm.
        "wasm" => "application/wasm",
        "ogg" | "opus" => "audio/ogg",
        "mp3" => "audio/mpeg",
        _ => "application/octet-stream",
    }
}
