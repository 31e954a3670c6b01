//! Making `tunebook` available in every cell without the user typing `:dep`.
//!
//! evcxr compiles each cell into its own shared object. Linked statically, every cell
//! would carry its own copy of the library (and of its statics). So the kernel generates a
//! small facade crate of `crate-type = ["dylib"]` that re-exports `tunebook`: cells link
//! against that one shared library and share its state. How it is built and handed to
//! cells is `template.rs`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

pub const FACADE_PACKAGE: &str = "tunebook-notebook";
const VENV_TORCH: &str = ".venv/lib/python3.11/site-packages/torch";

/// The facade's build script and linker wrapper: they export libtorch's C wrappers, which
/// tch's generic functions (instantiated in cells) call.
const FACADE_BUILD_SCRIPT: &str = include_str!("../assets/facade/build.rs");
const FACADE_LINKER_WRAPPER: &str = include_str!("../assets/facade/ld.sh");
const FACADE_SOURCE: &str = include_str!("../assets/facade/lib.rs");

/// Where the library and the kernel's build caches live.
#[derive(Debug, Clone)]
pub struct Locations {
    pub lib_dir: PathBuf,
    pub cache_dir: PathBuf,
    /// libtorch root (has `lib/`), needed to build and load the library.
    pub libtorch: Option<PathBuf>,
    /// The workspace lock file, so the notebook builds the versions the repo tested.
    pub lockfile: Option<PathBuf>,
}

impl Locations {
    /// `TUNEBOOK_LIB_DIR`, else the `lib/` next to the kernel's source, else `<repo>/lib` for a
    /// kernel at `<repo>/target/<profile>/`.
    pub fn discover() -> Result<Locations, String> {
        // The source tree the kernel was built from comes first: with CARGO_TARGET_DIR outside
        // the repo (CI caches), the binary's own location says nothing about the repo.
        let built_from = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("lib");
        let lib_dir = match std::env::var_os("TUNEBOOK_LIB_DIR") {
            Some(dir) => PathBuf::from(dir),
            None if built_from.join("Cargo.toml").is_file() => built_from,
            None => {
                let exe = std::env::current_exe()
                    .map_err(|error| format!("cannot locate the kernel executable: {error}"))?;
                let repo = exe.parent().and_then(Path::parent).and_then(Path::parent).ok_or_else(
                    || format!("{} is not inside <repo>/target/<profile>/", exe.display()),
                )?;
                repo.join("lib")
            }
        };
        let lib_dir = lib_dir.canonicalize().map_err(|error| {
            format!("tunebook library directory {}: {error} (set TUNEBOOK_LIB_DIR)", lib_dir.display())
        })?;
        if !lib_dir.join("Cargo.toml").is_file() {
            return Err(format!(
                "{} has no Cargo.toml; set TUNEBOOK_LIB_DIR to the tunebook crate",
                lib_dir.display()
            ));
        }
        let repo = lib_dir.parent().unwrap_or(&lib_dir).to_path_buf();
        let cache_dir = match std::env::var_os("TUNEBOOK_KERNEL_CACHE") {
            Some(dir) => PathBuf::from(dir),
            None => default_cache_dir(&lib_dir)?,
        };
        let libtorch = std::env::var_os("LIBTORCH")
            .map(PathBuf::from)
            .map(|dir| if dir.is_relative() { repo.join(dir) } else { dir })
            .or_else(|| Some(repo.join(VENV_TORCH)))
            .filter(|dir| dir.join("lib").is_dir());
        let lockfile = Some(repo.join("Cargo.lock")).filter(|file| file.is_file());
        Ok(Locations { lib_dir, cache_dir, libtorch, lockfile })
    }

    pub fn facade_dir(&self) -> PathBuf {
        self.cache_dir.join("facade")
    }


    pub fn libtorch_lib(&self) -> Option<PathBuf> {
        self.libtorch.as_ref().map(|dir| dir.join("lib"))
    }

    /// The workspace the library belongs to: the nearest directory from the library up whose
    /// Cargo.toml has a `[workspace]` table (cargo's rule), else the library itself.
    pub fn workspace_root(&self) -> PathBuf {
        self.lib_dir
            .ancestors()
            .find(|dir| {
                std::fs::read_to_string(dir.join("Cargo.toml"))
                    .ok()
                    .and_then(|text| text.parse::<toml::Table>().ok())
                    .is_some_and(|manifest| manifest.contains_key("workspace"))
            })
            .unwrap_or(&self.lib_dir)
            .to_path_buf()
    }

