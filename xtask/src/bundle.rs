//! `cargo xtask bundle`: builds the `wren` package and packs it as
//! `target/bundled/Wren.vst3` and `target/bundled/Wren.clap` with nice-plug's
//! bundler (names from `bundler.toml`); `--install` then copies both bundles to
//! `~/.vst3` and `~/.clap`, where Linux hosts look for them.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// The package that holds the plugin.
const PACKAGE: &str = "wren";
/// The bundle name `bundler.toml` gives the package.
const BUNDLE_NAME: &str = "Wren";

/// Builds and bundles Wren (debug, or optimized with `release`), then installs
/// the bundles for the current user if `install` is set.
pub fn run(install: bool, release: bool) -> Result<()> {
    let mut args = vec!["bundle".to_string(), PACKAGE.to_string()];
    if release {
        args.push("--release".to_string());
    }
    nice_plug_xtask::main_with_args("cargo xtask", args)?;

    let bundled = target_dir()?.join("bundled");
    let vst3 = bundled.join(format!("{BUNDLE_NAME}.vst3"));
    let clap = bundled.join(format!("{BUNDLE_NAME}.clap"));
    for bundle in [&vst3, &clap] {
        if !bundle.exists() {
            bail!("the bundler did not produce {}", bundle.display());
        }
    }
    if install {
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .context("HOME is not set; cannot find ~/.vst3 and ~/.clap")?;
        install_bundle(&vst3, &home.join(".vst3"))?;
        install_bundle(&clap, &home.join(".clap"))?;
    }
    Ok(())
}

/// The workspace's target directory, as cargo reports it.
fn target_dir() -> Result<PathBuf> {
    let output = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .output()
        .context("running cargo metadata")?;
    if !output.status.success() {
        bail!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let metadata: serde_json::Value =
        serde_json::from_slice(&output.stdout).context("parsing cargo metadata")?;
    let target = metadata["target_directory"]
        .as_str()
        .context("cargo metadata has no target_directory")?;
    Ok(PathBuf::from(target))
}

/// Copies a bundle (a file or a folder) into `folder`, replacing an older copy.
fn install_bundle(bundle: &Path, folder: &Path) -> Result<()> {
    let name = bundle
        .file_name()
        .context("a bundle path has a file name")?;
    let destination = folder.join(name);
    fs::create_dir_all(folder).with_context(|| format!("creating {}", folder.display()))?;
    if destination.is_dir() {
        fs::remove_dir_all(&destination)
            .with_context(|| format!("removing the old {}", destination.display()))?;
    }
    copy_recursively(bundle, &destination)?;
    eprintln!("Installed {}", destination.display());
    Ok(())
}

fn copy_recursively(from: &Path, to: &Path) -> Result<()> {
    if from.is_dir() {
        fs::create_dir_all(to).with_context(|| format!("creating {}", to.display()))?;
        for entry in fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
            let entry = entry?;
            copy_recursively(&entry.path(), &to.join(entry.file_name()))?;
        }
    } else {
        fs::copy(from, to)
            .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installing_replaces_an_older_bundle_with_all_its_files() {
        let root = std::env::temp_dir().join(format!("wren-install-{}", std::process::id()));
        let bundle = root.join("bundled/Wren.vst3");
        fs::create_dir_all(bundle.join("Contents/x86_64-linux")).unwrap();
        fs::write(bundle.join("Contents/x86_64-linux/Wren.so"), b"new").unwrap();
        let folder = root.join("home/.vst3");
        fs::create_dir_all(folder.join("Wren.vst3/stale")).unwrap();

        install_bundle(&bundle, &folder).unwrap();
        let installed = folder.join("Wren.vst3/Contents/x86_64-linux/Wren.so");
        assert_eq!(fs::read(installed).unwrap(), b"new");
        assert!(!folder.join("Wren.vst3/stale").exists());

        let clap = root.join("bundled/Wren.clap");
        fs::write(&clap, b"clap").unwrap();
        install_bundle(&clap, &root.join("home/.clap")).unwrap();
        assert_eq!(
            fs::read(root.join("home/.clap/Wren.clap")).unwrap(),
            b"clap"
        );
        fs::remove_dir_all(&root).unwrap();
    }
}
