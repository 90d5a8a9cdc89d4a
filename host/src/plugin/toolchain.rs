//! Building guest crates into WebAssembly components.
//!
//! Shared, through `#[path]`, by `host/build.rs` (which builds the bundled
//! guests) and by `weir plugin build`, so it uses nothing but `std`.

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The target guests are built for: it produces components directly.
pub const GUEST_TARGET: &str = "wasm32-wasip2";

/// Rust flags for guests (as cargo's `\x1f`-separated encoded flags):
/// - SIMD makes loop-heavy functions (a max over a window) several times
///   cheaper, which matters under epoch checks;
/// - a 64 KiB shadow stack (the C toolchain's default; Rust's is 1 MiB) puts
///   everything a small guest touches in the first 128 KiB of its memory,
///   which a freed pool slot keeps mapped (`engine::KEEP_RESIDENT`), so an
///   instantiation costs no page faults: 19–22 µs became 8.8 µs. A guest
///   that recurses deeper than that traps; the host is unharmed.
pub const GUEST_RUSTFLAGS: &str = "-Ctarget-feature=+simd128\x1f-Clink-arg=-zstack-size=65536";

/// Why a guest could not be built; the message says what to do.
#[derive(Debug)]
pub struct ToolchainError(pub String);

impl fmt::Display for ToolchainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ToolchainError {}

/// The `rustc` to ask about installed targets: the one cargo handed us, if
/// any, so a build script asks the toolchain that is building it.
fn rustc() -> OsString {
    std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into())
}

/// The `cargo` to run: the one that is running us, if any.
pub fn cargo() -> OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

/// Whether the active toolchain has the standard library for [`GUEST_TARGET`].
fn target_installed(dir: &Path) -> Result<bool, ToolchainError> {
    let out = Command::new(rustc())
        .args(["--print", "sysroot"])
        .current_dir(dir)
        .output()
        .map_err(|e| ToolchainError(format!("cannot run rustc to find its sysroot: {e}")))?;
    if !out.status.success() {
        return Err(ToolchainError(format!(
            "`rustc --print sysroot` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let sysroot = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    Ok(sysroot.join("lib/rustlib").join(GUEST_TARGET).is_dir())
}

/// Makes sure the active toolchain can build for [`GUEST_TARGET`], adding
/// the target with rustup when it is missing: rustup does not do that by
/// itself, even when `rust-toolchain.toml` lists the target.
///
/// `dir` is where the toolchain is resolved (a `rust-toolchain.toml` there
/// or above it applies).
pub fn ensure_guest_target(dir: &Path) -> Result<(), ToolchainError> {
    if target_installed(dir)? {
        return Ok(());
    }
    let status =
        Command::new("rustup").args(["target", "add", GUEST_TARGET]).current_dir(dir).status().map_err(
            |e| {
                ToolchainError(format!(
                    "the {GUEST_TARGET} target is missing and rustup could not be run ({e}); \
                 install it with `rustup target add {GUEST_TARGET}`"
                ))
            },
        )?;
    if !status.success() || !target_installed(dir)? {
        return Err(ToolchainError(format!(
            "`rustup target add {GUEST_TARGET}` failed; run it by hand and try again"
        )));
    }
    Ok(())
}

/// A `cargo build` of the guest workspace or crate at `manifest`, in release
/// mode, for [`GUEST_TARGET`], into `target_dir`.
///
/// The environment a parent cargo gives a build script is scrubbed, so that
/// its target dir, flags and wrappers (clippy's, say) do not leak into the
/// guests' build.
pub fn guest_build_command(manifest: &Path, target_dir: &Path) -> Command {
    let mut cmd = Command::new(cargo());
    for (key, _) in std::env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        let keep = key == "CARGO_HOME"
            || key.starts_with("CARGO_NET_")
            || key.starts_with("CARGO_HTTP_")
            || key.starts_with("CARGO_REGISTR");
        let scrub = (key.starts_with("CARGO_") && !keep)
            || matches!(key, "RUSTFLAGS" | "RUSTC_WORKSPACE_WRAPPER" | "RUSTDOCFLAGS");
        if scrub {
            cmd.env_remove(key);
        }
    }
    cmd.env("CARGO_ENCODED_RUSTFLAGS", GUEST_RUSTFLAGS)
        .arg("build")
        .arg("--release")
        .args(["--target", GUEST_TARGET])
        .arg("--manifest-path")
        .arg(manifest)
        .arg("--target-dir")
        .arg(target_dir);
    if let Some(dir) = manifest.parent() {
        cmd.current_dir(dir);
    }
    cmd
}

/// Where [`guest_build_command`] puts the components it builds.
pub fn guest_output_dir(target_dir: &Path) -> PathBuf {
    target_dir.join(GUEST_TARGET).join("release")
}
