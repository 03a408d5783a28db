//! `try_send`: a message that cannot be delivered comes back, untouched.

mod support;

use rusm_otp::{ExitReason, Message, Received, Runtime, SendError};
use support::{ended_pid, run, runtime};

#[test]
fn try_send_to_a_dead_pid_returns_the_exact_value() {
    let rt = runtime(1);
    let pid = ended_pid(&rt);
    let v = vec![1u8, 2, 3];
    let ptr = v.as_ptr();
    match rt.try_send(pid, v) {
        Err(SendError::NoProc(back)) => {
            assert_eq!(back, [1, 2, 3]);
            assert_eq!(back.as_ptr(), ptr, "the very same value, not a copy");
        }
        other => panic!("expected NoProc, got {other:?}"),
    }
    // A `Message` comes back as itself.
    let err = rt.try_send(pid, Message::new(5u32)).unwrap_err();
    assert_eq!(err.into_inner().downcast::<u32>().ok(), Some(5));
}

#[test]
fn try_send_to_a_full_mailbox_returns_full_with_the_value() {
    let rt = Runtime::builder().workers(1).mailbox_capacity(2).build();
    let p = rt.spawn(|mut ctx| async move {
        ctx.recv_match(|r| matches!(r, Received::Message(m) if m.is::<u8>()))
            .await;
    });
    assert_eq!(rt.try_send(p.pid(), 1u32), Ok(()));
    assert_eq!(rt.try_send(p.pid(), 2u32), Ok(()));
    assert_eq!(rt.try_send(p.pid(), 3u32), Err(SendError::Full(3u32)));
    assert_eq!(
        rt.dropped_messages(),
        0,
        "a refused message was not dropped"
    );
    assert_eq!(rt.info(p.pid()).unwrap().mailbox_depth, 2);
}

#[test]
fn try_send_delivers_to_a_live_process() {
    let rt = runtime(1);
    let p = rt.spawn(|mut ctx| async move {
        let m = ctx.recv().await.message().unwrap();
        assert_eq!(m.downcast::<String>().unwrap(), "hi");
    });
    assert_eq!(rt.try_send(p.pid(), String::from("hi")), Ok(()));
    assert_eq!(run(&rt, p.join()), ExitReason::Normal);
}

#[test]
fn send_error_displays_and_is_an_error() {
    let e: Box<dyn std::error::Error> = Box::new(SendError::Full(1u8));
    assert!(e.to_string().contains("full"));
    assert!(SendError::NoProc(()).to_string().contains("not alive"));
    assert_eq!(format!("{:?}", SendError::NoProc(1u8)), "NoProc(..)");
}
