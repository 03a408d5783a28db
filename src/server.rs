//! Servers: OTP's `gen_server` as a trait, [`Server`], run by
//! [`Runtime::spawn_server`], addressed through a typed [`ServerRef`].
//!
//! The runtime writes the receive loop: calls ([`Request`]s of the
//! server's `Call`/`Reply` types) go to [`Server::handle_call`], messages of
//! its `Cast` type to [`Server::handle_cast`], everything else (other
//! messages, `Down`, `Exit`) to [`Server::handle_info`]. A handler returning
//! [`Flow::Stop`] ends the server: [`Server::terminate`] runs, then the
//! process exits with that reason.
//!
//! ```
//! use rusm_otp::{Context, Flow, ReplyTo, Runtime, Server, ServerRef};
//! use std::time::Duration;
//!
//! struct Counter(u64);
//!
//! enum Op { Add(u64), Get }
//!
//! impl Server for Counter {
//!     type Call = Op;
//!     type Reply = u64;
//!     type Cast = u64;
//!
//!     async fn handle_call(&mut self, op: Op, reply: ReplyTo<u64>, _ctx: &mut Context) -> Flow {
//!         if let Op::Add(n) = op {
//!             self.0 += n;
//!         }
//!         reply.reply(self.0);
//!         Flow::Continue
//!     }
//!
//!     async fn handle_cast(&mut self, n: u64, _ctx: &mut Context) -> Flow {
//!         self.0 += n;
//!         Flow::Continue
//!     }
//! }
//!
//! let rt = Runtime::builder().workers(2).build();
//! let counter: ServerRef<Counter> = ServerRef::new(&rt, rt.spawn_server(Counter(0)).pid());
//! let t = Duration::from_secs(5);
//! assert_eq!(rt.block_on(counter.call(Op::Add(2), t)), Ok(2));
//! assert!(counter.cast(40));
//! assert_eq!(rt.block_on(counter.call(Op::Get, t)), Ok(42));
//! ```
//!
//! # Parent
//!
//! As a `gen_server`, a server obeys its parent's exit signal whatever it
//! traps. Its parent is the process that spawned it: the supervisor whose
//! child factory called `spawn_server`, else the process this thread was
//! running when `spawn_server` was called, none when spawned from outside
//! any process. A
//! server that traps exits and receives `Exit { from: parent, reason }`
//! (the parent ended while linked to it, or sent `send_exit(parent,
//! server, reason)`, as a supervisor's orderly `Shutdown` does) runs
//! `terminate(reason)` and exits with that reason, `Normal` included; an
//! `Exit` from anyone else goes to `handle_info`. A server that does not
//! trap exits needs nothing from this: the signal ends it as it ends any
//! process. `spawn_server` does not link the server to its parent (as
//! `spawn` does not): a supervisor links or monitors its children itself.
//!
//! A panic in a handler crashes the server (`Crashed`), and a call it was
//! handling fails with `CallError::Exited(Crashed)`.

use crate::call::{Call, ReplyTo, Request};
use crate::mailbox::Received;
use crate::process::{Context, ExitReason, Pid, ProcessHandle};
use crate::runtime::Runtime;
use crate::runtime::context as current;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::time::Duration;

/// What a server does after a handler returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Flow {
    /// Wait for the next message.
    Continue,
    /// Run [`Server::terminate`] and exit with this reason.
    Stop(ExitReason),
}

