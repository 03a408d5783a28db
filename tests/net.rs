//! `rusm_otp::net` sockets, driven by the runtime's own workers (the I/O
//! duty): accept, read, write and close from processes on one and two
//! workers; many connections at once; a killed process releases its
//! socket; readiness reaches the runtime when every worker sleeps (the
//! duty holder, blocked in the reactor, takes it itself; also for the
//! first socket, registered while the holder sleeps on its condvar) and
//! when the duty holder is stuck in a long poll. Loopback only; every wait is bounded.

mod support;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use rusm_otp::ExitReason;
use rusm_otp::net::{TcpListener, TcpStream};
use std::future::Future;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};
use support::run;

fn listener() -> (TcpListener, SocketAddr) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("local_addr");
    (l, addr)
}

/// Echoes until the peer closes; returns the bytes echoed.
async fn echo(mut s: TcpStream) -> usize {
    let mut buf = [0u8; 1024];
    let mut total = 0;
    loop {
        let n = s.read(&mut buf).await.expect("read");
        if n == 0 {
            return total;
        }
        s.write_all(&buf[..n]).await.expect("write");
        total += n;
    }
}

/// A plain-thread client socket with a generous read timeout.
/// A process that accepts one connection and then waits on a read that
/// never completes, and the client end of that connection, returned once the
/// process has accepted it.
fn connected_to_a_stuck_reader(
    rt: &rusm_otp::Runtime,
) -> (rusm_otp::ProcessHandle, std::net::TcpStream) {
    let (l, addr) = listener();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = rt.spawn(move |_| async move {
        let (mut s, _) = l.accept().await.expect("accept");
        tx.send(()).unwrap();
        let mut buf = [0u8; 8];
        let _ = s.read(&mut buf).await;
        unreachable!("nothing is ever written");
    });
    let c = client(addr);
    rx.recv_timeout(support::TIMEOUT).expect("accepted");
    (reader, c)
}

fn client(addr: SocketAddr) -> std::net::TcpStream {
    let c = std::net::TcpStream::connect(addr).expect("connect");
    c.set_read_timeout(Some(support::TIMEOUT)).unwrap();
    c
}

#[test]
fn a_process_accepts_reads_writes_and_closes_on_one_and_two_workers() {
    for workers in [1, 2] {
        let rt = support::runtime(workers);
        let (l, addr) = listener();
        let echoed = Arc::new(AtomicUsize::new(0));
        let e = echoed.clone();
        let server = rt.spawn(move |_| async move {
            let (s, _) = l.accept().await.expect("accept");
            e.store(echo(s).await, Ordering::SeqCst);
        });
        let client = rt.spawn(move |_| async move {
            let mut s = TcpStream::connect(addr).await.expect("connect");
            for i in 0..100u32 {
                let msg = i.to_be_bytes();
                s.write_all(&msg).await.expect("write");
                let mut back = [0u8; 4];
                s.read_exact(&mut back).await.expect("read");
                assert_eq!(back, msg);
            }
            s.close().await.expect("close");
        });
        run(&rt, async {
            assert_eq!(client.join().await, ExitReason::Normal);
            assert_eq!(server.join().await, ExitReason::Normal);
        });
        assert_eq!(echoed.load(Ordering::SeqCst), 400, "{workers} workers");
    }
}

#[test]
fn a_thousand_concurrent_connections_echo_without_loss() {
    const CONNS: usize = 1000;
    // Connections are opened a hundred at a time, each batch accepted
    // before the next, so the listen backlog (128) never overflows (the
    // kernel then resets connections, which is no fault of ours); then all
    // thousand, open at once, echo concurrently.
    const BATCH: usize = 100;
    for workers in [1, 2] {
        let rt = support::runtime(workers);
        let (l, addr) = listener();
        let accepted = Arc::new(AtomicUsize::new(0));
        let a = accepted.clone();
        let server = rt.spawn(move |ctx| async move {
            for _ in 0..CONNS {
                let (s, _) = l.accept().await.expect("accept");
                a.fetch_add(1, Ordering::SeqCst);
                ctx.runtime().spawn(move |_| async move {
                    echo(s).await;
                });
            }
        });
        let mut clients = Vec::with_capacity(CONNS);
        for batch in 0..CONNS / BATCH {
            for j in 0..BATCH {
                let i = batch * BATCH + j;
                clients.push(rt.spawn(move |mut ctx| async move {
                    let mut s = TcpStream::connect(addr).await.expect("connect");
                    // Told to go once every connection is open.
                    ctx.recv().await;
                    let msg = (i as u64).to_be_bytes();
                    for _ in 0..3 {
                        s.write_all(&msg).await.expect("write");
                        let mut back = [0u8; 8];
                        s.read_exact(&mut back).await.expect("read");
                        assert_eq!(back, msg);
                    }
                }));
            }
            let opened = (batch + 1) * BATCH;
            support::wait_until("a batch of connections accepted", || {
                accepted.load(Ordering::SeqCst) >= opened
            });
        }
        for c in &clients {
            assert!(rt.send(c.pid(), ()));
        }
        run(&rt, async {
            for c in clients {
                assert_eq!(c.join().await, ExitReason::Normal);
            }
            assert_eq!(server.join().await, ExitReason::Normal);
        });
    }
}

