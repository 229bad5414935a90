//! How the `taskflow` binary is linked.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=link-order.txt");
    let target = std::env::var("TARGET").unwrap_or_default();
    // Relative relocations packed (DT_RELR): a position-independent binary carries one entry per
    // pointer in its read-only data (vtables, string tables), 1.7 MB of them, which the loader
    // reads in every process at start; packed, they are a few kilobytes, so each process starts
    // with that much less memory and the binary is that much smaller. Needs glibc 2.36 and
    // binutils 2.38 or newer (Debian 12, Ubuntu 22.04 and later); other targets link as before.
    if target.ends_with("-linux-gnu") {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
    // The functions the roles run, laid out together at the start of the code (link-order.txt,
    // written by bench/layout). The kernel maps a binary's code in 64 KiB blocks around each
    // page a process touches; spread over 22 MB, an idle worker role's code made 11-12 MiB of
    // its memory, packed under 5 (bench/RESULTS.md). For LLD, Rust's linker on this target
    // since 1.90; a name the binary no longer has is skipped. TASKFLOW_LINK_ORDER=off links
    // without it (another linker, e.g. a distribution's rustc with GNU ld).
    println!("cargo:rerun-if-env-changed=TASKFLOW_LINK_ORDER");
    let wanted = std::env::var("TASKFLOW_LINK_ORDER").map_or(true, |v| v != "off");
    if wanted && target == "x86_64-unknown-linux-gnu" {
        let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default();
        println!("cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={dir}/link-order.txt");
        println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
    }
}
