//! Mailbox semantics: per-sender FIFO, payload types, selective receive,
//! cancel-safety of receives, `try_recv`, and what happens to messages that
//! can no longer be delivered.

mod support;

use rusm_otp::{Context, ExitReason, Message, Pid, ProcessHandle, Received, Runtime, yield_now};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context as TaskContext, Poll, Wake, Waker};
use support::{
    DropCounter, Stop, check, ended_pid, on_workers, poll_once, poll_once_foreign, run, runtime,
    wait_until,
};

/// A sequenced message: (sender id, sequence number).
type Seq = (u32, u64);

/// Receives a user message and downcasts it, panicking with context otherwise.
fn expect<T: 'static>(r: Received, what: &str) -> T {
    let m = r
        .message()
        .unwrap_or_else(|| panic!("{what}: expected a user message"));
    match m.downcast::<T>() {
        Ok(v) => v,
        Err(m) => panic!(
            "{what}: expected a {}, got {m:?}",
            std::any::type_name::<T>()
        ),
    }
}

/// Spawns a helper that answers one `(asker, n)` by sending `n` to `asker`,
/// then ends.
fn spawn_echo(rt: &Runtime) -> ProcessHandle {
    rt.spawn(|mut ctx| async move {
        let (asker, n) = expect::<(Pid, u64)>(ctx.recv().await, "helper");
        assert!(ctx.runtime().send(asker, n));
    })
}

/// Runs `rounds` rounds, each of a fresh helper (made by `helper`) and a
/// process running `body(ctx, round, the helper's pid)`; both must end
/// `Normal`.
fn rounds_with_a_helper<B, Fut>(
    rt: &Runtime,
    rounds: u64,
    helper: impl Fn(&Runtime) -> ProcessHandle,
    body: B,
) where
    B: Fn(Context, u64, Pid) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    run(rt, async {
        for round in 0..rounds {
            let helper = helper(rt);
            let helper_pid = helper.pid();
            let body = body.clone();
            let p = rt.spawn(move |ctx| body(ctx, round, helper_pid));
            assert_eq!(p.join().await, ExitReason::Normal, "round {round}");
            assert_eq!(helper.join().await, ExitReason::Normal);
        }
    });
}

/// Polls the receive `fut` once, requires it to park, sends `n` to `me`
/// while it is parked, then drops it.
async fn drop_a_parked_receive_after_a_send<F: Future + Unpin>(
    mut fut: F,
    (rt, me): (&Runtime, Pid),
    n: u64,
    what: &str,
) {
    assert!(poll_once(&mut fut).await.is_pending(), "{what}");
    // Arrives while the receive is parked; then the receive is dropped.
    assert!(rt.send(me, n));
}

/// Receives under the waker `wrap` makes of the process's own, as a
/// combinator (a select, a join) polls the futures it holds, and calls
/// `on_park` the first time the receive parks; requires that it did park.
async fn recv_under_wrapped_waker(
    ctx: &mut Context,
    wrap: impl Fn(&Waker) -> Waker,
    on_park: impl FnOnce(),
) -> Received {
    let mut on_park = Some(on_park);
    let mut fut = ctx.recv();
    let got = std::future::poll_fn(|cx| {
        let waker = wrap(cx.waker());
        let r = Pin::new(&mut fut).poll(&mut TaskContext::from_waker(&waker));
        if r.is_pending() {
            // Parked under the wrapped waker: only now may the message be
            // sent.
            if let Some(on_park) = on_park.take() {
                on_park();
            }
        }
        r
    })
    .await;
    assert!(on_park.is_none(), "the mailbox was empty at first");
    got
}

