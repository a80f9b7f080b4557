/* sha256.c: the FIPS 180-4 examples and the padding edges come out as
 * sha256sum prints them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "sha256.h"

static void test_known_vectors(void **state) {
        static const struct {
                const char *in, *hex;
        } v[] = {
                { "", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" },
                { "abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" },
                { "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
                  "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1" },
                { "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrst"
                  "nopqrstu",
                  "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1" },
        };
        char hex[SHA256_HEX_SIZE];

        for (size_t i = 0; i < ELEMENTSOF(v); i++) {
                assert_int_equal(sha256_hex(v[i].in, strlen(v[i].in), hex), 0);
                assert_string_equal(hex, v[i].hex);
        }
}

/* 55, 56, 63, 64 and 65 bytes: where the length does or does not fit in
 * the last block. */
static void test_padding_edges(void **state) {
        static const struct {
                size_t n;
                const char *hex;
        } edges[] = {
                { 55, "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318" },
                { 56, "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a" },
                { 63, "7d3e74a05d7db15bce4ad9ec0658ea98e3f06eeecf16b4c6fff2da457ddc2f34" },
                { 64, "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb" },
                { 65, "635361c48bb9eab14198e76ea8ab7f1a41685d6ad62aa9146d301d4f17eb0ae0" },
        };
        char text[200], one[SHA256_HEX_SIZE];

        memset(text, 'a', sizeof text);
        for (size_t i = 0; i < ELEMENTSOF(edges); i++) {
                assert_int_equal(sha256_hex(text, edges[i].n, one), 0);
                assert_string_equal(one, edges[i].hex);
        }
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_known_vectors),
                cmocka_unit_test(test_padding_edges),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
