//! [`Runtime::try_send`] and its [`SendError`], which hands the message back.

use crate::mailbox::Message;
use crate::process::Pid;
use crate::runtime::{Refused, Runtime};
use std::any::TypeId;
use std::fmt;

/// Why [`Runtime::try_send`] could not deliver a message. Either way the
/// message comes back, untouched.
#[derive(Clone, PartialEq, Eq)]
pub enum SendError<M> {
    /// The receiver is not alive (or its mailbox closed as it ended).
    NoProc(M),
    /// The receiver's bounded mailbox is full
    /// ([`Builder::mailbox_capacity`](crate::Builder::mailbox_capacity)).
    Full(M),
}

impl<M> SendError<M> {
    /// The message that was not delivered.
    pub fn into_inner(self) -> M {
        match self {
            SendError::NoProc(m) | SendError::Full(m) => m,
        }
    }
}

impl<M> fmt::Debug for SendError<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::NoProc(_) => f.write_str("NoProc(..)"),
            SendError::Full(_) => f.write_str("Full(..)"),
        }
    }
}

impl<M> fmt::Display for SendError<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::NoProc(_) => f.write_str("send failed: the receiver is not alive"),
            SendError::Full(_) => f.write_str("send failed: the receiver's mailbox is full"),
        }
    }
}

impl<M> std::error::Error for SendError<M> {}

/// Undoes `Message::new::<M>`: the value a message was built from.
fn unwrap_message<M: Send + 'static>(m: Message) -> M {
    if TypeId::of::<M>() == TypeId::of::<Message>() {
        let m = std::mem::ManuallyDrop::new(m);
        // SAFETY: `M` is `Message` (same `TypeId`), so this moves the
        // message out as itself; `m` is never dropped.
        return unsafe { std::ptr::read((&*m as *const Message).cast::<M>()) };
    }
    match m.downcast::<M>() {
        Ok(v) => v,
        Err(_) => unreachable!("a message built from an M holds an M"),
    }
}

impl Runtime {
    /// Like [`send`](Self::send), but a message that cannot be delivered
    /// comes back inside the error, so nothing is lost without the caller
    /// knowing. A message refused because the mailbox is full is not counted
    /// in [`dropped_messages`](Self::dropped_messages): it was not dropped.
    ///
    /// ```
    /// use rusm_otp::{Runtime, SendError};
    ///
    /// let rt = Runtime::builder().workers(1).build();
    /// let p = rt.spawn(|_ctx| async {});
    /// let pid = p.pid();
    /// rt.block_on(p.join());
    /// match rt.try_send(pid, String::from("hello")) {
    ///     Err(SendError::NoProc(s)) => assert_eq!(s, "hello"),
    ///     other => panic!("{other:?}"),
    /// }
    /// ```
    pub fn try_send<M: Send + 'static>(&self, pid: Pid, msg: M) -> Result<(), SendError<M>> {
        let shared = &self.shared;
        let mut msg = Some(msg);
        let outcome = shared.table.with(pid, |t| {
            let msg = Message::new(msg.take().expect("taken once"));
            shared
                .send_message(t.header(), msg)
                .map_err(|refused| match refused {
                    Refused::Full(m) => SendError::Full(unwrap_message::<M>(m)),
                    Refused::Closed(m) => SendError::NoProc(unwrap_message::<M>(m)),
                })
        });
        match outcome {
            Some(r) => r,
            None => Err(SendError::NoProc(msg.take().expect("not taken"))),
        }
    }
}
