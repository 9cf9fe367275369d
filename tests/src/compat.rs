//! The real Python clients of Marathon, Chronos and Mesos, called from tests (see
//! `tests/python/client.py`; `test.sh` installs them into `tests/.python`).

use std::io::BufRead;
use std::process::{Command, Stdio};

use serde_json::{json, Value};

/// `client.<call>(*args)` — or, if `call` is not a name, the Python expression `call` over
/// `c` (the client) and `A` (the arguments) — of client `kind` (`chronos`, `chronos2`,
/// `marathon`) against `server`: its result as JSON, or the client's exception as
/// `Type: message`.
pub fn call(kind: &str, server: &str, call: &str, args: &[Value]) -> Result<Value, String> {
    call_as(kind, server, None, call, args)
}

/// [`call`] with the client given credentials: `basic:USER:PASSWORD` (HTTP Basic, as each
/// client is told a user and password) or `token:SECRET` (marathon-python's `auth_token`).
pub fn call_as(
    kind: &str,
    server: &str,
    credentials: Option<&str>,
    call: &str,
    args: &[Value],
) -> Result<Value, String> {
    let root = env!("CARGO_MANIFEST_DIR");
    let libs = format!("{root}/.python");
    assert!(
        std::path::Path::new(&libs).is_dir(),
        "{libs} is missing: ./test.sh installs the Python clients there"
    );
    let out = Command::new("python3")
        .arg(format!("{root}/python/client.py"))
        .args([kind, server, call])
        .args(args.iter().map(Value::to_string))
        // The clients, and the Python 3.10+ workaround marathon-python needs.
        .env("PYTHONPATH", format!("{libs}:{root}/python"))
        .env("CAIRN_CLIENT_AUTH", credentials.unwrap_or_default())
        .output()
        .expect("python3 runs");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    match out.status.code() {
        Some(0) => {
            Ok(serde_json::from_str(stdout.trim())
                .unwrap_or_else(|e| panic!("{call}: {e}: {stdout}")))
        }
        Some(3) => Err(stderr.trim().to_owned()),
        _ => panic!("client.py {kind} {call} failed: {stderr}"),
    }
}

/// Runs the pymesos framework `tests/python/<script>` against the master `addr` (with `env`
/// set) until it ends by itself (done, or stopped by its own 120 s timer), and checks it was
/// done: each JSON line it printed, and its framework id.
pub fn run_framework(addr: &str, script: &str, env: &[(&str, &str)]) -> (Vec<Value>, String) {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new("python3")
        .arg(format!("{root}/python/{script}"))
        .arg(addr)
        .env("PYTHONPATH", format!("{root}/.python"))
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("python3 runs");
    let seen: Vec<Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(&l.unwrap()).unwrap())
        .collect();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        seen.contains(&json!({"done": true})),
        "the framework did not finish: {seen:#?}\n{stderr}"
    );
    let framework = seen
        .iter()
        .find_map(|s| s["registered"].as_str())
        .expect("registered")
        .to_owned();
    (seen, framework)
}

/// marathon-deploy's `tool` (`marathon-deploy`, `marathon-check`) with `-m server` and `args`:
/// its exit code and output.
pub fn marathon_tool(tool: &str, server: &str, args: &[&str]) -> (i32, String) {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new("python3")
        .arg(format!("{root}/.python/bin/{tool}"))
        .args(["-m", server])
        .args(args)
        .env("PYTHONPATH", format!("{root}/.python:{root}/python"))
        .output()
        .expect("python3 runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// The states a framework printed for `task` in updates that carried a uuid (logged ones,
/// acknowledged), in order.
pub fn acknowledged_states<'a>(seen: &'a [Value], task: &str) -> Vec<&'a str> {
    seen.iter()
        .filter(|s| s["task"] == task && s["acknowledged"] == true)
        .filter_map(|s| s["state"].as_str())
        .collect()
}
