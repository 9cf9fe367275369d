//! The real Python clients of Marathon, Chronos and Mesos, called from tests (see
//! `tests/python/client.py`; `test.sh` installs them into `tests/.python`).

use std::process::Command;

use serde_json::Value;

/// `client.<method>(*args)` of client `kind` (`chronos`, `chronos2`) against `server`: its
/// result, or the client's exception as `Type: message`.
pub fn call(kind: &str, server: &str, method: &str, args: &[Value]) -> Result<Value, String> {
    let root = env!("CARGO_MANIFEST_DIR");
    let libs = format!("{root}/.python");
    assert!(
        std::path::Path::new(&libs).is_dir(),
        "{libs} is missing: ./test.sh installs the Python clients there"
    );
    let out = Command::new("python3")
        .arg(format!("{root}/python/client.py"))
        .args([kind, server, method])
        .args(args.iter().map(Value::to_string))
        .env("PYTHONPATH", &libs)
        .output()
        .expect("python3 runs");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    match out.status.code() {
        Some(0) => Ok(serde_json::from_str(stdout.trim())
            .unwrap_or_else(|e| panic!("{method}: {e}: {stdout}"))),
        Some(3) => Err(stderr.trim().to_owned()),
        _ => panic!("client.py {kind} {method} failed: {stderr}"),
    }
}
