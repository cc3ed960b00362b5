//! Windows: directories under `%ProgramData%\p2pvpn`, private files by ACL (a protected DACL
//! that lets in only SYSTEM, Administrators and the owner, inherited by the files inside),
//! an elevated token for the wintun adapter, `LockFileEx` for the server's lock.

use anyhow::{bail, Context, Result};
use std::ffi::OsStr;
use std::fs::{self, File};
use std::os::windows::ffi::OsStrExt;
use std::os::windows::fs::OpenOptionsExt;
use std::os::windows::io::AsRawHandle;
use std::path::{Path, PathBuf};
use std::ptr::null_mut;
use windows_sys::Win32::Foundation::{
    CloseHandle, LocalFree, ERROR_LOCK_VIOLATION, HANDLE, INVALID_HANDLE_VALUE,
};
use windows_sys::Win32::Security::Authorization::{
    ConvertSecurityDescriptorToStringSecurityDescriptorW,
    ConvertStringSecurityDescriptorToSecurityDescriptorW, GetNamedSecurityInfoW,
    SetNamedSecurityInfoW, SDDL_REVISION_1, SE_FILE_OBJECT,
};
use windows_sys::Win32::Security::{
    GetSecurityDescriptorDacl, GetTokenInformation, TokenElevation, ACL, DACL_SECURITY_INFORMATION,
    PROTECTED_DACL_SECURITY_INFORMATION, PSECURITY_DESCRIPTOR, SECURITY_ATTRIBUTES,
    TOKEN_ELEVATION, TOKEN_QUERY,
};
use windows_sys::Win32::Storage::FileSystem::{
    LockFileEx, FILE_SHARE_READ, FILE_SHARE_WRITE, LOCKFILE_EXCLUSIVE_LOCK,
    LOCKFILE_FAIL_IMMEDIATELY,
};
use windows_sys::Win32::System::Threading::{GetCurrentProcess, OpenProcessToken};
use windows_sys::Win32::System::IO::OVERLAPPED;

/// The DACL of the key and state directories: SYSTEM, Administrators and the owner, full
/// control, inherited by everything created inside; `P` (protected) drops the entries
/// inherited from `%ProgramData%`, which let every user read.
const PRIVATE_DIR_SDDL: &str = "D:P(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)(A;OICI;FA;;;OW)";

/// `%ProgramData%\p2pvpn`, falling back to the default location when the variable is unset.
fn program_data() -> PathBuf {
    std::env::var_os("ProgramData")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(r"C:\ProgramData"))
        .join("p2pvpn")
}

pub fn default_config_dir() -> PathBuf {
    program_data().join("config")
}

pub fn default_state_dir() -> PathBuf {
    program_data().join("state")
}

pub fn default_server_state_dir() -> PathBuf {
    program_data().join("server")
}

/// `s` as a NUL-terminated UTF-16 string for the W functions.
pub fn wide(s: &OsStr) -> Vec<u16> {
    s.encode_wide().chain(std::iter::once(0)).collect()
}

/// A security descriptor made from SDDL text, freed on drop.
pub struct SecurityDescriptor(PSECURITY_DESCRIPTOR);

impl SecurityDescriptor {
    pub fn from_sddl(sddl: &str) -> std::io::Result<SecurityDescriptor> {
        let text = wide(OsStr::new(sddl));
        let mut sd: PSECURITY_DESCRIPTOR = null_mut();
        // SAFETY: `text` is NUL-terminated; the function allocates `sd` with LocalAlloc.
        let ok = unsafe {
            ConvertStringSecurityDescriptorToSecurityDescriptorW(
                text.as_ptr(),
                SDDL_REVISION_1,
                &mut sd,
                null_mut(),
            )
        };
        if ok == 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(SecurityDescriptor(sd))
    }

    /// Attributes that create an object with this descriptor; valid while `self` lives.
    pub fn attributes(&self) -> SECURITY_ATTRIBUTES {
        SECURITY_ATTRIBUTES {
            nLength: std::mem::size_of::<SECURITY_ATTRIBUTES>() as u32,
            lpSecurityDescriptor: self.0,
            bInheritHandle: 0,
        }
    }