#[test]
fn messages_from_each_sender_arrive_in_send_order() {
    const SENDERS: u32 = 8;
    const PER_SENDER: u64 = 5_000;
    // The test thread sends too, as sender id SENDERS (through the injector
    // path rather than a worker's).
    const TOTAL: u64 = (SENDERS as u64 + 1) * PER_SENDER;
    let rt = runtime(4);
    let received = Arc::new(AtomicU64::new(0));
    let count = received.clone();
    let receiver = rt.spawn(move |mut ctx| async move {
        let mut next: HashMap<u32, u64> = HashMap::new();
        for _ in 0..TOTAL {
            let (sender, seq) = expect::<Seq>(ctx.recv().await, "receiver");
            let expected = next.entry(sender).or_insert(0);
            assert_eq!(seq, *expected, "sender {sender}: out of order");
            *expected += 1;
            count.fetch_add(1, Ordering::Relaxed);
        }
        assert!(ctx.try_recv().is_none(), "more messages than were sent");
        for s in 0..=SENDERS {
            assert_eq!(next.get(&s), Some(&PER_SENDER), "sender {s}: count");
        }
    });
    let to = receiver.pid();
    // Senders wait for a common start signal so that their sends interleave.
    let senders: Vec<_> = (0..SENDERS)
        .map(|id| {
            rt.spawn(move |mut ctx| async move {
                let _go = ctx.recv().await;
                for seq in 0..PER_SENDER {
                    assert!(ctx.runtime().send(to, (id, seq)));
                    if seq % 64 == 0 {
                        yield_now().await;
                    }
                }
            })
        })
        .collect();
    for s in &senders {
        assert!(rt.send(s.pid(), ()));
    }
    for seq in 0..PER_SENDER {
        assert!(rt.send(to, (SENDERS, seq)));
    }
    run(&rt, async {
        for s in senders {
            assert_eq!(s.join().await, ExitReason::Normal, "sender");
        }
        assert_eq!(receiver.join().await, ExitReason::Normal, "receiver");
    });
    assert_eq!(received.load(Ordering::Relaxed), TOTAL);
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Big {
    words: [u64; 8],
    name: String,
    bytes: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Small {
    A,
    B(u16),
}

fn messages_of_many_types_arrive_intact(workers: usize) {
    let big = Big {
        words: [1, 2, 3, 4, 5, 6, 7, u64::MAX],
        name: "a large struct".to_string(),
        bytes: (0..=255).collect(),
    };
    assert!(std::mem::size_of::<Big>() > 16);
    let expected_big = big.clone();
    let rt = runtime(workers);
    let p = rt.spawn(move |mut ctx| async move {
        assert_eq!(expect::<u64>(ctx.recv().await, "u64"), 0xDEAD_BEEF_u64);
        assert_eq!(expect::<String>(ctx.recv().await, "String"), "héllo");
        assert_eq!(
            expect::<Vec<u8>>(ctx.recv().await, "Vec<u8>"),
            vec![0u8, 1, 2, 254, 255]
        );
        assert_eq!(expect::<Big>(ctx.recv().await, "Big"), expected_big);
        expect::<()>(ctx.recv().await, "unit");
        assert_eq!(expect::<Small>(ctx.recv().await, "Small"), Small::A);
        assert_eq!(expect::<Small>(ctx.recv().await, "Small"), Small::B(7));
        assert_eq!(
            expect::<[u64; 4]>(ctx.recv().await, "[u64; 4]"),
            [9, 8, 7, 6]
        );
        // A `Message` sent as itself arrives as its payload, not wrapped twice.
        let m = ctx.recv().await.message().expect("a user message");
        assert!(!m.is::<Message>(), "a Message was wrapped in a Message");
        assert!(m.is::<u32>());
        assert_eq!(m.downcast_ref::<u32>(), Some(&7));
        assert_eq!(m.downcast::<u32>().ok(), Some(7));
        // A `Message` built from a `Vec<u8>` by `From`.
        assert_eq!(
            expect::<Vec<u8>>(ctx.recv().await, "From<Vec<u8>>"),
            b"bytes"
        );
        // A wrong downcast gives the message back intact.
        let m = ctx.recv().await.message().expect("a user message");
        let m = m.downcast::<u64>().expect_err("an i32 is not a u64");
        assert_eq!(m.downcast::<i32>().ok(), Some(-5));
    });
    let pid = p.pid();
    assert!(rt.send(pid, 0xDEAD_BEEF_u64));
    assert!(rt.send(pid, String::from("héllo")));
    assert!(rt.send(pid, vec![0u8, 1, 2, 254, 255]));
    assert!(rt.send(pid, big));
    assert!(rt.send(pid, ()));
    assert!(rt.send(pid, Small::A));
    assert!(rt.send(pid, Small::B(7)));
    assert!(rt.send(pid, [9u64, 8, 7, 6]));
    assert!(rt.send(pid, Message::new(7u32)));
    assert!(rt.send(pid, Message::from(b"bytes".to_vec())));
    assert!(rt.send(pid, -5i32));
    assert_eq!(run(&rt, p.join()), ExitReason::Normal);
}

fn every_payload_is_dropped_exactly_once(workers: usize) {
    let drops = Arc::new(AtomicUsize::new(0));
    let rt = runtime(workers);
    let d = drops.clone();
    let p = rt.spawn(move |mut ctx| async move {
        // Take one out and drop it here, leave the second queued (dropped
        // with the mailbox when the process ends).
        let first = expect::<DropCounter>(ctx.recv().await, "first");
        assert_eq!(
            d.load(Ordering::SeqCst),
            0,
            "taking a payload out drops nothing"
        );
        drop(first);
        assert_eq!(d.load(Ordering::SeqCst), 1);
        // Ends only once told, so both sends below reach a live process;
        // the second payload is passed over (deferred) and stays queued.
        ctx.recv_match(|r| matches!(r, Received::Message(m) if m.is::<Stop>()))
            .await;
    });
    assert!(rt.send(p.pid(), DropCounter(drops.clone())));
    assert!(rt.send(p.pid(), (DropCounter(drops.clone()), [0u64; 8])));
    assert!(rt.send(p.pid(), Stop));
    assert_eq!(run(&rt, p.join()), ExitReason::Normal);
    assert_eq!(drops.load(Ordering::SeqCst), 2);
}

fn recv_match_takes_the_first_match_and_keeps_the_rest_in_arrival_order(workers: usize) {
    let rt = runtime(workers);
    let p = rt.spawn(|mut ctx| async move {
        let me = ctx.pid();
        let rt = ctx.runtime().clone();
        assert!(rt.send(me, 1u64));
        assert!(rt.send(me, String::from("a")));
        assert!(rt.send(me, 2u64));
        assert!(rt.send(me, 3u64));
        assert!(rt.send(me, String::from("b")));
        assert!(rt.send(me, 4u64));

        let is_even = |r: &Received| matches!(r, Received::Message(m) if m.downcast_ref::<u64>().is_some_and(|n| n % 2 == 0));
        let is_string = |r: &Received| matches!(r, Received::Message(m) if m.is::<String>());

        // The first even number, not 4.
        assert_eq!(expect::<u64>(ctx.recv_match(is_even).await, "even"), 2);
        // The first string, not "b".
        assert_eq!(expect::<String>(ctx.recv_match(is_string).await, "string"), "a");
        // What is left, in arrival order.
        assert_eq!(expect::<u64>(ctx.recv().await, "rest"), 1);
        assert_eq!(expect::<u64>(ctx.recv().await, "rest"), 3);
        assert_eq!(expect::<String>(ctx.recv().await, "rest"), "b");
        assert_eq!(expect::<u64>(ctx.recv().await, "rest"), 4);
        assert!(ctx.try_recv().is_none());
    });
    assert_eq!(run(&rt, p.join()), ExitReason::Normal);
}

/// The match arrives after the receive has deferred (and parked on) earlier
/// messages; more non-matching messages arrive around it. Repeated so that
/// both orders (arrivals before and after the receive parks) occur.
fn recv_match_matches_later_arrivals_without_losing_deferred_ones(workers: usize) {
    // The helper sends 4, 5, "wanted", 6 to whoever asks.
    let helper = |rt: &Runtime| {
        rt.spawn(|mut ctx| async move {
            let asker = expect::<Pid>(ctx.recv().await, "helper");
            let rt = ctx.runtime();
            assert!(rt.send(asker, 4u64));
            assert!(rt.send(asker, 5u64));
            assert!(rt.send(asker, String::from("wanted")));
            assert!(rt.send(asker, 6u64));
        })
    };
    let rt = runtime(workers);
    rounds_with_a_helper(&rt, 200, helper, |mut ctx, round, helper_pid| async move {
        let me = ctx.pid();
        for n in 1..=3u64 {
            assert!(ctx.runtime().send(me, n));
        }
        assert!(ctx.runtime().send(helper_pid, me));
        let got = ctx
            .recv_match(|r| matches!(r, Received::Message(m) if m.is::<String>()))
            .await;
        assert_eq!(expect::<String>(got, "match"), "wanted", "round {round}");
        for n in 1..=6u64 {
            assert_eq!(
                expect::<u64>(ctx.recv().await, "deferred"),
                n,
                "round {round}"
            );
        }
        assert!(ctx.try_recv().is_none(), "round {round}: duplicates");
    });
}

/// A `recv_match` dropped while it has deferred messages loses none of them
/// and leaves them in order.
fn recv_match_is_cancel_safe(workers: usize) {
    let rt = runtime(workers);
    check(&rt, |mut ctx| async move {
        let me = ctx.pid();
        let rt = ctx.runtime().clone();
        for n in 1..=3u64 {
            assert!(rt.send(me, n));
        }
        let fut = ctx.recv_match(|r| matches!(r, Received::Message(m) if m.is::<String>()));
        drop_a_parked_receive_after_a_send(fut, (&rt, me), 4, "nothing matches yet").await;
        for n in 1..=4u64 {
            assert_eq!(expect::<u64>(ctx.recv().await, "after cancel"), n);
        }
        assert!(ctx.try_recv().is_none());
    });
}

/// A `recv` polled once (parking the mailbox) and dropped: a message sent
/// afterwards, by another process, still wakes and reaches the next `recv`.
fn recv_dropped_while_parked_loses_no_later_message(workers: usize) {
    let rt = runtime(workers);
    rounds_with_a_helper(
        &rt,
        100,
        spawn_echo,
        |mut ctx, round, helper_pid| async move {
            {
                let mut fut = ctx.recv();
                assert!(poll_once(&mut fut).await.is_pending(), "mailbox is empty");
            }
            assert!(ctx.runtime().send(helper_pid, (ctx.pid(), round)));
            assert_eq!(expect::<u64>(ctx.recv().await, "after cancel"), round);
        },
    );
}

/// A message that arrives while a `recv` is parked, with the `recv` then
/// dropped before it is polled again, is not lost.
fn recv_dropped_after_a_message_arrived_loses_nothing(workers: usize) {
    let rt = runtime(workers);
    check(&rt, |mut ctx| async move {
        let me = ctx.pid();
        let rt = ctx.runtime().clone();
        drop_a_parked_receive_after_a_send(ctx.recv(), (&rt, me), 7, "mailbox is empty").await;
        assert_eq!(expect::<u64>(ctx.recv().await, "after cancel"), 7);
        assert!(ctx.try_recv().is_none(), "the message was duplicated");
        // And the mailbox still works normally afterwards.
        assert!(rt.send(me, 8u64));
        assert_eq!(expect::<u64>(ctx.recv().await, "later"), 8);
    });
}

/// A `recv` polled under a waker that is not the process's own (as inside a
/// combinator), then dropped: neither the message that arrives meanwhile
/// nor a later one sent by another process is lost, and the next plain
/// `recv` is woken by it.
fn recv_under_a_foreign_waker_is_cancel_safe(workers: usize) {
    let rt = runtime(workers);
    let helper = spawn_echo(&rt);
    let helper_pid = helper.pid();
    let p = rt.spawn(move |mut ctx| async move {
        let me = ctx.pid();
        let rt = ctx.runtime().clone();
        {
            let mut fut = ctx.recv();
            assert!(poll_once_foreign(&mut fut).is_pending(), "mailbox is empty");
            assert!(rt.send(me, 1u64));
        }
        assert_eq!(expect::<u64>(ctx.recv().await, "arrived while parked"), 1);
        {
            let mut fut = ctx.recv();
            assert!(poll_once_foreign(&mut fut).is_pending(), "mailbox is empty");
        }
        // The park under the foreign waker is gone: this message must wake
        // the process's own receive below.
        assert!(rt.send(helper_pid, (me, 2u64)));
        assert_eq!(expect::<u64>(ctx.recv().await, "sent later"), 2);
    });
    run(&rt, async {
        assert_eq!(p.join().await, ExitReason::Normal);
        assert_eq!(helper.join().await, ExitReason::Normal);
    });
}

/// A waker that records being woken, then wakes the waker it wraps: what a
/// combinator (a select, a join) gives the futures it polls.
struct RecordingWaker {
    inner: Waker,
    woken: Arc<AtomicBool>,
}

impl Wake for RecordingWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::SeqCst);
        self.inner.wake_by_ref();
    }
}

