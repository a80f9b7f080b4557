/* The fingerprint of the running config that status shows: SHA-256 of the
 * exact text parsed, as `sha256sum` prints it, so an operator can compare
 * it with the file config management pushed. OpenSSL's libcrypto does the
 * hashing; not used for anything secret. */
#pragma once

#include "macro.h"

#define SHA256_DIGEST_SIZE 32
#define SHA256_HEX_SIZE (2 * SHA256_DIGEST_SIZE + 1)

/* The digest of data as 64 lowercase hex digits and a NUL. Returns 0, or
 * -EIO when libcrypto refused (out empty then). */
int sha256_hex(const void *data, size_t len, char out[SHA256_HEX_SIZE]);
