//! The project's WIT worlds, read from `wit/` at run time.
//!
//! `wit/world.wit` is the contract of what the component may touch. Listing a world's
//! imports here lets a test compare them with what the compiled component actually
//! imports ([`Component::imports`]), so a dependency that quietly pulls in another host
//! interface (and would fail on some Spin host) fails a test instead.
//!
//! [`Component::imports`]: crate::Component::imports

use anyhow::{Context, Result};
use wit_parser::{Resolve, WorldItem, WorldKey};

use crate::manifest::workspace_root;

/// The interfaces (and functions) world `world` of the project's `wit/` imports, named as
/// a component names them, e.g. `wasi:config/store@0.2.0-draft-2024-09-27`. Includes the
/// interfaces those depend on (`wasi:io/streams@0.2.6`, …), as the component model does.
pub fn world_imports(world: &str) -> Result<Vec<String>> {
    world_items(world, |w| &w.imports)
}

/// The interfaces (and functions) world `world` of the project's `wit/` exports.
pub fn world_exports(world: &str) -> Result<Vec<String>> {
    world_items(world, |w| &w.exports)
}

fn world_items(
    world: &str,
    items: impl Fn(&wit_parser::World) -> &wit_parser::IndexMap<WorldKey, WorldItem>,
) -> Result<Vec<String>> {
    let dir = workspace_root().join("wit");
    let mut resolve = Resolve::default();
    let (package, _) = resolve
        .push_dir(&dir)
        .with_context(|| format!("cannot resolve {}", dir.display()))?;
    let id = resolve.select_world(&[package], Some(world))?;
    Ok(items(&resolve.worlds[id])
        .iter()
        .filter(|(_, item)| !matches!(item, WorldItem::Type { .. }))
        .map(|(key, _)| resolve.name_world_key(key))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_the_project_worlds() {
        let imports = world_imports("graph-revoke").unwrap();
        for expected in [
            "wasi:config/store@0.2.0-draft-2024-09-27",
            "wasi:keyvalue/store@0.2.0-draft2",
            "wasi:keyvalue/atomics@0.2.0-draft2",
            "wasi:http/outgoing-handler@0.2.6",
            "wasi:http/types@0.2.6",
            "wasi:io/streams@0.2.6",
        ] {
            assert!(
                imports.iter().any(|i| i == expected),
                "{expected}: {imports:?}"
            );
        }
        assert_eq!(
            world_exports("graph-revoke").unwrap(),
            ["wasi:http/incoming-handler@0.2.0"]
        );
        assert!(world_imports("no-such-world").is_err());
    }
}
