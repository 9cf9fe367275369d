//! The real Python clients of Marathon, Chronos and Mesos, called from tests (see
//! `tests/python/client.py`; `test.sh` installs them into `tests/.python`).

use std::process::Command;

use serde_json::Value;

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
