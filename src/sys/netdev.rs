//! Network interface flags: bring up the loopback interface of a fresh network
//! namespace (it starts down, so even 127.0.0.1 would be unreachable).

use std::os::fd::{FromRawFd, OwnedFd};

use nix::errno::Errno;

/// Set IFF_UP on `lo` in the caller's network namespace. Async-signal-safe
/// (no allocation), for use in a freshly cloned sandbox init.
pub fn loopback_up() -> nix::Result<()> {
    // SAFETY: socket() takes no pointers; the result is checked below.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(Errno::last());
    }
    // SAFETY: `raw` is a freshly opened descriptor nobody else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: ifreq is plain data (a name and a union of integers); all zeroes
    // is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    use std::os::fd::AsRawFd;
    // SAFETY: SIOCGIFFLAGS reads `req.ifr_name` and writes the flags member of
    // `req`, which lives across the call.
    if unsafe {
        libc::ioctl(
            sock.as_raw_fd(),
            libc::SIOCGIFFLAGS,
            &mut req as *mut libc::ifreq,
        )
    } < 0
    {
        return Err(Errno::last());
    }
    // SAFETY: SIOCGIFFLAGS just filled the `ifru_flags` member of the union.
    let flags = unsafe { req.ifr_ifru.ifru_flags };
    req.ifr_ifru.ifru_flags = flags | (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
    // SAFETY: SIOCSIFFLAGS reads `req` (name and flags), valid for the call.
    if unsafe {
        libc::ioctl(
            sock.as_raw_fd(),
            libc::SIOCSIFFLAGS,
            &req as *const libc::ifreq,
        )
    } < 0
    {
        return Err(Errno::last());
    }
    Ok(())
}
