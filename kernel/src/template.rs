//! The prebuilt library every kernel starts from.
//!
//! `warm` (and a kernel that finds the library changed) builds the facade as a dylib with
//! cargo *in the library's own target directory*, so everything the library's workspace
//! build already compiled (libtorch bindings, polars, tokenizers) is reused, not rebuilt.
//! The facade, the metadata of every crate it contains and a stub crate are then copied into
//! `<cache>/template`:
//!
//! ```text
//! template/lib/           libtunebook_notebook.so, lib*.rmeta, proc-macro .so, native-paths
//! template/stub/          the crate cells depend on as `tunebook` (`pub use tunebook_notebook::*;`)
//! template/Cargo.lock     the versions the facade was built with
//! ```
//!
//! Cells then depend only on the stub, and rustc gets the facade with `--extern` (see
//! [`cell_rustflags`]): cargo has one tiny crate to check per cell instead of the library's
//! whole dependency graph. rust-analyzer, which types notebook variables, still needs the
//! library's sources: the stub declares the facade as a dependency under
//! `cfg(tunebook_analysis)`, a cfg the kernel sets only for rust-analyzer's `cargo metadata`.

use crate::preload::{Locations, FACADE_PACKAGE};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The crate cells depend on; its name in cells is `tunebook`.
pub const STUB_PACKAGE: &str = "tunebook-notebook-stub";
/// The facade's crate name as rustc sees it (`--extern`).
const FACADE_CRATE: &str = "tunebook_notebook";
/// The cfg under which the stub depends on the facade's sources (rust-analyzer only).
pub const ANALYSIS_CFG: &str = "tunebook_analysis";
const STAMP_FILE: &str = "tunebook-kernel.stamp";
const NATIVE_PATHS_FILE: &str = "native-paths";
const ANALYSIS_MANIFEST: &str = "analysis.toml";
const LEAN_MANIFEST: &str = "lean.toml";
/// Where `warm` built, so a kernel started without the build environment rebuilds there.
const TARGET_DIR_FILE: &str = "target-dir";

/// Bump when the template's layout or the way it is built changes.
const TEMPLATE_REVISION: u32 = 3;

pub fn template_dir(locations: &Locations) -> PathBuf {
    locations.cache_dir.join("template")
}

/// What identifies a template: the kernel, the facade it was built from and the library's
/// sources (paths, sizes, modification times) and lock file.
pub fn stamp(locations: &Locations) -> String {
    format!(
        "kernel {} template revision {TEMPLATE_REVISION}\nlibtorch {:?}\nlibrary sources {}\n{}",
        env!("CARGO_PKG_VERSION"),
        locations.libtorch,
        source_fingerprint(locations),
        locations.facade_stamp(),
    )
}

pub fn is_current(locations: &Locations) -> bool {
    std::fs::read_to_string(template_dir(locations).join(STAMP_FILE)).is_ok_and(|found| found == stamp(locations))
}

fn source_fingerprint(locations: &Locations) -> String {
    use sha2::Digest;
    let mut files = Vec::new();
    list_sources(&locations.lib_dir, &locations.lib_dir, &mut files);
    files.sort();
    let mut hasher = sha2::Sha256::new();
    for entry in &files {
        hasher.update(entry.as_bytes());
        hasher.update(b"\n");
    }
    if let Some(lockfile) = &locations.lockfile {
        hasher.update(std::fs::read(lockfile).unwrap_or_default());
    }
    hex::encode(hasher.finalize())
}

/// `relative/path size mtime` for every file of the library but build output and hidden files.
fn list_sources(root: &Path, dir: &Path, out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || name == "target" {
            continue;
        }
        let path = entry.path();
        match entry.metadata() {
            Ok(meta) if meta.is_dir() => list_sources(root, &path, out),
            Ok(meta) => {
                let modified = meta.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
                let relative = path.strip_prefix(root).unwrap_or(&path).display().to_string();
                out.push(format!("{relative} {} {}", meta.len(), modified.map_or(0, |d| d.as_nanos())));
            }
            Err(_) => {}
        }
    }
}

