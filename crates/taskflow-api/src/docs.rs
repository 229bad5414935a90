//! `/docs`: the API reference (Scalar), with every asset embedded in the binary, so it works
//! offline: no CDN, no web fonts. The script is stored gzip-compressed (1.4 MB instead of
//! 4.9 MB) and served as such, under a versioned name with a long cache lifetime.

use axum::{
    Router,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{Html, IntoResponse, Response},
    routing::get,
};

use crate::problem::Problem;

const SCALAR_VERSION: &str = "1.76.0";
const SCALAR_PATH: &str = "/docs/scalar-1.76.0.js";
const SCALAR_GZ: &[u8] = include_bytes!("../assets/scalar/standalone-1.76.0.js.gz");

fn page() -> String {
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>taskflow API reference</title>
</head>
<body>
  <script id="api-reference" data-url="/openapi.json"
    data-configuration='{{"withDefaultFonts": false, "hideClientButton": true, "telemetry": false}}'></script>
  <script src="{SCALAR_PATH}" data-scalar-version="{SCALAR_VERSION}"></script>
</body>
</html>
"#
    )
}

async fn script(headers: HeaderMap) -> Response {
    if !crate::web::accepts_gzip(&headers) {
        let p = Problem::new(
            StatusCode::NOT_ACCEPTABLE,
            "this script is served gzip-compressed only; send Accept-Encoding: gzip",
        );
        return (
            StatusCode::NOT_ACCEPTABLE,
            [(header::CONTENT_TYPE, crate::PROBLEM_JSON)],
            serde_json::to_string(&p).unwrap_or_default(),
        )
            .into_response();
    }
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/javascript; charset=utf-8"),
            ),
            (header::CONTENT_ENCODING, HeaderValue::from_static("gzip")),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=31536000, immutable"),
            ),
            (header::VARY, HeaderValue::from_static("accept-encoding")),
        ],
        SCALAR_GZ,
    )
        .into_response()
}

pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/docs", get(|| async { Html(page()) }))
        .route(SCALAR_PATH, get(script))
}