/// A `recv` polled by a combinator under the combinator's own waker parks;
/// a message sent afterwards by another process must wake that waker (and
/// through it the process), and the `recv` then yields the message.
fn recv_under_a_combinators_waker_is_woken_by_a_send(workers: usize) {
    let rt = runtime(workers);
    rounds_with_a_helper(
        &rt,
        50,
        spawn_echo,
        |mut ctx, round, helper_pid| async move {
            let me = ctx.pid();
            let rt = ctx.runtime().clone();
            let woken = Arc::new(AtomicBool::new(false));
            let recording = |inner: &Waker| {
                Waker::from(Arc::new(RecordingWaker {
                    inner: inner.clone(),
                    woken: woken.clone(),
                }))
            };
            let ask = || assert!(rt.send(helper_pid, (me, round)));
            let got = recv_under_wrapped_waker(&mut ctx, recording, ask).await;
            assert_eq!(expect::<u64>(got, "woken"), round);
            assert!(
                woken.load(Ordering::SeqCst),
                "the combinator's waker was not woken"
            );
        },
    );
}

/// A waker a receive was once parked under is kept by the process for the
/// next send; it usually holds the process's own waker, so the process must
/// let go of it when it ends, or the two keep each other alive for ever.
fn a_foreign_waker_a_receive_parked_under_is_released_when_the_process_ends(workers: usize) {
    let rt = runtime(workers);
    let token = Arc::new(());
    let kept = token.clone();
    run(&rt, async {
        let p = rt.spawn(move |mut ctx| async move {
            let me = ctx.pid();
            let rt = ctx.runtime().clone();
            // Holds the process's own waker, as a combinator's does.
            let holding = |inner: &Waker| {
                Waker::from(Arc::new(TokenWaker {
                    inner: inner.clone(),
                    _token: kept.clone(),
                }))
            };
            let send = || assert!(rt.send(me, 7u64));
            let got = recv_under_wrapped_waker(&mut ctx, holding, send).await;
            assert_eq!(expect::<u64>(got, "woken"), 7);
            drop(kept);
        });
        assert_eq!(p.join().await, ExitReason::Normal);
    });
    wait_until("the foreign waker to be dropped", || {
        Arc::strong_count(&token) == 1
    });
}

