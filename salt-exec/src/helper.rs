//! The long-lived Python helper (`salt_helper.py`, embedded) and the JSON-lines protocol to it.
//!
//! One helper per [`SaltClient`](crate::SaltClient). Any number of threads send requests at once:
//! each request gets an id, a reader thread routes the helper's answers to the waiting caller by
//! that id. The helper's stderr is drained into a short tail that error messages quote.

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::SaltError;

const SCRIPT: &str = include_str!("salt_helper.py");
const STDERR_TAIL: usize = 20;

type Pending = Arc<Mutex<HashMap<u64, Sender<Value>>>>;

pub(crate) struct Helper {
    stdin: Mutex<Option<ChildStdin>>,
    child: Mutex<Child>,
    pending: Pending,
    next_id: AtomicU64,
    stderr_tail: Arc<Mutex<VecDeque<String>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // a panic while holding one of these locks leaves plain data behind: keep going
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Helper {
    pub(crate) fn start(
        python: &Path,
        config_dir: &Path,
        start_timeout: Duration,
    ) -> Result<Self, SaltError> {
        let mut child = Command::new(python)
            .arg("-c")
            .arg(SCRIPT)
            .arg(config_dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| SaltError::Helper {
                message: format!("cannot start {}: {e}", python.display()),
            })?;
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(SaltError::Helper {
                message: "no pipes to the helper process".into(),
            });
        };

        let stderr_tail = Arc::new(Mutex::new(VecDeque::new()));
        {
            let tail = Arc::clone(&stderr_tail);
            thread::Builder::new()
                .name("salt-helper-stderr".into())
                .spawn(move || {
                    for line in BufReader::new(stderr).lines() {
                        let Ok(line) = line else { break };
                        let mut tail = lock(&tail);
                        if tail.len() == STDERR_TAIL {
                            tail.pop_front();
                        }
                        tail.push_back(line);
                    }
                })
                .map_err(|e| SaltError::Helper {
                    message: format!("cannot spawn a thread: {e}"),
                })?;
        }

        let pending: Pending = Arc::new(Mutex::new(HashMap::new()));
        let (ready_tx, ready_rx) = mpsc::channel();
        lock(&pending).insert(0, ready_tx);
        {
            let pending = Arc::clone(&pending);
            thread::Builder::new()
                .name("salt-helper-stdout".into())
                .spawn(move || {
                    for line in BufReader::new(stdout).lines() {
                        let Ok(line) = line else { break };
                        let Ok(msg) = serde_json::from_str::<Value>(&line) else {
                            continue;
                        };
                        let Some(id) = msg.get("id").and_then(Value::as_u64) else {
                            continue;
                        };
                        let done = msg.get("done").and_then(Value::as_bool).unwrap_or(false);
                        let mut map = lock(&pending);
                        if let Some(tx) = map.get(&id) {
                            // a caller that gave up has dropped its receiver: nothing to do
                            let _ = tx.send(msg);
                        }
                        if done {
                            map.remove(&id);
                        }
                    }
                    // the helper is gone: every waiting caller sees its channel close
                    lock(&pending).clear();
                })
                .map_err(|e| SaltError::Helper {
                    message: format!("cannot spawn a thread: {e}"),
                })?;
        }

        let helper = Helper {
            stdin: Mutex::new(Some(stdin)),
            child: Mutex::new(child),
            pending,
            next_id: AtomicU64::new(1),
            stderr_tail,
        };
        match ready_rx.recv_timeout(start_timeout) {
            Ok(msg) if msg.get("ready").and_then(Value::as_bool) == Some(true) => {
                lock(&helper.pending).remove(&0);
                Ok(helper)
            }
            Ok(msg) => Err(SaltError::Helper {
                message: msg
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("did not report ready")
                    .to_string(),
            }),
            Err(RecvTimeoutError::Timeout) => Err(SaltError::Helper {
                message: format!("not ready after {start_timeout:?}{}", helper.tail_suffix()),
            }),
            Err(RecvTimeoutError::Disconnected) => {
                // give the stderr thread a moment to read the traceback
                thread::sleep(Duration::from_millis(100));
                Err(SaltError::Helper {
                    message: format!("exited at start{}", helper.tail_suffix()),
                })
            }
        }
    }

    pub(crate) fn pid(&self) -> u32 {
        lock(&self.child).id()
    }

    /// The helper process has ended.
    pub(crate) fn exited(&self) -> bool {
        matches!(lock(&self.child).try_wait(), Ok(Some(_)))
    }

    /// `: <last stderr line>` when the helper said something, else nothing.
    fn tail_suffix(&self) -> String {
        let tail = lock(&self.stderr_tail);
        tail.iter()
            .rev()
            .find(|l| !l.trim().is_empty())
            .map(|l| format!(": {}", l.trim()))
            .unwrap_or_default()
    }

    /// Send one request and collect every message for it up to `done`, waiting `wait` at most.
    pub(crate) fn call(&self, mut request: Value, wait: Duration) -> Result<Vec<Value>, SaltError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        request["id"] = Value::from(id);
        let (tx, rx): (Sender<Value>, Receiver<Value>) = mpsc::channel();
        lock(&self.pending).insert(id, tx);
        let line = format!("{request}\n");
        let written = {
            let mut stdin = lock(&self.stdin);
            match stdin.as_mut() {
                Some(s) => s.write_all(line.as_bytes()).and_then(|()| s.flush()),
                None => Err(std::io::Error::other("closed")),
            }
        };
        if let Err(e) = written {
            lock(&self.pending).remove(&id);
            return Err(SaltError::Helper {
                message: format!("cannot send a request: {e}{}", self.tail_suffix()),
            });
        }

        let deadline = Instant::now() + wait;
        let mut messages = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(msg) => {
                    if msg.get("done").and_then(Value::as_bool) == Some(true) {
                        return Ok(messages);
                    }
                    messages.push(msg);
                }
                Err(RecvTimeoutError::Timeout) => {
                    lock(&self.pending).remove(&id);
                    return Err(SaltError::Helper {
                        message: format!("no answer from the helper in {wait:?} (request {id})"),
                    });
                }
                Err(RecvTimeoutError::Disconnected) => {
                    thread::sleep(Duration::from_millis(50));
                    return Err(SaltError::Helper {
                        message: format!("exited{}", self.tail_suffix()),
                    });
                }
            }
        }
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        // closing stdin asks the helper to finish; it may still wait on a minion, so do not linger
        lock(&self.stdin).take();
        let mut child = lock(&self.child);
        let deadline = Instant::now() + Duration::from_millis(500);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}