    fn dacl(&self) -> std::io::Result<*mut ACL> {
        let (mut present, mut defaulted) = (0, 0);
        let mut dacl: *mut ACL = null_mut();
        // SAFETY: `self.0` is a valid descriptor; the DACL pointer points into it.
        let ok =
            unsafe { GetSecurityDescriptorDacl(self.0, &mut present, &mut dacl, &mut defaulted) };
        if ok == 0 || present == 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(dacl)
    }
}

impl Drop for SecurityDescriptor {
    fn drop(&mut self) {
        // SAFETY: allocated by ConvertStringSecurityDescriptorToSecurityDescriptorW.
        unsafe { LocalFree(self.0) };
    }
}

/// The DACL of one private file: the same three, without inheritance.
const PRIVATE_FILE_SDDL: &str = "D:P(A;;FA;;;SY)(A;;FA;;;BA)(A;;FA;;;OW)";

/// Replaces the DACL of `path` with the protected one in `sddl`.
fn set_dacl(path: &Path, sddl: &str) -> Result<()> {
    let sd = SecurityDescriptor::from_sddl(sddl)
        .context("cannot build the private security descriptor")?;
    let dacl = sd
        .dacl()
        .context("the private security descriptor has no DACL")?;
    let name = wide(path.as_os_str());
    // SAFETY: `name` is NUL-terminated and `dacl` lives in `sd`, alive for the call.
    let rc = unsafe {
        SetNamedSecurityInfoW(
            name.as_ptr(),
            SE_FILE_OBJECT,
            DACL_SECURITY_INFORMATION | PROTECTED_DACL_SECURITY_INFORMATION,
            null_mut(),
            null_mut(),
            dacl,
            null_mut(),
        )
    };
    if rc != 0 {
        return Err(std::io::Error::from_raw_os_error(rc as i32)).with_context(|| {
            format!(
                "cannot restrict {} to SYSTEM and Administrators (run from an elevated prompt)",
                path.display()
            )
        });
    }
    Ok(())
}

/// Creates `dir` (and parents) and gives it the private DACL, replacing what it inherited, so
/// that files created in it afterwards are readable by SYSTEM, Administrators and their owner
/// only.
pub fn ensure_private_dir(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir)
        .with_context(|| format!("cannot create directory {}", dir.display()))?;
    set_dacl(dir, PRIVATE_DIR_SDDL)
}

/// Creates a new file (failing if it exists) with its own protected DACL from the start:
/// inheritance from the private directory is not relied on (Wine, for one, does not apply it).
/// The DACL is read back; when it still lets others in, the file is removed and the creation
/// fails.
pub fn create_private_file(path: &Path) -> std::io::Result<File> {
    let file = create_new_with_dacl(path, PRIVATE_FILE_SDDL)?;
    // Read back before anything secret is written: a file system that does not keep the DACL
    // must make the write fail, not leave a key others can read. (Not set again afterwards: on
    // Wine 8 SetNamedSecurityInfoW on a file reports success and makes it world-readable.)
    let restricted = check_private_file(path, "new file");
    if let Err(e) = restricted {
        drop(file);
        let _ = fs::remove_file(path);
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!("{e:#}; nothing secret was written to it"),
        ));
    }
    Ok(file)
}

