//! A TCP echo server, one process per connection under a dynamic
//! supervisor, with a load generator measuring it against the same echo on
//! tokio, in the same run. Loopback only; every run stops by itself.
//!
//! ```text
//! cargo run --release --example tcp_echo -- [--peer rusm|rusm-asyncio|tokio|both|all]
//!     [--conns N] [--msgs M] [--size BYTES] [--workers W]
//! ```
//!
//! Defaults: `--peer both --conns 100 --msgs 2000 --size 64 --workers 2`.
//! `rusm` serves on `rusm_otp::net` sockets (driven by the workers, see
//! the crate's `io` module), `rusm-asyncio` on `async-io`'s (driven by
//! async-io's own thread); `both` is `rusm` and `tokio`, `all` all three.
//! Each of the N client connections sends M messages of SIZE bytes, one at
//! a time, waiting for each echo (a round trip). The client is the same
//! for both servers: a single-threaded tokio runtime on its own thread,
//! driving all N connections. Prints one line per server:
//!
//! ```text
//! echo peer=<rusm|rusm-asyncio|tokio> conns=N msgs=M size=S workers=W msgs_per_s=<float> p50_us=<float> p99_us=<float>
//! ```
//!
//! The rusm server: an acceptor process accepts connections and starts a
//! `Temporary` child of a dynamic supervisor for each; the child echoes
//! until its peer closes. A message starting with `poison` makes the
//! handler panic: that connection closes (the client sees EOF), the
//! supervisor notes the crash and does not restart a temporary child, and
//! every other connection carries on. The run sends one poisoned message
//! on an extra connection first and checks exactly that.

use rusm_otp::async_io::Async;
use rusm_otp::supervisor::{ChildSpec, Restart, SupervisorRef};
use rusm_otp::{ExitReason, Runtime};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug)]
struct Opts {
    conns: usize,
    msgs: usize,
    size: usize,
    workers: usize,
}

fn main() {
    let mut opts = Opts {
        conns: 100,
        msgs: 2000,
        size: 64,
        workers: 2,
    };
    let mut peer = "both".to_string();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().expect("a value after the flag");
        match a.as_str() {
            "--peer" => peer = val(),
            "--conns" => opts.conns = val().parse().expect("--conns N"),
            "--msgs" => opts.msgs = val().parse().expect("--msgs M"),
            "--size" => opts.size = val().parse().expect("--size BYTES"),
            "--workers" => opts.workers = val().parse().expect("--workers W"),
            other => panic!("unknown argument {other}"),
        }
    }
    assert!(opts.size >= 1);
    if peer == "rusm" || peer == "both" || peer == "all" {
        rusm_server::<rusm_otp::net::TcpListener>(opts, "rusm");
    }
    if peer == "rusm-asyncio" || peer == "all" {
        rusm_server::<Async<TcpListener>>(opts, "rusm-asyncio");
    }
    if peer == "tokio" || peer == "both" || peer == "all" {
        tokio_server(opts);
    }
}

/// Echoes until the peer closes; panics on a message starting with
/// `poison` (the crash the supervisor must contain).
async fn handle<S>(mut stream: S)
where
    S: futures_lite::AsyncRead + futures_lite::AsyncWrite + Unpin,
{
    use futures_lite::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if buf[..n].starts_with(b"poison") {
            panic!("poisoned input");
        }
        if stream.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// The listener of one rusm flavour.
trait Listener: Sized + Send + Sync + 'static {
    type Stream: futures_lite::AsyncRead + futures_lite::AsyncWrite + Unpin + Send + 'static;
    fn bind() -> (Self, SocketAddr);
    fn accept(&self) -> impl std::future::Future<Output = std::io::Result<Self::Stream>> + Send;
}

impl Listener for rusm_otp::net::TcpListener {
    type Stream = rusm_otp::net::TcpStream;
    fn bind() -> (Self, SocketAddr) {
        let l = rusm_otp::net::TcpListener::bind(("127.0.0.1", 0)).expect("bind");
        let addr = l.local_addr().expect("addr");
        (l, addr)
    }
    async fn accept(&self) -> std::io::Result<Self::Stream> {
        let (s, _) = rusm_otp::net::TcpListener::accept(self).await?;
        Ok(s)
    }
}

impl Listener for Async<TcpListener> {
    type Stream = Async<TcpStream>;
    fn bind() -> (Self, SocketAddr) {
        let l = Async::<TcpListener>::bind(([127, 0, 0, 1], 0)).expect("bind");
        let addr = l.get_ref().local_addr().expect("addr");
        (l, addr)
    }
    async fn accept(&self) -> std::io::Result<Self::Stream> {
        let (s, _) = Async::<TcpListener>::accept(self).await?;
        Ok(s)
    }
}

