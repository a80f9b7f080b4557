/* The outbox's records on disk: outbox_record_parse() on a file's bytes
 * (state_dir/outbox/NNN.json, read whole, not NUL-terminated), and the
 * writer on what it accepted. */
#include "fuzz.h"
#include "outbox.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_(freep) char *error = NULL, *text = NULL, *error2 = NULL;
        OutboxRecord rec = {}, again = {};
        int r;

        if (size > OUTBOX_RECORD_MAX + 1)
                return 0;
        r = outbox_record_parse((const char *) data, size, &rec, &error);
        if (r < 0) {
                FUZZ_CHECK(r == -EBADMSG || r == -ENOMEM);
                FUZZ_CHECK(r != -EBADMSG || error);
                return 0;
        }
        FUZZ_CHECK(!error);
        FUZZ_CHECK(rec.kind && rec.payload && rec.size == size);
        FUZZ_CHECK(outbox_role_to_string(rec.role));
        FUZZ_CHECK(rec.role == OUTBOX_STANDALONE || rec.incident);

        /* Reader and writer agree: what was accepted is a record the writer
         * can write, and what it writes reads back the same. */
        r = outbox_record_format(&rec, &text);
        FUZZ_CHECK(r >= 0);
        r = outbox_record_parse(text, strlen(text), &again, &error2);
        FUZZ_CHECK(r >= 0);
        FUZZ_CHECK(again.seq == rec.seq && again.created == rec.created && again.role == rec.role &&
                   again.test == rec.test && streq(again.kind, rec.kind) &&
                   streq_ptr(again.incident, rec.incident) && streq(again.payload, rec.payload));

        outbox_record_done(&again);
        outbox_record_done(&rec);
        return 0;
}