/// Creates `path` (failing if it exists) with the DACL `sddl` in place from the first instant
/// (CreateFileW's security attributes) rather than set afterwards: the file never has the DACL
/// it would have inherited, not even for a moment. Wine 8 also keeps a DACL given this way,
/// while one set on a file afterwards is lost (scripts/test-windows.sh runs under it).
fn create_new_with_dacl(path: &Path, sddl: &str) -> std::io::Result<File> {
    use std::os::windows::io::FromRawHandle;
    use windows_sys::Win32::Foundation::GENERIC_WRITE;
    use windows_sys::Win32::Storage::FileSystem::{
        CreateFileW, CREATE_NEW, FILE_ATTRIBUTE_NORMAL, FILE_SHARE_DELETE,
    };
    let sd = SecurityDescriptor::from_sddl(sddl)?;
    let attributes = sd.attributes();
    let name = wide(path.as_os_str());
    // SAFETY: `name` is NUL-terminated; `attributes` points at `sd`'s descriptor, and both live
    // across the call, which copies the descriptor into the new file.
    let handle = unsafe {
        CreateFileW(
            name.as_ptr(),
            GENERIC_WRITE,
            FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE,
            &attributes,
            CREATE_NEW,
            FILE_ATTRIBUTE_NORMAL,
            null_mut(),
        )
    };
    if handle == INVALID_HANDLE_VALUE {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a valid handle that nothing else owns; the File closes it.
    Ok(unsafe { File::from_raw_handle(handle) })
}

/// Opens (creating if needed) a file for reading and writing; others may read it (the lock's
/// holder pid) but not write or delete it while it is open.
pub fn open_private_rw(path: &Path) -> std::io::Result<File> {
    fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .share_mode(FILE_SHARE_READ | FILE_SHARE_WRITE)
        .open(path)
}

/// The DACL of `path` as SDDL text.
fn dacl_sddl(path: &Path) -> std::io::Result<String> {
    let name = wide(path.as_os_str());
    let mut sd: PSECURITY_DESCRIPTOR = null_mut();
    // SAFETY: `name` is NUL-terminated; `sd` is allocated by the call and freed below.
    let rc = unsafe {
        GetNamedSecurityInfoW(
            name.as_ptr(),
            SE_FILE_OBJECT,
            DACL_SECURITY_INFORMATION,
            null_mut(),
            null_mut(),
            null_mut(),
            null_mut(),
            &mut sd,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::from_raw_os_error(rc as i32));
    }
    let mut text: *mut u16 = null_mut();
    let mut len = 0u32;
    // SAFETY: `sd` is valid; `text` is allocated by the call and freed below.
    let ok = unsafe {
        ConvertSecurityDescriptorToStringSecurityDescriptorW(
            sd,
            SDDL_REVISION_1,
            DACL_SECURITY_INFORMATION,
            &mut text,
            &mut len,
        )
    };
    let result = if ok == 0 {
        Err(std::io::Error::last_os_error())
    } else {
        // SAFETY: the call wrote `len` UTF-16 units (with the NUL) at `text`.
        let units = unsafe { std::slice::from_raw_parts(text, len as usize) };
        Ok(String::from_utf16_lossy(units)
            .trim_end_matches('\0')
            .to_string())
    };
    // SAFETY: both were allocated with LocalAlloc by the calls above.
    unsafe {
        if !text.is_null() {
            LocalFree(text.cast());
        }
        LocalFree(sd);
    }
    result
}

/// Refuses a private file (`what`: "key file", "TLS key file") whose ACL lets other users in.
pub fn check_private_file(path: &Path, what: &str) -> Result<()> {
    let sddl = dacl_sddl(path)
        .with_context(|| format!("cannot read the ACL of {what} {}", path.display()))?;
    if let Some(group) = super::sddl::grants_others(&sddl) {
        bail!(
            "{what} {} is readable by {group} (its ACL is {sddl}); restrict it to SYSTEM and \
             Administrators, e.g. `icacls \"{}\" /inheritance:r /grant:r SYSTEM:F \
             Administrators:F`",
            path.display(),
            path.display()
        );
    }
    Ok(())
}

/// Takes an exclusive lock on `file` without waiting (`LockFileEx`): `Ok(false)` when another
/// handle holds it. Windows releases it when the process ends. The locked byte lies beyond
/// the file's content (at 4 GiB), so readers of the holder's pid are not blocked.
pub fn try_lock_exclusive(file: &File) -> std::io::Result<bool> {
    // SAFETY: OVERLAPPED is plain data; zero is its documented initial state.
    let mut at: OVERLAPPED = unsafe { std::mem::zeroed() };
    at.Anonymous.Anonymous.OffsetHigh = 1;
    // SAFETY: the handle is owned by `file`, alive for the call; `at` outlives it (synchronous).
    let ok = unsafe {
        LockFileEx(
            file.as_raw_handle() as HANDLE,
            LOCKFILE_EXCLUSIVE_LOCK | LOCKFILE_FAIL_IMMEDIATELY,
            0,
            1,
            0,
            &mut at,
        )
    };
    if ok != 0 {
        return Ok(true);
    }
    let err = std::io::Error::last_os_error();
    if err.raw_os_error() == Some(ERROR_LOCK_VIOLATION as i32) {
        return Ok(false);
    }
    Err(err)
}

/// Whether this process runs elevated (an Administrator's full token, or SYSTEM).
pub fn is_admin() -> bool {
    let mut token: HANDLE = INVALID_HANDLE_VALUE;
    // SAFETY: the pseudo-handle of the current process needs no closing; `token` is closed below.
    if unsafe { OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY, &mut token) } == 0 {
        return false;
    }
    let mut elevation = TOKEN_ELEVATION { TokenIsElevated: 0 };
    let mut len = 0u32;
    // SAFETY: the buffer is a TOKEN_ELEVATION of the size given.
    let ok = unsafe {
        GetTokenInformation(
            token,
            TokenElevation,
            (&mut elevation as *mut TOKEN_ELEVATION).cast(),
            std::mem::size_of::<TOKEN_ELEVATION>() as u32,
            &mut len,
        )
    };
    // SAFETY: opened above.
    unsafe { CloseHandle(token) };
    ok != 0 && elevation.TokenIsElevated != 0
}

