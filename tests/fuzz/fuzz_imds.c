/* AWS credentials as they reach the agent: the instance role's JSON from
 * IMDS (aws_credentials_parse_role, with aws_parse_iso8601 for its
 * Expiration), and the shared credentials file's text
 * (aws_credentials_parse_file), on the same bytes; the timestamp parser
 * alone on the first line. Everything parsed is wiped and freed with
 * aws_credentials_done(), as the agent does. */
#include <ctype.h>

#include "awscreds.h"
#include "fuzz.h"

/* A key that curl would put in a signed header: one token of printable
 * characters (awscreds.c: key_valid). */
static bool token_ok(const char *s) {
        if (!s || !*s)
                return false;
        for (; *s; s++)
                if (!isgraph((unsigned char) *s))
                        return false;
        return true;
}

static void check_credentials(const AwsCredentials *c, AwsCredSource source) {
        AwsCredentials copy = {};

        FUZZ_CHECK(c->source == source);
        FUZZ_CHECK(token_ok(c->access_key) && token_ok(c->secret_key));
        FUZZ_CHECK(!c->session_token || token_ok(c->session_token));
        FUZZ_CHECK(c->origin);
        FUZZ_CHECK(aws_credentials_copy(c, &copy) == 0);
        FUZZ_CHECK(streq(copy.access_key, c->access_key) && streq(copy.secret_key, c->secret_key));
        aws_credentials_done(&copy);
}

static void role(const uint8_t *data, size_t size) {
        _cleanup_(freep) char *error = NULL;
        AwsCredentials c = {};
        int r;

        /* json-c reads exactly `size` bytes: no terminator, as curl's body */
        r = aws_credentials_parse_role((const char *) data, size, "web-role", &c, &error);
        if (r < 0) {
                FUZZ_CHECK(r == -EBADMSG || r == -ENOMEM);
                FUZZ_CHECK(r != -EBADMSG || error);
                return;
        }
        FUZZ_CHECK(!error);
        check_credentials(&c, AWS_CRED_INSTANCE_ROLE);
        FUZZ_CHECK(c.session_token && c.expiration > 0);
        aws_credentials_done(&c);
}

static void file(const char *text, const char *profile) {
        _cleanup_(freep) char *error = NULL;
        AwsCredentials c = {};
        int r;

        r = aws_credentials_parse_file(text, profile, "/etc/monkeyd/aws-credentials", &c, &error);
        if (r < 0) {
                FUZZ_CHECK(r == -EBADMSG || r == -ENOENT || r == -ENOMEM);
                if (r != -ENOMEM) {
                        FUZZ_CHECK(error && !strchr(error, '\n'));
                        /* messages name the file (and line or profile) */
                        FUZZ_CHECK(strstr(error, "/etc/monkeyd/aws-credentials"));
                }
                return;
        }
        FUZZ_CHECK(!error);
        check_credentials(&c, AWS_CRED_FILE);
        FUZZ_CHECK(c.expiration == 0);
        aws_credentials_done(&c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_(freep) char *text = NULL;
        const char *nl;
        usec_t t;

        if (size > 64 * 1024) /* the file's cap (awscreds.c) and more than IMDS sends */
                return 0;
        role(data, size);

        text = fuzz_strndup(data, size);
        file(text, "default");
        file(text, "prod");

        nl = memchr(text, '\n', size);
        if (nl)
                text[nl - text] = '\0';
        if (aws_parse_iso8601(text, &t) >= 0)
                FUZZ_CHECK(t % USEC_PER_SEC == 0);
        return 0;
}
