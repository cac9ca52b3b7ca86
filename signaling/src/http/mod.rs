//! The HTTP surface: REST under `/api/v1` (with its OpenAPI document), the gateway, health,
//! metrics and the web client, wrapped in the security layers.

pub mod auth;
pub mod channels;
pub mod dms;
pub mod expressions;
pub mod files;
pub mod ice_servers;
pub mod integrations;
pub mod link_previews;
pub mod moderation;
pub mod ops;
pub mod push;
pub mod reactions;
pub mod read_states;
pub mod relationships;
pub mod roles;
pub mod safety;
pub mod search;
pub mod servers;
pub mod soundboard;
pub mod threads;
pub mod users;
pub mod voice_states;
pub mod web;

use crate::error::ApiError;
use crate::ratelimit;
use crate::state::AppState;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::{header, HeaderName, HeaderValue, Method};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::time::Instant;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Largest REST request body.
pub const MAX_BODY: usize = 64 * 1024;

#[derive(OpenApi)]
#[openapi(
    info(title = "Confab API", description = "REST API of Confab. Real-time events and voice signalling use the gateway (docs/gateway.md)."),
    modifiers(&BearerAuth),
    components(schemas(crate::error::ErrorBody)),
    tags((name = "auth"), (name = "users"), (name = "servers"), (name = "channels"), (name = "members"), (name = "invites"), (name = "messages"), (name = "roles"), (name = "dms"), (name = "voice"), (name = "soundboard"), (name = "emoji"), (name = "webhooks"), (name = "bots"), (name = "safety"), (name = "threads"), (name = "push"))
)]
struct ApiDoc;

