//! Marathon app definitions against `cairn dev`: the example app is accepted as it is, and a
//! bad definition gets every error with its path and changes nothing.

use cairn_tests::agent::cairn;
use cairn_tests::dev::Dev;
use serde_json::{json, Value};

#[test]
fn app_definitions_are_validated_with_every_error_and_its_path() {
    let dir = cairn_tests::workdir();
    let dev = Dev::start(dir.path());
    let masters = vec![dev.addr()];
    let head = dev.head();

    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/examples/nginx-app.json"
    );
    let out = cairn(&masters, &["app", "validate", "-f", example, "-o", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answer["valid"], true);
    assert_eq!(answer["spec"]["id"], "/nginx");
    assert_eq!(answer["spec"]["cpus_milli"], 200);
    assert_eq!(
        answer["spec"]["container"]["docker"]["parameters"][0]["key"],
        "volume-driver"
    );

    let bad = dir.path().join("bad.json");
    let definition = json!({
        "id": "/web",
        "cmd": "serve",
        "mem": -5,
        "container": {"docker": {"image": "", "network": "HOST",
            "portMappings": [{"containerPort": 80}]}},
    });
    std::fs::write(&bad, definition.to_string()).unwrap();
    let out = cairn(&masters, &["app", "validate", "-f", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let errors = String::from_utf8_lossy(&out.stderr);
    for path in [
        "/container/docker/image: is required",
        "/container/docker/portMappings: port mappings need a BRIDGE or USER network",
        "/mem: must be between 0 and",
    ] {
        assert!(errors.contains(path), "{path} missing from\n{errors}");
    }
    // Through GraphQL too; and nothing was written.
    let data = dev.data(
        "query($d: JSON!) { validateApp(definition: $d) { valid details { path } } }",
        json!({ "d": definition }),
    );
    assert_eq!(data["validateApp"]["valid"], false);
    assert_eq!(data["validateApp"]["details"].as_array().unwrap().len(), 3);
    assert_eq!(dev.head(), head);
    dev.stop();
}
