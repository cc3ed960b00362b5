/*
 * FOR WINE TESTS ONLY, NEVER SHIPPED.
 *
 * Rust's standard library for x86_64-pc-windows-gnu gets its random bytes (HashMap seeds,
 * std's RandomState) from ProcessPrng in bcryptprimitives.dll, the system RNG entry point of
 * Windows 10 and later. Wine 8 (Debian bookworm) has no bcryptprimitives.dll, so an exe built
 * for that target fails to load under it. This shim exports ProcessPrng and forwards to wine's
 * bcrypt.dll BCryptGenRandom with the system-preferred RNG, so scripts/test-windows.sh can run
 * the very build we ship instead of a second Windows 7 build. It is placed only in the test
 * wine prefix's system32 (see scripts/test-windows.sh); packaging never picks it up.
 *
 * Build: x86_64-w64-mingw32-gcc -shared -O2 -o bcryptprimitives.dll bcryptprimitives.c \
 *            bcryptprimitives.def -lbcrypt
 */
#include <windows.h>
#include <bcrypt.h>

/* Documented contract: "always returns TRUE"; on failure Windows terminates the process rather
 * than hand out predictable bytes, and so do we. */
BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
    while (len > 0) {
        /* BCryptGenRandom takes a ULONG length: feed big requests in chunks. */
        ULONG chunk = len > 0x40000000u ? 0x40000000u : (ULONG)len;
        if (!BCRYPT_SUCCESS(BCryptGenRandom(NULL, data, chunk, BCRYPT_USE_SYSTEM_PREFERRED_RNG)))
            ExitProcess(0xC0000001u /* STATUS_UNSUCCESSFUL */);
        data += chunk;
        len -= chunk;
    }
    return TRUE;
}
