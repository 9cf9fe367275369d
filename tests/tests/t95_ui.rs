//! The web UI in a real browser: headless Chromium, driven through chromedriver by
//! `tests/python/ui_check.py` (Selenium), against `cairn dev` with its agent. The app and the
//! jobs are submitted here through GraphQL; the browser then checks that they show with their
//! state, scales the app from the UI, moves the timeline back before the scale and sees the
//! old count, replays it, creates an app (refused first, with its field error), follows the
//! live event stream, and fails on any JavaScript error in the console. Screenshots of the
//! main views land in `target/ui-screenshots/`.

use std::process::Command;
use std::time::Duration;

use cairn_tests::cluster::wait_until;
use cairn_tests::dev::{new_token, Dev};
use serde_json::{json, Value};

const WITHIN: Duration = Duration::from_secs(60);

#[test]
fn the_ui_shows_operates_and_travels_in_time_in_chromium() {
    let dir = cairn_tests::workdir();
    let dev = Dev::start_with_agent(
        &dir.path().join("data"),
        None,
        &["--cpus", "2", "--mem", "1024"],
    );
    let app = json!({
        "id": "/web",
        "cmd": "while true; do echo hello $(date); sleep 1; done",
        "cpus": 0.1, "mem": 16, "instances": 2
    });
    dev.data(
        "mutation($d: JSON!) { createApp(definition: $d) { deploymentId } }",
        json!({ "d": app }),
    );
    for job in [
        json!({"name": "tick", "command": "echo tick", "schedule": "R/2026-01-01T00:00:00Z/PT1M",
               "epsilon": "PT30S", "cpus": 0.1, "mem": 16}),
        json!({"name": "after-tick", "command": "echo after", "parents": ["tick"],
               "cpus": 0.1, "mem": 16}),
    ] {
        dev.data(
            "mutation($d: JSON!) { createJob(definition: $d) }",
            json!({ "d": job }),
        );
    }
    dev.data(r#"mutation { runJob(name: "tick") }"#, Value::Null);
    let ready = || {
        let d = dev.data(
            r#"{ app(id: "/web") { tasksRunning } job(name: "tick") { successCount } }"#,
            Value::Null,
        );
        d["app"]["tasksRunning"] == 2 && d["job"]["successCount"] == 1
    };
    wait_until("the app's instances and the job's run", WITHIN, ready);

    ui_check(&dev, "");

    // What the browser did is in the log, as anyone's changes are.
    let scaled = dev.data(
        r#"{ audit(subject: "app:/web") { nodes { type actor { api } } } }"#,
        Value::Null,
    );
    let entries = scaled["audit"]["nodes"].as_array().unwrap();
    assert!(
        entries
            .iter()
            .any(|e| e["type"] == "AppScaled" && e["actor"]["api"] == "graphql"),
        "{entries:?}"
    );
    assert_eq!(
        dev.data(r#"{ app(id: "/web") { instances } }"#, Value::Null)["app"]["instances"],
        3
    );
    dev.stop();
}

/// Runs `ui_check.py` against `dev` (with `CAIRN_UI_TOKENS=tokens`) and asserts it passed.
fn ui_check(dev: &Dev, tokens: &str) {
    let root = env!("CARGO_MANIFEST_DIR");
    let shots = format!("{root}/../target/ui-screenshots");
    let libs = format!("{root}/.python-ui");
    assert!(
        std::path::Path::new(&libs).is_dir(),
        "{libs} is missing: ./test.sh installs Selenium there"
    );
    let out = Command::new("python3")
        .arg(format!("{root}/python/ui_check.py"))
        .arg(format!("http://{}", dev.addr()))
        .arg(&shots)
        .env("PYTHONPATH", &libs)
        .env("CAIRN_UI_TOKENS", tokens)
        .output()
        .expect("python3 runs");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        out.status.success(),
        "the UI check failed (screenshots in {shots}):\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("ui: ok"), "{stdout}");
}

/// On a master that asks for tokens, the page asks for one, shows a read token no actions and
/// an operate token the actions, which then work under that token's name.
#[test]
fn the_ui_asks_for_a_token_and_hides_actions_from_a_read_token() {
    let dir = cairn_tests::workdir();
    let (reader, reader_entry) = new_token("reader", "read");
    let (deployer, deployer_entry) = new_token("deployer", "operate");
    let config = dir.path().join("cairn.toml");
    std::fs::write(&config, format!("{reader_entry}\n{deployer_entry}")).unwrap();
    let mut dev = Dev::start_with_agent(
        &dir.path().join("data"),
        Some(&config),
        &["--cpus", "2", "--mem", "1024"],
    );
    dev.token = Some(deployer.clone());
    let app = json!({ "id": "/web", "cmd": "sleep 1000", "cpus": 0.1, "mem": 16, "instances": 2 });
    dev.data(
        "mutation($d: JSON!) { createApp(definition: $d) { deploymentId } }",
        json!({ "d": app }),
    );
    wait_until("the app's instances", WITHIN, || {
        dev.data(r#"{ app(id: "/web") { tasksRunning } }"#, Value::Null)["app"]["tasksRunning"] == 2
    });

    ui_check(&dev, &format!("{reader},{deployer}"));

    let scaled = dev.data(
        r#"{ audit(subject: "app:/web") { nodes { type actor { principal } } } }"#,
        Value::Null,
    );
    let entries = scaled["audit"]["nodes"].as_array().unwrap();
    assert!(
        entries
            .iter()
            .any(|e| e["type"] == "AppScaled" && e["actor"]["principal"] == "user:deployer"),
        "{entries:?}"
    );
    dev.stop();
}