#[test]
fn a_process_killed_while_awaiting_a_read_releases_its_socket() {
    for workers in [1, 2] {
        let rt = support::runtime(workers);
        let (reader, mut c) = connected_to_a_stuck_reader(&rt);
        reader.kill();
        assert_eq!(run(&rt, reader.join()), ExitReason::Killed);
        let mut buf = [0u8; 8];
        assert_eq!(c.read(&mut buf).expect("EOF, not a timeout"), 0);
    }
}

#[test]
fn a_socket_awaited_outside_a_runtime_fails_instead_of_hanging() {
    let (l, _addr) = listener();
    let err = futures_lite::future::block_on(l.accept()).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::Other);
}

/// Records the name of each thread its future's waker is woken on.
struct RecordWakes<F> {
    inner: F,
    woken_on: Arc<Mutex<Vec<String>>>,
}

struct Recorder {
    inner: Waker,
    woken_on: Arc<Mutex<Vec<String>>>,
}

impl Wake for Recorder {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        let name = std::thread::current().name().unwrap_or("?").to_string();
        self.woken_on.lock().unwrap().push(name);
        self.inner.wake_by_ref();
    }
}

impl<F: Future + Unpin> Future for RecordWakes<F> {
    type Output = F::Output;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let waker = Waker::from(Arc::new(Recorder {
            inner: cx.waker().clone(),
            woken_on: self.woken_on.clone(),
        }));
        Pin::new(&mut self.inner).poll(&mut Context::from_waker(&waker))
    }
}

/// Every worker asleep, a process waiting on a read: the byte that arrives
/// is taken by the worker holding the duty, blocked in the reactor's poll,
/// which wakes the process itself (no other thread in between).
#[test]
fn readiness_is_taken_by_a_worker_when_every_worker_sleeps() {
    for workers in [1, 2] {
        let rt = support::runtime(workers);
        let (l, addr) = listener();
        let woken_on = Arc::new(Mutex::new(Vec::new()));
        let w = woken_on.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        let server = rt.spawn(move |_| async move {
            let (mut s, _) = l.accept().await.expect("accept");
            tx.send(()).unwrap();
            let mut buf = [0u8; 1];
            let read = RecordWakes {
                inner: Box::pin(s.read(&mut buf)),
                woken_on: w,
            };
            assert_eq!(read.await.expect("read"), 1);
            s.write_all(&buf).await.expect("write");
        });
        let mut c = client(addr);
        rx.recv_timeout(support::TIMEOUT).expect("accepted");
        support::wait_until("every worker asleep", || {
            rt.metrics().sleeping_workers == workers
        });
        c.write_all(b"x").unwrap();
        let mut buf = [0u8; 1];
        c.read_exact(&mut buf).expect("the echo");
        assert_eq!(run(&rt, server.join()), ExitReason::Normal);
        let woken_on = woken_on.lock().unwrap().clone();
        assert_eq!(woken_on.len(), 1, "one wake: {woken_on:?}");
        assert!(
            woken_on[0].starts_with("rusm-worker"),
            "woken on {:?}, not by a worker",
            woken_on[0]
        );
    }
}

