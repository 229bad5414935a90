//! How the `taskflow` binary is linked.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    // Relative relocations packed (DT_RELR): a position-independent binary carries one entry per
    // pointer in its read-only data (vtables, string tables), 1.7 MB of them, which the loader
    // reads in every process at start; packed, they are a few kilobytes, so each process starts
    // with that much less memory and the binary is that much smaller. Needs glibc 2.36 and
    // binutils 2.38 or newer (Debian 12, Ubuntu 22.04 and later); other targets link as before.
    let target = std::env::var("TARGET").unwrap_or_default();
    if target.ends_with("-linux-gnu") {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}
