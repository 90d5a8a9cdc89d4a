//! A guest built for the wrong world: it claims the window-function world of
//! weir:functions@0.2.0, but its `apply` has the wrong signature, so that a
//! test can prove the host rejects it with a message naming the export.

wit_bindgen::generate!({
    inline: r#"
        package weir:functions@0.2.0;

        interface plugin {
            /// Not the contract's signature: returns a bare string.
            describe: func() -> string;
            configure: func() -> u32;
        }

        interface window {
            /// Not the contract's signature: takes and returns a number.
            apply: func(x: u32) -> u32;
            apply-many: func(x: u32) -> u32;
        }

        world wrong-window {
            export plugin;
            export window;
        }
    "#,
    world: "wrong-window",
});

struct WrongWorld;

impl exports::weir::functions::plugin::Guest for WrongWorld {
    fn describe() -> String {
        "wrong-world".into()
    }

    fn configure() -> u32 {
        0
    }
}

impl exports::weir::functions::window::Guest for WrongWorld {
    fn apply(x: u32) -> u32 {
        x
    }

    fn apply_many(x: u32) -> u32 {
        x
    }
}

export!(WrongWorld);
