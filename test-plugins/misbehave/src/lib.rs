//! A collector that misbehaves on purpose, chosen by its `options.behaviour`, so the host's tests
//! can check what a user would see: `ok`, `panic`, `error`, `hang_command` (runs `sleep` with a
//! long timeout), `spin` (loops forever in its own code), `segfault`, `abort`, `echo_file`
//! (answers the JSON in the file `options.path` as it is, unchecked: tests steer a collector's
//! data with it, invalid data included). Its own answers are report schema 2 (`facts`).
//! It is exported under a symbol of its own (`misbehave_v1`) to test `symbol` in plugins.toml.

use std::time::Duration;

use plugin_api::{export_collector, serde_json::Value, CollectError, Data, Target};

fn collect(target: &Target<'_>, options: &Value) -> Result<Value, CollectError> {
    let behaviour = options
        .get("behaviour")
        .and_then(Value::as_str)
        .unwrap_or("ok");
    match behaviour {
        "ok" => Data::new()
            .fact("target", target.name())
            .fact("behaviour", "ok")
            .build(),
        "echo_file" => {
            let path = options
                .get("path")
                .and_then(Value::as_str)
                .unwrap_or("/nonexistent");
            let text = target.read_to_string(path)?;
            plugin_api::serde_json::from_str(&text)
                .map_err(|e| CollectError::parse(format!("{path}: {e}")))
        }
        "panic" => panic!("misbehave was told to panic"),
        "error" => Err(CollectError::new(
            "unavailable",
            "misbehave was told to fail",
        )),
        "hang_command" => {
            let seconds = options
                .get("sleep")
                .and_then(Value::as_str)
                .unwrap_or("61.5");
            target.run_ok(&format!("sleep {seconds}"), Duration::from_secs(600))?;
            Data::new().fact("slept", true).build()
        }
        "spin" => loop {
            std::hint::spin_loop();
            std::thread::sleep(Duration::from_millis(50));
        },
        "segfault" => {
            // SAFETY: none; this is the point of the test.
            unsafe { std::ptr::null_mut::<u64>().write_volatile(7) };
            Data::new().build()
        }
        "abort" => std::process::abort(),
        other => Err(CollectError::new(
            "bad_options",
            format!("unknown behaviour {other:?}"),
        )),
    }
}

export_collector!(
    name = "misbehave",
    description = "misbehaves on purpose for tests",
    collect = collect,
    symbol = "misbehave_v1",
);
