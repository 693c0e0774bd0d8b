//! Is the component's `.wasm` older than its sources? Then tests would run yesterday's
//! code and pass (or fail) for the wrong reason: `cargo test` does not rebuild a
//! `wasm32-wasip2` artifact. [`check`] refuses such a `.wasm`.
//!
//! # What "its sources" means, and why
//!
//! The list comes from cargo itself: next to `graph_revoke.wasm` cargo writes
//! `graph_revoke.d`, a Makefile rule naming every file the build read (the component's
//! `src/**`, `build.rs`, files pulled in with `include_str!`, WIT files read by binding
//! macros, the build script's output, and the dependencies' sources). For local files
//! cargo's rebuild test is an mtime comparison against those very files, so:
//!
//! - a listed file newer than the `.wasm` is one cargo also sees as changed (cargo
//!   compares with the time the last compile *started*, which is earlier than the
//!   `.wasm`'s mtime), so `cargo build --target wasm32-wasip2 --release` recompiles and
//!   rewrites the `.wasm`, and the next test run passes. Checking against a hand-made
//!   list (say, every file of `Cargo.toml`'s directory) could instead name a file cargo
//!   does not track; cargo would then leave the `.wasm` untouched and the verdict would
//!   stay "stale" for good.
//! - a listed file that no longer exists: cargo rebuilds too; so do we fail.
//! - `Cargo.lock` is not compared by mtime: the workspace shares it with the test host,
//!   and a dev- or test-host dependency change rewrites it without touching the
//!   component (cargo would not rebuild, so an mtime rule would fail forever). Instead
//!   the dependency sources the `.d` lists (`…/registry/src/<index>/<name>-<version>/…`)
//!   must all be packages `Cargo.lock` still locks: if a dependency of the component
//!   moved to another version, cargo rebuilds, and we fail until it has.
//! - `Cargo.toml` is not compared either, for the same reason (its dev-dependencies
//!   and the test host's settings live there too); a change to the component's
//!   features or release profile is not detected. A note is printed when it is newer
//!   than the `.wasm`.
//!
//! Without a `.d` file (a `.wasm` built some other way into cargo's target directory)
//! the check falls back to the newest of `src/**`, `wit/**` and `build.rs`.
//!
//! A fresh clone gives every file its checkout time; the test script builds the `.wasm`
//! before testing, and with no fingerprint yet cargo compiles, so the `.wasm` is newer.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{bail, Context, Result};

/// How to make the check pass.
const REBUILD: &str = "rebuild it with `./scripts/build` (`cargo build --target wasm32-wasip2 --release`, \
                       then wasm-opt, as it ships; ./scripts/test does this first), or set \
                       GRAPH_REVOKE_WASM to test a .wasm file of your choice";

/// `Err` naming the newer (or missing) source when `wasm` is older than what it was built
/// from; `root` is the workspace root (where `Cargo.lock` and `src/` are).
pub(crate) fn check(wasm: &Path, root: &Path) -> Result<()> {
    let built = mtime(wasm).with_context(|| format!("cannot read the mtime of {}", wasm.display()))?;
    let dep_info = wasm.with_extension("d");
    match std::fs::read_to_string(&dep_info) {
        Ok(text) => check_dep_info(wasm, built, &text, root)?,
        Err(_) => check_tree(wasm, built, root)?,
    }
    let manifest = root.join("Cargo.toml");
    if mtime(&manifest).is_some_and(|t| t > built) {
        eprintln!(
            "test host: note: {} is newer than {}; if you changed the component's \
             dependencies, features or release profile, {REBUILD}",
            manifest.display(),
            wasm.display()
        );
    }
    Ok(())
}