/// With no socket registered, the duty holder sleeps on its condvar
/// (nothing to poll). The first socket, registered while every worker
/// sleeps (here by `block_on`, on no worker), moves the holder into the
/// reactor: the connection is taken by a worker, not left for the stall
/// monitor to find.
///
/// The monitor may legitimately take it too when the holder's thread is
/// not scheduled for a whole monitor period (a loaded machine), so each
/// worker count gets a few attempts and one taken by a worker is enough;
/// without the holder's move into the reactor no attempt ever is (only the
/// monitor polls while every worker sleeps).
#[test]
fn the_first_socket_registered_while_every_worker_sleeps_is_polled_by_a_worker() {
    const ATTEMPTS: usize = 5;
    for workers in [1, 2] {
        let mut seen = Vec::new();
        for _ in 0..ATTEMPTS {
            let woken_on = first_socket_woken_on(workers);
            assert_eq!(woken_on.len(), 1, "one wake: {woken_on:?}");
            let by_worker = woken_on[0].starts_with("rusm-worker");
            seen.push(woken_on[0].clone());
            if by_worker {
                break;
            }
        }
        assert!(
            seen.last().is_some_and(|w| w.starts_with("rusm-worker")),
            "{workers} workers: woken on {seen:?}, never by a worker"
        );
    }
}

/// One attempt of the test above: the names of the threads that woke the
/// accept.
fn first_socket_woken_on(workers: usize) -> Vec<String> {
    let rt = support::runtime(workers);
    support::wait_until("every worker asleep", || {
        rt.metrics().sleeping_workers == workers
    });
    let (l, addr) = listener();
    let woken_on = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    // Connects once the accept waits (so that it is woken).
    let connector = std::thread::spawn(move || {
        rx.recv_timeout(support::TIMEOUT).expect("the accept waits");
        client(addr)
    });
    let w = woken_on.clone();
    run(&rt, async move {
        let mut accept = RecordWakes {
            inner: Box::pin(l.accept()),
            woken_on: w,
        };
        std::future::poll_fn(|cx| {
            let r = Pin::new(&mut accept).poll(cx);
            if r.is_pending() {
                let _ = tx.send(());
            }
            r
        })
        .await
        .expect("accept");
    });
    let _client = connector.join().unwrap();
    woken_on.lock().unwrap().clone()
}

/// The duty holder is woken by a socket (so the process it wakes runs on
/// it) and then spins, holding its worker; the other worker sleeps without
/// the duty. A second socket's readiness must still be delivered, by
/// someone, well before the spin ends (the spin ends early as soon as it
/// is; its cap is far beyond the bound the monitor gives).
#[test]
fn readiness_lands_while_the_duty_holder_is_stuck_in_a_long_poll() {
    const CAP: Duration = Duration::from_secs(10);
    for _ in 0..3 {
        let rt = support::runtime(2);
        let (l, addr) = listener();
        let replied = Arc::new(AtomicBool::new(false));
        let spun_to_cap = Arc::new(AtomicBool::new(false));
        let (tx, rx) = std::sync::mpsc::channel();
        let (r, s) = (replied.clone(), spun_to_cap.clone());
        let spinner_tx = tx.clone();
        // The spinner: woken by a byte, then spins until the replier has
        // answered (or the cap).
        let spinner = rt.spawn(move |ctx| async move {
            let (mut sock, _) = l.accept().await.expect("accept");
            let l2 = TcpListener::bind("127.0.0.1:0").expect("bind");
            spinner_tx.send(l2.local_addr().unwrap()).unwrap();
            // The replier, on a socket of its own.
            ctx.runtime().spawn(move |_| async move {
                let (mut sock, _) = l2.accept().await.expect("accept");
                let mut buf = [0u8; 1];
                sock.read_exact(&mut buf).await.expect("read");
                sock.write_all(&buf).await.expect("write");
                r.store(true, Ordering::SeqCst);
            });
            let mut buf = [0u8; 1];
            sock.read_exact(&mut buf).await.expect("read");
            spinner_tx.send(addr).unwrap();
            let end = Instant::now() + CAP;
            while !replied.load(Ordering::SeqCst) {
                if Instant::now() > end {
                    s.store(true, Ordering::SeqCst);
                    break;
                }
                std::hint::spin_loop();
            }
        });
        let mut a = client(addr);
        let addr2 = rx.recv_timeout(support::TIMEOUT).expect("second listener");
        let mut b = client(addr2);
        support::wait_until("every worker asleep", || rt.metrics().sleeping_workers == 2);
        a.write_all(b"a").unwrap();
        rx.recv_timeout(support::TIMEOUT).expect("spinning");
        b.write_all(b"b").unwrap();
        let mut buf = [0u8; 1];
        b.read_exact(&mut buf).expect("the reply");
        assert_eq!(run(&rt, spinner.join()), ExitReason::Normal);
        assert!(
            !spun_to_cap.load(Ordering::SeqCst),
            "the reply waited for the spin to end"
        );
    }
}

