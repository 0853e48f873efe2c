//! `moto_server` (SQS, DynamoDB, Secrets Manager emulator) for the tests: one per test binary,
//! on a free port of 127.0.0.1, started on first use and killed when the test binary exits
//! (the kernel sends it SIGKILL when its parent thread ends: `PR_SET_PDEATHSIG`).

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The running emulator.
pub struct Moto {
    pub endpoint: String,
}

static MOTO: OnceLock<Moto> = OnceLock::new();

/// The shared emulator of this test binary.
pub fn moto() -> &'static Moto {
    MOTO.get_or_init(start)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

fn start() -> Moto {
    let server = crate::python::tool("moto_server");
    let port = free_port();
    let (tx, rx) = std::sync::mpsc::channel();
    // The child is spawned from a thread that lives as long as the process, so PDEATHSIG fires
    // when the test binary exits, not when the test that started it returns.
    std::thread::spawn(move || {
        let mut cmd = Command::new(server);
        cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: prctl is async-signal-safe and only changes this child's own settings.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn();
        let ok = child.is_ok();
        let _ = tx.send(child.map(|_| ()).map_err(|e| e.to_string()));
        if ok {
            loop {
                std::thread::park();
            }
        }
    });
    rx.recv().expect("the moto thread answers").expect("moto_server starts");
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    // Wait until it accepts connections: a readiness check, bounded in time.
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(
            Instant::now() < deadline,
            "moto_server did not start listening on {addr} within 60 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Moto {
        endpoint: format!("http://{addr}"),
    }
}