/// Refuses to go on when this process cannot create the wintun adapter and its routes.
pub fn check_tun_privilege() -> Result<()> {
    if !is_admin() {
        bail!(
            "permission denied: `up` creates a wintun adapter and routes, which needs \
             Administrator rights. Run it from an elevated prompt (Run as administrator)"
        );
    }
    Ok(())
}

/// `doctor`'s privilege line: what is there, or (what is missing, the fix).
pub fn privilege_report() -> Result<&'static str, (&'static str, &'static str)> {
    if is_admin() {
        Ok("privileges: elevated (needed by `up` for the wintun adapter and routes)")
    } else {
        Err((
            "privileges: not elevated; `up` cannot create its wintun adapter",
            "run p2pvpn from an elevated prompt (Run as administrator)",
        ))
    }
}

/// `doctor`'s TUN driver line: wintun.dll beside the executable, where it is shipped.
pub fn tun_driver_report() -> Result<&'static str, (&'static str, &'static str)> {
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("wintun.dll")));
    if beside.is_some_and(|dll| dll.exists()) {
        Ok("wintun.dll is beside p2pvpn.exe")
    } else {
        Err((
            "wintun.dll is not beside p2pvpn.exe; `up` cannot create its adapter",
            "put wintun.dll (https://www.wintun.net, amd64) in the folder of p2pvpn.exe",
        ))
    }
}

/// What creating the TUN device needs when the OS says "not found".
pub const TUN_MISSING: &str = "wintun.dll could not be loaded. Put wintun.dll (from \
                               https://www.wintun.net) beside p2pvpn.exe";

/// What creating the TUN device needs when the OS says "permission denied".
pub const TUN_PERMISSION: &str = "permission denied. Run from an elevated prompt (Run as \
                                  administrator)";

/// No SO_REUSEADDR on Windows: there it lets a socket bind a port another program is already
/// listening on (and share its connections), so a second server would start instead of being
/// refused. Windows has no TIME_WAIT problem to solve with it (mio/tokio skip it too).
pub const LISTEN_REUSEADDR: bool = false;

/// Why binding a listener was refused with "permission denied" (WSAEACCES): the port is held
/// exclusively by another program, or lies in a range Windows reserves.
pub const BIND_PERMISSION: &str = "the port is held exclusively by another program, or \
                                   Windows reserves it (`netsh interface ipv4 show \
                                   excludedportrange protocol=tcp`); choose another port";

/// Whether `e` says the adapter is held by another process: ERROR_BUSY (170) or
/// ERROR_ALREADY_EXISTS (183).
pub fn tun_busy(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(170) | Some(183))
}

/// Windows has no per-process descriptor limit like `RLIMIT_NOFILE` (sockets are kernel handles
/// bounded by memory), so there is nothing to raise or read: `None` leaves `--max-conns` as
/// the only cap.
pub fn raise_nofile() -> Option<u64> {
    None
}
