//! Real sockets in processes: `async-io`'s `Async<TcpListener>`,
//! `Async<TcpStream>` and `Async<UdpSocket>` awaited from process bodies on
//! loopback, on one and two workers. Every socket is bound to 127.0.0.1
//! port 0, and every wait is bounded (`support::run`).

mod support;

use async_io::Async;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use rusm_otp::{ExitReason, Received, Runtime};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use support::run;

/// A listener on an ephemeral loopback port.
fn listener() -> (Async<TcpListener>, SocketAddr) {
    let l = Async::<TcpListener>::bind(([127, 0, 0, 1], 0)).expect("bind");
    let addr = l.get_ref().local_addr().expect("local_addr");
    (l, addr)
}

/// Echoes `stream` until the peer closes it; returns the bytes echoed.
async fn echo(mut stream: Async<TcpStream>) -> usize {
    let mut buf = [0u8; 1024];
    let mut total = 0;
    loop {
        let n = stream.read(&mut buf).await.expect("read");
        if n == 0 {
            return total;
        }
        stream.write_all(&buf[..n]).await.expect("write");
        total += n;
    }
}

/// A process accepts `conns` connections and spawns one echo process per
/// connection; returns the listener process's handle and the address.
fn echo_server(rt: &Runtime, conns: usize) -> (rusm_otp::ProcessHandle, SocketAddr) {
    let (l, addr) = listener();
    let h = rt.spawn(move |ctx| async move {
        for _ in 0..conns {
            let (stream, _) = l.accept().await.expect("accept");
            ctx.runtime().spawn(move |_| async move {
                echo(stream).await;
            });
        }
    });
    (h, addr)
}

#[test]
fn a_process_accepts_reads_writes_and_closes_on_one_and_two_workers() {
    for workers in [1, 2] {
        let rt = support::runtime(workers);
        let (l, addr) = listener();
        let echoed = Arc::new(AtomicUsize::new(0));
        let e = echoed.clone();
        let server = rt.spawn(move |_| async move {
            let (stream, _) = l.accept().await.expect("accept");
            e.store(echo(stream).await, Ordering::SeqCst);
        });
        // The client is a process too, reporting back to `block_on`.
        let client = rt.spawn(move |_| async move {
            let mut s = Async::<TcpStream>::connect(addr).await.expect("connect");
            for i in 0..100u32 {
                let msg = i.to_be_bytes();
                s.write_all(&msg).await.expect("write");
                let mut back = [0u8; 4];
                s.read_exact(&mut back).await.expect("read");
                assert_eq!(back, msg);
            }
            // Dropping the stream closes it: the server reads EOF.
        });
        run(&rt, async {
            assert_eq!(client.join().await, ExitReason::Normal);
            assert_eq!(server.join().await, ExitReason::Normal);
        });
        assert_eq!(echoed.load(Ordering::SeqCst), 400, "{workers} workers");
    }
}

#[test]
fn a_client_on_a_plain_thread_talks_to_a_process() {
    for workers in [1, 2] {
        let rt = support::runtime(workers);
        let (server, addr) = echo_server(&rt, 1);
        let mut s = TcpStream::connect(addr).expect("connect");
        use std::io::{Read, Write};
        s.write_all(b"hello").expect("write");
        let mut back = [0u8; 5];
        s.read_exact(&mut back).expect("read");
        assert_eq!(&back, b"hello");
        drop(s);
        run(&rt, async {
            assert_eq!(server.join().await, ExitReason::Normal)
        });
    }
}

#[test]
fn udp_datagrams_echo_between_processes() {
    for workers in [1, 2] {
        let rt = support::runtime(workers);
        let server = Async::<UdpSocket>::bind(([127, 0, 0, 1], 0)).expect("bind");
        let addr = server.get_ref().local_addr().expect("addr");
        let srv = rt.spawn(move |_| async move {
            let mut buf = [0u8; 64];
            for _ in 0..50 {
                let (n, from) = server.recv_from(&mut buf).await.expect("recv");
                server.send_to(&buf[..n], from).await.expect("send");
            }
        });
        let client = rt.spawn(move |_| async move {
            let s = Async::<UdpSocket>::bind(([127, 0, 0, 1], 0)).expect("bind");
            s.get_ref().connect(addr).expect("connect");
            let mut buf = [0u8; 64];
            // Loopback does not drop datagrams under this load; one in
            // flight at a time keeps the socket buffers far from full.
            for i in 0..50u64 {
                s.send(&i.to_le_bytes()).await.expect("send");
                let n = s.recv(&mut buf).await.expect("recv");
                assert_eq!(&buf[..n], &i.to_le_bytes());
            }
        });
        run(&rt, async {
            assert_eq!(client.join().await, ExitReason::Normal);
            assert_eq!(srv.join().await, ExitReason::Normal);
        });
    }
}