fn check_dep_info(wasm: &Path, built: SystemTime, text: &str, root: &Path) -> Result<()> {
    let sources = dep_info_sources(text, wasm);
    if sources.is_empty() {
        return check_tree(wasm, built, root);
    }
    let mut newer = Vec::new();
    for source in &sources {
        let source = root.join(source);
        match mtime(&source) {
            None => bail!(
                "{} is stale: {} was one of its sources and no longer exists; {REBUILD}",
                wasm.display(),
                source.display()
            ),
            Some(t) if t > built => newer.push(source),
            Some(_) => {}
        }
    }
    if !newer.is_empty() {
        stale(wasm, &newer)?;
    }
    if let Ok(lock) = std::fs::read_to_string(root.join("Cargo.lock")) {
        let locked = locked_packages(&lock)?;
        let mut moved: Vec<String> = sources
            .iter()
            .filter_map(|s| registry_package(s))
            .filter(|p| !locked.contains(p))
            .collect();
        moved.sort();
        moved.dedup();
        if !moved.is_empty() {
            bail!(
                "{} is stale: it was built with {} and Cargo.lock no longer locks {}; {REBUILD}",
                wasm.display(),
                moved.join(", "),
                if moved.len() == 1 { "it" } else { "them" }
            );
        }
    }
    Ok(())
}

/// The fallback without cargo's dep-info: the component's own source tree.
fn check_tree(wasm: &Path, built: SystemTime, root: &Path) -> Result<()> {
    let mut newer = Vec::new();
    for top in ["src", "wit", "build.rs"] {
        collect_newer(&root.join(top), built, &mut newer);
    }
    match newer.is_empty() {
        true => Ok(()),
        false => stale(wasm, &newer),
    }
}

fn stale(wasm: &Path, newer: &[PathBuf]) -> Result<()> {
    let mut names: Vec<String> = newer.iter().take(3).map(|p| p.display().to_string()).collect();
    if newer.len() > 3 {
        names.push(format!("and {} more", newer.len() - 3));
    }
    bail!(
        "{} is older than its sources ({} changed after it was built); {REBUILD}",
        wasm.display(),
        names.join(", ")
    )
}

fn collect_newer(path: &Path, built: SystemTime, out: &mut Vec<PathBuf>) {
    let Ok(meta) = std::fs::metadata(path) else { return };
    if meta.is_dir() {
        let Ok(entries) = std::fs::read_dir(path) else { return };
        let mut paths: Vec<PathBuf> = entries.filter_map(|e| Some(e.ok()?.path())).collect();
        paths.sort();
        for p in paths {
            collect_newer(&p, built, out);
        }
    } else if meta.modified().is_ok_and(|t| t > built) {
        out.push(path.to_path_buf());
    }
}

