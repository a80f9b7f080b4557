/* state.json: state_parse() on the file's bytes (read whole, not
 * NUL-terminated), and state_format() on what it accepted: the agent
 * writes the state back after every transition, so what it reads must be
 * writable, and read back the same. */
#include "fuzz.h"
#include "state.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_(freep) char *error = NULL, *text = NULL, *text2 = NULL, *error2 = NULL;
        PersistentState s, again;
        int r;

        if (size > 1024 * 1024) /* state.c refuses bigger files */
                return 0;
        r = state_parse((const char *) data, size, &s, &error);
        if (r < 0) {
                FUZZ_CHECK(r == -EBADMSG || r == -ENOMEM);
                FUZZ_CHECK(r != -EBADMSG || error);
                return 0;
        }
        FUZZ_CHECK(!error);
        FUZZ_CHECK(state_to_string(s.state));
        FUZZ_CHECK(s.n_remediations <= STATE_REMEDIATIONS_MAX);
        for (size_t i = 1; i < s.n_remediations; i++)
                FUZZ_CHECK(s.remediations[i - 1] <= s.remediations[i]);
        FUZZ_CHECK(s.incident.n_steps <= INCIDENT_STEPS_MAX);
        for (size_t i = 0; i < s.incident.n_steps; i++)
                FUZZ_CHECK(s.incident.steps[i].step);

        r = state_format(&s, &text);
        FUZZ_CHECK(r >= 0);
        r = state_parse(text, strlen(text), &again, &error2);
        FUZZ_CHECK(r >= 0);
        r = state_format(&again, &text2);
        FUZZ_CHECK(r >= 0);
        FUZZ_CHECK(streq(text, text2));

        /* what the agent does to a loaded state */
        persistent_state_add_remediation(&again, UINT64_MAX / 2);
        FUZZ_CHECK(again.n_remediations <= STATE_REMEDIATIONS_MAX);
        FUZZ_CHECK(incident_step_add(&again.incident, "reboot-instance", 1) == 0);
        FUZZ_CHECK(incident_step_result(&again.incident, "accepted") == 0);
        FUZZ_CHECK(again.incident.n_steps <= INCIDENT_STEPS_MAX);

        persistent_state_done(&again);
        persistent_state_done(&s);
        return 0;
}
