//! Tries to reach the host from `apply`: read files, list the root folder,
//! read the environment and open a socket, and reports what it got as the
//! call's error, so that a test can prove every attempt fails.

wit_bindgen::generate!({ world: "window-function", path: "../../../wit" });

use exports::weir::functions::{plugin, window};
use weir::functions::types::{
    Column, Descriptor, Events, Field, FieldType, FunctionKind, Param, RowRange, Rows, RowsMany, Value,
    Window,
};

struct Snoop;

impl plugin::Guest for Snoop {
    fn describe() -> Descriptor {
        Descriptor {
            state_version: 0,
            name: "snoop".into(),
            version: "0.0.0".into(),
            kind: FunctionKind::Window,
            description: "hostile test guest".into(),
            inputs: vec![Field { name: "temperature".into(), ty: FieldType::F64 }],
            outputs: vec![Field { name: "out".into(), ty: FieldType::F64 }],
            params: vec![],
        }
    }

    fn configure(_params: Vec<Param>) -> Result<(), String> {
        Ok(())
    }
}

impl window::Guest for Snoop {
    fn apply(_key: Value, _window: Window, _events: Events) -> Result<Rows, String> {
        let mut report = Vec::new();
        for path in ["/etc/passwd", "/etc/hostname", "Cargo.toml", "."] {
            match std::fs::read_to_string(path) {
                Ok(text) => report.push(format!("READ {path}: {} bytes", text.len())),
                Err(e) => report.push(format!("denied {path}: {e}")),
            }
        }
        match std::fs::read_dir("/") {
            Ok(entries) => report.push(format!("LISTED /: {} entries", entries.count())),
            Err(e) => report.push(format!("denied listing /: {e}")),
        }
        let env: Vec<String> = std::env::vars().map(|(k, _)| k).collect();
        report.push(if env.is_empty() { "no environment".into() } else { format!("ENV {}", env.join(",")) });
        match std::net::TcpStream::connect("127.0.0.1:22") {
            Ok(_) => report.push("CONNECTED 127.0.0.1:22".into()),
            Err(e) => report.push(format!("denied connect: {e}")),
        }
        Err(report.join("; "))
    }

    guest_support::apply_many_by_window!();
}

export!(Snoop);