    /// The workspace's `[profile]` tables: with the same profiles, the facade's build reuses
    /// every dependency the workspace's own build compiled.
    fn workspace_profiles(&self) -> String {
        let root = self.workspace_root().join("Cargo.toml");
        let profiles = std::fs::read_to_string(root)
            .ok()
            .and_then(|text| text.parse::<toml::Table>().ok())
            .and_then(|mut manifest| manifest.remove("profile"));
        match profiles {
            Some(profiles) => {
                let mut table = toml::Table::new();
                table.insert("profile".to_owned(), profiles);
                toml::to_string(&table).unwrap_or_default()
            }
            None => String::new(),
        }
    }

    fn facade_manifest(&self) -> String {
        format!(
            "# Generated by tunebook-kernel: lets notebook cells share one copy of tunebook.\n\
             [package]\nname = \"{FACADE_PACKAGE}\"\nversion = \"0.0.0\"\nedition = \"2021\"\npublish = false\n\n\
             [lib]\npath = \"lib.rs\"\n\n\
             [dependencies]\ntunebook = {{ path = {:?} }}\n\n\
             # Not part of any enclosing workspace.\n[workspace]\n\n\
             # The library workspace's profiles.\n{}",
            self.lib_dir.display().to_string(),
            self.workspace_profiles()
        )
    }

    /// Writes the facade crate; files are rewritten only when they change, so cargo keeps
    /// its build.
    pub fn write_facade(&self) -> std::io::Result<PathBuf> {
        let dir = self.facade_dir();
        std::fs::create_dir_all(&dir)?;
        write_if_changed(&dir.join("Cargo.toml"), &self.facade_manifest())?;
        write_if_changed(&dir.join("lib.rs"), FACADE_SOURCE)?;
        write_if_changed(&dir.join("build.rs"), FACADE_BUILD_SCRIPT)?;
        write_if_changed(&dir.join("ld.sh"), FACADE_LINKER_WRAPPER)?;
        Ok(dir)
    }

    /// What a template built from this facade is for (part of the template's stamp).
    pub fn facade_stamp(&self) -> String {
        format!("{}\n{FACADE_SOURCE}\n{FACADE_BUILD_SCRIPT}\n{FACADE_LINKER_WRAPPER}", self.facade_manifest())
    }

    /// The evcxr commands and code that load the library into a kernel whose build directory
    /// is `work_dir` (the template installed there), each with what it is doing.
    pub fn preload_cells(&self, work_dir: &Path) -> Result<Vec<(&'static str, String)>, String> {
        let stub = work_dir.join("tunebook-lib").join("stub");
        let mut cells = vec![(
            "linking the prebuilt library",
            format!(
                ":build_env CARGO_ENCODED_RUSTFLAGS={}\n:dep tunebook = {{ path = {:?}, package = \"{}\" }}",
                crate::template::cell_rustflags(work_dir)?,
                stub.display().to_string(),
                crate::template::STUB_PACKAGE
            ),
        )];
        // DebugResult: cells ending in an expression compile once (see the facade's lib.rs).
        let display = "use tunebook::__kernel::DebugResult as _;";
        if has_prelude(&self.lib_dir) {
            cells.push(("importing tunebook::prelude", format!("use tunebook::prelude::*;\n{display}")));
        } else {
            cells.push(("importing the kernel's result display", display.to_owned()));
        }
        Ok(cells)
    }
}

static USER_RUSTFLAGS: OnceLock<Option<OsString>> = OnceLock::new();

/// Lets rust-analyzer (which evcxr runs inside the kernel, with the kernel's environment)
/// see the stub's dependency on the library's sources; cargo builds of cells set their own
/// flags. Called before any thread starts.
pub fn enable_analysis_cfg() {
    let user = USER_RUSTFLAGS.get_or_init(|| std::env::var_os("RUSTFLAGS"));
    let mut flags = user.clone().unwrap_or_default();
    if !flags.is_empty() {
        flags.push(" ");
    }
    flags.push(format!("--cfg {}", crate::template::ANALYSIS_CFG));
    std::env::set_var("RUSTFLAGS", flags);
}

