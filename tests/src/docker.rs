//! The Docker Engine of this machine, for the tests of Docker tasks: the `docker` CLI, a
//! task's containers, and the `rexray` volume driver the nginx example names, served by a
//! local plugin (`fixtures/volume_plugin.py`) over Docker's plugin socket.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::Proc;

/// `docker <args>`: its stdout, trimmed.
pub fn docker(args: &[&str]) -> String {
    try_docker(args).expect("docker")
}

/// `docker <args>`: its stdout, trimmed; `None` without a `docker` to run (for clean-ups in
/// `Drop`, which must not panic).
pub fn try_docker(args: &[&str]) -> Option<String> {
    let out = Command::new("docker").args(args).output().ok()?;
    Some(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// The containers (any state) of a task.
pub fn containers_of(id: &str) -> String {
    docker(&[
        "ps",
        "-aq",
        "--filter",
        &format!("label=cairn.task_id={id}"),
    ])
}

/// Starts the volume plugin `name`, keeping its volumes under `dir`; it serves until dropped.
pub fn volume_plugin(name: &str, dir: &Path) -> Proc {
    let plugin = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/volume_plugin.py");
    let mut plugin = Proc(
        Command::new("python3")
            .arg(plugin)
            .arg(name)
            .arg(dir)
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3"),
    );
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(plugin.0.stdout.as_mut().expect("stdout")),
        &mut line,
    )
    .expect("the plugin's first line");
    assert!(line.starts_with("serving"), "{line}");
    plugin
}