/// 1,000 client processes, each with its own connection to one of 1,000
/// server processes, all open at once: every byte comes back.
#[test]
fn a_thousand_concurrent_connections_echo_without_loss() {
    const CONNS: usize = 1000;
    const ROUNDS: u32 = 5;
    let rt = support::runtime(2);
    let (acceptor, addr) = echo_server(&rt, CONNS);
    let ok = Arc::new(AtomicUsize::new(0));
    // Every client connects first and only then starts talking, so all
    // the connections are open at the same time.
    let connected = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..CONNS)
        .map(|c| {
            let (ok, connected) = (ok.clone(), connected.clone());
            rt.spawn(move |_| async move {
                let mut s = Async::<TcpStream>::connect(addr).await.expect("connect");
                connected.fetch_add(1, Ordering::SeqCst);
                while connected.load(Ordering::SeqCst) < CONNS {
                    rusm_otp::sleep(std::time::Duration::from_millis(1)).await;
                }
                for r in 0..ROUNDS {
                    let msg = ((c as u32) << 8 | r).to_le_bytes();
                    s.write_all(&msg).await.expect("write");
                    let mut back = [0u8; 4];
                    s.read_exact(&mut back).await.expect("read");
                    assert_eq!(back, msg);
                    ok.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    run(&rt, async {
        for c in clients {
            assert_eq!(c.join().await, ExitReason::Normal);
        }
        assert_eq!(acceptor.join().await, ExitReason::Normal);
    });
    assert_eq!(ok.load(Ordering::Relaxed), CONNS * ROUNDS as usize);
    // The echo processes end as their clients close.
    support::wait_until("echo processes end", || rt.process_count() == 0);
}

/// A process killed while it awaits a read drops its socket: the client,
/// blocked in its own read, sees the connection end.
#[test]
fn a_process_killed_while_awaiting_a_read_releases_its_socket() {
    for workers in [1, 2] {
        let rt = support::runtime(workers);
        let (l, addr) = listener();
        let (tx, rx) = std::sync::mpsc::channel();
        let server = rt.spawn(move |_| async move {
            let (mut stream, _) = l.accept().await.expect("accept");
            drop(l);
            tx.send(()).unwrap();
            let mut buf = [0u8; 8];
            // Never answered: the client writes nothing.
            let _ = stream.read(&mut buf).await;
            unreachable!("the client never writes");
        });
        let mut client = TcpStream::connect(addr).expect("connect");
        client
            .set_read_timeout(Some(support::TIMEOUT))
            .expect("timeout");
        rx.recv_timeout(support::TIMEOUT).expect("accepted");
        assert!(server.kill());
        run(&rt, async {
            assert_eq!(server.join().await, ExitReason::Killed)
        });
        use std::io::Read;
        let mut buf = [0u8; 8];
        let n = client.read(&mut buf).expect("EOF, not a timeout");
        assert_eq!(n, 0, "the client sees the connection closed");
    }
}

/// Messages and socket readiness wake the same process: a process waits on
/// either (here by racing its mailbox against a read).
#[test]
fn a_process_waits_on_its_mailbox_and_a_socket_at_once() {
    let rt = support::runtime(2);
    let (l, addr) = listener();
    let got = Arc::new(AtomicUsize::new(0));
    let g = got.clone();
    let server = rt.spawn(move |mut ctx| async move {
        let (mut stream, _) = l.accept().await.expect("accept");
        let mut buf = [0u8; 16];
        loop {
            let ev = futures_lite::future::or(
                async { Some(stream.read(&mut buf).await.expect("read")) },
                async {
                    match ctx.recv().await {
                        Received::Message(_) => None,
                        other => panic!("unexpected {other:?}"),
                    }
                },
            )
            .await;
            match ev {
                Some(0) => return,
                Some(n) => {
                    g.fetch_add(n, Ordering::SeqCst);
                }
                None => {
                    g.fetch_add(1000, Ordering::SeqCst);
                }
            }
        }
    });
    let pid = server.pid();
    let mut client = TcpStream::connect(addr).expect("connect");
    use std::io::Write;
    client.write_all(b"abc").expect("write");
    support::wait_until("3 bytes read", || got.load(Ordering::SeqCst) == 3);
    assert!(rt.send(pid, "poke"));
    support::wait_until("message received", || got.load(Ordering::SeqCst) == 1003);
    drop(client);
    run(&rt, async {
        assert_eq!(server.join().await, ExitReason::Normal)
    });
}

/// `async-net`'s wrappers (the same reactor underneath) work the same way.
#[test]
fn async_net_streams_work_in_processes() {
    let rt = support::runtime(2);
    let listener = run(&rt, async_net::TcpListener::bind("127.0.0.1:0")).expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = rt.spawn(move |_| async move {
        let (mut s, _) = listener.accept().await.expect("accept");
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf).await.expect("read");
        s.write_all(&buf).await.expect("write");
    });
    let client = rt.spawn(move |_| async move {
        let mut s = async_net::TcpStream::connect(addr).await.expect("connect");
        s.write_all(b"ping").await.expect("write");
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf).await.expect("read");
        assert_eq!(&buf, b"ping");
    });
    run(&rt, async {
        assert_eq!(client.join().await, ExitReason::Normal);
        assert_eq!(server.join().await, ExitReason::Normal);
    });
}

/// One process per connection under a dynamic supervisor: a handler that
/// panics on a poisoned input closes only its own connection; the other
/// connections keep echoing, and the crash is not restarted (temporary).
#[test]
fn a_handler_panicking_on_poisoned_input_closes_only_its_own_connection() {
    use rusm_otp::supervisor::{ChildSpec, Restart, SupervisorRef};
    use std::io::{Read, Write};
    let rt = Runtime::builder().workers(2).quiet_panics(true).build();
    let sup = SupervisorRef::new(&rt, rt.dynamic_supervisor().start().pid());
    let (l, addr) = listener();
    let sup_pid = sup.pid();
    let acceptor = rt.spawn(move |_| async move {
        loop {
            let (stream, _) = l.accept().await.expect("accept");
            let stream = std::sync::Mutex::new(Some(stream));
            let spec = ChildSpec::new("conn", move |rt: &Runtime| {
                let mut s = stream.lock().unwrap().take().expect("started once");
                rt.spawn(move |_| async move {
                    let mut buf = [0u8; 64];
                    loop {
                        let n = s.read(&mut buf).await.expect("read");
                        if n == 0 {
                            return;
                        }
                        assert!(!buf[..n].starts_with(b"poison"), "poisoned input");
                        s.write_all(&buf[..n]).await.expect("write");
                    }
                })
            })
            .restart(Restart::Temporary);
            sup.start_child(spec).await.expect("started");
        }
    });
    let connect = || {
        let s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(support::TIMEOUT)).unwrap();
        s
    };
    let mut healthy: Vec<TcpStream> = (0..5).map(|_| connect()).collect();
    let mut poisoned = connect();
    let echo_all = |conns: &mut Vec<TcpStream>| {
        for (i, s) in conns.iter_mut().enumerate() {
            let msg = format!("hello {i}");
            s.write_all(msg.as_bytes()).unwrap();
            let mut back = vec![0u8; msg.len()];
            s.read_exact(&mut back).unwrap();
            assert_eq!(back, msg.as_bytes());
        }
    };
    echo_all(&mut healthy);
    poisoned.write_all(b"poison!").unwrap();
    let mut buf = [0u8; 8];
    assert_eq!(poisoned.read(&mut buf).expect("EOF, not a timeout"), 0);
    support::wait_until("crash counted", || rt.metrics().panics == 1);
    echo_all(&mut healthy);
    assert!(rt.is_alive(acceptor.pid()));
    assert!(rt.is_alive(sup_pid));
}
