/* SHA-256 as hex, through libcrypto's one-shot EVP digest. */
#include "sha256.h"

#include <openssl/evp.h>
#include <stdio.h>

int sha256_hex(const void *data, size_t len, char out[SHA256_HEX_SIZE]) {
        unsigned char d[EVP_MAX_MD_SIZE];
        unsigned n = 0;

        out[0] = '\0';
        if (EVP_Digest(data, len, d, &n, EVP_sha256(), NULL) != 1 || n != SHA256_DIGEST_SIZE)
                return -EIO;
        for (unsigned i = 0; i < n; i++)
                snprintf(out + 2 * i, 3, "%02x", d[i]);
        return 0;
}
