//! The route table (the single source the router and the OpenAPI test both read) and the router.

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

/// Every route the server answers: (method, path, handler).
pub fn table() -> Vec<(Method, &'static str, Handler)> {
    vec![
        (Method::POST, "/score", post(protocols::native::score)),
        (Method::POST, "/rank", post(protocols::native::rank)),
        (Method::POST, "/compare", post(protocols::native::compare)),
        (Method::POST, "/get_reward", post(protocols::openrlhf::get_reward)),
        (Method::POST, "/classify", post(protocols::vllm::classify)),
        (Method::POST, "/v1/classify", post(protocols::vllm::vllm_classify)),
        (Method::POST, "/pooling", post(protocols::vllm::pooling)),
        (Method::POST, "/v1/embeddings", post(protocols::openai::embeddings)),
        (Method::POST, "/reward", post(protocols::slime::reward)),
        (Method::GET, "/info", get(ops::info)),
        (Method::GET, "/health", get(ops::health)),
        (Method::GET, "/metrics", get(ops::metrics)),
        (Method::GET, "/openapi.yaml", get(ops::openapi)),
        (Method::GET, "/ui", get(ui::page)),
        (Method::GET, "/ui/app.js", get(ui::script)),
        (Method::GET, "/ui/app.css", get(ui::style)),
    ]
}

pub fn paths() -> Vec<&'static str> {
    table().into_iter().map(|(_, path, _)| path).collect()
}

pub fn router(state: Arc<AppState>) -> Router {
    let mut router = Router::new();
    let served = table().into_iter().filter(|(_, path, _)| state.ui || !ui::is_ui_path(path));
    for (method, path, handler) in served {
        router = router.route(path, handler.fallback(move |req| method_not_allowed(method.clone(), req)));
    }
    router
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(state.clone(), authorize))
        .layer(axum::middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}