fn mtime(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The prerequisites of the rule for `wasm` in a Makefile-style dep-info file (cargo
/// escapes a space in a path as `\ `); those of every rule if none names `wasm`.
fn dep_info_sources(text: &str, wasm: &Path) -> Vec<PathBuf> {
    let mut all = Vec::new();
    for line in text.lines() {
        let words = split_escaped(line);
        let Some(colon) = words.iter().position(|w| w.ends_with(':')) else { continue };
        let target = words[colon].trim_end_matches(':');
        let sources: Vec<PathBuf> = words[colon + 1..].iter().map(PathBuf::from).collect();
        if Path::new(target) == wasm || Path::new(target).file_name() == wasm.file_name() {
            return sources;
        }
        all.extend(sources);
    }
    all
}

/// Words separated by unescaped spaces, with `\ ` turned back into a space.
fn split_escaped(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&' ') => {
                word.push(' ');
                chars.next();
            }
            ' ' | '\t' => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            c => word.push(c),
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}

/// `name-version` of a crates.io-style registry source path
/// (`…/registry/src/<index>/<name>-<version>/…`), else `None`.
fn registry_package(path: &Path) -> Option<String> {
    let parts: Vec<&str> = path.iter().filter_map(|p| p.to_str()).collect();
    let at = parts.windows(2).position(|w| w == ["registry", "src"])?;
    parts.get(at + 3).map(|s| s.to_string())
}

/// `name-version` of every package `Cargo.lock` locks.
fn locked_packages(lock: &str) -> Result<HashSet<String>> {
    #[derive(serde::Deserialize)]
    struct Lock {
        #[serde(default)]
        package: Vec<Package>,
    }
    #[derive(serde::Deserialize)]
    struct Package {
        name: String,
        version: String,
    }
    let lock: Lock = toml::from_str(lock).context("cannot parse Cargo.lock")?;
    Ok(lock.package.into_iter().map(|p| format!("{}-{}", p.name, p.version)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A scratch workspace: `Cargo.lock`, `src/lib.rs`, `target/x.wasm`, `target/x.d`.
    struct Scratch {
        root: PathBuf,
    }

    impl Scratch {
        fn new(name: &str) -> Scratch {
            let root = std::env::temp_dir().join(format!("freshness-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&root);
            std::fs::create_dir_all(root.join("src")).unwrap();
            std::fs::create_dir_all(root.join("target")).unwrap();
            std::fs::create_dir_all(root.join("registry/src/index.crates.io-0/serde-1.0.1/src")).unwrap();
            Scratch { root }
        }
        fn write(&self, path: &str, text: &str, age_s: u64) -> PathBuf {
            let path = self.root.join(path);
            std::fs::write(&path, text).unwrap();
            let t = SystemTime::now() - Duration::from_secs(age_s);
            std::fs::File::options().write(true).open(&path).unwrap().set_modified(t).unwrap();
            path
        }
        fn wasm(&self) -> PathBuf {
            self.root.join("target/x.wasm")
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }

    const LOCK: &str = "version = 4\n[[package]]\nname = \"serde\"\nversion = \"1.0.1\"\n";

    fn set_up(name: &str, source_age: u64, wasm_age: u64) -> Scratch {
        let s = Scratch::new(name);
        let lib = s.write("src/lib.rs", "", source_age);
        let dep = s.write("registry/src/index.crates.io-0/serde-1.0.1/src/lib.rs", "", 1000);
        s.write("Cargo.lock", LOCK, 1000);
        let wasm = s.write("target/x.wasm", "", wasm_age);
        let rule = format!("{}: {} {}\n", wasm.display(), lib.display(), dep.display());
        s.write("target/x.d", &rule, wasm_age);
        s
    }

    #[test]
    fn a_wasm_newer_than_every_listed_source_passes() {
        let s = set_up("fresh", 100, 10);
        check(&s.wasm(), &s.root).unwrap();
    }

    #[test]
    fn a_listed_source_newer_than_the_wasm_fails_and_says_how_to_rebuild() {
        let s = set_up("stale", 10, 100);
        let message = check(&s.wasm(), &s.root).unwrap_err().to_string();
        assert!(message.contains("src/lib.rs") && message.contains("cargo build --target wasm32-wasip2 --release"), "{message}");
    }

    #[test]
    fn files_cargo_does_not_list_are_not_compared() {
        // A newer Cargo.lock (say, a new test-host dependency) or an unrelated file: the
        // component is what it was, and cargo would not rebuild it.
        let s = set_up("unlisted", 100, 10);
        s.write("Cargo.lock", LOCK, 0);
        s.write("src/notes.txt", "", 0);
        check(&s.wasm(), &s.root).unwrap();
    }

    #[test]
    fn a_missing_source_or_a_dependency_at_another_version_fails() {
        let s = set_up("missing", 100, 10);
        std::fs::remove_file(s.root.join("src/lib.rs")).unwrap();
        assert!(check(&s.wasm(), &s.root).unwrap_err().to_string().contains("no longer exists"));

        let s = set_up("moved", 100, 10);
        s.write("Cargo.lock", &LOCK.replace("1.0.1", "1.0.2"), 0);
        let message = check(&s.wasm(), &s.root).unwrap_err().to_string();
        assert!(message.contains("serde-1.0.1") && message.contains("Cargo.lock"), "{message}");
    }

    #[test]
    fn without_dep_info_the_source_tree_is_compared() {
        let s = set_up("no-dep-info", 10, 100);
        std::fs::remove_file(s.root.join("target/x.d")).unwrap();
        assert!(check(&s.wasm(), &s.root).is_err());
        s.write("src/lib.rs", "", 1000);
        check(&s.wasm(), &s.root).unwrap();
    }

    #[test]
    fn dep_info_rules_are_read_with_escaped_spaces() {
        let text = "/t/x.wasm: /a\\ b/lib.rs /c.rs\n\n/t/other: /d.rs\n";
        assert_eq!(dep_info_sources(text, Path::new("/t/x.wasm")), vec![PathBuf::from("/a b/lib.rs"), PathBuf::from("/c.rs")]);
        assert_eq!(
            registry_package(Path::new("/h/.cargo/registry/src/index.crates.io-1949/wasi-0.13.1+wasi-0.2.0/src/lib.rs")),
            Some("wasi-0.13.1+wasi-0.2.0".into())
        );
        assert_eq!(registry_package(Path::new("/w/src/lib.rs")), None);
    }
}
