//! `tunebook-kernel install`: writes the kernelspec Jupyter uses to start this kernel
//! (kernel.json with the environment the kernel needs, and the logos).

use crate::preload::Locations;
use anyhow::{bail, Context, Result};
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};

pub const KERNEL_NAME: &str = "tunebook";
pub const USAGE: &str = "tunebook-kernel install [--user | --sys-prefix | --prefix DIR] [--no-warm]";

/// Logos Jupyter shows in the launcher, by the file names it looks for.
const LOGOS: [(&str, &[u8]); 3] = [
    ("logo-32x32.png", include_bytes!("../assets/logo-32x32.png")),
    ("logo-64x64.png", include_bytes!("../assets/logo-64x64.png")),
    ("logo-svg.svg", include_bytes!("../assets/logo-svg.svg")),
];

/// Where to install, as `jupyter kernelspec install` understands it.
#[derive(Debug, PartialEq)]
pub enum Target {
    User,
    Prefix(PathBuf),
    SysPrefix,
}

/// The command line of `install`.
#[derive(Debug, PartialEq)]
pub struct Options {
    pub target: Target,
    /// Prebuild the library into the template directory after writing the spec (`warm`).
    pub warm: bool,
}

impl Options {
    pub fn parse(args: &[String]) -> Result<Options> {
        let mut target = None;
        let mut warm = true;
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            let chosen = match arg.as_str() {
                "--no-warm" => {
                    warm = false;
                    continue;
                }
                "--user" => Target::User,
                "--sys-prefix" => Target::SysPrefix,
                "--prefix" => match args.next() {
                    Some(prefix) => Target::Prefix(PathBuf::from(prefix)),
                    None => bail!("--prefix needs a directory\nusage: {USAGE}"),
                },
                other => bail!("unknown argument {other:?}\nusage: {USAGE}"),
            };
            if target.replace(chosen).is_some() {
                bail!("give only one of --user, --sys-prefix, --prefix\nusage: {USAGE}");
            }
        }
        Ok(Options { target: target.unwrap_or(Target::User), warm })
    }
}