/// A stream first awaited in one runtime, which is then dropped, and
/// awaited again in a second runtime: its registration stays with the
/// first runtime's reactor, which nobody polls any more, so the read fails
/// with an error instead of staying pending forever.
#[test]
fn a_stream_outliving_its_first_runtime_fails_instead_of_hanging() {
    let (l, addr) = listener();
    let mut c = client(addr);
    let rt1 = support::runtime(1);
    let s = run(&rt1, async move {
        let (s, _) = l.accept().await.expect("accept");
        s
    });
    c.write_all(b"a").unwrap();
    let s = run(&rt1, async move {
        // A short read: the stream is drained, its readiness cleared.
        let mut buf = [0u8; 8];
        assert_eq!((&s).read(&mut buf).await.expect("first byte"), 1);
        s
    });
    drop(rt1);
    let rt2 = support::runtime(1);
    let mut s = s;
    let err = support::run_for(&rt2, Duration::from_secs(5), async move {
        let mut buf = [0u8; 1];
        s.read(&mut buf).await.unwrap_err()
    });
    assert_eq!(err.kind(), std::io::ErrorKind::Other);
}

/// A connect to a port nobody listens on fails with the kernel's error
/// (from a process: the connect runs on the blocking pool), no hang.
#[test]
fn a_refused_connection_is_an_error() {
    let rt = support::runtime(1);
    // Bound then closed: nothing listens there now.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let err = run(
        &rt,
        async move { TcpStream::connect(addr).await.unwrap_err() },
    );
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
}

/// The runtime dropped while a process waits on a read: the drop returns,
/// and the socket is closed (the client sees EOF), as is the listener.
#[test]
fn dropping_the_runtime_closes_the_sockets_its_processes_wait_on() {
    let rt = support::runtime(2);
    let (_reader, mut c) = connected_to_a_stuck_reader(&rt);
    let addr = c.peer_addr().expect("connected");
    drop(rt);
    let mut buf = [0u8; 8];
    assert_eq!(c.read(&mut buf).expect("EOF, not a timeout"), 0);
    assert_eq!(
        std::net::TcpStream::connect(addr).unwrap_err().kind(),
        std::io::ErrorKind::ConnectionRefused
    );
}

/// Tells `tx` once, the first time its inner future is pending.
struct TellPending<F> {
    inner: Pin<Box<F>>,
    tx: Option<std::sync::mpsc::Sender<()>>,
}

impl<F: Future> Future for TellPending<F> {
    type Output = F::Output;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let r = self.inner.as_mut().poll(cx);
        if r.is_pending() {
            if let Some(tx) = self.tx.take() {
                tx.send(()).unwrap();
            }
        }
        r
    }
}

/// Two acceptor processes waiting on one listener (an acceptor pool):
/// two connections reach both, not only the one that waited last.
#[test]
fn two_processes_waiting_to_accept_on_one_listener_both_accept() {
    let rt = support::runtime(2);
    let (l, addr) = listener();
    let l = Arc::new(l);
    let (tx, rx) = std::sync::mpsc::channel();
    let acceptors: Vec<_> = (0..2)
        .map(|_| {
            let l = l.clone();
            let tx = tx.clone();
            rt.spawn(move |_| async move {
                let accept = TellPending {
                    inner: Box::pin(async { l.accept().await.expect("accept") }),
                    tx: Some(tx),
                };
                let (_s, _) = accept.await;
            })
        })
        .collect();
    for _ in 0..2 {
        rx.recv_timeout(support::TIMEOUT).expect("acceptor waiting");
    }
    let _c1 = client(addr);
    let _c2 = client(addr);
    for a in acceptors {
        assert_eq!(
            support::run_for(&rt, Duration::from_secs(5), a.join()),
            ExitReason::Normal
        );
    }
}