struct TokenWaker {
    inner: Waker,
    _token: Arc<()>,
}

impl Wake for TokenWaker {
    fn wake(self: Arc<Self>) {
        self.inner.wake_by_ref();
    }
}

fn try_recv_is_none_when_empty_and_some_after_a_send(workers: usize) {
    let rt = runtime(workers);
    let checked_empty = Arc::new(AtomicBool::new(false));
    let flag = checked_empty.clone();
    let p = rt.spawn(move |mut ctx| async move {
        assert!(ctx.try_recv().is_none(), "a new mailbox is empty");
        assert!(ctx.runtime().send(ctx.pid(), 5u64));
        assert_eq!(ctx.try_recv().map(|r| expect::<u64>(r, "own")), Some(5));
        assert!(ctx.try_recv().is_none(), "taken once only");
        flag.store(true, Ordering::Release);
        // A message from another thread shows up in try_recv too.
        let mut got = None;
        support::wait_until_async("the message from the test thread", || {
            got = ctx.try_recv();
            got.is_some()
        })
        .await;
        assert_eq!(expect::<u64>(got.unwrap(), "from outside"), 9);
        assert!(ctx.try_recv().is_none());
    });
    wait_until("the process to check its empty mailbox", || {
        checked_empty.load(Ordering::Acquire)
    });
    assert!(rt.send(p.pid(), 9u64));
    assert_eq!(run(&rt, p.join()), ExitReason::Normal);
}

