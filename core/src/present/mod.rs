//! How answers are shown to people: units, tables fitted to the terminal, the end-of-run
//! summary. Machines get raw numbers (CSV, JSON); this is only for text.

pub mod fit;
pub mod markdown;
pub mod summary;
pub mod table;
pub mod units;

/// The width of the terminal behind `fd`, or `None` when it is not a terminal.
// Our own ioctl: the summary goes to stderr and tables to stdout, and the width asked for is
// that stream's (crossterm measures stdout or /dev/tty only).
pub fn terminal_width(fd: libc::c_int) -> Option<u16> {
    // SAFETY: TIOCGWINSZ writes one winsize into the struct we own.
    let mut size: libc::winsize = unsafe { std::mem::zeroed() };
    let ok = unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut size) } == 0;
    (ok && size.ws_col > 0).then_some(size.ws_col)
}
