//! SQLite's memory, allocated by the binary's own allocator (jemalloc) instead of glibc's.
//!
//! The `aether` binary allocates with jemalloc; SQLite's C code would otherwise call glibc's
//! `malloc` on each connection's thread (sqlx runs every connection on a thread of its own), and
//! glibc gives each such thread an arena of its own that keeps freed pages. In a 30-minute
//! `burst_load` soak on the SQLite store (2026-12-05) SQLite's allocated bytes levelled at
//! 11.1 MB by minute 8 (its page caches full) while the process's anonymous RSS kept climbing,
//! 10 MB/h over the second half with the heap flat: memory glibc kept, not live data (likely its
//! per-thread arenas; with SQLite on jemalloc that climb was gone). Routed here,
//! SQLite's pages come from jemalloc's arenas, which return what is freed (its decay), and its
//! bytes are counted with the rest of the heap (`aether_runtime::stats::heap_allocated`).
//!
//! [`install`] must run before SQLite initialises (the first connection opened): `main` calls it
//! first. If SQLite refuses (already initialised), glibc's `malloc` stays, and a debug line says
//! so: SQLite works either way.

use std::ffi::{c_int, c_void};

use libsqlite3_sys as sqlite;
use tikv_jemalloc_sys as je;

unsafe extern "C" fn x_malloc(n: c_int) -> *mut c_void {
    // SQLite never asks for less than one byte; a negative size would be its bug, not memory.
    match usize::try_from(n) {
        Ok(n) if n > 0 => unsafe { je::malloc(n) },
        _ => std::ptr::null_mut(),
    }
}

unsafe extern "C" fn x_free(p: *mut c_void) {
    unsafe { je::free(p) }
}

unsafe extern "C" fn x_realloc(p: *mut c_void, n: c_int) -> *mut c_void {
    match usize::try_from(n) {
        Ok(n) if n > 0 => unsafe { je::realloc(p, n) },
        _ => std::ptr::null_mut(),
    }
}

unsafe extern "C" fn x_size(p: *mut c_void) -> c_int {
    if p.is_null() {
        return 0;
    }
    c_int::try_from(unsafe { je::malloc_usable_size(p) }).unwrap_or(c_int::MAX)
}

unsafe extern "C" fn x_roundup(n: c_int) -> c_int {
    match usize::try_from(n) {
        // What jemalloc would hand out for `n` bytes (its size class), so SQLite uses all of it.
        // (0 where the size is past any class: SQLite then asks for `n` and is refused.)
        Ok(n) if n > 0 => match unsafe { je::nallocx(n, 0) } {
            0 => c_int::try_from(n).unwrap_or(c_int::MAX),
            size => c_int::try_from(size).unwrap_or(c_int::MAX),
        },
        _ => n,
    }
}

unsafe extern "C" fn x_init(_: *mut c_void) -> c_int {
    sqlite::SQLITE_OK
}

unsafe extern "C" fn x_shutdown(_: *mut c_void) {}

/// Hands SQLite jemalloc's `malloc`, `free`, `realloc` and sizes; says whether SQLite took them.
pub fn install() -> bool {
    // SQLite keeps the pointer it is given and reads the methods at initialisation: a static.
    static METHODS: SyncMethods = SyncMethods(sqlite::sqlite3_mem_methods {
        xMalloc: Some(x_malloc),
        xFree: Some(x_free),
        xRealloc: Some(x_realloc),
        xSize: Some(x_size),
        xRoundup: Some(x_roundup),
        xInit: Some(x_init),
        xShutdown: Some(x_shutdown),
        pAppData: std::ptr::null_mut(),
    });
    // SAFETY: SQLITE_CONFIG_MALLOC takes one pointer to a `sqlite3_mem_methods`, which SQLite
    // copies; called before SQLite initialises (else it answers SQLITE_MISUSE and changes nothing).
    let rc = unsafe { sqlite::sqlite3_config(sqlite::SQLITE_CONFIG_MALLOC, &METHODS.0 as *const _) };
    if rc != sqlite::SQLITE_OK {
        tracing::debug!(rc, "SQLite keeps glibc's malloc: it was initialised already");
    }
    rc == sqlite::SQLITE_OK
}

/// The methods table holds a null `pAppData` pointer, which makes it `!Sync`; nothing reads or
/// writes through that pointer.
struct SyncMethods(sqlite::sqlite3_mem_methods);

// SAFETY: immutable, and its only pointer is null and never dereferenced.
unsafe impl Sync for SyncMethods {}

#[cfg(test)]
mod tests {
    use super::*;

    /// The methods round-trip an allocation through jemalloc as SQLite would use them.
    #[test]
    fn the_methods_allocate_resize_size_and_free() {
        unsafe {
            let p = x_malloc(100);
            assert!(!p.is_null());
            assert!(x_size(p) >= 100);
            assert_eq!(x_roundup(100), x_size(p), "the rounded size is the size handed out");
            let q = x_realloc(p, 5000);
            assert!(!q.is_null() && x_size(q) >= 5000);
            x_free(q);
            assert!(x_malloc(0).is_null() && x_malloc(-1).is_null());
            assert_eq!(x_size(std::ptr::null_mut()), 0);
        }
    }
}
