//! `cairn-tests`: end-to-end tests of whole cairn processes: crashes of real OS processes
//! today; clusters, Docker and third-party clients as those features land.
//!
//! **Boundary.** Depends on any cairn crate; nothing depends on it. Tests start real binaries
//! (`cairn`, and helpers in `src/bin/`) on loopback, in temp dirs, and wait on conditions with
//! deadlines, never on sleeps.
//!
//! **Invariants.** Every test stops what it started, even when it fails (children are killed
//! on drop, an agent's Docker containers are removed with it, and the executors of
//! plain-process tasks are stopped with the test's [`WorkDir`]).
//!
//! **Host ports.** Tests run concurrently on one host, so each test whose tasks bind host
//! ports gives its agents a hundred of their own: t52 32100–32399, t91 32400–32499, t92
//! 32500–32599, t62 32600–32699, t64 32700–32799. Others keep the default range and bind
//! none.

use std::io::{BufRead, BufReader};
use std::os::unix::ffi::OsStrExt;
use std::process::{Child, ChildStdout};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub mod agent;
pub mod cluster;
pub mod compat;
pub mod dev;
pub mod docker;
pub mod partition;

use cairn_log::event::{
    Actor, AgentId, Entry, Event, Principal, StatusSource, TaskId, TaskState, TaskStatusUpdated,
};

/// The entry the crash writer appends as `seq` of `appender`; the checker recognizes it by its
/// task id, `w<appender>-<seq>`.
pub fn crash_entry(appender: u64, seq: u64) -> Entry {
    let agent_id = AgentId::new(format!("agent-{appender}")).expect("valid id");
    Entry {
        actor: Actor {
            principal: Principal::Agent {
                agent_id: agent_id.clone(),
            },
            origin: None,
        },
        event: Event::TaskStatusUpdated(TaskStatusUpdated {
            task_id: TaskId::new(format!("w{appender}-{seq}")).expect("valid id"),
            agent_id,
            state: TaskState::Running,
            source: StatusSource::Executor,
            reason: None,
            message: None,
            healthy: None,
            status_uuid: None,
        }),
    }
}

/// A child process killed (SIGKILL) and reaped when dropped.
#[derive(Debug)]
pub struct Proc(pub Child);

impl Proc {
    /// Waits for the child to exit, at most `within`; `None` if it is still running then.
    pub fn wait_for_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.0.try_wait().expect("try_wait") {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            // Polling the condition; std offers no wait with a timeout.
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A test's temp dir. A plain-process task's executor outlives its agent by design (a restarted
/// agent adopts it), so neither killing an agent nor a `cairn dev` ends it; the executors that
/// run in this dir get SIGTERM when it goes (each then stops its task within the task's kill
/// grace), so that a test, passed or failed, leaves no task running on the host.
#[derive(Debug)]
pub struct WorkDir(tempfile::TempDir);

/// A fresh [`WorkDir`].
pub fn workdir() -> WorkDir {
    WorkDir(tempfile::tempdir().expect("temp dir"))
}

impl std::ops::Deref for WorkDir {
    type Target = tempfile::TempDir;

    fn deref(&self) -> &tempfile::TempDir {
        &self.0
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        for pid in executors_under(self.0.path()) {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        }
    }
}

/// The `cairn executor <sandbox>` processes whose sandbox is under `dir`.
fn executors_under(dir: &std::path::Path) -> Vec<nix::unistd::Pid> {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    procs
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
            let is_ours = matches!(args.as_slice(), [_, b"executor", sandbox, ..]
                if std::path::Path::new(std::ffi::OsStr::from_bytes(sandbox)).starts_with(dir));
            is_ours.then_some(nix::unistd::Pid::from_raw(pid))
        })
        .collect()
}

/// Lines of a child's stdout, readable with a deadline.
#[derive(Debug)]
pub struct Lines(mpsc::Receiver<String>);

impl Lines {
    pub fn new(stdout: ChildStdout) -> Self {
        Self::from_reader(stdout)
    }

    /// Lines of any pipe (a child's stderr, say).
    pub fn from_reader(reader: impl std::io::Read + Send + 'static) -> Self {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(reader).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self(rx)
    }

    /// The next line, or `None` at end of output or when `deadline` passes.
    pub fn next_before(&self, deadline: Instant) -> Option<String> {
        let left = deadline.saturating_duration_since(Instant::now());
        self.0.recv_timeout(left).ok()
    }

    /// Every line still to come, until the stream ends (the child died).
    pub fn drain(&self, within: Duration) -> Vec<String> {
        let deadline = Instant::now() + within;
        std::iter::from_fn(|| self.next_before(deadline)).collect()
    }
}

/// The `cairn` binary under test: `$CAIRN_BIN`, or the one built next to this test in the
/// same target dir (`cargo build --bins` builds it; `./test.sh` does so first).
pub fn cairn_bin() -> std::path::PathBuf {
    if let Some(bin) = std::env::var_os("CAIRN_BIN") {
        return bin.into();
    }
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> → target/<profile>/cairn
    let bin = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target dir")
        .join("cairn");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build --bins` first, or set CAIRN_BIN",
        bin.display()
    );
    bin
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// A plain HTTP/1.0 GET on 127.0.0.1: `(status, body)`.
pub fn http_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    http_to(
        &format!("127.0.0.1:{port}"),
        "GET",
        path,
        "",
        Duration::from_secs(10),
    )
}

/// A plain HTTP/1.0 request with a JSON body to `addr` (`host:port`, on loopback), giving up
/// after `timeout`: `(status, body)`.
pub fn http_to(
    addr: &str,
    method: &str,
    path: &str,
    json: &str,
    timeout: Duration,
) -> std::io::Result<(u16, String)> {
    http_with(addr, method, path, &[], json, timeout)
}

/// [`http_to`] with more request headers (`name`, `value`).
pub fn http_with(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    json: &str,
    timeout: Duration,
) -> std::io::Result<(u16, String)> {
    use std::io::{Read, Write};
    let socket: std::net::SocketAddr = addr.parse().map_err(std::io::Error::other)?;
    let mut stream = std::net::TcpStream::connect_timeout(&socket, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    let extra: String = headers
        .iter()
        .map(|(name, value)| format!("{name}: {value}\r\n"))
        .collect();
    write!(
        stream,
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/json\r\n{extra}Content-Length: {}\r\n\r\n{json}",
        json.len()
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}
