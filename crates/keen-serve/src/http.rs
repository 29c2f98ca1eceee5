//! The HTTP API: routes, handlers and their JSON errors.
//!
//! - `POST /v1/classify?top_k=K`: the body is an image (`image/png`, `image/jpeg`) or a raw
//!   tensor (`application/octet-stream`: the model's per-request input, already normalised, as
//!   little-endian f32). Answers the top-K classes with probabilities, and timings.
//! - `GET /healthz`: 200 and the model's input, classes and batching settings.
//! - `GET /metrics`: Prometheus text.
//!
//! Every error is JSON `{"error": {"status", "code", "message"}}`: 400 bad image or tensor or
//! query, 404, 405, 408 timeout, 413 body too large, 415 content type, 503 queue full (with
//! `Retry-After`), 500 if the model fails.

use std::any::Any;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Query, Request, State};
use axum::http::header::{CONTENT_TYPE, RETRY_AFTER};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tower_http::catch_panic::CatchPanicLayer;

use crate::batcher::{Batcher, SubmitError};
use crate::config::ServeConfig;
use crate::input::InputSpec;
use crate::metrics::Metrics;

/// Path of the classification endpoint.
pub const CLASSIFY_PATH: &str = "/v1/classify";

/// What every handler shares.
#[derive(Clone)]
pub(crate) struct AppState {
    pub spec: Arc<InputSpec>,
    pub config: Arc<ServeConfig>,
    pub batcher: Batcher,
    pub metrics: Arc<Metrics>,
    pub model_name: Arc<str>,
}

/// A JSON error answer.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(Serialize)]
struct ErrorDetail<'a> {
    status: u16,
    code: &'a str,
    message: &'a str,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                status: self.status.as_u16(),
                code: self.code,
                message: &self.message,
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

/// The router with every route and layer.
pub(crate) fn router(state: AppState) -> Router {
    Router::new()
        .route(CLASSIFY_PATH, post(classify))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed on this route",
            )
        })
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        // Inside `track`, so a panic's 500 is counted and timed like any answer.
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(middleware::from_fn_with_state(state.clone(), track))
        .with_state(state)
}

fn panic_response(_: Box<dyn Any + Send + 'static>) -> Response<Body> {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "internal error",
    )
    .into_response()
}

/// Times every request out after the configured limit, and counts `/v1/classify` answers.
async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let counted = request.uri().path() == CLASSIFY_PATH;
    if counted {
        state.metrics.in_flight.fetch_add(1, Ordering::Relaxed);
    }
    let limit = state.config.request_timeout;
    let response = match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "timeout",
            format!("no answer within {} ms", limit.as_millis()),
        )
        .into_response(),
    };
    if counted {
        state.metrics.in_flight.fetch_sub(1, Ordering::Relaxed);
        state
            .metrics
            .record_response(response.status().as_u16(), started.elapsed().as_secs_f64());
    }
    response
}

/// Query of `/v1/classify`.
#[derive(Debug, Deserialize)]
struct ClassifyParams {
    top_k: Option<usize>,
}

/// One class of the answer.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct Guess {
    /// The class name.
    pub label: String,
    /// The class index (output logit).
    pub index: usize,
    /// Softmax probability.
    pub probability: f32,
}

/// Where a request's time went, in milliseconds.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct Timing {
    /// Decoding and preprocessing the body.
    pub preprocess_ms: f64,
    /// Waiting in the queue for its batch to start.
    pub queue_ms: f64,
    /// The batch's model run.
    pub inference_ms: f64,
    /// From the handler's start to the answer.
    pub total_ms: f64,
}

/// The answer of `/v1/classify`.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct ClassifyResponse {
    /// The model's file name.
    pub model: String,
    /// The `top_k` most probable classes, most probable first.
    pub top: Vec<Guess>,
    /// Images in the batch this request ran in.
    pub batch_size: usize,
    /// Timings.
    pub timing: Timing,
}

/// The body's kind, from its `Content-Type` (parameters such as `charset` ignored).
enum BodyKind {
    Image,
    Tensor,
}

fn body_kind(headers: &HeaderMap) -> Result<BodyKind, ApiError> {
    let unsupported = |found: &str| {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!(
                "Content-Type {found} is not supported: send image/png, image/jpeg or \
                 application/octet-stream (little-endian f32 tensor)"
            ),
        )
    };
    let Some(value) = headers.get(CONTENT_TYPE) else {
        return Err(unsupported("(none)"));
    };
    let text = value.to_str().map_err(|_| unsupported("(not text)"))?;
    let essence = text
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        "image/png" | "image/jpeg" | "image/jpg" => Ok(BodyKind::Image),
        "application/octet-stream" => Ok(BodyKind::Tensor),
        _ => Err(unsupported(&format!("'{essence}'"))),
    }
}