fn send_to_a_dead_pid_returns_false_and_drops_the_message(workers: usize) {
    let rt = runtime(workers);
    let pid = ended_pid(&rt);
    let drops = Arc::new(AtomicUsize::new(0));
    assert!(!rt.send(pid, DropCounter(drops.clone())));
    assert_eq!(
        drops.load(Ordering::SeqCst),
        1,
        "the undelivered message is dropped"
    );
    assert!(
        !rt.send(Pid::from_raw(u64::MAX), 1u64),
        "a pid never given out"
    );
}

/// Messages still queued when a process ends are dropped with it, both the
/// ones a selective receive deferred and the ones not yet looked at.
fn messages_left_in_a_mailbox_are_dropped_when_the_process_ends(workers: usize) {
    let rt = runtime(workers);
    let drops = Arc::new(AtomicUsize::new(0));
    let deferred = Arc::new(AtomicBool::new(false));
    let (flag, d) = (deferred.clone(), drops.clone());
    let p = rt.spawn(move |mut ctx| async move {
        let me = ctx.pid();
        for _ in 0..3 {
            assert!(ctx.runtime().send(me, DropCounter(d.clone())));
        }
        // Three messages deferred by a selective receive that stays alive...
        let mut fut = ctx.recv_match(|_| false);
        assert!(poll_once(&mut fut).await.is_pending(), "nothing matches");
        flag.store(true, Ordering::Release);
        // ...and, since the mailbox is never looked at again, the two sent
        // below stay in the incoming queue.
        std::future::pending::<()>().await;
        drop(fut);
    });
    let pid = p.pid();
    wait_until("the receive to defer the first messages", || {
        deferred.load(Ordering::Acquire)
    });
    for _ in 0..2 {
        assert!(rt.send(pid, DropCounter(drops.clone())));
    }
    assert_eq!(drops.load(Ordering::SeqCst), 0);
    assert!(rt.kill(pid));
    assert_eq!(run(&rt, p.join()), ExitReason::Killed);
    assert_eq!(drops.load(Ordering::SeqCst), 5);
    assert!(!rt.send(pid, 0u8));
}

