//! [`Message`]: an owned, type-erased `Send + 'static` value.
//!
//! Small values (at most [`INLINE`] bytes, alignment at most a word) are kept
//! inline, so sending an integer, a unit or a small enum costs no allocation
//! of its own: the mailbox node that carries the message is the only one.
//! Larger values are boxed once. Each concrete type gets one static vtable
//! (type id, name, drop), chosen when the message is built.
//!
//! # Send, not Sync
//!
//! A message may hold any `T: Send`, including types that are not `Sync`
//! (`Cell`, `RefCell`), and hands out `&T` through a shared borrow
//! ([`Message::downcast_ref`]). Were `Message` `Sync`, two threads could
//! share one and race on such a payload; so it is not: its storage is an
//! `UnsafeCell`, which also makes writes through `&T` legal for payloads with
//! interior mutability (an atomic, a `Cell`) kept inline, whose bytes would
//! otherwise be frozen behind `&Message`. A payload's `Sync`-ness is not known
//! once its type is erased, so no payload earns `Message` a `Sync` bound.

use std::any::TypeId;
use std::cell::UnsafeCell;
use std::fmt;
use std::mem::{self, MaybeUninit};

/// Bytes a value may occupy and still be stored inline.
const INLINE: usize = 2 * mem::size_of::<usize>();

/// The payload (inline) or a pointer to it (boxed). The `UnsafeCell` lets a
/// shared borrow of the message mutate an inline payload through its own
/// interior mutability, and keeps `Message` from being `Sync`.
type Storage = UnsafeCell<MaybeUninit<[usize; 2]>>;

/// Fails to compile if `Message` is `Sync`: were it, both impls below would
/// apply and the call would be ambiguous.
const _: () = {
    trait AmbiguousIfSync<A> {
        fn check() {}
    }
    impl<T: ?Sized> AmbiguousIfSync<()> for T {}
    impl<T: ?Sized + Sync> AmbiguousIfSync<u8> for T {}
    let _ = <Message as AmbiguousIfSync<_>>::check;
    fn is_send<T: Send>() {}
    let _ = is_send::<Message>;
};

/// What a message needs to know about its payload's type.
struct VTable {
    /// The payload's `TypeId`.
    type_id: fn() -> TypeId,
    /// The payload's type name, for `Debug`.
    type_name: fn() -> &'static str,
    /// Drops the payload in place (inline) or frees its box (boxed).
    drop: unsafe fn(*mut MaybeUninit<[usize; 2]>),
    /// Whether the storage holds a `Box<T>` rather than a `T`.
    boxed: bool,
}

/// Monomorphised vtables: one `&'static VTable` per payload type.
struct Vt<T>(std::marker::PhantomData<T>);

impl<T: Send + 'static> Vt<T> {
    const INLINE_VT: VTable = VTable {
        type_id: TypeId::of::<T>,
        type_name: std::any::type_name::<T>,
        drop: drop_inline::<T>,
        boxed: false,
    };
    const BOXED_VT: VTable = VTable {
        type_id: TypeId::of::<T>,
        type_name: std::any::type_name::<T>,
        drop: drop_boxed::<T>,
        boxed: true,
    };
}

/// # Safety
/// `s` holds an initialised inline `T` that is not used again.
unsafe fn drop_inline<T>(s: *mut MaybeUninit<[usize; 2]>) {
    // SAFETY: the caller guarantees `s` holds an initialised `T` stored inline.
    unsafe { std::ptr::drop_in_place(s.cast::<T>()) }
}

/// # Safety
/// `s` holds a `*mut T` from `Box::into_raw` that is not used again.
unsafe fn drop_boxed<T>(s: *mut MaybeUninit<[usize; 2]>) {
    // SAFETY: the caller guarantees `s` holds a pointer from `Box::into_raw`.
    unsafe { drop(Box::from_raw(s.cast::<*mut T>().read())) }
}

const fn fits_inline<T>() -> bool {
    mem::size_of::<T>() <= INLINE && mem::align_of::<T>() <= mem::align_of::<usize>()
}