struct BearerAuth;
impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// The REST routes and their OpenAPI description.
fn api(state: &AppState) -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let auth_routes = OpenApiRouter::new()
        .routes(routes!(auth::register))
        .routes(routes!(auth::login))
        .routes(routes!(auth::refresh))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            ratelimit::auth_bucket,
        ));
    // Messages may carry files: the handler limits JSON to MAX_BODY itself and each file part
    // to the upload limit while it streams.
    let message_routes = OpenApiRouter::new()
        .routes(routes!(channels::history, channels::send))
        .layer(DefaultBodyLimit::disable())
        .layer(middleware::from_fn_with_state(
            state.clone(),
            ratelimit::message_bucket,
        ));
    // Starting a thread or a forum post is posting: the message bucket limits it.
    let thread_routes = OpenApiRouter::new()
        .routes(routes!(threads::create_from_message))
        .routes(routes!(threads::create, threads::list))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            ratelimit::message_bucket,
        ));
    let avatar_routes = OpenApiRouter::new()
        .routes(routes!(files::put_avatar, files::delete_avatar))
        .routes(routes!(files::put_icon, files::delete_icon))
        .layer(DefaultBodyLimit::max(files::MAX_AVATAR_UPLOAD));
    let typing_routes = OpenApiRouter::new()
        .routes(routes!(channels::typing))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            ratelimit::typing_bucket,
        ));
    // A sound is larger than any JSON body: its upload gets a limit of its own.
    let sound_upload_routes = OpenApiRouter::new()
        .routes(routes!(soundboard::list, soundboard::upload))
        .layer(DefaultBodyLimit::max(soundboard::MAX_UPLOAD));
    // Emoji and sticker uploads: an image body and a bucket of their own.
    let expression_routes = OpenApiRouter::new()
        .routes(routes!(expressions::list_emojis, expressions::create_emoji))
        .routes(routes!(
            expressions::list_stickers,
            expressions::create_sticker
        ))
        .layer(DefaultBodyLimit::max(expressions::MAX_UPLOAD))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            ratelimit::expressions_bucket,
        ));
    let sound_play_routes = OpenApiRouter::new()
        .routes(routes!(soundboard::play))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            ratelimit::soundboard_bucket,
        ));
    let search_routes = OpenApiRouter::new()
        .routes(routes!(search::server))
        .routes(routes!(search::private))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            ratelimit::search_bucket,
        ));
    // A webhook post carries no bearer token: its bucket is the webhook's, not a user's.
    let webhook_post_routes = OpenApiRouter::new()
        .routes(routes!(integrations::execute_webhook))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            ratelimit::webhook_bucket,
        ));
    // Subscribing and test notifications reach out to push services: a bucket of their own.
    let push_write_routes = OpenApiRouter::new()
        .routes(routes!(
            push::list,
            push::subscribe,
            push::unsubscribe_endpoint
        ))
        .routes(routes!(push::test))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            ratelimit::push_bucket,
        ));
    let general = OpenApiRouter::new()
        .routes(routes!(auth::logout))
        .routes(routes!(users::me, users::update_me, users::delete_me))
        .routes(routes!(users::sessions))
        .routes(routes!(users::end_session))
        .routes(routes!(relationships::list, relationships::request))
        .routes(routes!(relationships::put, relationships::delete))
        .routes(routes!(dms::list, dms::create))
        .routes(routes!(dms::add_recipient, dms::remove_recipient))
        .routes(routes!(servers::list, servers::create))
        .routes(routes!(servers::get, servers::update, servers::delete))
        .routes(routes!(servers::channels, servers::create_channel))
        .routes(routes!(servers::members))
        .routes(routes!(servers::presences))
        .routes(routes!(servers::leave))
        .routes(routes!(servers::update_member, moderation::kick))
        .routes(routes!(roles::list_roles, roles::create_role))
        .routes(routes!(roles::update_role, roles::delete_role))
        .routes(routes!(roles::add_member_role, roles::remove_member_role))
        .routes(routes!(roles::list_overwrites))
        .routes(routes!(roles::put_overwrite, roles::delete_overwrite))
        .routes(routes!(moderation::list_bans))
        .routes(routes!(moderation::ban, moderation::unban))
        .routes(routes!(moderation::audit_log))
        .routes(routes!(safety::list_rules, safety::create_rule))
        .routes(routes!(safety::update_rule, safety::delete_rule))
        .routes(routes!(safety::get_settings, safety::update_settings))
        .routes(routes!(safety::verify))
        .routes(routes!(safety::list_reports, safety::create_report))
        .routes(routes!(safety::resolve_report))
        .routes(routes!(ice_servers::get))
        .routes(routes!(voice_states::update_mine))
        .routes(routes!(voice_states::update_member))
        .routes(routes!(servers::create_invite, reactions::invites))
        .routes(routes!(
            servers::get_invite,
            servers::accept_invite,
            reactions::revoke
        ))
        .routes(routes!(reactions::add, reactions::remove, reactions::list))
        .routes(routes!(reactions::pins))
        .routes(routes!(read_states::ack))
        .routes(routes!(channels::bulk_delete))
        .routes(routes!(threads::join, threads::leave))
        .routes(routes!(threads::members))
        .routes(routes!(reactions::pin, reactions::unpin))
        .routes(routes!(channels::get, channels::update, channels::delete))
        .routes(routes!(
            channels::get_message,
            channels::edit,
            channels::delete_message
        ))
        .routes(routes!(soundboard::delete))
        .routes(routes!(
            expressions::update_emoji,
            expressions::delete_emoji
        ))
        .routes(routes!(
            expressions::update_sticker,
            expressions::delete_sticker
        ))
        .routes(routes!(expressions::emoji_image))
        .routes(routes!(expressions::sticker_image))
        .routes(routes!(soundboard::audio))
        .routes(routes!(link_previews::image))
        .routes(routes!(files::download))
        .routes(routes!(files::download_thumbnail))
        .routes(routes!(files::get_avatar))
        .routes(routes!(files::get_icon))
        .routes(routes!(
            integrations::create_webhook,
            integrations::list_webhooks
        ))
        .routes(routes!(integrations::delete_webhook))
        .routes(routes!(integrations::create_bot, integrations::list_bots))
        .routes(routes!(integrations::reset_bot_token))
        .routes(routes!(
            integrations::list_commands,
            integrations::upsert_command
        ))
        .routes(routes!(integrations::delete_command))
        .routes(routes!(integrations::invoke))
        .routes(routes!(integrations::callback))
        .routes(routes!(integrations::follow_up))
        .routes(routes!(push::vapid_public_key))
        .routes(routes!(push::unsubscribe))
        .routes(routes!(push::settings))
        .routes(routes!(push::put_server))
        .routes(routes!(push::put_channel))
        .merge(push_write_routes)
        .merge(webhook_post_routes)
        .merge(avatar_routes)
        .merge(sound_upload_routes)
        .merge(expression_routes)
        .merge(sound_play_routes)
        .merge(message_routes)
        .merge(thread_routes)
        .merge(typing_routes)
        .merge(search_routes)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            ratelimit::api_bucket,
        ));
    let (router, mut doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .nest(
            "/api/v1",
            auth_routes
                .merge(general)
                .layer(middleware::from_fn_with_state(
                    state.clone(),
                    crate::db_circuit::guard,
                )),
        )
        .split_for_parts();
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    document_common_responses(&mut doc);
    (router, doc)
}