/// A `gen_server`: state plus handlers, run by [`Runtime::spawn_server`].
///
/// Every method returns a `Send` future; write them as `async fn`. Only
/// [`handle_call`](Self::handle_call) is required.
///
/// # Examples
///
/// ```
/// use rusm_otp::{Context, ExitReason, Flow, Received, ReplyTo, Runtime, Server, ServerRef};
/// use std::time::Duration;
///
/// /// A key-value store that stops on request.
/// #[derive(Default)]
/// struct Store(std::collections::HashMap<String, String>);
///
/// enum Op {
///     Get(String),
///     Stop,
/// }
///
/// impl Server for Store {
///     type Call = Op;
///     type Reply = Option<String>;
///     type Cast = (String, String);
///
///     async fn handle_call(&mut self, op: Op, reply: ReplyTo<Self::Reply>, _ctx: &mut Context) -> Flow {
///         match op {
///             Op::Get(k) => {
///                 reply.reply(self.0.get(&k).cloned());
///                 Flow::Continue
///             }
///             Op::Stop => {
///                 reply.reply(None);
///                 Flow::Stop(ExitReason::Normal)
///             }
///         }
///     }
///
///     async fn handle_cast(&mut self, (k, v): (String, String), _ctx: &mut Context) -> Flow {
///         self.0.insert(k, v);
///         Flow::Continue
///     }
///
///     async fn handle_info(&mut self, _info: Received, _ctx: &mut Context) -> Flow {
///         Flow::Continue // anything else is ignored
///     }
/// }
///
/// let rt = Runtime::builder().workers(2).build();
/// let h = rt.spawn_server(Store::default());
/// let store: ServerRef<Store> = ServerRef::new(&rt, h.pid());
/// let t = Duration::from_secs(5);
/// store.cast(("lang".to_string(), "Erlang".to_string()));
/// let got = rt.block_on(store.call(Op::Get("lang".into()), t)).unwrap();
/// assert_eq!(got.as_deref(), Some("Erlang"));
/// rt.block_on(store.call(Op::Stop, t)).unwrap();
/// assert_eq!(rt.block_on(h.join()), ExitReason::Normal);
/// ```
pub trait Server: Send + 'static {
    /// The request type of calls.
    type Call: Send + 'static;
    /// The reply type of calls.
    type Reply: Send + 'static;
    /// The message type of casts.
    type Cast: Send + 'static;

    /// Runs once, before the first message is handled. Default: nothing.
    fn init(&mut self, ctx: &mut Context) -> impl Future<Output = ()> + Send {
        let _ = ctx;
        async {}
    }

    /// Handles a call. Answer through `reply`, now or later (it may be
    /// stored, or handed to another process); dropping it unanswered fails
    /// the call with `NoReply`.
    fn handle_call(
        &mut self,
        request: Self::Call,
        reply: ReplyTo<Self::Reply>,
        ctx: &mut Context,
    ) -> impl Future<Output = Flow> + Send;

    /// Handles a cast. Default: drops it and continues.
    fn handle_cast(
        &mut self,
        message: Self::Cast,
        ctx: &mut Context,
    ) -> impl Future<Output = Flow> + Send {
        let _ = (message, ctx);
        async { Flow::Continue }
    }

    /// Handles everything else: other messages, `Down`, and `Exit` (when
    /// trapping exits) from anyone but the parent. Default: drops it and
    /// continues.
    fn handle_info(
        &mut self,
        info: Received,
        ctx: &mut Context,
    ) -> impl Future<Output = Flow> + Send {
        let _ = (info, ctx);
        async { Flow::Continue }
    }

    /// Runs when the server stops by [`Flow::Stop`] or by its parent's exit
    /// signal (when trapping exits). Default: nothing.
    fn terminate(
        &mut self,
        reason: ExitReason,
        ctx: &mut Context,
    ) -> impl Future<Output = ()> + Send {
        let _ = (reason, ctx);
        async {}
    }
}

impl Runtime {
    /// Spawns `server` as a process running its receive loop (see the
    /// [`server`](crate::server) module). Its parent is the process calling
    /// this, if any. Usable as a supervisor child:
    /// `.child(|rt| rt.spawn_server(MyServer::new()))`.
    pub fn spawn_server<S: Server>(&self, server: S) -> ProcessHandle {
        // A supervisor's `start` runs its static children's factories on the
        // caller's thread: the supervisor, not the caller, is the parent.
        let parent =
            crate::supervisor::current_parent(self).or_else(|| current::pid_in(&self.shared));
        self.spawn(move |ctx| serve(server, ctx, parent))
    }
}