/// An owned, type-erased user message: any `T: Send + 'static`.
///
/// ```
/// use rusm_otp::Message;
/// let m = Message::new(42u64);
/// assert!(m.is::<u64>());
/// assert_eq!(m.downcast_ref::<u64>(), Some(&42));
/// assert_eq!(m.downcast::<u64>().ok(), Some(42));
/// ```
///
/// A message is `Send` but not `Sync`: its payload may be a `Cell` or any
/// other type that must not be shared between threads.
///
/// ```compile_fail
/// fn shared_between_threads<T: Sync>() {}
/// shared_between_threads::<rusm_otp::Message>();
/// ```
pub struct Message {
    /// The payload's type, and how to drop it.
    vtable: &'static VTable,
    /// The payload itself (inline) or a `*mut T` (boxed).
    data: Storage,
}

// SAFETY: a `Message` is only ever built from a `T: Send`, and owns it.
unsafe impl Send for Message {}

impl Message {
    /// Wraps `value`. A `Message` passed here is returned as itself, not
    /// wrapped a second time.
    pub fn new<T: Send + 'static>(value: T) -> Message {
        if TypeId::of::<T>() == TypeId::of::<Message>() {
            let value = mem::ManuallyDrop::new(value);
            // SAFETY: `T` is `Message` (same `TypeId`), so this is a move of a
            // `Message`; `value` is never dropped.
            return unsafe { std::ptr::read((&*value as *const T).cast::<Message>()) };
        }
        let mut data = Storage::new(MaybeUninit::uninit());
        if fits_inline::<T>() {
            // SAFETY: `T` fits the storage's size and alignment (checked above).
            unsafe { data.get_mut().as_mut_ptr().cast::<T>().write(value) };
            Message {
                vtable: &Vt::<T>::INLINE_VT,
                data,
            }
        } else {
            let ptr = Box::into_raw(Box::new(value));
            // SAFETY: a pointer fits the two-word storage.
            unsafe { data.get_mut().as_mut_ptr().cast::<*mut T>().write(ptr) };
            Message {
                vtable: &Vt::<T>::BOXED_VT,
                data,
            }
        }
    }

    /// Whether the payload is a `T`.
    pub fn is<T: 'static>(&self) -> bool {
        (self.vtable.type_id)() == TypeId::of::<T>()
    }

    /// The payload's type name, as `std::any::type_name` gives it.
    pub fn type_name(&self) -> &'static str {
        (self.vtable.type_name)()
    }

    /// Takes the payload out if it is a `T`; gives the message back otherwise.
    pub fn downcast<T: 'static>(self) -> Result<T, Message> {
        if !self.is::<T>() {
            return Err(self);
        }
        let this = mem::ManuallyDrop::new(self);
        let data = this.data.get().cast::<u8>();
        let value = if this.vtable.boxed {
            // SAFETY: the payload is a `T` (type ids match) stored as a boxed
            // pointer; `this` is never dropped, so the box is freed only here.
            unsafe { *Box::from_raw(data.cast::<*mut T>().read()) }
        } else {
            // SAFETY: the payload is an inline `T`; it is read exactly once
            // because `this` is never dropped.
            unsafe { data.cast::<T>().read() }
        };
        Ok(value)
    }

    /// Borrows the payload if it is a `T`.
    pub fn downcast_ref<T: 'static>(&self) -> Option<&T> {
        if !self.is::<T>() {
            return None;
        }
        let data = self.data.get();
        let ptr = if self.vtable.boxed {
            // SAFETY: a boxed payload of type `T` (type ids match).
            unsafe { data.cast::<*const T>().read() }
        } else {
            // Through the `UnsafeCell`: a `T` with interior mutability may be
            // written through the `&T` handed out.
            data.cast::<T>().cast_const()
        };
        // SAFETY: `ptr` points at a live `T` owned by `self`, borrowed as long as `self`.
        Some(unsafe { &*ptr })
    }
}

impl Drop for Message {
    fn drop(&mut self) {
        // SAFETY: the vtable matches the storage, and the payload is dropped once.
        unsafe { (self.vtable.drop)(self.data.get_mut()) }
    }
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Message<{}>", self.type_name())
    }
}

