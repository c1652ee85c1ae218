//! Where things live: the workspace root and cargo's target directory.
use std::{
    env,
    path::{Path, PathBuf},
};

/// The workspace root (the parent of this crate's directory).
pub fn workspace_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().unwrap_or(manifest_dir).to_path_buf()
}

/// `$CARGO_TARGET_DIR` (made absolute) or `<workspace>/target`.
pub fn target_dir(workspace_root: &Path) -> PathBuf {
    match env::var_os("CARGO_TARGET_DIR").filter(|v| !v.is_empty()) {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() {
                dir
            } else {
                // cargo resolves a relative CARGO_TARGET_DIR against the cwd.
                env::current_dir().map(|cwd| cwd.join(&dir)).unwrap_or(dir)
            }
        }
        None => workspace_root.join("target"),
    }
}

/// The deferscope binary that `cargo build [--release] -p deferscope` makes.
pub fn deferscope_bin(workspace_root: &Path, release: bool) -> PathBuf {
    target_dir(workspace_root).join(if release { "release" } else { "debug" }).join("deferscope")
}