/// The receive loop of a server.
async fn serve<S: Server>(mut server: S, mut ctx: Context, parent: Option<Pid>) {
    server.init(&mut ctx).await;
    loop {
        let flow = match ctx.recv().await {
            Received::Message(m) => match m.downcast::<Request<S::Call, S::Reply>>() {
                Ok(req) => {
                    let (request, reply) = req.into_parts();
                    server.handle_call(request, reply, &mut ctx).await
                }
                Err(m) => match m.downcast::<S::Cast>() {
                    Ok(cast) => server.handle_cast(cast, &mut ctx).await,
                    Err(m) => server.handle_info(Received::Message(m), &mut ctx).await,
                },
            },
            Received::Exit { from, reason } if Some(from) == parent => Flow::Stop(reason),
            other => server.handle_info(other, &mut ctx).await,
        };
        if let Flow::Stop(reason) = flow {
            server.terminate(reason, &mut ctx).await;
            if reason != ExitReason::Normal {
                // Returning after asking for one's own exit ends the
                // process with that reason.
                ctx.runtime().exit(ctx.pid(), reason);
            }
            return;
        }
    }
}

/// A typed address of a running [`Server`]: `call` and `cast` with the
/// server's own types. Cheap to clone; does not keep the runtime running.
///
/// # Examples
///
/// ```
/// use rusm_otp::{Context, Flow, ReplyTo, Runtime, Server, ServerRef};
/// use std::time::Duration;
///
/// struct Echo;
///
/// impl Server for Echo {
///     type Call = String;
///     type Reply = String;
///     type Cast = ();
///
///     async fn handle_call(&mut self, s: String, reply: ReplyTo<String>, _ctx: &mut Context) -> Flow {
///         reply.reply(s);
///         Flow::Continue
///     }
/// }
///
/// let rt = Runtime::builder().workers(2).build();
/// let echo: ServerRef<Echo> = ServerRef::new(&rt, rt.spawn_server(Echo).pid());
/// // A `ServerRef` is cheap to clone and typed: only `String` calls compile.
/// let r = echo.clone();
/// let answer = rt.block_on(r.call("ping".to_string(), Duration::from_secs(5)));
/// assert_eq!(answer.unwrap(), "ping");
/// ```
pub struct ServerRef<S> {
    rt: Runtime,
    pid: Pid,
    /// `fn() -> S`: the ref is `Send + Sync` whatever `S` is; it holds no `S`.
    server: PhantomData<fn() -> S>,
}

impl<S> Clone for ServerRef<S> {
    fn clone(&self) -> Self {
        ServerRef {
            rt: self.rt.clone(),
            pid: self.pid,
            server: PhantomData,
        }
    }
}

impl<S> fmt::Debug for ServerRef<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerRef")
            .field("server", &std::any::type_name::<S>())
            .field("pid", &self.pid)
            .finish()
    }
}

impl<S: Server> ServerRef<S> {
    /// The server `pid` on `rt`. Nothing is checked: a call to a pid that
    /// is not such a server fails (`NoProc`, `NoReply`, or by timeout).
    pub fn new(rt: &Runtime, pid: Pid) -> ServerRef<S> {
        ServerRef {
            rt: rt.weak_handle(),
            pid,
            server: PhantomData,
        }
    }

    /// The server's pid.
    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// Calls the server: the same as [`Runtime::call`] with its types.
    pub fn call(&self, request: S::Call, timeout: Duration) -> Call<S::Call, S::Reply> {
        self.rt.call(self.pid, request, timeout)
    }

    /// Casts `message` to the server (a plain send of the value); false
    /// when the server is not alive.
    pub fn cast(&self, message: S::Cast) -> bool {
        self.rt.send(self.pid, message)
    }
}
