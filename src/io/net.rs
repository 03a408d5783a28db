//! TCP sockets driven by the runtime's own reactor (see `io`).

use super::reactor::{Dir, Reactor, Source};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, ToSocketAddrs};
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

/// A socket's registration with the reactor of the runtime it was first
/// awaited in.
#[derive(Debug)]
struct Registration {
    reactor: Arc<Reactor>,
    source: Arc<Source>,
}

/// A non-blocking socket and its (lazy) registration.
#[derive(Debug)]
struct Io<T: std::os::fd::AsRawFd> {
    reg: OnceLock<Registration>,
    /// Held while registering: two futures sharing the socket may both
    /// poll it first (the poller takes an fd only once).
    registering: parking_lot::Mutex<()>,
    /// `None` only inside `Drop`.
    inner: Option<T>,
}

impl<T: std::os::fd::AsRawFd> Io<T> {
    fn new(inner: T) -> Io<T> {
        Io {
            reg: OnceLock::new(),
            registering: parking_lot::Mutex::new(()),
            inner: Some(inner),
        }
    }

    fn get(&self) -> &T {
        self.inner.as_ref().expect("socket used after drop")
    }

    /// The registration, made with the current runtime's reactor on first
    /// use: sockets can be created anywhere, and are bound to a reactor
    /// where they are first awaited.
    fn registration(&self) -> io::Result<&Registration> {
        if let Some(r) = self.reg.get() {
            return Ok(r);
        }
        let _registering = self.registering.lock();
        if let Some(r) = self.reg.get() {
            return Ok(r);
        }
        let rt = crate::runtime::current().ok_or_else(|| {
            io::Error::other("rusm_otp::net socket awaited outside a runtime's thread")
        })?;
        let reactor = rt.shared.scheduler.io.clone();
        // SAFETY: `Drop` deregisters the source before the socket closes.
        let (source, first) = unsafe { reactor.register(super::reactor::raw(self.get()))? };
        if first {
            super::first_source(&rt.shared);
        }
        Ok(self.reg.get_or_init(|| Registration { reactor, source }))
    }

    /// Runs `op` while the socket is ready for `dir` (see `reactor`);
    /// `drained(&r)` says a successful result shows the socket drained (a
    /// short read or write), so the next call waits for an event instead
    /// of asking the kernel again.
    fn poll_op<R>(
        &self,
        cx: &mut Context<'_>,
        dir: Dir,
        mut op: impl FnMut(&T) -> io::Result<R>,
        drained: impl Fn(&R) -> bool,
    ) -> Poll<io::Result<R>> {
        let reg = self.registration()?;
        let inner = self.get();
        reg.reactor
            .poll_op(&reg.source, dir, cx, || op(inner), drained)
    }
}

impl<T: std::os::fd::AsRawFd> Drop for Io<T> {
    fn drop(&mut self) {
        if let Some(reg) = self.reg.take() {
            reg.reactor.deregister(&reg.source);
        }
        // Closes the socket, after it left the poller.
        self.inner = None;
    }
}

/// A TCP listener whose accepts are driven by the runtime's workers.
///
/// Created anywhere; awaited in a process (or a runtime's `block_on`),
/// where it registers with that runtime's reactor. Awaiting it outside a
/// runtime's thread fails with an error, and so does waiting on it once
/// that runtime has been dropped (it is not moved to another runtime).
///
/// # Examples
///
/// ```
/// use rusm_otp::Runtime;
/// use rusm_otp::net::{TcpListener, TcpStream};
/// use futures_lite::{AsyncReadExt, AsyncWriteExt};
///
/// let rt = Runtime::builder().workers(2).build();
/// let listener = TcpListener::bind("127.0.0.1:0").unwrap();
/// let addr = listener.local_addr().unwrap();
/// rt.spawn(move |_ctx| async move {
///     let (mut s, _) = listener.accept().await.unwrap();
///     let mut buf = [0u8; 5];
///     s.read_exact(&mut buf).await.unwrap();
///     s.write_all(&buf).await.unwrap();
/// });
/// let echoed = rt.block_on(async move {
///     let mut c = TcpStream::connect(addr).await.unwrap();
///     c.write_all(b"hello").await.unwrap();
///     let mut buf = [0u8; 5];
///     c.read_exact(&mut buf).await.unwrap();
///     buf
/// });
/// assert_eq!(&echoed, b"hello");
/// ```
#[derive(Debug)]
pub struct TcpListener {
    io: Io<std::net::TcpListener>,
}

