//! Builds the guest functions in `guest-functions/` into WebAssembly
//! components, so that a fresh clone needs no extra step: the bundled
//! functions are embedded in the `weir` binary, and the hostile test guests
//! are found by the tests through `WEIR_GUESTS_DIR`.

use std::path::{Path, PathBuf};

#[allow(dead_code)]
#[path = "src/plugin/toolchain.rs"]
mod toolchain;

fn main() {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let root = manifest_dir.parent().unwrap_or(Path::new("..")).to_path_buf();
    println!("cargo:rerun-if-changed={}", root.join("guest-functions").display());
    println!("cargo:rerun-if-changed={}", root.join("wit").display());
    println!("cargo:rerun-if-env-changed=CARGO_TARGET_DIR");

    // One target dir for everything: guests get their own folder inside it,
    // so the nested cargo never waits on the lock our own build holds.
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|d| if d.is_absolute() { d } else { root.join(d) })
        .unwrap_or_else(|| root.join("target"));
    let guest_target_dir = target_dir.join("wasm-guests");

    if let Err(e) = toolchain::ensure_guest_target(&root) {
        panic!("cannot build the guest functions: {e}");
    }
    let manifest = root.join("guest-functions").join("Cargo.toml");
    let status = toolchain::guest_build_command(&manifest, &guest_target_dir).status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => panic!("building the guest functions failed ({s}); see the cargo output above"),
        Err(e) => panic!("cannot run cargo to build the guest functions: {e}"),
    }
    let out = toolchain::guest_output_dir(&guest_target_dir);
    println!("cargo:rustc-env=WEIR_GUESTS_DIR={}", out.display());
}
