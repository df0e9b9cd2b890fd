//! The route table (the single source the router, the metrics, the OpenAPI test and the e2e loops
//! read) and the router built from it.

use std::sync::Arc;

use axum::http::Method;
use axum::routing::{get, post, MethodRouter};
use axum::Router;

use crate::http::{authorize, method_not_allowed, not_found, observe};
use crate::ops;
use crate::protocols;
use crate::state::AppState;
use crate::ui;

type Handler = MethodRouter<Arc<AppState>>;

/// What a route is for, which decides who may call it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteKind {
    /// Scores conversations through the model: needs the API key when one is set.
    Scoring,
    /// Describes the server (`/info`, `/openapi.yaml`): needs the key when one is set.
    Ops,
    /// What orchestrators probe (`/health`, `/metrics`): open unless `--auth-health-and-metrics`.
    Probe,
    /// The explain page's static files: always open (the page asks for the key itself), and not
    /// served with `--no-ui`.
    Ui,
}

pub struct Route {
    pub method: Method,
    pub path: &'static str,
    pub kind: RouteKind,
    handler: Handler,
}

/// Every route the server answers.
pub fn table() -> Vec<Route> {
    use RouteKind::*;
    let route = |method: Method, path, kind, handler| Route { method, path, kind, handler };
    vec![
        route(Method::POST, "/score", Scoring, post(protocols::native::score)),
        route(Method::POST, "/rank", Scoring, post(protocols::native::rank)),
        route(Method::POST, "/compare", Scoring, post(protocols::native::compare)),
        route(Method::POST, "/get_reward", Scoring, post(protocols::openrlhf::get_reward)),
        route(Method::POST, "/classify", Scoring, post(protocols::vllm::classify)),
        route(Method::POST, "/v1/classify", Scoring, post(protocols::vllm::vllm_classify)),
        route(Method::POST, "/pooling", Scoring, post(protocols::vllm::pooling)),
        route(Method::POST, "/v1/embeddings", Scoring, post(protocols::openai::embeddings)),
        route(Method::POST, "/reward", Scoring, post(protocols::slime::reward)),
        route(Method::GET, "/info", Ops, get(ops::info)),
        route(Method::GET, "/health", Probe, get(ops::health)),
        route(Method::GET, "/metrics", Probe, get(ops::metrics)),
        route(Method::GET, "/openapi.yaml", Ops, get(ops::openapi)),
        route(Method::GET, "/ui", Ui, get(ui::page)),
        route(Method::GET, "/ui/app.js", Ui, get(ui::script)),
        route(Method::GET, "/ui/app.css", Ui, get(ui::style)),
    ]
}

pub fn paths() -> Vec<&'static str> {
    table().into_iter().map(|r| r.path).collect()
}

/// The routes that need the API key (when one is set) behind the key check, with the fallback
/// (an unknown path without the key is a 401 too); the open ones in a router without it.
pub fn router(state: Arc<AppState>) -> Router {
    let access = &state.access;
    let (mut keyed, mut open) = (Router::new(), Router::new());
    for Route { method, path, kind, handler } in table() {
        let handler = handler.fallback(move |req| method_not_allowed(method.clone(), req));
        match kind {
            RouteKind::Ui if !access.ui => {}
            RouteKind::Ui => open = open.route(path, handler),
            RouteKind::Probe if !access.auth_health_and_metrics => open = open.route(path, handler),
            RouteKind::Scoring | RouteKind::Ops | RouteKind::Probe => keyed = keyed.route(path, handler),
        }
    }
    let keyed = keyed.fallback(not_found).layer(axum::middleware::from_fn_with_state(state.clone(), authorize));
    open.merge(keyed).layer(axum::middleware::from_fn_with_state(state.clone(), observe)).with_state(state)
}
