//! A small chat service: rooms and members as processes, on the server
//! behaviour, the registry and dynamic supervisors.
//!
//! `cargo run --example chat_room`
//!
//! Each room is a [`Server`] registered as `room:<name>`, started under the
//! `rooms` dynamic supervisor (permanent: a room that crashes is started
//! again and registers its name again). It monitors its members, so a
//! member that crashes leaves the room without saying so. Each member is a
//! process registered as `member:<name>`, started under the `members`
//! dynamic supervisor as a transient child: one that leaves (a normal exit)
//! is gone, one that crashes is started again and joins again. A member
//! also monitors its room, and joins the room's next incarnation when it
//! crashes. The demo walks members through joining, talking, crashing,
//! leaving, and a room crash, printing what the rooms and members see.

use rusm_otp::supervisor::{ChildSpec, Restart, SupervisorRef};
use rusm_otp::{Context, ExitReason, Flow, Pid, Received, ReplyTo, Runtime, Server, ServerRef};
use std::collections::BTreeMap;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(5);

/// A room's calls.
enum RoomCall {
    Join { name: String, pid: Pid },
    Leave { pid: Pid },
    Who,
}

/// A room's casts: a line said by a member.
struct Say {
    from: Pid,
    text: String,
}

/// What a member receives from its room.
struct Line(String);

struct Room {
    name: String,
    members: BTreeMap<Pid, String>,
}

impl Room {
    fn broadcast(&self, ctx: &Context, text: String) {
        for pid in self.members.keys() {
            ctx.runtime().send(*pid, Line(text.clone()));
        }
    }
}

impl Server for Room {
    type Call = RoomCall;
    type Reply = Vec<String>;
    type Cast = Say;

    async fn init(&mut self, ctx: &mut Context) {
        println!("  [room {}] open as {}", self.name, ctx.pid());
    }

    async fn handle_call(
        &mut self,
        request: RoomCall,
        reply: ReplyTo<Vec<String>>,
        ctx: &mut Context,
    ) -> Flow {
        match request {
            RoomCall::Join { name, pid } => {
                ctx.runtime().monitor(ctx.pid(), pid);
                self.broadcast(ctx, format!("* {name} joined"));
                self.members.insert(pid, name);
            }
            RoomCall::Leave { pid } => {
                if let Some(name) = self.members.remove(&pid) {
                    self.broadcast(ctx, format!("* {name} left"));
                }
            }
            RoomCall::Who => {}
        }
        reply.reply(self.members.values().cloned().collect());
        Flow::Continue
    }

    async fn handle_cast(&mut self, say: Say, ctx: &mut Context) -> Flow {
        if let Some(name) = self.members.get(&say.from) {
            self.broadcast(ctx, format!("{name}: {}", say.text));
        }
        Flow::Continue
    }

    async fn handle_info(&mut self, info: Received, ctx: &mut Context) -> Flow {
        if let Received::Down { pid, reason, .. } = info {
            if let Some(name) = self.members.remove(&pid) {
                self.broadcast(ctx, format!("* {name} dropped ({reason:?})"));
            }
        }
        Flow::Continue
    }
}

fn room_spec(name: &'static str) -> ChildSpec {
    ChildSpec::new(format!("room:{name}"), move |rt: &Runtime| {
        let h = rt.spawn_server(Room {
            name: name.to_string(),
            members: BTreeMap::new(),
        });
        rt.register(format!("room:{name}"), h.pid());
        h
    })
}

/// What the demo tells a member to do.
enum Command {
    Say(String),
    Leave,
}

/// Finds the room's current incarnation (it may be restarting).
async fn find_room(rt: &Runtime, room: &str) -> Option<Pid> {
    for _ in 0..100 {
        if let Some(pid) = rt.whereis(&format!("room:{room}")) {
            return Some(pid);
        }
        rusm_otp::sleep(Duration::from_millis(10)).await;
    }
    None
}