/// Adds the answers every operation of a kind can give, whatever its handler does: 401 where
/// a token is required, 400/413/415 where a JSON body is read, 429 (rate limits) and 503 (the
/// database unreachable) everywhere. Listed once here rather than on each handler.
fn document_common_responses(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
    let error = |description: &str| {
        RefOr::T(
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                        .build(),
                )
                .build(),
        )
    };
    for item in doc.paths.paths.values_mut() {
        let ops = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ];
        for op in ops.into_iter().flatten() {
            let mut add = |status: &str, description: &str| {
                op.responses
                    .responses
                    .entry(status.to_string())
                    .or_insert_with(|| error(description));
            };
            let authenticated = op.security.as_ref().is_some_and(|s| !s.is_empty());
            let body = op.request_body.is_some();
            let query = op.parameters.as_ref().is_some_and(|ps| {
                ps.iter()
                    .any(|p| p.parameter_in == utoipa::openapi::path::ParameterIn::Query)
            });
            if query {
                add("400", "Invalid query parameters");
            }
            if authenticated {
                add("401", "Missing, invalid or expired token");
            }
            if body {
                add("400", "Malformed or invalid body");
                add("413", "Body larger than 64 KiB");
                add("415", "Body not sent as application/json");
            }
            add("429", "Rate limited (see Retry-After)");
            add("503", "Database unreachable (see Retry-After)");
        }
    }
}

pub fn router(state: AppState) -> Router {
    let (api, doc) = api(&state);
    let doc = std::sync::Arc::new(doc);
    let cors = CorsLayer::new()
        .allow_origin(AllowOrigin::list(
            state
                .origins
                .iter()
                .filter_map(|o| HeaderValue::from_str(o).ok()),
        ))
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PATCH,
            Method::PUT,
            Method::DELETE,
        ])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
        .expose_headers([
            HeaderName::from_static("x-ratelimit-limit"),
            HeaderName::from_static("x-ratelimit-remaining"),
            HeaderName::from_static("x-ratelimit-reset-after"),
            HeaderName::from_static("x-ratelimit-bucket"),
            header::RETRY_AFTER,
        ])
        .max_age(std::time::Duration::from_secs(600));

    let api = api
        .route(
            "/api/v1/openapi.json",
            get(move || {
                let doc = doc.clone();
                async move { axum::Json(doc.as_ref().clone()) }
            }),
        )
        .route("/api/v1/gateway", get(crate::gateway::upgrade))
        .route(
            "/api/v1/{*rest}",
            axum::routing::any(|| async {
                ApiError::Chat(confab_chat::ChatError::NotFound("route"))
            }),
        )
        .layer(middleware::from_fn(crate::input::reject_nul))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(cors);

    let mut app = Router::new()
        .merge(api)
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .merge(web::routes(state.config.web_dir.clone()))
        .layer(middleware::from_fn(track))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            HeaderName::from_static("permissions-policy"),
            HeaderValue::from_static(
                "camera=(self), microphone=(self), display-capture=(self), geolocation=()",
            ),
        ));
    if state.config.behind_tls() {
        app = app.layer(SetResponseHeaderLayer::if_not_present(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000; includeSubDomains"),
        ));
    }
    app.with_state(state)
}

/// Content Security Policy: only our own scripts and styles; media and avatars from anywhere
/// safe; never framed. `wasm-unsafe-eval` lets our own WebAssembly (the vendored noise
/// suppressor) compile; it does not allow `eval` of strings.
const CSP: &str = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; img-src 'self' https: http: data: blob:; media-src 'self' blob:; connect-src 'self' ws: wss:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'";

/// Request counts and latency by route template.
async fn track(req: Request, next: Next) -> Response {
    let start = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let method = req.method().as_str().to_owned();
    let resp = next.run(req).await;
    let status = resp.status().as_u16().to_string();
    metrics::counter!("confab_http_requests_total", "method" => method.clone(), "route" => route.clone(), "status" => status).increment(1);
    metrics::histogram!("confab_http_request_duration_seconds", "method" => method, "route" => route)
        .record(start.elapsed().as_secs_f64());
    resp.into_response()
}