fn rusm_server<L: Listener>(opts: Opts, name: &str) {
    let rt = Runtime::builder()
        .workers(opts.workers)
        .quiet_panics(true)
        .build();
    let sup = SupervisorRef::new(&rt, rt.dynamic_supervisor().start().pid());
    let (listener, addr) = L::bind();
    let acceptor = rt.spawn(move |ctx| async move {
        let rt = ctx.runtime().clone();
        loop {
            let Ok(stream) = listener.accept().await else {
                return;
            };
            // A child factory is `Fn`: the one stream is taken out once.
            let stream = Mutex::new(Some(stream));
            let spec = ChildSpec::new("conn", move |rt: &Runtime| {
                let s = stream.lock().unwrap().take();
                rt.spawn(move |_| async move {
                    if let Some(s) = s {
                        handle(s).await;
                    }
                })
            })
            .restart(Restart::Temporary);
            if sup.start_child(spec).await.is_err() {
                return;
            }
            let _ = &rt;
        }
    });
    // One poisoned connection first: it alone is closed.
    let crashes_before = rt.metrics().panics;
    poison_check(addr);
    let (msgs_per_s, p50, p99) = load(addr, opts);
    assert_eq!(
        rt.metrics().panics - crashes_before,
        1,
        "exactly the poisoned handler crashed"
    );
    println!(
        "echo peer={name} conns={} msgs={} size={} workers={} msgs_per_s={msgs_per_s:.0} p50_us={p50:.1} p99_us={p99:.1}",
        opts.conns, opts.msgs, opts.size, opts.workers
    );
    acceptor.kill();
    let reason = rt.block_on(acceptor.join());
    assert_eq!(reason, ExitReason::Killed);
}

/// Sends a poisoned message on its own connection and expects EOF back.
fn poison_check(addr: SocketAddr) {
    use std::io::{Read, Write};
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    s.write_all(b"poison!").expect("write");
    let mut buf = [0u8; 16];
    let n = s.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "the poisoned connection is closed");
}

fn tokio_server(opts: Opts) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(opts.workers)
        .enable_io()
        .build()
        .expect("tokio runtime");
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let acceptor = rt.spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let n = match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    if buf[..n].starts_with(b"poison") {
                        return;
                    }
                    if s.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    poison_check(addr);
    let (msgs_per_s, p50, p99) = load(addr, opts);
    println!(
        "echo peer=tokio conns={} msgs={} size={} workers={} msgs_per_s={msgs_per_s:.0} p50_us={p50:.1} p99_us={p99:.1}",
        opts.conns, opts.msgs, opts.size, opts.workers
    );
    acceptor.abort();
}

/// The load generator: `conns` connections at once, `msgs` round trips
/// each; returns (messages per second, p50 µs, p99 µs).
fn load(addr: SocketAddr, opts: Opts) -> (f64, f64, f64) {
    let client = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .expect("client runtime");
    let lat = Arc::new(Mutex::new(Vec::with_capacity(opts.conns * opts.msgs)));
    let start_all = Instant::now();
    client.block_on(async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut tasks = Vec::new();
        // Connect all first, so every connection is open during the run.
        let mut streams = Vec::new();
        for _ in 0..opts.conns {
            let s = tokio::net::TcpStream::connect(addr).await.expect("connect");
            s.set_nodelay(true).expect("nodelay");
            streams.push(s);
        }
        for mut s in streams {
            let lat = lat.clone();
            tasks.push(tokio::spawn(async move {
                let msg = vec![b'x'; opts.size];
                let mut back = vec![0u8; opts.size];
                let mut mine = Vec::with_capacity(opts.msgs);
                for _ in 0..opts.msgs {
                    let t = Instant::now();
                    s.write_all(&msg).await.expect("write");
                    s.read_exact(&mut back).await.expect("read");
                    mine.push(t.elapsed());
                }
                assert_eq!(back, msg);
                lat.lock().unwrap().extend(mine);
            }));
        }
        for t in tasks {
            t.await.expect("client task");
        }
    });
    let elapsed = start_all.elapsed();
    let mut lat = std::mem::take(&mut *lat.lock().unwrap());
    assert_eq!(lat.len(), opts.conns * opts.msgs, "every echo came back");
    lat.sort_unstable();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    (
        lat.len() as f64 / elapsed.as_secs_f64(),
        us(pct(0.50)),
        us(pct(0.99)),
    )
}