/// What a build left behind for cells: the facade and the metadata of the crates in it.
#[derive(Debug, Default, PartialEq)]
struct Artifacts {
    files: Vec<PathBuf>,
    facade: Option<PathBuf>,
    native_paths: Vec<PathBuf>,
}

impl Artifacts {
    /// Reads one line of cargo's `--message-format=json` output.
    fn record(&mut self, message: &Value) {
        match message["reason"].as_str() {
            Some("compiler-artifact") => {
                let kinds: Vec<&str> =
                    message["target"]["kind"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
                if kinds.iter().all(|kind| matches!(*kind, "custom-build" | "bin" | "test" | "bench" | "example")) {
                    return;
                }
                let files: Vec<PathBuf> =
                    message["filenames"].as_array().into_iter().flatten().filter_map(Value::as_str).map(PathBuf::from).collect();
                let has = |extension: &str| files.iter().any(|f| f.extension().is_some_and(|e| e == extension));
                // Cells only read a linked-in crate's metadata; .rmeta is a third of the .rlib.
                let wanted = if has("rmeta") { "rmeta" } else if has("so") { "so" } else { "rlib" };
                for file in files.into_iter().filter(|f| f.extension().is_some_and(|e| e == wanted)) {
                    if message["target"]["name"].as_str() == Some(FACADE_CRATE) && wanted == "so" {
                        self.facade = Some(file.clone());
                    }
                    self.files.push(file);
                }
            }
            Some("build-script-executed") => {
                for path in message["linked_paths"].as_array().into_iter().flatten().filter_map(Value::as_str) {
                    // `native=/dir`, `all=/dir` or a bare directory.
                    let dir = PathBuf::from(path.split_once('=').map_or(path, |(_, dir)| dir));
                    if !self.native_paths.contains(&dir) {
                        self.native_paths.push(dir);
                    }
                }
            }
            _ => {}
        }
    }
}

/// Builds the facade dylib and replaces the template with it.
pub fn build(locations: &Locations, progress: &mut dyn FnMut(String)) -> Result<(), String> {
    let facade = locations
        .write_facade()
        .map_err(|error| format!("writing the facade crate in {}: {error}", locations.facade_dir().display()))?;
    let target_dir = target_dir(locations)?;
    progress(format!("tunebook: building the library for notebook cells in {}", target_dir.display()));
    let artifacts = run_cargo(locations, &facade, &target_dir, progress)?;
    let facade_so = artifacts.facade.clone().ok_or("cargo reported no facade library (libtunebook_notebook.so)")?;

    let final_dir = template_dir(locations);
    let staging = locations.cache_dir.join(format!("template.new-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    let lib = staging.join("lib");
    std::fs::create_dir_all(&lib).map_err(|error| format!("creating {}: {error}", lib.display()))?;
    for file in &artifacts.files {
        let name = file.file_name().ok_or_else(|| format!("{} has no file name", file.display()))?;
        std::fs::copy(file, lib.join(name)).map_err(|error| format!("copying {}: {error}", file.display()))?;
    }
    let native: Vec<String> = artifacts.native_paths.iter().map(|p| p.display().to_string()).collect();
    write(&lib.join(NATIVE_PATHS_FILE), &(native.join("\n") + "\n"))?;
    let facade_name = facade_so.file_name().unwrap_or_default().to_string_lossy().into_owned();
    write(&lib.join("facade"), &facade_name)?;
    write_stub(&staging.join("stub"), &facade)?;
    if let Ok(lock) = std::fs::read(facade.join("Cargo.lock")) {
        std::fs::write(staging.join("Cargo.lock"), lock).map_err(|error| format!("writing Cargo.lock: {error}"))?;
    }
    write(&staging.join(STAMP_FILE), &stamp(locations))?;
    write(&locations.cache_dir.join(TARGET_DIR_FILE), &target_dir.display().to_string())?;
    // Kernels hold hard links to the files they use, so replacing the directory is safe.
    let _ = std::fs::remove_dir_all(&final_dir);
    std::fs::rename(&staging, &final_dir).or_else(|error| {
        // Another kernel finished the same build first.
        let _ = std::fs::remove_dir_all(&staging);
        if is_current(locations) { Ok(()) } else { Err(format!("installing {}: {error}", final_dir.display())) }
    })
}

fn write(path: &Path, contents: &str) -> Result<(), String> {
    std::fs::write(path, contents).map_err(|error| format!("writing {}: {error}", path.display()))
}

fn write_stub(dir: &Path, facade: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|error| format!("creating {}: {error}", dir.display()))?;
    let package = format!(
        "# Generated by tunebook-kernel: what cells depend on as `tunebook`.\n\
         [package]\nname = \"{STUB_PACKAGE}\"\nversion = \"0.0.0\"\nedition = \"2021\"\npublish = false\n\n\
         [lib]\npath = \"lib.rs\"\n\n[workspace]\n"
    );
    let analysis = format!(
        "{package}\n\
         # Seen by rust-analyzer only (the kernel gives it --cfg {ANALYSIS_CFG}); cargo builds\n\
         # cells without it and rustc gets the prebuilt facade through --extern.\n\
         [target.'cfg({ANALYSIS_CFG})'.dependencies]\n{FACADE_CRATE} = {{ path = {:?}, package = \"{FACADE_PACKAGE}\" }}\n",
        facade.display().to_string()
    );
    write(&dir.join(ANALYSIS_MANIFEST), &analysis)?;
    write(&dir.join(LEAN_MANIFEST), &package)?;
    write(&dir.join("Cargo.toml"), &analysis)?;
    write(&dir.join("lib.rs"), &format!("pub use {FACADE_CRATE}::*;\n"))
}

/// Which dependencies the stub in a kernel's build directory declares. rust-analyzer needs
/// the library's sources whenever it (re)loads the build crate's Cargo.toml: at the preload,
/// and after a `:dep` changed it. For every other cell the stub declares nothing, and cargo
/// checks one tiny crate instead of loading ~400 locked packages (0.15 s less per cell).
pub struct StubManifest {
    work_dir: PathBuf,
    analysis: bool,
    analysis_cells: u8,
}

impl StubManifest {
    /// The stub as `install_into` left it: with the library's sources.
    pub fn installed(work_dir: &Path) -> StubManifest {
        StubManifest { work_dir: work_dir.to_path_buf(), analysis: true, analysis_cells: 0 }
    }

    /// Before a cell: a cell adding a dependency, and the cell after it (evcxr writes the new
    /// Cargo.toml, which rust-analyzer reloads, when code next runs), see the library's sources.
    pub fn before_cell(&mut self, code: &str) -> Result<(), String> {
        if code.lines().any(|line| line.trim_start().starts_with(":dep")) {
            self.analysis_cells = 2;
        }
        self.set(self.analysis_cells > 0)
    }

    pub fn after_cell(&mut self) {
        self.analysis_cells = self.analysis_cells.saturating_sub(1);
    }

    pub fn set(&mut self, analysis: bool) -> Result<(), String> {
        if analysis == self.analysis {
            return Ok(());
        }
        let stub = self.work_dir.join("tunebook-lib").join("stub");
        let manifest = if analysis { ANALYSIS_MANIFEST } else { LEAN_MANIFEST };
        std::fs::copy(stub.join(manifest), stub.join("Cargo.toml")).map_err(|error| format!("switching {}: {error}", stub.display()))?;
        if analysis {
            // Cargo pruned the library's packages from the lock while the stub declared
            // nothing; put the built versions back so nothing is resolved anew (or online).
            let lock = self.work_dir.join("Cargo.lock");
            let merged = merge_lockfiles(&self.work_dir.join("tunebook-lib").join("Cargo.lock"), &lock)?;
            write(&lock, &merged)?;
        }
        self.analysis = analysis;
        Ok(())
    }
}

/// The packages of both lock files (the first's version header). Cargo drops the ones no
/// longer used on its next run.
fn merge_lockfiles(template: &Path, current: &Path) -> Result<String, String> {
    let read = |path: &Path| -> Result<toml::Table, String> {
        match std::fs::read_to_string(path) {
            Ok(text) => text.parse().map_err(|error| format!("{}: {error}", path.display())),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(toml::Table::new()),
            Err(error) => Err(format!("reading {}: {error}", path.display())),
        }
    };
    let mut merged = read(template)?;
    let current = read(current)?;
    let key = |package: &toml::Value| {
        ["name", "version", "source"].map(|field| package.get(field).and_then(toml::Value::as_str).unwrap_or_default().to_owned())
    };
    let mut packages: Vec<toml::Value> = merged.remove("package").and_then(|p| p.as_array().cloned()).unwrap_or_default();
    let known: std::collections::HashSet<_> = packages.iter().map(key).collect();
    for package in current.get("package").and_then(toml::Value::as_array).into_iter().flatten() {
        if !known.contains(&key(package)) {
            packages.push(package.clone());
        }
    }
    if !merged.contains_key("version") {
        if let Some(version) = current.get("version") {
            merged.insert("version".to_owned(), version.clone());
        }
    }
    merged.insert("package".to_owned(), toml::Value::Array(packages));
    toml::to_string(&merged).map_err(|error| format!("writing the merged lock file: {error}"))
}

/// The library's target directory, where its workspace build left the dependencies. A kernel
/// rebuilding after a library change uses the one `warm` used: Jupyter may start it without
/// the `CARGO_TARGET_DIR` the build had.
fn target_dir(locations: &Locations) -> Result<PathBuf, String> {
    if std::env::var_os("CARGO_TARGET_DIR").is_none() {
        if let Ok(dir) = std::fs::read_to_string(locations.cache_dir.join(TARGET_DIR_FILE)) {
            if Path::new(dir.trim()).is_dir() {
                return Ok(PathBuf::from(dir.trim()));
            }
        }
    }
    let output = cargo_command(locations)
        .args(["metadata", "--format-version", "1", "--no-deps", "--offline", "--manifest-path"])
        .arg(locations.lib_dir.join("Cargo.toml"))
        .output()
        .map_err(|error| format!("running cargo metadata: {error}"))?;
    if !output.status.success() {
        return Err(format!("cargo metadata for {}: {}", locations.lib_dir.display(), String::from_utf8_lossy(&output.stderr).trim()));
    }
    let metadata: Value =
        serde_json::from_slice(&output.stdout).map_err(|error| format!("reading cargo metadata: {error}"))?;
    metadata["target_directory"].as_str().map(PathBuf::from).ok_or_else(|| "cargo metadata has no target_directory".to_owned())
}

/// Cargo run from the library's workspace root, so the workspace's `.cargo/config.toml`
/// (e.g. its `LIBTORCH`) applies exactly as in its own builds: build scripts that track an
/// environment variable would otherwise rebuild.
fn cargo_command(locations: &Locations) -> Command {
    let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    command.current_dir(locations.workspace_root());
    if let Some(flags) = crate::preload::user_rustflags() {
        command.env("RUSTFLAGS", flags);
    } else {
        command.env_remove("RUSTFLAGS");
    }
    if let Some(libtorch) = &locations.libtorch {
        if std::env::var_os("LIBTORCH").is_none() {
            command.env("LIBTORCH", libtorch);
        }
    }
    command
}

fn run_cargo(
    locations: &Locations,
    facade: &Path,
    target_dir: &Path,
    progress: &mut dyn FnMut(String),
) -> Result<Artifacts, String> {
    let mut command = cargo_command(locations);
    command
        .args(["rustc", "--lib", "--crate-type", "dylib", "--message-format=json-render-diagnostics", "--manifest-path"])
        .arg(facade.join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", target_dir)
        .args(["--", "-C", "prefer-dynamic"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(lockfile) = &locations.lockfile {
        // The versions the library's workspace tested (and built).
        std::fs::copy(lockfile, facade.join("Cargo.lock")).map_err(|error| format!("copying {}: {error}", lockfile.display()))?;
    }
    let mut child = command.spawn().map_err(|error| format!("running cargo: {error}"))?;
    let stderr = child.stderr.take().expect("piped");
    let log = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = BufReader::new(stderr).read_to_string(&mut text);
        text
    });
    let mut artifacts = Artifacts::default();
    let mut compiled = 0usize;
    for line in BufReader::new(child.stdout.take().expect("piped")).lines().map_while(Result::ok) {
        let Ok(message) = serde_json::from_str::<Value>(&line) else { continue };
        if message["reason"] == "compiler-artifact" && message["fresh"] == false {
            compiled += 1;
            if let Some(name) = message["target"]["name"].as_str() {
                progress(format!("tunebook: compiled {name} ({compiled})"));
            }
        }
        artifacts.record(&message);
    }
    let status = child.wait().map_err(|error| format!("waiting for cargo: {error}"))?;
    let log = log.join().unwrap_or_default();
    if !status.success() {
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        return Err(format!("building the library failed ({status}):\n{}", tail.join("\n")));
    }
    Ok(artifacts)
}

/// Puts the template's files into a kernel's build directory (large ones as hard links:
/// templates are replaced whole, never edited):
/// `<work>/tunebook-lib/{lib,stub}` and the lock file at `<work>/Cargo.lock`.
pub fn install_into(locations: &Locations, work_dir: &Path) -> Result<(), String> {
    let template = template_dir(locations);
    let destination = work_dir.join("tunebook-lib");
    link_tree(&template, &destination).map_err(|error| format!("copying {} to {}: {error}", template.display(), destination.display()))?;
    if template.join("Cargo.lock").is_file() {
        std::fs::copy(template.join("Cargo.lock"), work_dir.join("Cargo.lock"))
            .map_err(|error| format!("copying Cargo.lock: {error}"))?;
    }
    Ok(())
}

fn link_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            link_tree(&entry.path(), &target)?;
        } else if entry.metadata()?.len() < 64 * 1024 || std::fs::hard_link(entry.path(), &target).is_err() {
            // Small files (manifests, lists) are copied: the kernel edits some of them.
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// The rustc flags cells are built with (cargo's `CARGO_ENCODED_RUSTFLAGS`, separated by
/// 0x1f so paths may contain spaces): evcxr's own `-Cprefer-dynamic`, the facade as an extern
/// crate, the metadata directory, where native libraries (libtorch) are, and an rpath.
pub fn cell_rustflags(work_dir: &Path) -> Result<String, String> {
    let lib = work_dir.join("tunebook-lib").join("lib");
    let facade = std::fs::read_to_string(lib.join("facade")).map_err(|error| format!("reading {}: {error}", lib.join("facade").display()))?;
    let native = std::fs::read_to_string(lib.join(NATIVE_PATHS_FILE)).unwrap_or_default();
    let mut flags = vec![
        "-Cprefer-dynamic".to_owned(),
        "--extern".to_owned(),
        format!("{FACADE_CRATE}={}", lib.join(facade.trim()).display()),
        "-L".to_owned(),
        format!("dependency={}", lib.display()),
    ];
    for dir in native.lines().filter(|line| !line.is_empty() && Path::new(line).is_dir()) {
        flags.push("-L".to_owned());
        flags.push(format!("native={dir}"));
    }
    flags.push(format!("-Clink-arg=-Wl,-rpath,{}", lib.display()));
    Ok(flags.join("\x1f"))
}

/// Size of a directory tree in bytes (for progress messages).
pub fn tree_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.file_type() {
            Ok(kind) if kind.is_dir() => tree_size(&entry.path()),
            Ok(_) => entry.metadata().map(|m| m.len()).unwrap_or(0),
            Err(_) => 0,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn artifacts_keep_metadata_proc_macros_and_the_facade() {
        let mut artifacts = Artifacts::default();
        artifacts.record(&json!({"reason": "compiler-artifact", "target": {"name": "serde", "kind": ["lib"]},
            "filenames": ["/t/deps/libserde-1.rlib", "/t/deps/libserde-1.rmeta"]}));
        artifacts.record(&json!({"reason": "compiler-artifact", "target": {"name": "serde_derive", "kind": ["proc-macro"]},
            "filenames": ["/t/deps/libserde_derive-2.so"]}));
        artifacts.record(&json!({"reason": "compiler-artifact", "target": {"name": "build-script-build", "kind": ["custom-build"]},
            "filenames": ["/t/build/x/build-script-build"]}));
        artifacts.record(&json!({"reason": "compiler-artifact", "target": {"name": "tunebook_notebook", "kind": ["lib"]},
            "filenames": ["/t/deps/libtunebook_notebook.so"]}));
        artifacts.record(&json!({"reason": "build-script-executed", "linked_paths": ["native=/torch/lib", "/out", "native=/torch/lib"]}));
        assert_eq!(
            artifacts.files,
            ["/t/deps/libserde-1.rmeta", "/t/deps/libserde_derive-2.so", "/t/deps/libtunebook_notebook.so"].map(PathBuf::from)
        );
        assert_eq!(artifacts.facade, Some(PathBuf::from("/t/deps/libtunebook_notebook.so")));
        assert_eq!(artifacts.native_paths, ["/torch/lib", "/out"].map(PathBuf::from));
    }

    #[test]
    fn cell_flags_name_the_facade_the_metadata_and_existing_native_paths() {
        let work = std::env::temp_dir().join(format!("tb-flags-{}", std::process::id()));
        let lib = work.join("tunebook-lib/lib");
        std::fs::create_dir_all(&lib).unwrap();
        std::fs::write(lib.join("facade"), "libtunebook_notebook.so").unwrap();
        std::fs::write(lib.join(NATIVE_PATHS_FILE), format!("{}\n/no/such/dir\n", work.display())).unwrap();
        let flags = cell_rustflags(&work).unwrap();
        let flags: Vec<&str> = flags.split('\x1f').collect();
        assert_eq!(flags[0], "-Cprefer-dynamic");
        assert_eq!(flags[2], format!("tunebook_notebook={}/libtunebook_notebook.so", lib.display()));
        assert!(flags.contains(&format!("native={}", work.display()).as_str()));
        assert!(!flags.iter().any(|f| f.contains("/no/such/dir")));
        std::fs::remove_dir_all(work).unwrap();
    }

    #[test]
    fn a_changed_library_source_changes_the_stamp() {
        let root = std::env::temp_dir().join(format!("tb-stamp-{}", std::process::id()));
        std::fs::create_dir_all(root.join("lib/src")).unwrap();
        std::fs::create_dir_all(root.join("lib/target")).unwrap();
        std::fs::write(root.join("lib/Cargo.toml"), "[package]\nname = \"x\"\n").unwrap();
        std::fs::write(root.join("lib/src/lib.rs"), "pub fn a() {}\n").unwrap();
        let locations = Locations { lib_dir: root.join("lib"), cache_dir: root.join("cache"), libtorch: None, lockfile: None };
        let before = stamp(&locations);
        std::fs::write(root.join("lib/target/junk"), "build output").unwrap();
        assert_eq!(stamp(&locations), before, "build output is not a source");
        std::fs::write(root.join("lib/src/lib.rs"), "pub fn a() { }\n").unwrap();
        assert_ne!(stamp(&locations), before);
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn merged_lock_files_keep_every_package_once() {
        let dir = std::env::temp_dir().join(format!("tb-lock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let crates_io = "registry+https://github.com/rust-lang/crates.io-index";
        std::fs::write(
            dir.join("template.lock"),
            format!("version = 4\n\n[[package]]\nname = \"serde\"\nversion = \"1.0.0\"\nsource = \"{crates_io}\"\n"),
        )
        .unwrap();
        std::fs::write(
            dir.join("current.lock"),
            format!(
                "version = 4\n\n[[package]]\nname = \"serde\"\nversion = \"1.0.0\"\nsource = \"{crates_io}\"\n\n\
                 [[package]]\nname = \"regex\"\nversion = \"1.11.0\"\nsource = \"{crates_io}\"\n"
            ),
        )
        .unwrap();
        let merged: toml::Table = merge_lockfiles(&dir.join("template.lock"), &dir.join("current.lock")).unwrap().parse().unwrap();
        let names: Vec<&str> = merged["package"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["serde", "regex"]);
        assert_eq!(merged["version"].as_integer(), Some(4));
        let missing = merge_lockfiles(&dir.join("template.lock"), &dir.join("absent.lock")).unwrap();
        assert!(missing.contains("serde"));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
