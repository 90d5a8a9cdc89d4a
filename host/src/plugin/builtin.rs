//! The guest functions bundled with weir, embedded in the binary so that a
//! job can name them (`plugin = "max-temperature"`) without a file.

use std::path::Path;

macro_rules! guest {
    ($file:literal) => {
        include_bytes!(concat!(env!("WEIR_GUESTS_DIR"), "/", $file))
    };
}

/// The bundled functions, by name.
pub const BUILTINS: &[(&str, &[u8])] = &[
    ("max-temperature", guest!("max_temperature.wasm")),
    ("max-temperature-agg", guest!("max_temperature_agg.wasm")),
    ("kelvin-to-celsius", guest!("kelvin_to_celsius.wasm")),
    ("percentile", guest!("percentile.wasm")),
];

/// The component of the bundled function `name`.
pub fn builtin(name: &str) -> Option<&'static [u8]> {
    BUILTINS.iter().find(|(n, _)| *n == name).map(|(_, bytes)| *bytes)
}

/// The names of the bundled functions, for error messages.
pub fn builtin_names() -> String {
    BUILTINS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
}

/// The folder where the build put every guest component, the hostile test
/// guests included (`<target>/wasm-guests/wasm32-wasip2/release`).
pub fn guests_dir() -> &'static Path {
    Path::new(env!("WEIR_GUESTS_DIR"))
}
