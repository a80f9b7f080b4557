/* The control socket's decoder: control_request_parse() on one request
 * line (the socket hands it over without its newline), the encoder
 * monkeyctl uses on what it accepted, and the one-line replies built from
 * its outcome; then every row of the protocol's command table with the
 * input as the argument the row reads. */
#include "control.h"
#include "fuzz.h"
#include "utf8.h"

/* A reply is one line of the newline-delimited protocol. */
static void check_reply(char *reply) {
        FUZZ_CHECK(reply);
        FUZZ_CHECK(!strchr(reply, '\n'));
        free(reply);
}

/* monkeyctl status's exit code comes from whatever JSON the agent sent:
 * any object gives a verdict and one line saying why. */
static void check_verdict(const uint8_t *data, size_t size) {
        _cleanup_(freep) char *why = NULL;
        json_tokener *tok = json_tokener_new();
        json_object *o;
        ControlVerdict v;

        if (!tok || size > INT32_MAX) {
                json_tokener_free(tok);
                return;
        }
        o = json_tokener_parse_ex(tok, (const char *) data, (int) size);
        json_tokener_free(tok);
        v = control_status_verdict(o, &why);
        FUZZ_CHECK(control_verdict_to_string(v));
        for (const char *p = why; p && *p; p++)
                FUZZ_CHECK((unsigned char) *p >= 0x20 && *p != 0x7f);
        json_object_put(o);
}

/* Each row, with the input (up to its first NUL) as the argument it
 * reads: what the encoder takes, the decoder gives back unchanged, unless
 * the text is not UTF-8, which the decoder refuses. */
static void check_rows(const uint8_t *data, size_t size) {
        _cleanup_(freep) char *text = strndup((const char *) data, MIN(size, (size_t) CONTROL_REQUEST_MAX));

        if (!text)
                return;
        for (ControlCommand c = 0; c < _CONTROL_COMMAND_MAX; c++) {
                const ControlCommandInfo *info = control_command_info(c);
                ControlRequest req = { .version = CONTROL_PROTOCOL_VERSION, .command = c }, back = {};
                _cleanup_(freep) char *line = NULL, *error = NULL;
                int r;

                FUZZ_CHECK(info && info->command == c && info->name && info->reply_key);
                FUZZ_CHECK(!(info->required & ~info->args));
                FUZZ_CHECK(!info->root_only || info->mutating);
                if ((info->args & CONTROL_ARG_REASON) && *text)
                        req.reason = text;
                if (info->args & CONTROL_ARG_ID)
                        req.id = text;
                if (info->args & CONTROL_ARG_LIMIT)
                        req.limit = (unsigned) (size % (CONTROL_LIMIT_MAX + 1));
                r = control_request_format(&req, &line);
                if (r < 0) {
                        /* too long, or an empty id */
                        FUZZ_CHECK(r == -E2BIG || r == -ENOMEM);
                        continue;
                }
                r = control_request_parse(line, strlen(line), &back, &error);
                if (r < 0) {
                        FUZZ_CHECK(r == -ENOMEM || !utf8_is_valid(text, strlen(text)));
                        continue;
                }
                FUZZ_CHECK(back.command == c && back.limit == req.limit);
                FUZZ_CHECK(streq_ptr(back.reason, req.reason) && streq_ptr(back.id, req.id));
                control_request_done(&back);
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_(freep) char *error = NULL, *line = NULL, *error2 = NULL;
        ControlRequest req = {}, again = {};
        int r;

        check_verdict(data, size);
        check_rows(data, size);

        r = control_request_parse((const char *) data, size, &req, &error);
        if (r < 0) {
                FUZZ_CHECK(r == -EBADMSG || r == -ENOMEM);
                /* what the agent answers (control_server.c: client_handle_line) */
                check_reply(control_reply_error(error ? error : "cannot parse request"));
                return 0;
        }

        FUZZ_CHECK(!error);
        FUZZ_CHECK(req.version == CONTROL_PROTOCOL_VERSION);
        FUZZ_CHECK(control_command_to_string(req.command));
        FUZZ_CHECK(!req.reason || (*req.reason && strlen(req.reason) <= CONTROL_REASON_MAX));
        FUZZ_CHECK(req.limit <= CONTROL_LIMIT_MAX);
        FUZZ_CHECK(!req.id || (*req.id && strlen(req.id) <= CONTROL_ID_MAX));
        /* what its row requires is there */
        FUZZ_CHECK(!(control_command_info(req.command)->required & CONTROL_ARG_ID) || req.id);

        /* What was accepted encodes, and decodes back to the same request. */
        r = control_request_format(&req, &line);
        FUZZ_CHECK(r >= 0);
        FUZZ_CHECK(!strchr(line, '\n'));
        r = control_request_parse(line, strlen(line), &again, &error2);
        FUZZ_CHECK(r >= 0);
        FUZZ_CHECK(again.command == req.command && again.limit == req.limit && streq_ptr(again.reason, req.reason) &&
                   streq_ptr(again.id, req.id));

        /* The reason is free text that comes back in replies and events. */
        check_reply(control_reply_message(req.reason ? req.reason : "ok"));

        control_request_done(&again);
        control_request_done(&req);
        return 0;
}
