//! `tunebook-kernel install`: writes the kernelspec Jupyter uses to start this kernel.

use anyhow::{bail, Context, Result};
use serde_json::json;
use std::path::{Path, PathBuf};

pub const KERNEL_NAME: &str = "tunebook";

/// Where to install, as `jupyter kernelspec install` understands it.
#[derive(Debug, PartialEq)]
pub enum Target {
    User,
    Prefix(PathBuf),
    SysPrefix,
}

impl Target {
    pub fn parse(args: &[String]) -> Result<Target> {
        match args {
            [] => Ok(Target::User),
            [flag] if flag == "--user" => Ok(Target::User),
            [flag] if flag == "--sys-prefix" => Ok(Target::SysPrefix),
            [flag, prefix] if flag == "--prefix" => Ok(Target::Prefix(PathBuf::from(prefix))),
            _ => bail!("usage: tunebook-kernel install [--user | --sys-prefix | --prefix DIR]"),
        }
    }

    fn kernels_dir(&self) -> Result<PathBuf> {
        let data_dir = match self {
            Target::Prefix(prefix) => prefix.join("share").join("jupyter"),
            Target::SysPrefix => python_prefix()?.join("share").join("jupyter"),
            Target::User => match std::env::var_os("JUPYTER_DATA_DIR") {
                Some(dir) => PathBuf::from(dir),
                None => {
                    let home = std::env::var_os("HOME").context("HOME is not set")?;
                    PathBuf::from(home).join(".local").join("share").join("jupyter")
                }
            },
        };
        Ok(data_dir.join("kernels"))
    }
}

/// sys.prefix of the active Python environment: the virtualenv or conda env if one is
/// active, else what `python3` reports.
fn python_prefix() -> Result<PathBuf> {
    for variable in ["VIRTUAL_ENV", "CONDA_PREFIX"] {
        if let Some(prefix) = std::env::var_os(variable) {
            return Ok(PathBuf::from(prefix));
        }
    }
    let output = std::process::Command::new("python3")
        .args(["-c", "import sys; print(sys.prefix)"])
        .output()
        .context("--sys-prefix: no VIRTUAL_ENV or CONDA_PREFIX, and python3 could not be run")?;
    if !output.status.success() {
        bail!("--sys-prefix: python3 failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&output.stdout).trim()))
}

pub fn kernel_json(binary: &Path) -> serde_json::Value {
    json!({
        "argv": [binary.display().to_string(), "--connection-file", "{connection_file}"],
        "display_name": "Rust (tunebook)",
        "language": "rust",
        "interrupt_mode": "message",
        "metadata": {"debugger": false},
    })
}

/// Writes `<kernels>/tunebook/kernel.json`; returns the kernelspec directory.
pub fn install(target: &Target) -> Result<PathBuf> {
    let binary = std::env::current_exe()
        .and_then(|path| path.canonicalize())
        .context("locating the kernel executable")?;
    let dir = target.kernels_dir()?.join(KERNEL_NAME);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let spec = serde_json::to_string_pretty(&kernel_json(&binary))?;
    std::fs::write(dir.join("kernel.json"), spec)
        .with_context(|| format!("writing {}", dir.join("kernel.json").display()))?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments() {
        let args = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(Target::parse(&args(&[])).unwrap(), Target::User);
        assert_eq!(Target::parse(&args(&["--sys-prefix"])).unwrap(), Target::SysPrefix);
        assert_eq!(Target::parse(&args(&["--prefix", "/p"])).unwrap(), Target::Prefix("/p".into()));
        assert!(Target::parse(&args(&["--prefix"])).is_err());
    }

    #[test]
    fn prefix_install_writes_a_message_interrupt_kernelspec() {
        let prefix = std::env::temp_dir().join(format!("tb-install-{}", std::process::id()));
        let dir = install(&Target::Prefix(prefix.clone())).unwrap();
        assert_eq!(dir, prefix.join("share/jupyter/kernels/tunebook"));
        let spec: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("kernel.json")).unwrap()).unwrap();
        assert_eq!(spec["interrupt_mode"], "message");
        assert_eq!(spec["language"], "rust");
        assert_eq!(spec["argv"][1], "--connection-file");
        assert_eq!(spec["argv"][2], "{connection_file}");
        assert!(Path::new(spec["argv"][0].as_str().unwrap()).is_absolute());
        std::fs::remove_dir_all(prefix).unwrap();
    }
}
