//! `/`: the web app. Its files (the workspace's `web/`) are embedded in the binary by the
//! build script under names that carry a hash of their content, so they are served with a
//! year's cache and gzip-compressed where the client accepts it; the page itself is never
//! cached and carries a strict Content-Security-Policy: no inline script or style, nothing
//! from another origin.

use axum::{
    Router,
    http::{HeaderMap, HeaderValue, header},
    response::{IntoResponse, Response},
    routing::get,
};

/// One embedded file of the web app.
#[derive(Debug)]
pub(crate) struct Asset {
    /// Where it is served: `/assets/NAME.HASH.EXT`.
    pub path: &'static str,
    pub mime: &'static str,
    pub raw: &'static [u8],
    pub gz: &'static [u8],
}

include!(concat!(env!("OUT_DIR"), "/web/assets.rs"));

/// The page, naming the assets by their hashed paths.
const INDEX: &str = include_str!(concat!(env!("OUT_DIR"), "/web/index.html"));

/// What the page may load and run: its own assets and API only.
pub(crate) const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
    img-src 'self' data:; connect-src 'self'; font-src 'self'; object-src 'none'; \
    base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Whether the client takes gzip (`Accept-Encoding`, without `;q=0`).
pub(crate) fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',').any(|e| {
                let mut parts = e.split(';').map(str::trim);
                parts.next() == Some("gzip") && !parts.any(|p| p == "q=0" || p == "q=0.0")
            })
        })
}

async fn index() -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CSP),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
        ],
        INDEX,
    )
        .into_response()
}

fn asset(a: &'static Asset, headers: &HeaderMap) -> Response {
    let gzip = accepts_gzip(headers);
    let mut res = (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(a.mime)),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=31536000, immutable"),
            ),
            (header::VARY, HeaderValue::from_static("accept-encoding")),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        if gzip { a.gz } else { a.raw },
    )
        .into_response();
    if gzip {
        res.headers_mut()
            .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    res
}

pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    ASSETS
        .iter()
        .fold(Router::new().route("/", get(index)), |router, a| {
            router.route(a.path, get(move |h: HeaderMap| async move { asset(a, &h) }))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_names_every_asset_by_its_hashed_path() {
        assert_eq!(ASSETS.len(), 3);
        for a in ASSETS {
            assert!(INDEX.contains(a.path), "{}", a.path);
            assert!(a.gz.len() < a.raw.len(), "{} is compressed", a.path);
        }
        assert!(!INDEX.contains("{{"));
    }

    /// The first load (the page and every asset, compressed) stays under 150 KB.
    #[test]
    fn the_first_load_is_under_its_budget() {
        let first_load: usize = INDEX.len() + ASSETS.iter().map(|a| a.gz.len()).sum::<usize>();
        assert!(first_load < 150 * 1000, "{first_load} bytes");
    }

    #[test]
    fn gzip_is_sent_only_where_it_is_accepted() {
        let with = |v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(header::ACCEPT_ENCODING, HeaderValue::from_static(v));
            accepts_gzip(&h)
        };
        assert!(with("gzip, deflate, br"));
        assert!(with("br;q=1.0, gzip;q=0.8"));
        assert!(!with("br"));
        assert!(!with("gzip;q=0"));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }
}
