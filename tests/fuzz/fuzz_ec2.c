/* EC2's answers: ec2_parse_response() (expat) on the body of a Query API
 * call, success and error documents alike, and what the agent decides
 * from the error code it extracted. */
#include "ec2.h"
#include "fuzz.h"

/* Code, Message and request id go into logs, Slack and status: one line,
 * no control characters. */
static void check_text(const char *s, size_t size) {
        size_t n = strnlen(s, size);

        FUZZ_CHECK(n < size);
        for (size_t i = 0; i < n; i++)
                FUZZ_CHECK((unsigned char) s[i] >= 0x20 && s[i] != 0x7f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_(freep) char *error = NULL;
        Ec2Response r;
        int k;

        if (size > 64 * 1024) /* ec2.c keeps 64 KiB of an answer */
                return 0;
        k = ec2_parse_response((const char *) data, size, &r, &error);
        if (k < 0) {
                FUZZ_CHECK(k == -EBADMSG || k == -ENOMEM);
                FUZZ_CHECK(k != -EBADMSG || error);
                return 0;
        }
        FUZZ_CHECK(!error);
        check_text(r.code, sizeof r.code);
        check_text(r.message, sizeof r.message);
        check_text(r.request_id, sizeof r.request_id);
        if (r.is_error) {
                FUZZ_CHECK(r.code[0] && !r.returned_true);
                for (long status = 400; status <= 503; status += 103) {
                        (void) ec2_error_is_retryable(r.code, status);
                }
                (void) ec2_error_is_denied(r.code);
        } else
                FUZZ_CHECK(!r.code[0]);
        return 0;
}