impl Target {
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

/// What a kernel started by Jupyter (whose environment is the server's, not this shell's)
/// needs to find what `install` found: the library, libtorch, and a non-default cache.
pub fn kernel_env(locations: &Locations) -> Map<String, Value> {
    let mut env = Map::new();
    let path = |dir: &Path| Value::String(dir.display().to_string());
    env.insert("TUNEBOOK_LIB_DIR".to_owned(), path(&locations.lib_dir));
    if let Some(libtorch) = &locations.libtorch {
        env.insert("LIBTORCH".to_owned(), path(libtorch));
    }
    // The default cache is derived from the library path, so the kernel finds it again;
    // an overridden one (where `warm` put the template) must be passed on.
    if std::env::var_os("TUNEBOOK_KERNEL_CACHE").is_some() {
        env.insert("TUNEBOOK_KERNEL_CACHE".to_owned(), path(&locations.cache_dir));
    }
    env
}

pub fn kernel_json(binary: &Path, env: Map<String, Value>) -> Value {
    json!({
        "argv": [binary.display().to_string(), "--connection-file", "{connection_file}"],
        "display_name": "Rust (tunebook)",
        "language": "rust",
        "interrupt_mode": "message",
        "env": env,
        "metadata": {"debugger": false},
    })
}

/// Writes `<kernels>/tunebook/` (kernel.json and logos); returns the kernelspec directory.
/// Without a library to point at, the spec has no `env` and the kernel runs plain Rust.
pub fn install(target: &Target, locations: Option<&Locations>) -> Result<PathBuf> {
    let binary = std::env::current_exe()
        .and_then(|path| path.canonicalize())
        .context("locating the kernel executable")?;
    let dir = target.kernels_dir()?.join(KERNEL_NAME);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let env = locations.map(kernel_env).unwrap_or_default();
    let spec = serde_json::to_string_pretty(&kernel_json(&binary, env))?;
    let files = std::iter::once(("kernel.json", spec.as_bytes())).chain(LOGOS);
    for (name, contents) in files {
        let path = dir.join(name);
        std::fs::write(&path, contents).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn arguments() {
        let parse = |list: &[&str]| Options::parse(&args(list));
        assert_eq!(parse(&[]).unwrap(), Options { target: Target::User, warm: true });
        assert_eq!(parse(&["--sys-prefix"]).unwrap().target, Target::SysPrefix);
        assert_eq!(
            parse(&["--prefix", "/p", "--no-warm"]).unwrap(),
            Options { target: Target::Prefix("/p".into()), warm: false }
        );
        assert_eq!(parse(&["--no-warm", "--user"]).unwrap(), Options { target: Target::User, warm: false });
        assert!(parse(&["--prefix"]).is_err());
        assert!(parse(&["--user", "--sys-prefix"]).is_err());
        assert!(parse(&["--warm"]).is_err());
    }

    #[test]
    fn environment_names_the_library_and_libtorch() {
        let mut locations = Locations {
            lib_dir: PathBuf::from("/repo/lib"),
            cache_dir: PathBuf::from("/cache"),
            libtorch: Some(PathBuf::from("/repo/.venv/torch")),
            lockfile: None,
        };
        let env = kernel_env(&locations);
        assert_eq!(env["TUNEBOOK_LIB_DIR"], "/repo/lib");
        assert_eq!(env["LIBTORCH"], "/repo/.venv/torch");
        locations.libtorch = None;
        assert!(!kernel_env(&locations).contains_key("LIBTORCH"));
    }

    #[test]
    fn prefix_install_writes_kernelspec_with_env_and_logos() {
        let prefix = std::env::temp_dir().join(format!("tb-install-{}", std::process::id()));
        let locations = Locations::discover().expect("the source tree's lib/");
        let dir = install(&Target::Prefix(prefix.clone()), Some(&locations)).unwrap();
        assert_eq!(dir, prefix.join("share/jupyter/kernels/tunebook"));
        let spec: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("kernel.json")).unwrap()).unwrap();
        assert_eq!(spec["interrupt_mode"], "message");
        assert_eq!(spec["language"], "rust");
        assert_eq!(spec["display_name"], "Rust (tunebook)");
        assert_eq!(spec["argv"][1], "--connection-file");
        assert_eq!(spec["argv"][2], "{connection_file}");
        assert!(Path::new(spec["argv"][0].as_str().unwrap()).is_absolute());
        let lib_dir = spec["env"]["TUNEBOOK_LIB_DIR"].as_str().unwrap();
        assert_eq!(Path::new(lib_dir), locations.lib_dir);
        assert!(Path::new(lib_dir).join("Cargo.toml").is_file());
        match &locations.libtorch {
            Some(libtorch) => assert_eq!(Path::new(spec["env"]["LIBTORCH"].as_str().unwrap()), libtorch),
            None => assert!(spec["env"].get("LIBTORCH").is_none()),
        }
        for (name, contents) in LOGOS {
            assert_eq!(std::fs::read(dir.join(name)).unwrap(), contents, "{name}");
        }
        std::fs::remove_dir_all(prefix).unwrap();
    }

    #[test]
    fn logos_are_pngs_of_the_named_size_and_an_svg() {
        for (name, contents) in LOGOS {
            if let Some(size) = name.strip_prefix("logo-").and_then(|rest| rest.strip_suffix(".png")) {
                assert_eq!(&contents[..8], b"\x89PNG\r\n\x1a\n", "{name}");
                // IHDR: width and height, big-endian, right after the chunk header.
                let width = u32::from_be_bytes(contents[16..20].try_into().unwrap());
                let height = u32::from_be_bytes(contents[20..24].try_into().unwrap());
                assert_eq!(format!("{width}x{height}"), size);
            } else {
                assert!(std::str::from_utf8(contents).unwrap().starts_with("<svg"), "{name}");
            }
        }
    }

    #[test]
    fn without_a_library_the_spec_has_an_empty_env() {
        let prefix = std::env::temp_dir().join(format!("tb-install-bare-{}", std::process::id()));
        let dir = install(&Target::Prefix(prefix.clone()), None).unwrap();
        let spec: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("kernel.json")).unwrap()).unwrap();
        assert_eq!(spec["env"], json!({}));
        std::fs::remove_dir_all(prefix).unwrap();
    }
}