impl TcpListener {
    /// Binds to `addr` (a blocking call, but binding does not wait).
    pub fn bind(addr: impl ToSocketAddrs) -> io::Result<TcpListener> {
        TcpListener::from_std(std::net::TcpListener::bind(addr)?)
    }

    /// Wraps a std listener, making it non-blocking.
    pub fn from_std(listener: std::net::TcpListener) -> io::Result<TcpListener> {
        listener.set_nonblocking(true)?;
        Ok(TcpListener {
            io: Io::new(listener),
        })
    }

    /// The address it is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.get().local_addr()
    }

    /// Accepts a connection.
    pub async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        let (s, addr) =
            std::future::poll_fn(|cx| self.io.poll_op(cx, Dir::Read, |l| l.accept(), |_| false))
                .await?;
        Ok((TcpStream::from_std(s)?, addr))
    }
}

/// A TCP stream whose reads and writes are driven by the runtime's
/// workers: `futures_io::AsyncRead` and `AsyncWrite` (for `&TcpStream`
/// too, so one process can read while another writes).
///
/// Several futures may wait in one direction (each is woken by the next
/// event, and those that find nothing to do wait again).
#[derive(Debug)]
pub struct TcpStream {
    io: Io<std::net::TcpStream>,
}

impl TcpStream {
    /// Connects to `addr`. The connect itself runs on the runtime's
    /// blocking pool (on this thread when there is no current runtime), so
    /// no worker waits for it.
    pub async fn connect(addr: impl ToSocketAddrs) -> io::Result<TcpStream> {
        let addrs: Vec<SocketAddr> = addr.to_socket_addrs()?.collect();
        let connect = move || std::net::TcpStream::connect(&addrs[..]);
        let s = match crate::runtime::current() {
            Some(rt) => rt.spawn_blocking(connect).await?,
            None => connect()?,
        };
        TcpStream::from_std(s)
    }

    /// Wraps a connected std stream, making it non-blocking.
    pub fn from_std(stream: std::net::TcpStream) -> io::Result<TcpStream> {
        stream.set_nonblocking(true)?;
        Ok(TcpStream {
            io: Io::new(stream),
        })
    }

    /// The std stream, for options this type does not wrap.
    pub fn get_ref(&self) -> &std::net::TcpStream {
        self.io.get()
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.get().local_addr()
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.io.get().peer_addr()
    }

    /// Sets `TCP_NODELAY`.
    pub fn set_nodelay(&self, on: bool) -> io::Result<()> {
        self.io.get().set_nodelay(on)
    }

    /// Shuts down the read half, the write half, or both.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.io.get().shutdown(how)
    }
}

impl futures_io::AsyncRead for &TcpStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let len = buf.len();
        self.io
            .poll_op(cx, Dir::Read, |mut s| s.read(buf), |&n| n > 0 && n < len)
    }
}

impl futures_io::AsyncWrite for &TcpStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let len = buf.len();
        self.io
            .poll_op(cx, Dir::Write, |mut s| s.write(buf), |&n| n < len)
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.io.get().shutdown(Shutdown::Write))
    }
}

impl futures_io::AsyncRead for TcpStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut &*self).poll_read(cx, buf)
    }
}

impl futures_io::AsyncWrite for TcpStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut &*self).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut &*self).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut &*self).poll_close(cx)
    }
}
