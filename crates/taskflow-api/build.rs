//! Embeds the web app (the workspace's `web/`): each asset gets a name with a hash of its
//! content (so it can be cached for good) and a gzip-compressed copy; `index.html` is
//! rewritten to the hashed names. The result is generated Rust that `src/web.rs` includes.
use std::{
    env,
    fmt::Write as _,
    fs,
    io::Write as _,
    path::{Path, PathBuf},
};

use flate2::{Compression, write::GzEncoder};

/// The assets `index.html` names as `{{name}}`, with their media types.
const ASSETS: &[(&str, &str)] = &[
    ("app.js", "text/javascript; charset=utf-8"),
    ("app.css", "text/css; charset=utf-8"),
    ("icon.svg", "image/svg+xml"),
];

/// FNV-1a, 64 bits: a content fingerprint for cache busting, not a security measure.
fn fingerprint(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::best());
    enc.write_all(bytes).expect("gzip into memory");
    enc.finish().expect("gzip into memory")
}

fn main() {
    let web = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../web");
    println!("cargo::rerun-if-changed={}", web.display());
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("web");
    // Only the current versions: a changed file leaves no stale hashed copy behind.
    let _ = fs::remove_dir_all(&out);
    fs::create_dir_all(&out).expect("create OUT_DIR/web");
    let mut index = fs::read_to_string(web.join("index.html")).expect("web/index.html");
    let mut code = String::from("pub(crate) static ASSETS: &[Asset] = &[\n");
    for (name, mime) in ASSETS {
        println!("cargo::rerun-if-changed={}", web.join(name).display());
        let bytes = fs::read(web.join(name)).unwrap_or_else(|e| panic!("web/{name}: {e}"));
        let (stem, ext) = name.rsplit_once('.').expect("a name with an extension");
        let hashed = format!("{stem}.{:012x}.{ext}", fingerprint(&bytes) >> 16);
        fs::write(out.join(&hashed), &bytes).expect("write an asset");
        fs::write(out.join(format!("{hashed}.gz")), gzip(&bytes)).expect("write an asset");
        index = index.replace(&format!("{{{{{name}}}}}"), &format!("/assets/{hashed}"));
        writeln!(
            code,
            "    Asset {{ path: \"/assets/{hashed}\", mime: \"{mime}\", raw: include_bytes!(concat!(env!(\"OUT_DIR\"), \"/web/{hashed}\")), gz: include_bytes!(concat!(env!(\"OUT_DIR\"), \"/web/{hashed}.gz\")) }},"
        )
        .expect("write to a string");
    }
    code.push_str("];\n");
    assert!(
        !index.contains("{{"),
        "index.html names an asset that is not embedded"
    );
    fs::write(out.join("index.html"), index).expect("write index.html");
    fs::write(out.join("assets.rs"), code).expect("write assets.rs");
}