/// More messages than one poll may take (the per-poll budget) are all
/// received, in order, with no wake-up lost when the receive yields.
#[test]
fn a_long_queue_is_drained_in_order_across_budget_yields() {
    const N: u64 = 20_000;
    let rt = runtime(1);
    let queued = Arc::new(AtomicBool::new(false));
    let flag = queued.clone();
    let p = rt.spawn(move |mut ctx| async move {
        support::wait_until_async("every message to be queued", || {
            flag.load(Ordering::Acquire)
        })
        .await;
        for i in 0..N {
            assert_eq!(expect::<u64>(ctx.recv().await, "queued"), i);
        }
        assert!(ctx.try_recv().is_none());
    });
    for i in 0..N {
        assert!(rt.send(p.pid(), i));
    }
    queued.store(true, Ordering::Release);
    assert_eq!(run(&rt, p.join()), ExitReason::Normal);
}

/// A `recv` on a mailbox that already holds a message completes on its
/// first poll.
#[test]
fn recv_returns_at_once_when_a_message_is_queued() {
    let rt = runtime(1);
    let p = rt.spawn(|mut ctx| async move {
        assert!(ctx.runtime().send(ctx.pid(), 3u64));
        let mut fut = ctx.recv();
        match poll_once(&mut fut).await {
            Poll::Ready(r) => assert_eq!(expect::<u64>(r, "queued"), 3),
            Poll::Pending => panic!("a queued message was not returned at once"),
        }
    });
    assert_eq!(run(&rt, p.join()), ExitReason::Normal);
}

on_workers!(
    messages_of_many_types_arrive_intact,
    every_payload_is_dropped_exactly_once,
    recv_match_takes_the_first_match_and_keeps_the_rest_in_arrival_order,
    recv_match_matches_later_arrivals_without_losing_deferred_ones,
    recv_match_is_cancel_safe,
    recv_dropped_while_parked_loses_no_later_message,
    recv_dropped_after_a_message_arrived_loses_nothing,
    recv_under_a_foreign_waker_is_cancel_safe,
    recv_under_a_combinators_waker_is_woken_by_a_send,
    a_foreign_waker_a_receive_parked_under_is_released_when_the_process_ends,
    try_recv_is_none_when_empty_and_some_after_a_send,
    send_to_a_dead_pid_returns_false_and_drops_the_message,
    messages_left_in_a_mailbox_are_dropped_when_the_process_ends,
);
