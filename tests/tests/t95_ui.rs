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
use cairn_tests::dev::Dev;
use serde_json::{json, Value};

const WITHIN: Duration = Duration::from_secs(60);

#[test]
fn the_ui_shows_operates_and_travels_in_time_in_chromium() {
    let dir = tempfile::tempdir().unwrap();
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