/// RUSTFLAGS as the user set them (builds of the library must see exactly these).
pub fn user_rustflags() -> Option<OsString> {
    match USER_RUSTFLAGS.get() {
        Some(saved) => saved.clone(),
        None => std::env::var_os("RUSTFLAGS"),
    }
}

/// `~/.cache/tunebook-kernel/<library path hash>`. Outside the repository on purpose: evcxr's
/// build directory has no `[workspace]` table, so inside the repo cargo would take it for an
/// undeclared member of the repo's workspace and refuse to build it.
fn default_cache_dir(lib_dir: &Path) -> Result<PathBuf, String> {
    use sha2::Digest;
    let base = match std::env::var_os("XDG_CACHE_HOME") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME").ok_or("HOME is not set; set TUNEBOOK_KERNEL_CACHE")?)
            .join(".cache"),
    };
    let digest = sha2::Sha256::digest(lib_dir.as_os_str().as_encoded_bytes());
    Ok(base.join("tunebook-kernel").join(&hex::encode(digest)[..16]))
}

/// Whether the library exposes `tunebook::prelude`.
pub fn has_prelude(lib_dir: &Path) -> bool {
    std::fs::read_to_string(lib_dir.join("src").join("lib.rs"))
        .is_ok_and(|source| declares_prelude(&source))
}

fn declares_prelude(source: &str) -> bool {
    source.lines().map(str::trim).any(|line| {
        line.starts_with("pub mod prelude") || (line.starts_with("pub use") && line.contains(" as prelude"))
    })
}

fn write_if_changed(path: &Path, contents: &str) -> std::io::Result<()> {
    if std::fs::read_to_string(path).is_ok_and(|existing| existing == contents) {
        return Ok(());
    }
    std::fs::write(path, contents)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prelude_declarations_are_recognised() {
        assert!(declares_prelude("pub mod data;\npub mod prelude;\n"));
        assert!(declares_prelude("pub mod prelude {\n pub use crate::Device;\n}"));
        assert!(declares_prelude("pub use crate::api as prelude;"));
        assert!(!declares_prelude("pub mod data;\n// pub mod prelude later\nmod prelude_impl;"));
    }

    #[test]
    fn facade_reexports_the_library_with_its_workspace_profiles() {
        let root = std::env::temp_dir().join(format!("tb-facade-{}", std::process::id()));
        let repo = root.join("repo");
        std::fs::create_dir_all(repo.join("lib/src")).unwrap();
        std::fs::write(
            repo.join("Cargo.toml"),
            "[workspace]\nmembers = [\"lib\"]\n\n[profile.dev.package.\"*\"]\nopt-level = 2\n",
        )
        .unwrap();
        std::fs::write(repo.join("lib/Cargo.toml"), "[package]\nname = \"tunebook\"\n").unwrap();
        let locations = Locations { lib_dir: repo.join("lib"), cache_dir: root.join("cache"), libtorch: None, lockfile: None };
        assert_eq!(locations.workspace_root(), repo);
        let dir = locations.write_facade().unwrap();
        let manifest: toml::Table = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap().parse().unwrap();
        assert_eq!(manifest["dependencies"]["tunebook"]["path"].as_str(), Some(repo.join("lib").to_str().unwrap()));
        assert!(manifest.contains_key("workspace"), "outside any enclosing workspace");
        assert_eq!(manifest["profile"]["dev"]["package"]["*"]["opt-level"].as_integer(), Some(2));
        let modified = std::fs::metadata(dir.join("lib.rs")).unwrap().modified().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        locations.write_facade().unwrap();
        assert_eq!(std::fs::metadata(dir.join("lib.rs")).unwrap().modified().unwrap(), modified);

        let work = root.join("work");
        std::fs::create_dir_all(work.join("tunebook-lib/lib")).unwrap();
        std::fs::write(work.join("tunebook-lib/lib/facade"), "libtunebook_notebook.so").unwrap();
        let cells = locations.preload_cells(&work).unwrap();
        assert!(cells[0].1.starts_with(":build_env CARGO_ENCODED_RUSTFLAGS=-Cprefer-dynamic\x1f--extern\x1ftunebook_notebook="));
        assert!(cells[0].1.contains("\n:dep tunebook = { path = "), "{}", cells[0].1);
        assert!(cells[0].1.ends_with("package = \"tunebook-notebook-stub\" }"), "{}", cells[0].1);
        std::fs::remove_dir_all(root).unwrap();
    }
}