async fn member(mut ctx: Context, name: &'static str, room: &'static str) {
    let rt = ctx.runtime().clone();
    let me = ctx.pid();
    let mut joined: Option<ServerRef<Room>> = None;
    loop {
        if joined.is_none() {
            let Some(pid) = find_room(&rt, room).await else {
                return;
            };
            let r: ServerRef<Room> = ServerRef::new(&rt, pid);
            rt.monitor(me, pid);
            let join = RoomCall::Join {
                name: name.to_string(),
                pid: me,
            };
            if let Ok(who) = r.call(join, TIMEOUT).await {
                println!("  [{name} {me}] joined {room}, with {who:?}");
                joined = Some(r);
            }
            continue;
        }
        match ctx.recv().await {
            Received::Down { pid, .. } if joined.as_ref().is_some_and(|r| r.pid() == pid) => {
                println!("  [{name}] {room} went away; joining it again");
                joined = None;
            }
            Received::Message(m) => match m.downcast::<Line>() {
                Ok(Line(text)) => println!("  [{name} hears] {text}"),
                Err(m) => match m.downcast::<Command>() {
                    Ok(Command::Say(text)) => {
                        if let Some(r) = &joined {
                            r.cast(Say { from: me, text });
                        }
                    }
                    Ok(Command::Leave) => {
                        if let Some(r) = &joined {
                            let _ = r.call(RoomCall::Leave { pid: me }, TIMEOUT).await;
                        }
                        return;
                    }
                    Err(_) => {}
                },
            },
            _ => {}
        }
    }
}

fn member_spec(name: &'static str, room: &'static str) -> ChildSpec {
    ChildSpec::new(format!("member:{name}"), move |rt: &Runtime| {
        let h = rt.spawn(move |ctx| member(ctx, name, room));
        rt.register(format!("member:{name}"), h.pid());
        h
    })
    .restart(Restart::Transient)
}

fn tell(rt: &Runtime, name: &str, cmd: Command) {
    rt.send_named(&format!("member:{name}"), cmd);
}

/// Lets the processes print before the next step.
fn pause() {
    std::thread::sleep(Duration::from_millis(150));
}

fn roster(rt: &Runtime, room: &str) -> Vec<String> {
    let Some(pid) = rt.whereis(&format!("room:{room}")) else {
        return Vec::new();
    };
    let r: ServerRef<Room> = ServerRef::new(rt, pid);
    rt.block_on(r.call(RoomCall::Who, TIMEOUT))
        .unwrap_or_default()
}

fn main() {
    let rt = Runtime::new();
    let rooms = SupervisorRef::new(&rt, rt.dynamic_supervisor().start().pid());
    let members = SupervisorRef::new(&rt, rt.dynamic_supervisor().start().pid());

    println!("opening rooms rust and otp:");
    for room in ["rust", "otp"] {
        rt.block_on(rooms.start_child(room_spec(room)))
            .expect("room started");
        pause();
    }
    println!("alice, bob and carol join rust; dave joins otp:");
    for (name, room) in [
        ("alice", "rust"),
        ("bob", "rust"),
        ("carol", "rust"),
        ("dave", "otp"),
    ] {
        rt.block_on(members.start_child(member_spec(name, room)))
            .expect("member started");
        pause();
    }
    println!("alice and bob talk:");
    tell(&rt, "alice", Command::Say("hello, rust".into()));
    pause();
    tell(&rt, "bob", Command::Say("hi alice".into()));
    pause();
    println!("bob's process crashes (its supervisor starts it again):");
    if let Some(bob) = rt.whereis("member:bob") {
        rt.exit(bob, ExitReason::Crashed);
    }
    pause();
    println!("carol leaves (a normal exit: she is not started again):");
    tell(&rt, "carol", Command::Leave);
    pause();
    println!("room otp crashes (its supervisor starts it again; dave joins again):");
    if let Some(otp) = rt.whereis("room:otp") {
        rt.exit(otp, ExitReason::Crashed);
    }
    pause();
    tell(&rt, "dave", Command::Say("anyone here?".into()));
    pause();

    println!(
        "rooms now: rust {:?}, otp {:?}",
        roster(&rt, "rust"),
        roster(&rt, "otp")
    );
    let m = rt.block_on(members.count_children()).expect("members up");
    let r = rt.block_on(rooms.count_children()).expect("rooms up");
    println!(
        "members supervisor: {} running; rooms supervisor: {} running",
        m.active, r.active
    );
    // Members first, so that none sees its room go away.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let wait_for = |n: usize| {
        while rt.process_count() > n && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    rt.kill(members.pid());
    wait_for(1 + r.active);
    rt.kill(rooms.pid());
    wait_for(0);
    println!("processes left: {}", rt.process_count());
}