impl From<Vec<u8>> for Message {
    fn from(bytes: Vec<u8>) -> Message {
        Message::new(bytes)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct DropCount(Arc<AtomicUsize>);
    impl Drop for DropCount {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn inline_and_boxed_round_trip() {
        assert!(fits_inline::<u64>());
        assert!(!fits_inline::<[u64; 4]>());
        assert_eq!(Message::new(7u8).downcast::<u8>().ok(), Some(7));
        let big = [1u64, 2, 3, 4];
        assert_eq!(Message::new(big).downcast::<[u64; 4]>().ok(), Some(big));
        let s = Message::new(String::from("hi"));
        assert_eq!(s.downcast_ref::<String>().map(|s| s.as_str()), Some("hi"));
        let s = s.downcast::<u32>().unwrap_err();
        assert_eq!(s.downcast::<String>().unwrap(), "hi");
    }

    #[test]
    fn a_message_is_not_wrapped_twice() {
        let m = Message::new(Message::new(5i32));
        assert!(m.is::<i32>());
        let v: Message = Vec::<u8>::from([1, 2]).into();
        assert_eq!(v.downcast::<Vec<u8>>().unwrap(), vec![1, 2]);
    }

    /// An inline atomic written through `&Message`: the write must land in
    /// memory a shared borrow may mutate (Miri checks it under Tree
    /// Borrows; it reported a write to frozen memory before the storage
    /// was an `UnsafeCell`).
    #[test]
    fn an_inline_atomic_payload_is_writable_through_a_shared_borrow() {
        use std::sync::atomic::AtomicU32;
        let m = Message::new(AtomicU32::new(0));
        assert!(!m.vtable.boxed);
        let a = m.downcast_ref::<AtomicU32>().unwrap();
        a.store(7, Ordering::Relaxed);
        assert_eq!(a.fetch_add(1, Ordering::Relaxed), 7);
        assert_eq!(m.downcast::<AtomicU32>().ok().unwrap().into_inner(), 8);
    }

    /// The same for `Cell` and `RefCell` kept inline, and for a boxed
    /// payload with interior mutability.
    #[test]
    fn interior_mutable_payloads_inline_and_boxed() {
        use std::cell::{Cell, RefCell};
        use std::sync::atomic::AtomicU64;
        let c = Message::new(Cell::new(1u64));
        c.downcast_ref::<Cell<u64>>().unwrap().set(2);
        let r = Message::new(RefCell::new(3u8));
        assert!(!r.vtable.boxed);
        *r.downcast_ref::<RefCell<u8>>().unwrap().borrow_mut() += 1;
        let b = Message::new([const { AtomicU64::new(0) }; 4]);
        assert!(b.vtable.boxed);
        b.downcast_ref::<[AtomicU64; 4]>().unwrap()[3].store(9, Ordering::Relaxed);
        assert_eq!(c.downcast::<Cell<u64>>().ok().unwrap().get(), 2);
        assert_eq!(r.downcast::<RefCell<u8>>().ok().unwrap().into_inner(), 4);
        let b = b.downcast::<[AtomicU64; 4]>().ok().unwrap();
        assert_eq!(b[3].load(Ordering::Relaxed), 9);
    }

    /// A `Cell` payload moved to another thread (a message is `Send`) and
    /// mutated there, then moved back: ownership changes hands, no sharing.
    #[test]
    fn a_cell_payload_moves_between_threads() {
        use std::cell::Cell;
        let m = Message::new(Cell::new(1u32));
        let m = std::thread::spawn(move || {
            m.downcast_ref::<Cell<u32>>().unwrap().set(5);
            m
        })
        .join()
        .unwrap();
        assert_eq!(m.downcast_ref::<Cell<u32>>().map(Cell::get), Some(5));
    }

    #[test]
    fn payloads_are_dropped_exactly_once() {
        let n = Arc::new(AtomicUsize::new(0));
        drop(Message::new(DropCount(n.clone())));
        assert_eq!(n.load(Ordering::SeqCst), 1);
        let big = Message::new((DropCount(n.clone()), [0u64; 8]));
        drop(big);
        assert_eq!(n.load(Ordering::SeqCst), 2);
        let taken = Message::new(DropCount(n.clone()))
            .downcast::<DropCount>()
            .ok()
            .unwrap();
        assert_eq!(n.load(Ordering::SeqCst), 2);
        drop(taken);
        assert_eq!(n.load(Ordering::SeqCst), 3);
    }
}