async fn classify(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<ClassifyParams>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<ClassifyResponse>, ApiError> {
    let started = Instant::now();
    let kind = body_kind(&headers)?;
    let Query(params) = query.map_err(|e| ApiError::bad_request("bad_query", e.body_text()))?;
    let classes = state.spec.class_names.len();
    let top_k = params.top_k.unwrap_or(5);
    if top_k == 0 {
        return Err(ApiError::bad_request(
            "bad_query",
            "top_k must be at least 1",
        ));
    }
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!(
                    "the body is larger than the {} bytes accepted",
                    state.config.max_body_bytes
                ),
            )
        } else {
            ApiError::bad_request("bad_body", e.body_text())
        }
    })?;
    let input = match kind {
        BodyKind::Tensor => state.spec.tensor_from_bytes(&body),
        BodyKind::Image => {
            // Decoding a large JPEG takes milliseconds: keep it off the async threads.
            let spec = state.spec.clone();
            let max_side = state.config.max_image_side;
            tokio::task::spawn_blocking(move || spec.image_from_bytes(&body, max_side))
                .await
                .map_err(|_| {
                    ApiError::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "internal",
                        "the image decoder failed",
                    )
                })?
        }
    }
    .map_err(|e| ApiError::bad_request("bad_input", e.to_string()))?;
    let preprocess_ms = started.elapsed().as_secs_f64() * 1e3;
    let answer = state.batcher.submit(input).map_err(|e| match e {
        SubmitError::Full => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "queue_full",
            format!(
                "{} requests are already waiting; retry shortly",
                state.config.queue_capacity
            ),
        ),
        SubmitError::Closed => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "the server is shutting down",
        ),
    })?;
    let output = answer
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the batch worker dropped the request",
            )
        })?
        .map_err(|message| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "inference_failed",
                message,
            )
        })?;
    let probabilities = softmax(&output.logits);
    let mut order: Vec<usize> = (0..probabilities.len()).collect();
    order.sort_by(|&a, &b| probabilities[b].total_cmp(&probabilities[a]));
    let top = order
        .into_iter()
        .take(top_k.min(classes.max(1)))
        .map(|i| Guess {
            label: state
                .spec
                .class_names
                .get(i)
                .cloned()
                .unwrap_or_else(|| format!("class {i}")),
            index: i,
            probability: probabilities[i],
        })
        .collect();
    Ok(Json(ClassifyResponse {
        model: state.model_name.to_string(),
        top,
        batch_size: output.batch_size,
        timing: Timing {
            preprocess_ms,
            queue_ms: output.queue_seconds * 1e3,
            inference_ms: output.inference_seconds * 1e3,
            total_ms: started.elapsed().as_secs_f64() * 1e3,
        },
    }))
}

/// A numerically stable softmax.
pub(crate) fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exp: Vec<f32> = logits.iter().map(|&v| (v - max).exp()).collect();
    let sum: f32 = exp.iter().sum();
    exp.into_iter().map(|v| v / sum).collect()
}

/// The answer of `/healthz`.
#[derive(Debug, Serialize)]
struct Health<'a> {
    status: &'static str,
    model: &'a str,
    input: &'a InputSpec,
    max_batch: usize,
    max_wait_ms: f64,
    queue_capacity: usize,
    max_body_bytes: usize,
}

async fn healthz(State(state): State<AppState>) -> Response {
    Json(Health {
        status: "ok",
        model: &state.model_name,
        input: &state.spec,
        max_batch: state.config.max_batch,
        max_wait_ms: state.config.max_wait.as_secs_f64() * 1e3,
        queue_capacity: state.config.queue_capacity,
        max_body_bytes: state.config.max_body_bytes,
    })
    .into_response()
}

async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        state.metrics.render(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_sums_to_one_and_survives_large_logits() {
        let p = softmax(&[1000.0, 1000.0, -1000.0]);
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert_eq!(p[0], 0.5);
    }

    #[test]
    fn content_types_are_matched_without_parameters_or_case() {
        let kind = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(CONTENT_TYPE, HeaderValue::from_str(v).unwrap());
            body_kind(&h).map(|k| matches!(k, BodyKind::Image))
        };
        assert!(kind("image/PNG").unwrap());
        assert!(!kind("application/octet-stream; foo=bar").unwrap());
        assert!(kind("text/plain").is_err());
        assert!(body_kind(&HeaderMap::new()).is_err());
    }
}
