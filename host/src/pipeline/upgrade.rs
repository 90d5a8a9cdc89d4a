//! What a checkpoint records of the job's function, and when a checkpoint
//! taken with one version of a function may be restored with another.
//!
//! Window state is the function's: a window function's panes hold the
//! events it reads, an aggregate's hold its opaque accumulators. A newer
//! version may take the state over when it is the same function (its
//! name), of the same world, reading the same inputs; an aggregate whose
//! accumulator layout changed (a higher `state-version`) must `migrate`
//! each saved accumulator, which the restore does before any data flows.
//! Anything else is refused, with the reason, before the job starts.

use crate::plugin::{LEGACY_VERSION, Plugin};
use crate::types::FunctionKind;
use serde::{Deserialize, Serialize};

/// The function a checkpoint was taken with (its `plugin` file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginFacts {
    /// Its descriptor's name.
    pub name: String,
    /// Its descriptor's version.
    pub version: String,
    /// Its world (`window-function`, `aggregate-function`, `map-function`).
    pub world: String,
    /// The contract version it was built for (`0.2.0`, `0.1.0`).
    pub contract: String,
    /// The fields it reads, as `name:type`, in order.
    pub inputs: Vec<String>,
    /// Its accumulator layout's version (0 but for aggregates).
    pub state_version: u32,
    /// The component's SHA-256.
    pub sha256: String,
}

impl PluginFacts {
    /// The facts of a loaded plugin.
    pub fn of(plugin: &Plugin) -> PluginFacts {
        let d = plugin.descriptor();
        PluginFacts {
            name: d.name.clone(),
            version: d.version.clone(),
            world: d.kind.world().to_string(),
            contract: plugin.contract_version().to_string(),
            inputs: d.inputs.iter().map(|f| format!("{}:{}", f.name, f.ty)).collect(),
            state_version: d.state_version,
            sha256: plugin.sha256().to_string(),
        }
    }

    /// `name@version`.
    pub fn reference(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }

    /// The facts as a checkpoint file holds them.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The facts from a checkpoint file.
    pub fn from_bytes(bytes: &[u8]) -> Result<PluginFacts, String> {
        serde_json::from_slice(bytes).map_err(|e| format!("not a plugin record: {e}"))
    }
}

/// What a restore must do to the window state for `now` to take over
/// state saved with `then`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upgrade {
    /// Nothing: the state means the same to both.
    Keep,
    /// Migrate every accumulator from this state version.
    Migrate {
        /// The state version the checkpoint's accumulators have.
        from: u32,
    },
}

/// Whether `now` can take over the window state that `then` saved, and
/// how; the error says why not, naming both versions.
pub fn upgrade_from(then: &PluginFacts, now: &PluginFacts) -> Result<Upgrade, String> {
    if then.sha256 == now.sha256 {
        return Ok(Upgrade::Keep);
    }
    let (old, new) = (then.reference(), now.reference());
    if then.name != now.name {
        return Err(format!("its window state is {old}'s, and {new} is another function"));
    }
    if then.world != now.world {
        return Err(format!(
            "{old} is a {}, but {new} is a {}: a function cannot change its world over an upgrade",
            then.world, now.world
        ));
    }
    if then.inputs != now.inputs {
        return Err(format!(
            "{old} reads [{}], but {new} reads [{}]: the saved windows hold the old inputs",
            then.inputs.join(", "),
            now.inputs.join(", ")
        ));
    }
    // Only an aggregate's state is the function's own bytes; the others'
    // is the events, whatever the version says.
    if then.world != FunctionKind::Aggregate.world() {
        return Ok(Upgrade::Keep);
    }
    match now.state_version.cmp(&then.state_version) {
        std::cmp::Ordering::Equal => Ok(Upgrade::Keep),
        std::cmp::Ordering::Less => Err(format!(
            "{old} saved state version {}, newer than {new}'s {}: a function cannot read a newer layout",
            then.state_version, now.state_version
        )),
        std::cmp::Ordering::Greater if now.contract == LEGACY_VERSION => Err(format!(
            "{new} has state version {} (the checkpoint's is {}), but it was built for \
             weir:functions@{LEGACY_VERSION}, which has no migrate: rebuild it",
            now.state_version, then.state_version
        )),
        std::cmp::Ordering::Greater => Ok(Upgrade::Migrate { from: then.state_version }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(version: &str, state_version: u32) -> PluginFacts {
        PluginFacts {
            name: "max-temperature-agg".into(),
            version: version.into(),
            world: "aggregate-function".into(),
            contract: "0.2.0".into(),
            inputs: vec!["temperature:f64".into()],
            state_version,
            sha256: format!("sha-{version}-{state_version}"),
        }
    }

    #[test]
    fn an_upgrade_keeps_migrates_or_is_refused_with_the_reason() {
        let old = facts("0.1.0", 0);
        assert_eq!(upgrade_from(&old, &old), Ok(Upgrade::Keep));
        assert_eq!(upgrade_from(&old, &facts("0.1.1", 0)), Ok(Upgrade::Keep));
        assert_eq!(upgrade_from(&old, &facts("0.2.0", 1)), Ok(Upgrade::Migrate { from: 0 }));
        assert_eq!(upgrade_from(&facts("0.2.0", 3), &facts("0.3.0", 5)), Ok(Upgrade::Migrate { from: 3 }));

        let refused = |now: PluginFacts, says: &str| {
            let reason = upgrade_from(&old, &now).expect_err("refused");
            assert!(reason.contains(says), "{reason}");
        };
        refused(PluginFacts { name: "percentile".into(), ..facts("0.2.0", 0) }, "another function");
        refused(PluginFacts { world: "window-function".into(), ..facts("0.2.0", 0) }, "world");
        refused(PluginFacts { inputs: vec!["temperature:i64".into()], ..facts("0.2.0", 0) }, "reads");
        refused(PluginFacts { contract: LEGACY_VERSION.into(), ..facts("0.2.0", 1) }, "no migrate");
        let reason = upgrade_from(&facts("0.2.0", 1), &old).expect_err("a downgrade");
        assert!(reason.contains("newer layout"), "{reason}");
    }

    #[test]
    fn a_window_functions_state_is_its_events_whatever_its_state_version() {
        let window = |version: &str, state_version| PluginFacts {
            world: "window-function".into(),
            ..facts(version, state_version)
        };
        assert_eq!(upgrade_from(&window("0.1.0", 0), &window("0.2.0", 2)), Ok(Upgrade::Keep));
    }

    #[test]
    fn facts_round_trip_as_a_checkpoint_file() {
        let f = facts("0.2.0", 1);
        assert_eq!(PluginFacts::from_bytes(&f.to_bytes()), Ok(f));
        assert!(PluginFacts::from_bytes(b"{").is_err());
    }
}
